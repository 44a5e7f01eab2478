package knowledge

import (
	"context"
	"errors"
	"hash/fnv"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"unicode"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

// clock is a settable time source for the stores' Now option.
type clock = testutil.Clock

func newClock() *clock { return testutil.NewClock() }

// storeKind is one implementation of Store, for the behavioural tests,
// which run against each.
type storeKind struct {
	name string
	// newDB returns where a fresh, empty database is: a file's path, or a
	// PostgreSQL URL.
	newDB func(t testing.TB) string
	// openDB opens a Store on the database at loc; the caller closes it.
	openDB func(ctx context.Context, loc string, o Options) (Store, error)
}

// storeKinds are the implementations every behavioural test runs against.
// The PostgreSQL one needs Debian's server (make setup-servers): without
// it those subtests skip (fail under CI).
var storeKinds = []storeKind{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "kb.db") }, Open},
	{"postgres", pgDatabase, OpenPostgres},
}

// open opens a fresh store of kind k, closed when the test ends.
func (k storeKind) open(t testing.TB, o Options) Store {
	t.Helper()
	return k.openAt(t, k.newDB(t), o)
}

// openAt opens a store of kind k on the database at loc, closed when the
// test ends.
func (k storeKind) openAt(t testing.TB, loc string, o Options) Store {
	t.Helper()
	s, err := k.openDB(context.Background(), loc, o)
	if err != nil {
		t.Fatalf("open %s store: %v", k.name, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// forEachKind runs f as a subtest per store kind.
func forEachKind(t *testing.T, f func(t *testing.T, k storeKind)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) { f(t, k) })
	}
}

// openAt opens a SQLite store at path, closed when the test ends.
func openAt(t testing.TB, path string, o Options) Store {
	t.Helper()
	return storeKinds[0].openAt(t, path, o)
}

// open opens a SQLite store on a file in a temporary directory.
func open(t testing.TB, o Options) Store {
	t.Helper()
	return storeKinds[0].open(t, o)
}

func mustAdd(t testing.TB, s Store, tenant, kb string, in Input) Document {
	t.Helper()
	d, err := s.Add(context.Background(), tenant, kb, in)
	if err != nil {
		t.Fatalf("Add(%q, %q, %q): %v", tenant, kb, in.Title, err)
	}
	return d
}

func mustSearch(t testing.TB, s Store, tenant, kb, q string, k int) []Hit {
	t.Helper()
	hits, err := s.Search(context.Background(), tenant, kb, q, k)
	if err != nil {
		t.Fatalf("Search(%q, %q, %q): %v", tenant, kb, q, err)
	}
	return hits
}

func text(body string) Input { return Input{Type: TypeText, Body: []byte(body)} }

// queryInt runs a query of one integer, bypassing the API.
func queryInt(t testing.TB, s Store, query string) int {
	t.Helper()
	var n int
	var err error
	switch s := s.(type) {
	case *sqliteStore:
		err = s.w.QueryRow(query).Scan(&n)
	case *pgStore:
		err = s.pool.QueryRow(context.Background(), query).Scan(&n)
	default:
		t.Fatalf("store of type %T", s)
	}
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// countRows counts the rows of a table (kbs, documents, chunks, vectors),
// of all tenants, bypassing the API. (The PostgreSQL tables are named
// knowledge_TABLE.)
func countRows(t testing.TB, s Store, table string) int {
	t.Helper()
	if _, ok := s.(*pgStore); ok {
		table = "knowledge_" + table
	}
	// table is one of this test's constants, never input.
	return queryInt(t, s, `SELECT count(*) FROM `+table)
}

// ftsRows counts the full-text index's entries, of all tenants: FTS5's,
// or PostgreSQL's chunks with words in their tsvector.
func ftsRows(t testing.TB, s Store) int {
	t.Helper()
	if _, ok := s.(*pgStore); ok {
		return queryInt(t, s, `SELECT count(*) FROM knowledge_chunks WHERE length(tsv) > 0`)
	}
	return queryInt(t, s, `SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'scope : s*'`)
}

// storedVector returns one stored vector, bypassing the API.
func storedVector(t testing.TB, s Store) []byte {
	t.Helper()
	var b []byte
	var err error
	switch s := s.(type) {
	case *sqliteStore:
		err = s.w.QueryRow(`SELECT vec FROM vectors LIMIT 1`).Scan(&b)
	case *pgStore:
		err = s.pool.QueryRow(context.Background(), `SELECT vec FROM knowledge_vectors LIMIT 1`).Scan(&b)
	}
	if err != nil {
		t.Fatalf("read a vector: %v", err)
	}
	return b
}

// cacheOf returns the store's vector cache.
func cacheOf(s Store) *vecCache {
	switch s := s.(type) {
	case *sqliteStore:
		return s.vectors
	case *pgStore:
		return s.vectors
	}
	return nil
}

// fakeEmbedder is a deterministic bag-of-words embedder: each word, lower
// cased, stripped of a plural s and mapped through a small synonym table,
// adds ±1 to a dimension chosen by its hash. Texts sharing words (or
// synonyms) point the same way.
type fakeEmbedder struct {
	dim      int
	calls    atomic.Int64
	texts    atomic.Int64
	maxBatch atomic.Int64
	// failAt makes the call with this number (1-based) fail; 0 = never.
	failAt atomic.Int64
}

// errEmbed is the fake embedder's failure.
var errEmbed = errors.New("fake embedder: service unavailable")

// synonyms maps words to the word they mean alike, for the fake embedder.
var synonyms = map[string]string{
	"automobile": "car", "vehicle": "car", "purchase": "buy", "acquire": "buy",
	"buying": "buy", "physician": "doctor", "medic": "doctor", "atm": "cash",
	"price": "cost", "fee": "cost", "charge": "cost",
}

func newFakeEmbedder(dim int) *fakeEmbedder { return &fakeEmbedder{dim: dim} }

// Embed implements Embedder.
func (f *fakeEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	n := f.calls.Add(1)
	if at := f.failAt.Load(); at > 0 && n >= at {
		return nil, errEmbed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.texts.Add(int64(len(texts)))
	for {
		m := f.maxBatch.Load()
		if int64(len(texts)) <= m || f.maxBatch.CompareAndSwap(m, int64(len(texts))) {
			break
		}
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		out[i] = f.vector(t)
	}
	return out, nil
}

// vector embeds one text.
func (f *fakeEmbedder) vector(t string) []float32 {
	v := make([]float32, f.dim)
	words := strings.FieldsFunc(strings.ToLower(t), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	for _, w := range words {
		if stopwords[w] {
			continue
		}
		if len(w) > 3 && strings.HasSuffix(w, "s") {
			w = w[:len(w)-1]
		}
		if s, ok := synonyms[w]; ok {
			w = s
		}
		h := fnv.New32a()
		h.Write([]byte(w))
		sum := h.Sum32()
		sign := float32(1)
		if sum&(1<<31) != 0 {
			sign = -1
		}
		v[int(sum%uint32(f.dim))] += sign
	}
	return v
}
