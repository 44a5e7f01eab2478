package knowledge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

// pgShared is the one PostgreSQL server of this package's tests, stopped
// by TestMain; every store gets a database of its own on it.
var pgShared = testutil.SharedPostgres{Prefix: "knowledge"}

// pgDatabase creates a fresh database on the shared server and returns its
// URL (see testutil.SharedPostgres.Database).
func pgDatabase(t testing.TB) string {
	t.Helper()
	return pgShared.Database(t)
}

// openReplicas opens n PostgreSQL stores on one fresh database, as n
// replicas would.
func openReplicas(t *testing.T, n int, o Options) []Store {
	t.Helper()
	db := pgDatabase(t)
	stores := make([]Store, n)
	for i := range stores {
		stores[i] = storeKinds[1].openAt(t, db, o)
	}
	return stores
}

// TestPostgresReplicasLimits adds documents of two tenants from two
// stores on one database at once: MaxDocsPerTenant holds exactly, and
// the knowledge bases' counts match the rows.
func TestPostgresReplicasLimits(t *testing.T) {
	ctx := context.Background()
	const limit, replicas, workers, each = 7, 2, 6, 3 // 36 tries per tenant for 7 places
	stores := openReplicas(t, replicas, Options{Limits: Limits{MaxDocsPerTenant: limit}})
	var ok, full atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, replicas*workers*each*2)
	for r, s := range stores {
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					for _, tenant := range []string{"a", "b"} {
						kb := fmt.Sprintf("kb%d", (r+w+i)%3)
						_, err := s.Add(ctx, tenant, kb, text(fmt.Sprintf("replica %d worker %d document %d", r, w, i)))
						var le *LimitError
						switch {
						case err == nil:
							ok.Add(1)
						case errors.As(err, &le) && le.Which == "MaxDocsPerTenant":
							full.Add(1)
						default:
							errs <- err
						}
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok.Load() != 2*limit {
		t.Fatalf("%d added, %d refused; want %d added", ok.Load(), full.Load(), 2*limit)
	}
	for _, tenant := range []string{"a", "b"} {
		kbs, err := stores[1].KBs(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		docs := 0
		for _, k := range kbs {
			docs += k.Documents
			l, err := stores[0].List(ctx, tenant, k.Name, MaxListLimit, "")
			if err != nil || len(l) != k.Documents {
				t.Fatalf("tenant %s kb %s: List = %d, %v; KBs says %d", tenant, k.Name, len(l), err, k.Documents)
			}
		}
		if docs != limit {
			t.Fatalf("tenant %s keeps %d documents, want %d", tenant, docs, limit)
		}
	}
	if n := countRows(t, stores[0], "documents"); n != 2*limit {
		t.Fatalf("%d document rows, want %d", n, 2*limit)
	}
	if n, sum := countRows(t, stores[0], "chunks"), queryInt(t, stores[0], `SELECT sum(chunks)::int FROM knowledge_kbs`); n != sum {
		t.Fatalf("%d chunk rows, the knowledge bases count %d", n, sum)
	}
}

// TestPostgresReplicasKBLimit: MaxKBsPerTenant holds across replicas
// making knowledge bases at once.
func TestPostgresReplicasKBLimit(t *testing.T) {
	ctx := context.Background()
	const limit = 3
	stores := openReplicas(t, 2, Options{Limits: Limits{MaxKBsPerTenant: limit}})
	var ok atomic.Int64
	var wg sync.WaitGroup
	for r, s := range stores {
		for w := range 5 {
			wg.Go(func() {
				_, err := s.Add(ctx, "t", fmt.Sprintf("kb-%d-%d", r, w), text("x"))
				if err == nil {
					ok.Add(1)
				} else if !errors.Is(err, ErrLimit) {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if kbs, err := stores[0].KBs(ctx, "t"); err != nil || len(kbs) != limit || ok.Load() != limit {
		t.Fatalf("%d added, KBs = %d, %v; want %d", ok.Load(), len(kbs), err, limit)
	}
}

// TestPostgresReplicasSearch: what one replica adds or deletes, the
// other finds or no longer finds at once, lexically and by vectors,
// though its vector cache held the knowledge base before.
func TestPostgresReplicasSearch(t *testing.T) {
	ctx := context.Background()
	stores := openReplicas(t, 2, Options{Embedder: newFakeEmbedder(64)})
	a, b := stores[0], stores[1]
	docs := addFAQ(t, a, "t", "kb")
	// b caches the knowledge base's vectors.
	if hits := mustSearch(t, b, "t", "kb", "purchase automobile", 1); hits[0].DocID != docs["Buying a car"].ID {
		t.Fatalf("b before: %+v", hits)
	}
	key := scopeKey{"t", "kb"}
	if cacheOf(b).entries[key] == nil {
		t.Fatal("b did not cache the knowledge base")
	}

	doc := mustAdd(t, a, "t", "kb", text("A physician visits on Mondays."))
	hits := mustSearch(t, b, "t", "kb", "doctor", 1) // by vectors alone: no word in common
	if len(hits) != 1 || hits[0].DocID != doc.ID || hits[0].Semantic != 1 || hits[0].Lexical != 0 {
		t.Fatalf("b after a's Add: %+v", hits)
	}
	hits = mustSearch(t, b, "t", "kb", "physician mondays", 1)
	if hits[0].DocID != doc.ID || hits[0].Lexical != 1 {
		t.Fatalf("b lexical after a's Add: %+v", hits)
	}
	if got, err := b.Get(ctx, "t", "kb", doc.ID); err != nil || got != doc {
		t.Fatalf("b Get = %+v, %v; want %+v", got, err, doc)
	}

	if err := a.Delete(ctx, "t", "kb", doc.ID); err != nil {
		t.Fatal(err)
	}
	for _, h := range mustSearch(t, b, "t", "kb", "doctor physician", 50) {
		if h.DocID == doc.ID {
			t.Fatalf("b found the document a deleted: %+v", h)
		}
	}
	if e := cacheOf(b).entries[key]; e == nil || len(e.Value.(*cacheEntry).set.ids) != len(faq) {
		t.Fatal("b's cache does not hold the knowledge base as a left it")
	}

	// Deleted and made again, the knowledge base has a version never
	// seen before: b's cached vectors of the old one are not used.
	mustSearch(t, b, "t", "kb", "doctor", 1)
	if _, err := a.DeleteKB(ctx, "t", "kb"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Search(ctx, "t", "kb", "car", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("b Search of a deleted kb = %v", err)
	}
	fresh := mustAdd(t, a, "t", "kb", text("Bicycles are repaired on Fridays."))
	hits = mustSearch(t, b, "t", "kb", "purchase automobile", 5)
	if len(hits) != 1 || hits[0].DocID != fresh.ID || hits[0].Semantic != 1 {
		t.Fatalf("b after a made the knowledge base again: %+v", hits)
	}

	// A store without a cache reads the same.
	nc := storeKinds[1].openAt(t, pgURL(t, a), Options{Embedder: newFakeEmbedder(64), VectorCacheFloats: -1})
	if got, want := mustSearch(t, nc, "t", "kb", "bicycle repair", 3), mustSearch(t, b, "t", "kb", "bicycle repair", 3); !slices.Equal(got, want) {
		t.Fatalf("uncached %+v\ncached %+v", got, want)
	}
}

// pgURL returns the URL a PostgreSQL store was opened with.
func pgURL(t testing.TB, s Store) string {
	t.Helper()
	return s.(*pgStore).pool.Config().ConnString()
}

// TestPostgresVersions: every write gives the knowledge base a new
// version; reads do not.
func TestPostgresVersions(t *testing.T) {
	ctx := context.Background()
	s := storeKinds[1].open(t, Options{})
	version := func() int64 {
		t.Helper()
		_, v, err := s.(*pgStore).kbState(ctx, "t", "kb")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	d := mustAdd(t, s, "t", "kb", text("one"))
	v1 := version()
	mustSearch(t, s, "t", "kb", "one", 1)
	if v := version(); v != v1 {
		t.Fatalf("a search moved the version from %d to %d", v1, v)
	}
	mustAdd(t, s, "t", "kb", text("two"))
	v2 := version()
	if err := s.Delete(ctx, "t", "kb", d.ID); err != nil {
		t.Fatal(err)
	}
	v3 := version()
	if _, err := s.DeleteKB(ctx, "t", "kb"); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, "t", "kb", text("three"))
	v4 := version()
	if !(v1 < v2 && v2 < v3 && v3 < v4) {
		t.Fatalf("versions %d, %d, %d, %d: want increasing", v1, v2, v3, v4)
	}
}

// TestPostgresSchema opens one database from several stores at once (the
// schema is made once), checks the version, and refuses a newer schema.
func TestPostgresSchema(t *testing.T) {
	ctx := context.Background()
	db := pgDatabase(t)
	var wg sync.WaitGroup
	stores := make([]Store, 4)
	errs := make([]error, len(stores))
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = OpenPostgres(ctx, db, Options{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	d := mustAdd(t, stores[0], "t", "kb", text("persist me ✓"))
	if got, err := stores[1].Get(ctx, "t", "kb", d.ID); err != nil || got != d {
		t.Fatalf("Get from another store = %+v, %v", got, err)
	}
	if n := queryInt(t, stores[2], `SELECT version FROM knowledge_schema`); n != len(pgMigrations) {
		t.Fatalf("schema version = %d, want %d", n, len(pgMigrations))
	}
	if _, err := stores[2].(*pgStore).pool.Exec(ctx, `UPDATE knowledge_schema SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenPostgres(ctx, db, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("open of a schema version 99 = %v", err)
	}

	// A bad URL is refused without repeating its password; so are bad
	// limits and an empty URL.
	_, err := OpenPostgres(ctx, "postgres://u:hunter2@host:notaport/db", Options{})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad URL: %v", err)
	}
	if _, err := OpenPostgres(ctx, "", Options{}); err == nil {
		t.Fatal("empty URL accepted")
	}
	if _, err := OpenPostgres(ctx, db, Options{Limits: Limits{MaxDocBytes: -1}}); err == nil {
		t.Fatal("negative limit accepted")
	}
}

// TestPostgresLexical checks the text search configuration and the
// tsvectors: words cut and folded as queries are, stemmed, stop words
// kept; and that the GIN index can serve the search.
func TestPostgresLexical(t *testing.T) {
	ctx := context.Background()
	s := storeKinds[1].open(t, Options{})
	pool := s.(*pgStore).pool
	var tsv string
	if err := pool.QueryRow(ctx, `SELECT to_tsvector('knowledge_english'::regconfig, $1)::text`,
		indexText("The Cafés at example.com are NOT open-late; 1.5e3 withdrawals")).Scan(&tsv); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"'cafe'", "'exampl'", "'com'", "'not'", "'the'", "'open'", "'late'", "'withdraw'", "'1'", "'5e3'"} {
		if !strings.Contains(tsv, want+":") {
			t.Errorf("tsvector %s lacks %s", tsv, want)
		}
	}
	if strings.Contains(tsv, "example.com") || strings.Contains(tsv, "open-late") {
		t.Errorf("tsvector %s holds the parser's own tokens", tsv)
	}
	var q string
	if err := pool.QueryRow(ctx, `SELECT to_tsquery('knowledge_english'::regconfig, $1)::text`,
		tsQuery(queryTerms(`Cafés & !withdrawal | NOT:* (a<->b)`))).Scan(&q); err != nil {
		t.Fatal(err)
	}
	if q != `'cafe' | 'withdraw' | 'b'` {
		t.Errorf("tsquery = %s", q)
	}

	mustAdd(t, s, "t", "kb", text("x"))
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	// The search's match, without the knowledge base's index to choose.
	rows, err := tx.Query(ctx, `EXPLAIN SELECT c.id
		FROM knowledge_chunks AS c, to_tsquery('knowledge_english'::regconfig, $1) AS q
		WHERE c.tsv @@ q`, tsQuery([]string{"cash"}))
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if all := strings.Join(plan, "\n"); !strings.Contains(all, "knowledge_chunks_tsv") {
		t.Errorf("the match cannot use the GIN index:\n%s", all)
	}
}

// TestIndexTextAndTSQuery: the PostgreSQL store's words are cut as a
// query's are and folded alike, and a tsquery holds quoted words only.
func TestIndexTextAndTSQuery(t *testing.T) {
	for in, want := range map[string]string{
		"Café CAFE\u0301 Straße Ærø naïve":                             "cafe cafe straße ærø naive",
		"see https://example.com/a-b_c?x=1":                            "see https example com a b c x 1",
		"東京2020 हिन्दी":                                                "東京2020 हिन्दी",
		"don't\x00stop" + strings.Repeat("x", maxTermRunes+1) + " end": "don t end",
	} {
		if got := indexText(in); got != want {
			t.Errorf("indexText(%q) = %q, want %q", in, got, want)
		}
	}
	// Greek keeps its accents: only Latin letters are folded.
	if got := indexText("Ελληνικά"); got != "ελληνικά" {
		t.Errorf("indexText(Greek) = %q", got)
	}
	if got := tsQuery(queryTerms(`Café cafe "x" & !y | z:* (a<->b) it's`)); got != `'cafe' | 'x' | 'y' | 'z' | 'b' | 's'` {
		t.Errorf("tsQuery = %q", got)
	}
	if got := tsQuery([]string{`o'k`, `a\b`}); got != `'o''k' | 'a\\b'` {
		t.Errorf("tsQuery escaping = %q", got)
	}
}
