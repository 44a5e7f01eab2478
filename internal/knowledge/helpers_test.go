package knowledge

import (
	"context"
	"errors"
	"hash/fnv"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
)

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openAt opens a store at path, closed when the test ends.
func openAt(t testing.TB, path string, o Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// open opens a store on a file in a temporary directory.
func open(t testing.TB, o Options) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "kb.db"), o)
}

func mustAdd(t testing.TB, s *Store, tenant, kb string, in Input) Document {
	t.Helper()
	d, err := s.Add(context.Background(), tenant, kb, in)
	if err != nil {
		t.Fatalf("Add(%q, %q, %q): %v", tenant, kb, in.Title, err)
	}
	return d
}

func mustSearch(t testing.TB, s *Store, tenant, kb, q string, k int) []Hit {
	t.Helper()
	hits, err := s.Search(context.Background(), tenant, kb, q, k)
	if err != nil {
		t.Fatalf("Search(%q, %q, %q): %v", tenant, kb, q, err)
	}
	return hits
}

func text(body string) Input { return Input{Type: TypeText, Body: []byte(body)} }

// countRows counts the rows of a table, of all tenants, bypassing the API.
func countRows(t testing.TB, s *Store, table string) int {
	t.Helper()
	var n int
	// table is one of this test's constants, never input.
	if err := s.w.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// ftsRows counts the full-text index's entries, of all tenants.
func ftsRows(t testing.TB, s *Store) int {
	t.Helper()
	var n int
	if err := s.w.QueryRow(`SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'scope : s*'`).Scan(&n); err != nil {
		t.Fatalf("count chunks_fts: %v", err)
	}
	return n
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
