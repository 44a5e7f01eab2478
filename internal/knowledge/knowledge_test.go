package knowledge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// faq is a small corpus: one passage answers each question of TestRanking.
var faq = []struct{ title, body string }{
	{"Cash machines", "Withdrawing cash from our own cash machines is free of charge. " +
		"Machines of other banks may charge a fee of up to two pounds for each withdrawal."},
	{"Opening hours", "Our branches open from nine in the morning to five in the afternoon on weekdays. " +
		"On Saturdays they open until noon, and they are closed on Sundays and bank holidays."},
	{"Lost or stolen cards", "If your card is lost or stolen, call us at once on the number on our website. " +
		"We will block the card and send you a new one within five working days."},
	{"Savings interest", "Our savings accounts earn interest of three percent a year, paid monthly. " +
		"Interest rates may change; we tell you a month in advance."},
	{"Mortgages", "We offer fixed and variable rate mortgages for home buyers. " +
		"You can borrow up to four and a half times your yearly income."},
	{"Buying a car", "To buy a car you can take out a personal loan of up to twenty five thousand pounds, " +
		"repaid over one to seven years."},
	{"Foreign currency", "You can order foreign currency online and collect it at a branch the next day. " +
		"We sell euros and dollars without commission."},
}

// addFAQ adds the faq passages to the tenant's kb.
func addFAQ(t testing.TB, s Store, tenant, kb string) map[string]Document {
	t.Helper()
	docs := map[string]Document{}
	for _, p := range faq {
		docs[p.title] = mustAdd(t, s, tenant, kb, Input{Title: p.title, Type: TypeText, Body: []byte(p.body)})
	}
	return docs
}

func TestAddGetListKBs(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		clk := newClock()
		s := k.open(t, Options{Now: clk.Now})
		t0 := clk.Now()

		mdBody := "# Fees\n\nIntro.\n\n## Cash machines\n\nFree at ours.\n"
		md := mustAdd(t, s, "acme", "docs", Input{
			Source: "https://acme.example/fees.md",
			Type:   "text/markdown",
			Body:   []byte(mdBody),
		})
		if !validID(md.ID) || md.KB != "docs" || md.Title != "Fees" || md.Type != TypeMarkdown ||
			md.Source != "https://acme.example/fees.md" || md.Chunks != 2 || md.Bytes != len(mdBody) || !md.Created.Equal(t0) {
			t.Fatalf("markdown document = %+v", md)
		}
		clk.Advance(time.Second)
		h := mustAdd(t, s, "acme", "docs", Input{Type: "html", Body: []byte("<title>Page</title><p>Hello</p>")})
		if h.Title != "Page" || h.Type != TypeHTML || h.Chunks != 1 {
			t.Fatalf("html document = %+v", h)
		}
		clk.Advance(time.Second)
		tx := mustAdd(t, s, "acme", "docs", Input{Title: "  Given\ttitle\n", Body: []byte("first line\nsecond")})
		if tx.Title != "Given title" || tx.Type != TypeText {
			t.Fatalf("text document = %+v", tx)
		}
		mustAdd(t, s, "acme", "other", text("elsewhere"))

		if got, err := s.Get(ctx, "acme", "docs", md.ID); err != nil || got != md {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, md)
		}
		l, err := s.List(ctx, "acme", "docs", 0, "")
		if err != nil {
			t.Fatal(err)
		}
		if ids := docIDs(l); !slices.Equal(ids, []string{tx.ID, h.ID, md.ID}) {
			t.Fatalf("List = %v, want newest first", ids)
		}
		kbs, err := s.KBs(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		want := []KB{
			{Name: "docs", Documents: 3, Chunks: md.Chunks + h.Chunks + tx.Chunks, Bytes: int64(md.Bytes + h.Bytes + tx.Bytes), Updated: t0.Add(2 * time.Second)},
			{Name: "other", Documents: 1, Chunks: 1, Bytes: 9, Updated: t0.Add(2 * time.Second)},
		}
		if !slices.Equal(kbs, want) {
			t.Fatalf("KBs = %+v\nwant %+v", kbs, want)
		}
		if kbs, err := s.KBs(ctx, "nobody"); err != nil || kbs == nil || len(kbs) != 0 {
			t.Fatalf("KBs of a new tenant = %#v, %v", kbs, err)
		}

		// The chunks carry their heading paths and are numbered from 0.
		hits := mustSearch(t, s, "acme", "docs", "cash machines free intro", 10)
		var texts []string
		for _, h := range hits {
			if h.DocID == md.ID {
				texts = append(texts, fmt.Sprintf("%d %s", h.Chunk, h.Text))
				if h.Title != "Fees" || h.Source != md.Source {
					t.Errorf("hit = %+v", h)
				}
			}
		}
		slices.Sort(texts)
		if !slices.Equal(texts, []string{"0 Fees: Intro.", "1 Fees > Cash machines: Free at ours."}) {
			t.Fatalf("chunks = %q", texts)
		}
	})
}

func docIDs(docs []Document) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.ID
	}
	return out
}

func TestListPagination(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		clk := newClock()
		s := k.open(t, Options{Now: clk.Now})
		var want []string
		for i := range 7 {
			if i != 3 { // two documents of the same time: the id breaks the tie
				clk.Advance(time.Second)
			}
			want = append(want, mustAdd(t, s, "t", "kb", text(fmt.Sprint("doc ", i))).ID)
		}
		slices.Reverse(want)
		want[3], want[4] = max(want[3], want[4]), min(want[3], want[4])
		var got []string
		before := ""
		for {
			page, err := s.List(ctx, "t", "kb", 3, before)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, docIDs(page)...)
			if len(page) < 3 {
				break
			}
			before = page[len(page)-1].ID
		}
		if !slices.Equal(got, want) {
			t.Fatalf("pages = %v\nwant %v", got, want)
		}
		if _, err := s.List(ctx, "t", "kb", 3, "doc_000000000000000000000000"); !errors.Is(err, ErrNotFound) {
			t.Errorf("List before unknown id = %v", err)
		}
		if _, err := s.List(ctx, "t", "kb", 3, "junk"); !errors.Is(err, ErrNotFound) {
			t.Errorf("List before junk = %v", err)
		}
		if _, err := s.List(ctx, "t", "nokb", 3, ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("List of unknown kb = %v", err)
		}
		if l, err := s.List(ctx, "t", "kb", 1000, ""); err != nil || len(l) != 7 {
			t.Errorf("List limit 1000 = %d, %v", len(l), err)
		}
	})
}

func TestAddInvalid(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		s := k.open(t, Options{Limits: Limits{MaxDocBytes: 100}})
		for _, tc := range []struct {
			name       string
			tenant, kb string
			in         Input
			want       error
		}{
			{"empty tenant", "", "kb", text("x"), ErrInvalid},
			{"tenant with NUL", "a\x00b", "kb", text("x"), ErrInvalid},
			{"bad kb", "t", "Bad KB", text("x"), ErrInvalid},
			{"kb with slash", "t", "a/b", text("x"), ErrInvalid},
			{"empty body", "t", "kb", text(""), ErrInvalid},
			{"blank body", "t", "kb", text(" \n\t\x00 "), ErrInvalid},
			{"invalid UTF-8", "t", "kb", text("caf\xe9"), ErrInvalid},
			{"html without text", "t", "kb", Input{Type: TypeHTML, Body: []byte("<script>x()</script>")}, ErrInvalid},
			{"malformed type", "t", "kb", Input{Type: "<b>", Body: []byte("x")}, ErrInvalid},
			{"unsupported type", "t", "kb", Input{Type: "application/pdf", Body: []byte("%PDF")}, ErrUnsupportedType},
			{"too large", "t", "kb", text(strings.Repeat("x", 101)), ErrTooLarge},
			{"long title", "t", "kb", Input{Title: strings.Repeat("t", MaxTitleLen+1), Body: []byte("x")}, ErrInvalid},
			{"bad title", "t", "kb", Input{Title: "\xff", Body: []byte("x")}, ErrInvalid},
			{"long source", "t", "kb", Input{Source: strings.Repeat("s", MaxSourceLen+1), Body: []byte("x")}, ErrInvalid},
		} {
			_, err := s.Add(ctx, tc.tenant, tc.kb, tc.in)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: Add = %v, want %v", tc.name, err, tc.want)
			}
		}
		// Exactly MaxDocBytes is fine.
		mustAdd(t, s, "t", "kb", text(strings.Repeat("y", 100)))
		if n := countRows(t, s, "documents"); n != 1 {
			t.Fatalf("%d documents stored, want 1", n)
		}
		if n := countRows(t, s, "kbs"); n != 1 {
			t.Fatalf("%d knowledge bases stored, want 1", n)
		}
		// Messages say what is wrong.
		_, err := s.Add(ctx, "t", "kb", text(strings.Repeat("x", 101)))
		if err == nil || !strings.Contains(err.Error(), "MaxDocBytes 100") {
			t.Errorf("too large message = %v", err)
		}
		_, err = s.Add(ctx, "t", "Bad", text("x"))
		if err == nil || !strings.Contains(err.Error(), `"Bad"`) {
			t.Errorf("bad kb message = %v", err)
		}
	})
}

func TestLimits(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		check := func(t *testing.T, err error, which string, limit int) {
			t.Helper()
			var le *LimitError
			if !errors.Is(err, ErrLimit) || !errors.As(err, &le) || le.Which != which || le.Limit != limit {
				t.Fatalf("err = %v, want LimitError %s %d", err, which, limit)
			}
			if !strings.Contains(err.Error(), which) {
				t.Fatalf("message %q does not name %s", err, which)
			}
		}
		t.Run("MaxDocsPerTenant", func(t *testing.T) {
			s := k.open(t, Options{Limits: Limits{MaxDocsPerTenant: 2}})
			mustAdd(t, s, "a", "kb1", text("one"))
			mustAdd(t, s, "a", "kb2", text("two"))
			_, err := s.Add(ctx, "a", "kb3", text("three"))
			check(t, err, "MaxDocsPerTenant", 2)
			mustAdd(t, s, "b", "kb1", text("other tenant")) // its own quota
			if n := countRows(t, s, "documents"); n != 3 {
				t.Fatalf("%d documents", n)
			}
			if n := countRows(t, s, "kbs"); n != 3 {
				t.Fatalf("%d knowledge bases: the refused add created one", n)
			}
		})
		t.Run("MaxChunksPerTenant", func(t *testing.T) {
			s := k.open(t, Options{Limits: Limits{MaxChunksPerTenant: 3, ChunkChars: 50}})
			// Two paragraphs of 40 characters make two chunks: 2+2 > 3.
			body := strings.Repeat("w", 40) + "\n\n" + strings.Repeat("v", 40)
			if d := mustAdd(t, s, "a", "kb", text(body)); d.Chunks != 2 {
				t.Fatalf("%d chunks", d.Chunks)
			}
			_, err := s.Add(ctx, "a", "kb", text(body))
			check(t, err, "MaxChunksPerTenant", 3)
			if n, f := countRows(t, s, "chunks"), ftsRows(t, s); n != 2 || f != 2 {
				t.Fatalf("%d chunks, %d indexed, want 2", n, f)
			}
			mustAdd(t, s, "a", "kb", text("fits"))
		})
		t.Run("MaxKBsPerTenant", func(t *testing.T) {
			s := k.open(t, Options{Limits: Limits{MaxKBsPerTenant: 2}})
			mustAdd(t, s, "a", "kb1", text("x"))
			mustAdd(t, s, "a", "kb2", text("x"))
			_, err := s.Add(ctx, "a", "kb3", text("x"))
			check(t, err, "MaxKBsPerTenant", 2)
			mustAdd(t, s, "a", "kb1", text("an existing kb takes more")) // no new kb
			if _, err := s.DeleteKB(ctx, "a", "kb2"); err != nil {
				t.Fatal(err)
			}
			mustAdd(t, s, "a", "kb3", text("x"))
		})
		t.Run("ChunksPerDocument", func(t *testing.T) {
			l, _ := Limits{MaxDocBytes: 1000, ChunkChars: 100}.withDefaults()
			if l.maxChunksPerDoc() != 20 {
				t.Fatalf("maxChunksPerDoc = %d", l.maxChunksPerDoc())
			}
			// Past merging, a document that still makes too many chunks is
			// refused (unreachable within MaxDocBytes; see FuzzExtract).
			secs := []section{{body: strings.Repeat("word ", 100)}}
			if got := chunkSections(secs, 32, 2); got != nil {
				t.Fatalf("chunkSections over the limit = %d chunks", len(got))
			}
			err := error(&LimitError{Which: "chunks per document", Limit: 2, Adding: 3})
			check(t, fmt.Errorf("knowledge: add: %w", err), "chunks per document", 2)
		})
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, l := range []Limits{{MaxDocBytes: -1}, {MaxKBsPerTenant: -5}, {ChunkChars: MinChunkChars - 1}} {
		if s, err := Open(ctx, MemoryPath, Options{Limits: l}); err == nil {
			s.Close()
			t.Errorf("Open with %+v succeeded", l)
		}
	}
	if _, err := Open(ctx, "", Options{}); err == nil {
		t.Error("Open with empty path succeeded")
	}
	// A database of a newer schema is refused.
	path := filepath.Join(t.TempDir(), "kb.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.(*sqliteStore).w.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(ctx, path, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open newer schema = %v", err)
	}
}

func TestIsolation(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		s := k.open(t, Options{Embedder: newFakeEmbedder(64)})
		secret := mustAdd(t, s, "tenant-a", "shared", text("The launch code of tenant A is swordfish."))
		mustAdd(t, s, "tenant-a", "private", text("Tenant A private swordfish notes."))
		mine := mustAdd(t, s, "tenant-b", "shared", text("Tenant B keeps a goldfish, not a swordfish."))

		// Tenant B, with the same kb name and A's document id.
		if _, err := s.Get(ctx, "tenant-b", "shared", secret.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("B Get A's doc = %v", err)
		}
		if err := s.Delete(ctx, "tenant-b", "shared", secret.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("B Delete A's doc = %v", err)
		}
		if l, err := s.List(ctx, "tenant-b", "shared", 100, ""); err != nil || !slices.Equal(docIDs(l), []string{mine.ID}) {
			t.Errorf("B List = %v, %v", docIDs(l), err)
		}
		if _, err := s.List(ctx, "tenant-b", "shared", 100, secret.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("B List before A's id = %v", err)
		}
		for _, q := range []string{"swordfish launch code", "tenant A", "launch"} {
			for _, h := range mustSearch(t, s, "tenant-b", "shared", q, 50) {
				if h.DocID != mine.ID {
					t.Errorf("B Search %q found %+v", q, h)
				}
			}
		}
		// A's other kb does not exist for B.
		for _, err := range []error{
			func() error { _, err := s.Search(ctx, "tenant-b", "private", "swordfish", 5); return err }(),
			func() error { _, err := s.List(ctx, "tenant-b", "private", 5, ""); return err }(),
			func() error { _, err := s.DeleteKB(ctx, "tenant-b", "private"); return err }(),
			func() error { _, err := s.Get(ctx, "tenant-b", "private", secret.ID); return err }(),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("B on A's private kb = %v, want ErrNotFound", err)
			}
		}
		if kbs, _ := s.KBs(ctx, "tenant-b"); len(kbs) != 1 || kbs[0].Name != "shared" || kbs[0].Documents != 1 {
			t.Errorf("B KBs = %+v", kbs)
		}
		// Tenant names that look alike are other tenants.
		for _, other := range []string{"tenant-", "Tenant-a", "tenant-a ", "tenant-a%", "tenant-a\x00"} {
			if _, err := s.Get(ctx, other, "shared", secret.ID); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInvalid) {
				t.Errorf("Get as %q = %v", other, err)
			}
		}
		// Between the knowledge bases of one tenant.
		if _, err := s.Get(ctx, "tenant-a", "private", secret.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("A Get shared doc via private kb = %v", err)
		}
		for _, h := range mustSearch(t, s, "tenant-a", "private", "launch code swordfish", 50) {
			if h.DocID == secret.ID {
				t.Errorf("search of private kb found the shared kb's doc")
			}
		}
		// B deleting its kb leaves A's same-named kb whole.
		if n, err := s.DeleteKB(ctx, "tenant-b", "shared"); err != nil || n != 1 {
			t.Fatalf("B DeleteKB = %d, %v", n, err)
		}
		if d, err := s.Get(ctx, "tenant-a", "shared", secret.ID); err != nil || d != secret {
			t.Fatalf("A's doc after B's DeleteKB = %+v, %v", d, err)
		}
		hits := mustSearch(t, s, "tenant-a", "shared", "launch code", 5)
		if len(hits) != 1 || hits[0].DocID != secret.ID {
			t.Fatalf("A's search after B's DeleteKB = %+v", hits)
		}
	})
}

func TestDelete(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		for _, emb := range []bool{false, true} {
			t.Run(fmt.Sprint("embedder=", emb), func(t *testing.T) {
				o := Options{}
				if emb {
					o.Embedder = newFakeEmbedder(64)
				}
				s := k.open(t, o)
				docs := addFAQ(t, s, "t", "kb")
				mustAdd(t, s, "t", "kb2", text("Cash machines elsewhere."))
				lost := docs["Lost or stolen cards"]
				if hits := mustSearch(t, s, "t", "kb", "lost stolen card", 1); hits[0].DocID != lost.ID {
					t.Fatalf("before delete: %+v", hits)
				}
				if err := s.Delete(ctx, "t", "kb", lost.ID); err != nil {
					t.Fatal(err)
				}
				for _, h := range mustSearch(t, s, "t", "kb", "lost stolen card", 50) {
					if h.DocID == lost.ID {
						t.Fatalf("deleted document found: %+v", h)
					}
				}
				if _, err := s.Get(ctx, "t", "kb", lost.ID); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get deleted = %v", err)
				}
				if err := s.Delete(ctx, "t", "kb", lost.ID); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Delete twice = %v", err)
				}
				if n, f := countRows(t, s, "chunks"), ftsRows(t, s); n != len(faq) || f != n {
					t.Fatalf("%d chunks, %d indexed after delete, want %d", n, f, len(faq))
				}
				kbs, _ := s.KBs(ctx, "t")
				if kbs[0].Documents != len(faq)-1 || kbs[0].Chunks != len(faq)-1 {
					t.Fatalf("kb after delete = %+v", kbs[0])
				}

				n, err := s.DeleteKB(ctx, "t", "kb")
				if err != nil || n != len(faq)-1 {
					t.Fatalf("DeleteKB = %d, %v", n, err)
				}
				if _, err := s.Search(ctx, "t", "kb", "cash", 5); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Search of deleted kb = %v", err)
				}
				if _, err := s.DeleteKB(ctx, "t", "kb"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("DeleteKB twice = %v", err)
				}
				if n, f := countRows(t, s, "chunks"), ftsRows(t, s); n != 1 || f != 1 {
					t.Fatalf("%d chunks, %d indexed after DeleteKB, want 1 (kb2's)", n, f)
				}
				wantVecs := 0
				if emb {
					wantVecs = 1
				}
				if n := countRows(t, s, "vectors"); n != wantVecs {
					t.Fatalf("%d vectors after DeleteKB", n)
				}
				if hits := mustSearch(t, s, "t", "kb2", "cash machines", 5); len(hits) != 1 {
					t.Fatalf("kb2 after DeleteKB = %+v", hits)
				}
				// The kb can be made again, empty.
				mustAdd(t, s, "t", "kb", text("fresh start"))
				if kbs, _ := s.KBs(ctx, "t"); kbs[0].Documents != 1 {
					t.Fatalf("recreated kb = %+v", kbs[0])
				}
			})
		}
	})
}

func TestRanking(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		s := k.open(t, Options{})
		docs := addFAQ(t, s, "t", "kb")
		for q, want := range map[string]string{
			"How much does it cost to withdraw money from another bank's cash machine?": "Cash machines",
			"What should I do if my card was stolen?":                                   "Lost or stolen cards",
			"When are the branches open on Saturday?":                                   "Opening hours",
			"What interest do savings earn?":                                            "Savings interest",
			"How much can I borrow for a mortgage?":                                     "Mortgages",
			"Can I get dollars or euros?":                                               "Foreign currency",
		} {
			hits := mustSearch(t, s, "t", "kb", q, 3)
			if len(hits) == 0 || hits[0].DocID != docs[want].ID {
				t.Errorf("%q: first hit %+v, want %q", q, hits, want)
				continue
			}
			for i, h := range hits {
				if h.Lexical != i+1 || h.Semantic != 0 {
					t.Errorf("%q: hit %d ranks %d/%d", q, i, h.Lexical, h.Semantic)
				}
				if i > 0 && h.Score > hits[i-1].Score {
					t.Errorf("%q: scores not descending: %v", q, hits)
				}
			}
			if hits[0].Score <= 0 {
				t.Errorf("%q: score %v, want > 0 (negated BM25)", q, hits[0].Score)
			}
		}
		// Stemming and diacritics: "withdrawals" finds "withdrawing", "cafés"
		// finds "cafe".
		mustAdd(t, s, "t", "kb", text("The cafe next door sells coffee."))
		if hits := mustSearch(t, s, "t", "kb", "cafés", 1); len(hits) != 1 || !strings.Contains(hits[0].Text, "cafe") {
			t.Errorf("diacritics: %+v", hits)
		}
		if hits := mustSearch(t, s, "t", "kb", "withdrawals", 1); len(hits) != 1 || hits[0].DocID != docs["Cash machines"].ID {
			t.Errorf("stemming: %+v", hits)
		}
		if hits := mustSearch(t, s, "t", "kb", "zebra", 5); hits == nil || len(hits) != 0 {
			t.Errorf("no match = %#v, want empty", hits)
		}
	})
}

func TestQuerySanitisation(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		s := k.open(t, Options{})
		near := mustAdd(t, s, "t", "kb", text("The branch near the station is open late."))
		mustAdd(t, s, "t", "kb", text("Scope and text are column names; AND OR NOT are operators."))
		mustAdd(t, s, "other", "kb", text("near station secret of another tenant"))
		for _, q := range []string{
			`NEAR`, `near`, `NEAR(branch station, 2)`, `branch*`, `^branch`, `"branch`, `"branch" "near"`,
			`scope:near`, `text : near`, `{scope text}: near`, `- near`, `+near`, `near AND`, `OR near`,
			`NOT near`, `near NOT station`, `(near`, `near)`, `rowid:1 near`, `chunks_fts:near`, `near'; DROP TABLE chunks; --`,
			`s* OR near`, `col:"x" near`, "near\x00station", `\"near\"`, `near"""`,
		} {
			hits, err := s.Search(ctx, "t", "kb", q, 5)
			if err != nil {
				t.Errorf("Search(%q) = %v", q, err)
				continue
			}
			found := false
			for _, h := range hits {
				found = found || h.DocID == near.ID
				if strings.Contains(h.Text, "another tenant") {
					t.Errorf("Search(%q) crossed tenants: %+v", q, h)
				}
			}
			if !found {
				t.Errorf("Search(%q) did not find the document with the word near: %+v", q, hits)
			}
		}
		// Operator words are searchable words.
		if hits := mustSearch(t, s, "t", "kb", "NOT", 5); len(hits) != 1 || !strings.Contains(hits[0].Text, "operators") {
			t.Errorf("Search NOT = %+v", hits)
		}
		for _, q := range []string{"", "   ", "!!!", `"" * ^ : () {} - +`, "\x00\x01", "\xff\xfe", "…—–"} {
			if _, err := s.Search(ctx, "t", "kb", q, 5); !errors.Is(err, ErrInvalid) {
				t.Errorf("Search(%q) = %v, want ErrInvalid", q, err)
			}
		}
		for _, k := range []int{0, -1, MaxK + 1} {
			if _, err := s.Search(ctx, "t", "kb", "near", k); !errors.Is(err, ErrInvalid) {
				t.Errorf("Search k=%d = %v, want ErrInvalid", k, err)
			}
		}
		if _, err := s.Search(ctx, "t", "kb", strings.Repeat("a ", MaxQueryLen), 5); !errors.Is(err, ErrInvalid) {
			t.Errorf("over-long query = %v", err)
		}
		if _, err := s.Search(ctx, "t", "nokb", "near", 5); !errors.Is(err, ErrNotFound) {
			t.Errorf("Search unknown kb = %v", err)
		}
	})
}

func TestHybrid(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		emb := newFakeEmbedder(256)
		s := k.open(t, Options{Embedder: emb})
		docs := addFAQ(t, s, "t", "kb")
		car := docs["Buying a car"]

		// Lexical ranking alone cannot find it: no word of the query is in
		// the corpus.
		plain := k.open(t, Options{})
		addFAQ(t, plain, "t", "kb")
		if hits := mustSearch(t, plain, "t", "kb", "purchase automobile", 5); len(hits) != 0 {
			t.Fatalf("lexical search found %+v", hits)
		}
		hits := mustSearch(t, s, "t", "kb", "purchase automobile", 5)
		if len(hits) == 0 || hits[0].DocID != car.ID || hits[0].Lexical != 0 || hits[0].Semantic != 1 {
			t.Fatalf("hybrid = %+v, want the car passage first, by semantics alone", hits)
		}
		if want := 1.0 / (rrfK + 1); math.Abs(hits[0].Score-want) > 1e-12 {
			t.Errorf("score = %v, want %v", hits[0].Score, want)
		}
		// Both rankers agree: fused.
		hits = mustSearch(t, s, "t", "kb", "lost stolen card", 3)
		if hits[0].DocID != docs["Lost or stolen cards"].ID || hits[0].Lexical != 1 || hits[0].Semantic != 1 {
			t.Fatalf("fused = %+v", hits[0])
		}
		if want := 2.0 / (rrfK + 1); math.Abs(hits[0].Score-want) > 1e-12 {
			t.Errorf("fused score = %v, want %v", hits[0].Score, want)
		}
		// Stored vectors are unit length, float32 little-endian.
		v := decodeVec(nil, storedVector(t, s))
		if len(v) != 256 || math.Abs(float64(dot(v, v))-1) > 1e-5 {
			t.Fatalf("stored vector: %d dims, norm² %v", len(v), dot(v, v))
		}

		// The cache is invalidated by Add: a new document is found at once.
		doc := mustAdd(t, s, "t", "kb", text("A physician visits on Mondays."))
		hits = mustSearch(t, s, "t", "kb", "doctor", 1)
		if hits[0].DocID != doc.ID || hits[0].Semantic != 1 {
			t.Fatalf("after Add: %+v", hits)
		}
		// And by Delete.
		if err := s.Delete(context.Background(), "t", "kb", doc.ID); err != nil {
			t.Fatal(err)
		}
		for _, h := range mustSearch(t, s, "t", "kb", "doctor", 50) {
			if h.DocID == doc.ID {
				t.Fatalf("deleted doc found: %+v", h)
			}
		}

		// Embedding goes in batches of at most 64.
		var long strings.Builder
		for i := range 1500 {
			fmt.Fprintf(&long, "Paragraph %d is about topic %d and nothing else at all.\n\n", i, i)
		}
		emb.maxBatch.Store(0)
		before := emb.calls.Load()
		d := mustAdd(t, s, "t", "big", Input{Body: []byte(long.String())})
		if d.Chunks <= 64 {
			t.Fatalf("big doc has %d chunks", d.Chunks)
		}
		if calls := emb.calls.Load() - before; emb.maxBatch.Load() > 64 || calls != int64((d.Chunks+63)/64) {
			t.Fatalf("%d chunks embedded in %d calls, largest batch %d", d.Chunks, calls, emb.maxBatch.Load())
		}
	})
}

func TestEmbedderFailureStoresNothing(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		emb := newFakeEmbedder(32)
		s := k.open(t, Options{Embedder: emb})
		mustAdd(t, s, "t", "kb", text("kept"))
		var long strings.Builder
		for i := range 1500 {
			fmt.Fprintf(&long, "Paragraph number %d of a long document that needs two batches.\n\n", i)
		}
		emb.failAt.Store(emb.calls.Load() + 2) // the second batch fails
		_, err := s.Add(ctx, "t", "kb", Input{Body: []byte(long.String())})
		if !errors.Is(err, errEmbed) {
			t.Fatalf("Add = %v, want the embedder's error", err)
		}
		if _, err := s.Add(ctx, "t", "new-kb", text("x")); !errors.Is(err, errEmbed) {
			t.Fatalf("Add to a new kb = %v", err)
		}
		for table, want := range map[string]int{"documents": 1, "chunks": 1, "vectors": 1, "kbs": 1} {
			if n := countRows(t, s, table); n != want {
				t.Errorf("%d rows in %s, want %d", n, table, want)
			}
		}
		if f := ftsRows(t, s); f != 1 {
			t.Errorf("%d indexed chunks, want 1", f)
		}
		if kbs, _ := s.KBs(ctx, "t"); len(kbs) != 1 || kbs[0].Documents != 1 || kbs[0].Chunks != 1 {
			t.Errorf("KBs = %+v", kbs)
		}
		// A failing embedder fails the search too.
		if _, err := s.Search(ctx, "t", "kb", "kept", 1); !errors.Is(err, errEmbed) {
			t.Errorf("Search = %v, want the embedder's error", err)
		}
	})
}

func TestReopen(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		path := k.newDB(t)
		emb := newFakeEmbedder(64)
		s, err := k.openDB(ctx, path, Options{Embedder: emb})
		if err != nil {
			t.Fatal(err)
		}
		docs := addFAQ(t, s, "t", "kb")
		wantHits := mustSearch(t, s, "t", "kb", "purchase automobile card", 5)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s = k.openAt(t, path, Options{Embedder: emb})
		for _, d := range docs {
			if got, err := s.Get(ctx, "t", "kb", d.ID); err != nil || got != d {
				t.Fatalf("after reopen Get = %+v, %v; want %+v", got, err, d)
			}
		}
		if l, err := s.List(ctx, "t", "kb", 100, ""); err != nil || len(l) != len(faq) {
			t.Fatalf("after reopen List = %d, %v", len(l), err)
		}
		if kbs, err := s.KBs(ctx, "t"); err != nil || len(kbs) != 1 || kbs[0].Documents != len(faq) {
			t.Fatalf("after reopen KBs = %+v, %v", kbs, err)
		}
		if got := mustSearch(t, s, "t", "kb", "purchase automobile card", 5); !slices.Equal(got, wantHits) {
			t.Fatalf("after reopen Search = %+v\nwant %+v", got, wantHits)
		}
		mustAdd(t, s, "t", "kb", text("added after reopen"))
	})
}

func TestMemory(t *testing.T) {
	s := openAt(t, MemoryPath, Options{Embedder: newFakeEmbedder(32)})
	docs := addFAQ(t, s, "t", "kb")
	if hits := mustSearch(t, s, "t", "kb", "lost card", 1); hits[0].DocID != docs["Lost or stolen cards"].ID {
		t.Fatalf("memory search = %+v", hits)
	}
}

func TestVectorCacheBounds(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		// Too small a cache: knowledge bases are searched from the database.
		for _, floats := range []int{-1, 100} {
			s := k.open(t, Options{Embedder: newFakeEmbedder(64), VectorCacheFloats: floats})
			docs := addFAQ(t, s, "t", "kb")
			hits := mustSearch(t, s, "t", "kb", "purchase automobile", 1)
			if hits[0].DocID != docs["Buying a car"].ID || hits[0].Semantic != 1 {
				t.Fatalf("cache %d: %+v", floats, hits)
			}
			if cacheOf(s).used != 0 {
				t.Fatalf("cache %d holds %d floats", floats, cacheOf(s).used)
			}
		}
		// Room for one knowledge base: the least recently used goes.
		s := k.open(t, Options{Embedder: newFakeEmbedder(64), VectorCacheFloats: 700})
		for _, kb := range []string{"a", "b"} {
			addFAQ(t, s, "t", kb)
		}
		mustSearch(t, s, "t", "a", "car", 1)
		if cacheOf(s).entries[scopeKey{"t", "a"}] == nil {
			t.Fatal("kb a not cached")
		}
		mustSearch(t, s, "t", "b", "car", 1)
		if cacheOf(s).entries[scopeKey{"t", "a"}] != nil || cacheOf(s).entries[scopeKey{"t", "b"}] == nil {
			t.Fatal("kb a not evicted for b")
		}
		if cacheOf(s).used > cacheOf(s).max {
			t.Fatalf("cache holds %d floats, more than %d", cacheOf(s).used, cacheOf(s).max)
		}
		if _, err := s.DeleteKB(ctx, "t", "b"); err != nil {
			t.Fatal(err)
		}
		if cacheOf(s).used != 0 {
			t.Fatalf("cache holds %d floats after DeleteKB", cacheOf(s).used)
		}
	})
}

func TestVecCacheStaleLoad(t *testing.T) {
	// A load that began before an invalidation is not cached.
	c := newVecCache(1 << 20)
	key := scopeKey{"t", "kb"}
	set, err := c.get(context.Background(), key, 0, func(context.Context) (*vecSet, int64, error) {
		c.invalidate(key) // a write commits while the load reads
		return &vecSet{dim: 1, ids: []int64{1}, data: []float32{1}}, 0, nil
	})
	if err != nil || set == nil {
		t.Fatal(err)
	}
	if c.entries[key] != nil {
		t.Fatal("stale load was cached")
	}
	// Concurrent loads of one generation share one load.
	var loads sync.WaitGroup
	var mu sync.Mutex
	n := 0
	release := make(chan struct{})
	for range 4 {
		loads.Go(func() {
			_, _ = c.get(context.Background(), key, 0, func(context.Context) (*vecSet, int64, error) {
				mu.Lock()
				n++
				mu.Unlock()
				<-release
				return &vecSet{dim: 1}, 0, nil
			})
		})
	}
	for {
		c.mu.Lock()
		loading := c.loads[key] != nil
		c.mu.Unlock()
		if loading {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	loads.Wait()
	if n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
	if c.entries[key] == nil {
		t.Fatal("load not cached")
	}
}

func TestVecCacheVersions(t *testing.T) {
	// An entry serves only the searches of its version; a load is cached
	// as of the version it read, in place of the older entry.
	c := newVecCache(1 << 20)
	key := scopeKey{"t", "kb"}
	loads := 0
	load := func(ver int64, ids ...int64) func(context.Context) (*vecSet, int64, error) {
		return func(context.Context) (*vecSet, int64, error) {
			loads++
			set := &vecSet{dim: 1, ids: ids}
			for range ids {
				set.data = append(set.data, 1)
			}
			return set, ver, nil
		}
	}
	get := func(want int64, f func(context.Context) (*vecSet, int64, error)) []int64 {
		t.Helper()
		set, err := c.get(context.Background(), key, want, f)
		if err != nil {
			t.Fatal(err)
		}
		return set.ids
	}
	if ids := get(5, load(5, 1)); !slices.Equal(ids, []int64{1}) || loads != 1 {
		t.Fatalf("first get = %v, %d loads", ids, loads)
	}
	if ids := get(5, load(5, 9)); !slices.Equal(ids, []int64{1}) || loads != 1 {
		t.Fatalf("cached get = %v, %d loads", ids, loads)
	}
	// Another replica wrote: version 7. The load found 8 already.
	if ids := get(7, load(8, 1, 2)); !slices.Equal(ids, []int64{1, 2}) || loads != 2 {
		t.Fatalf("get of a new version = %v, %d loads", ids, loads)
	}
	if e := c.entries[key].Value.(*cacheEntry); e.ver != 8 || c.used != e.set.floats() || len(c.entries) != 1 {
		t.Fatalf("entry of version %d, %d floats used", e.ver, c.used)
	}
	if ids := get(8, load(8, 3)); !slices.Equal(ids, []int64{1, 2}) || loads != 2 {
		t.Fatalf("get of the loaded version = %v, %d loads", ids, loads)
	}
}

func TestFuseAndTopK(t *testing.T) {
	lex := []scored{{1, 9}, {2, 8}, {3, 7}}
	sem := []scored{{3, .9}, {4, .8}, {1, .7}}
	got := fuse(lex, sem)
	var ids []int64
	for _, f := range got {
		ids = append(ids, f.id)
	}
	// 1: 1/61+1/63, 3: 1/63+1/61 (tie, lexical rank 1 first), 2: 1/62, 4: 1/62 (tie, lexical first).
	if !slices.Equal(ids, []int64{1, 3, 2, 4}) {
		t.Fatalf("fused order = %v (%+v)", ids, got)
	}
	if got[0].lexical != 1 || got[0].semantic != 3 || got[3].lexical != 0 || got[3].semantic != 2 {
		t.Fatalf("ranks = %+v", got)
	}

	tk := topK{k: 3}
	for i, s := range []float64{.1, .5, .3, .9, .5, .2} {
		tk.add(int64(i), s)
	}
	if s := tk.sorted(); len(s) != 3 || s[0].id != 3 || s[1].id != 1 || s[2].id != 4 {
		t.Fatalf("topK = %+v", s)
	}

	// The parallel scan agrees with the serial one.
	set := &vecSet{dim: 8}
	for i := range 200000 {
		set.ids = append(set.ids, int64(i))
		for j := range 8 {
			set.data = append(set.data, float32((i*7+j*13)%101)/101)
		}
	}
	q, _ := unit([]float32{1, 2, 3, 4, 5, 6, 7, 8})
	par := set.search(q, 10)
	serial := topK{k: 10}
	set.scan(q, 0, len(set.ids), &serial)
	if !slices.Equal(par, serial.sorted()) {
		t.Fatalf("parallel %v != serial %v", par, serial.sorted())
	}
}

func TestUnitAndEncoding(t *testing.T) {
	u, err := unit([]float32{3, 4})
	if err != nil || u[0] != 0.6 || u[1] != 0.8 {
		t.Fatalf("unit = %v, %v", u, err)
	}
	if z, err := unit([]float32{0, 0}); err != nil || z[0] != 0 {
		t.Fatalf("unit zero = %v, %v", z, err)
	}
	if _, err := unit([]float32{float32(math.NaN())}); err == nil {
		t.Fatal("NaN accepted")
	}
	v := []float32{1.5, -2, float32(math.SmallestNonzeroFloat32)}
	b := encodeVec(v)
	if len(b) != 12 || b[0] != 0 || b[3] != 0x3f || !slices.Equal(decodeVec(nil, b), v) {
		t.Fatalf("encoding = % x", b)
	}
	// A misbehaving embedder is refused.
	bad := embedderFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
		return [][]float32{{1}}, nil
	})
	if _, err := embed(context.Background(), bad, []string{"a", "b"}); err == nil {
		t.Fatal("wrong vector count accepted")
	}
	mixed := embedderFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
		return [][]float32{{1}, {1, 2}}, nil
	})
	if _, err := embed(context.Background(), mixed, []string{"a", "b"}); err == nil {
		t.Fatal("mixed dimensions accepted")
	}
}

// embedderFunc adapts a function to Embedder.
type embedderFunc func(ctx context.Context, texts []string) ([][]float32, error)

func (f embedderFunc) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	return f(ctx, texts)
}

func TestConcurrency(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		ctx := context.Background()
		s := k.open(t, Options{Embedder: newFakeEmbedder(64)})
		addFAQ(t, s, "shared", "kb")
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for g := range 8 {
			wg.Go(func() {
				tenant := fmt.Sprintf("tenant-%d", g%4)
				for i := range 10 {
					body := fmt.Sprintf("Goroutine %d document %d mentions the keyword concurrent%d.", g, i, g)
					if _, err := s.Add(ctx, tenant, "kb", text(body)); err != nil {
						errs <- fmt.Errorf("add: %w", err)
						return
					}
					hits, err := s.Search(ctx, tenant, "kb", fmt.Sprintf("concurrent%d", g), 50)
					if err != nil {
						errs <- fmt.Errorf("search: %w", err)
						return
					}
					lexical := 0
					for _, h := range hits {
						if h.Lexical > 0 {
							lexical++
							if !strings.Contains(h.Text, fmt.Sprintf("Goroutine %d ", g)) {
								errs <- fmt.Errorf("goroutine %d found %q", g, h.Text)
							}
						}
					}
					if lexical != i+1 {
						errs <- fmt.Errorf("goroutine %d: %d lexical hits after %d adds", g, lexical, i+1)
					}
					if _, err := s.Search(ctx, "shared", "kb", "cash machine fee", 3); err != nil {
						errs <- fmt.Errorf("shared search: %w", err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		kbs, err := s.KBs(ctx, "tenant-0")
		if err != nil || len(kbs) != 1 || kbs[0].Documents != 20 {
			t.Fatalf("tenant-0 KBs = %+v, %v", kbs, err)
		}
	})
}

func TestContextCanceled(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		s := k.open(t, Options{Embedder: newFakeEmbedder(16)})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Add(ctx, "t", "kb", text("x")); !errors.Is(err, context.Canceled) {
			t.Errorf("Add = %v", err)
		}
		if n := countRows(t, s, "documents"); n != 0 {
			t.Errorf("%d documents", n)
		}
	})
}

func TestHitTextValid(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) {
		// Hits are valid UTF-8 and start with their heading path.
		s := k.open(t, Options{Limits: Limits{ChunkChars: 64}})
		body := "# Überschrift\n\n" + strings.Repeat("Grüße aus Köln. ", 30)
		d := mustAdd(t, s, "t", "kb", Input{Type: TypeMarkdown, Body: []byte(body)})
		hits := mustSearch(t, s, "t", "kb", "gruße koln", 50)
		if len(hits) != d.Chunks {
			t.Fatalf("%d hits, %d chunks", len(hits), d.Chunks)
		}
		seen := map[int]bool{}
		for _, h := range hits {
			if !utf8.ValidString(h.Text) || !strings.HasPrefix(h.Text, "Überschrift: ") {
				t.Errorf("hit text %q", h.Text)
			}
			seen[h.Chunk] = true
		}
		for i := range d.Chunks {
			if !seen[i] {
				t.Errorf("chunk %d not found", i)
			}
		}
	})
}

// TestQueryPlans guards the plans of the statements that run per search
// or per document: none may scan a knowledge base's index (a scan costs
// time in proportion to the knowledge base, which at 100k chunks is
// tens of milliseconds).
func TestQueryPlans(t *testing.T) {
	s := open(t, Options{Embedder: newFakeEmbedder(8)})
	addFAQ(t, s, "t", "kb")
	// SQLite's plans depend on the data: statistics make this small
	// database plan like one knowledge base of 100k chunks in 10k
	// documents.
	stats := []string{
		`ANALYZE`,
		`DELETE FROM sqlite_stat1`,
		`INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
			('chunks', 'chunks_kb', '100000 100000 100000 10'),
			('chunks', 'sqlite_autoindex_chunks_1', '100000 10 1'),
			('documents', 'sqlite_autoindex_documents_1', '10000 1'),
			('documents', 'documents_kb_created', '10000 10000 10000 1 1'),
			('vectors', 'vectors_kb', '100000 100000 100000'),
			('kbs', 'sqlite_autoindex_kbs_1', '1 1 1')`,
		`ANALYZE sqlite_schema`,
	}
	for _, q := range stats {
		if _, err := s.(*sqliteStore).w.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, tc := range []struct {
		name string
		sql  string
		args []any
		want []string // substrings of the plan, in order
	}{
		{"lexical", lexicalSQL, []any{ftsQuery(scopeToken("t", "kb"), []string{"cash"}), 100, "t", "kb"},
			[]string{"SCAN chunks_fts VIRTUAL TABLE", "SCAN m", "SEARCH c USING INTEGER PRIMARY KEY (rowid=?)"}},
		{"hits", hitsSQL(3), []any{"t", "kb", "t", "kb", 1, 2, 3},
			[]string{"SEARCH c USING INTEGER PRIMARY KEY (rowid=?)", "SEARCH d USING INDEX sqlite_autoindex_documents_1 (id=?)"}},
		{"delete vectors", deleteDocVectorsSQL, []any{"t", "kb", "t", "kb", "doc_x"},
			[]string{"vectors_kb (tenant=? AND kb=? AND rowid=?)", "chunks_kb (tenant=? AND kb=? AND doc_id=?)"}},
		{"delete chunks", deleteDocChunksSQL, []any{"t", "kb", "doc_x"},
			[]string{"chunks_kb (tenant=? AND kb=? AND doc_id=?)"}},
	} {
		rows, err := s.(*sqliteStore).w.Query(`EXPLAIN QUERY PLAN `+tc.sql, tc.args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		all := strings.Join(plan, "\n")
		rest := all
		for _, w := range tc.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("%s: plan lacks %q (in order):\n%s", tc.name, w, all)
				break
			}
			rest = rest[i+len(w):]
		}
		if strings.Contains(all, "(tenant=? AND kb=?)\n") || strings.HasSuffix(all, "(tenant=? AND kb=?)") {
			t.Errorf("%s: plan scans a knowledge base:\n%s", tc.name, all)
		}
	}
}
