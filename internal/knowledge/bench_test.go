package knowledge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

// TestMain removes the benchmark corpus, built once per run, and stops
// the tests' PostgreSQL server at the end.
func TestMain(m *testing.M) {
	code := m.Run()
	if corpus.dir != "" {
		os.RemoveAll(corpus.dir)
	}
	pgShared.Stop()
	os.Exit(code)
}

// commonWords are frequent English words mixed into the generated text.
var commonWords = strings.Fields(`the of and to in is that for it as was with be by on not he
	this are or his from at which but have an they you were her she there been one all we their
	has would when if so no will more can who its out up them about into than only other new some
	could time these two may then do first any my now such like our over man me even most made
	after also did many before must through back years where much your way well down should because
	each just those people how too little state good very make world still own see men work long
	get here between both life being under never day same another know while last might us great
	old year off come since against go came right used take three account bank card fee loan rate
	money payment transfer branch customer service online mobile app security password limit cash
	machine interest savings mortgage insurance travel currency statement balance overdraft credit
	debit refund dispute fraud identity address phone email letter form document policy terms`)

// vocab returns n pseudo-words built from syllables, seeded.
func vocab(rng *rand.Rand, n int) []string {
	onsets := strings.Fields("b c d f g h j k l m n p r s t v w z br cl dr fl gr pl pr st tr sh ch th")
	vowels := strings.Fields("a e i o u ai ea ee oo ou")
	codas := strings.Fields("n r s t l m nd st ng ck x")
	seen := map[string]bool{}
	out := make([]string, 0, n)
	for len(out) < n {
		var b strings.Builder
		for range 1 + rng.IntN(3) {
			b.WriteString(onsets[rng.IntN(len(onsets))])
			b.WriteString(vowels[rng.IntN(len(vowels))])
		}
		if rng.IntN(2) == 0 {
			b.WriteString(codas[rng.IntN(len(codas))])
		}
		if w := b.String(); !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

// textGen generates English-like text: words drawn with a Zipf law from a
// vocabulary of common English words and pseudo-words.
type textGen struct {
	rng   *rand.Rand
	words []string
	zipf  *rand.Zipf
}

func newTextGen(seed uint64) *textGen {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	words := append(append([]string{}, commonWords...), vocab(rng, 20000)...)
	return &textGen{rng: rng, words: words, zipf: rand.NewZipf(rng, 1.07, 2, uint64(len(words)-1))}
}

func (g *textGen) word() string { return g.words[g.zipf.Uint64()] }

// sentence writes a sentence of 6..25 words.
func (g *textGen) sentence(b *strings.Builder) {
	n := 6 + g.rng.IntN(20)
	for i := range n {
		w := g.word()
		if i == 0 {
			w = capital(w)
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(w)
		if i < n-1 && g.rng.IntN(12) == 0 {
			b.WriteByte(',')
		}
	}
	b.WriteString(".")
}

// capital returns w with its first letter in upper case.
func capital(w string) string { return strings.ToUpper(w[:1]) + w[1:] }

// markdown returns a Markdown document of about size bytes: a title,
// sections with headings, paragraphs of 2..6 sentences, some lists.
func (g *textGen) markdown(size int) string {
	var b strings.Builder
	b.WriteString("# ")
	b.WriteString(capital(g.word()) + " " + g.word() + "\n\n")
	for b.Len() < size {
		if g.rng.IntN(3) == 0 {
			fmt.Fprintf(&b, "## %s %s\n\n", capital(g.word()), g.word())
		}
		if g.rng.IntN(6) == 0 {
			for range 2 + g.rng.IntN(4) {
				b.WriteString("- ")
				g.sentence(&b)
				b.WriteByte('\n')
			}
			b.WriteByte('\n')
			continue
		}
		for j := range 2 + g.rng.IntN(5) {
			if j > 0 {
				b.WriteByte(' ')
			}
			g.sentence(&b)
		}
		b.WriteString("\n\n")
	}
	return b.String()
}

// query returns a question of 3..7 words.
func (g *textGen) query() string {
	var w []string
	for range 3 + g.rng.IntN(5) {
		w = append(w, g.word())
	}
	return strings.Join(w, " ")
}

// benchLimits lift the tenant limits for the benchmarks.
var benchLimits = Limits{MaxDocsPerTenant: 1 << 30, MaxChunksPerTenant: 1 << 30}

func BenchmarkAdd(b *testing.B) {
	benchAdd(b, open(b, Options{Limits: benchLimits}))
}

func BenchmarkAddPostgres(b *testing.B) {
	benchAdd(b, storeKinds[1].open(b, Options{Limits: benchLimits}))
}

// benchAdd adds generated Markdown documents of 10 KiB to s.
func benchAdd(b *testing.B, s Store) {
	g := newTextGen(1)
	docs := make([]string, 64)
	for i := range docs {
		docs[i] = g.markdown(10 << 10)
	}
	ctx := context.Background()
	var bytes, chunks int
	i := 0
	for b.Loop() {
		d, err := s.Add(ctx, "bench", "kb", Input{Type: TypeMarkdown, Body: []byte(docs[i%len(docs)])})
		if err != nil {
			b.Fatal(err)
		}
		bytes += d.Bytes
		chunks += d.Chunks
		i++
	}
	b.SetBytes(int64(bytes / i))
	b.ReportMetric(float64(chunks)/b.Elapsed().Seconds(), "chunks/s")
}

// corpusChunks is the size of the search benchmarks' corpus.
const corpusChunks = 100000

// corpus is the search benchmarks' database, built once per run: a
// knowledge base of corpusChunks chunks, with 384-dimension vectors of the
// fake embedder.
var corpus struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// buildCorpus fills s with the benchmark corpus: 20 documents of another
// tenant, then documents of tenant "bench", knowledge base "corpus", up to
// corpusChunks chunks.
func buildCorpus(ctx context.Context, s Store) error {
	g := newTextGen(2)
	// Another tenant's documents share the index.
	for range 20 {
		if _, err := s.Add(ctx, "noise", "kb", Input{Type: TypeMarkdown, Body: []byte(g.markdown(10 << 10))}); err != nil {
			return err
		}
	}
	total := 0
	for total < corpusChunks {
		d, err := s.Add(ctx, "bench", "corpus", Input{Type: TypeMarkdown, Body: []byte(g.markdown(10 << 10))})
		if err != nil {
			return err
		}
		total += d.Chunks
	}
	return nil
}

// corpusDB builds (once) and returns the path of the benchmark corpus.
func corpusDB(b *testing.B) string {
	b.Helper()
	corpus.once.Do(func() {
		corpus.dir, corpus.err = os.MkdirTemp("", "knowledge-bench-")
		if corpus.err != nil {
			return
		}
		corpus.path = filepath.Join(corpus.dir, "corpus.db")
		ctx := context.Background()
		s, err := Open(ctx, corpus.path, Options{Limits: benchLimits, Embedder: newFakeEmbedder(384)})
		if err != nil {
			corpus.err = err
			return
		}
		defer s.Close()
		corpus.err = buildCorpus(ctx, s)
	})
	if corpus.err != nil {
		b.Fatalf("build corpus: %v", corpus.err)
	}
	return corpus.path
}

// pgCorpus is the PostgreSQL search benchmarks' database, built once per
// run as corpus is, then vacuumed and analysed (as autovacuum would in
// time).
var pgCorpus struct {
	once sync.Once
	url  string
	err  error
}

// corpusPG builds (once) and returns the URL of the PostgreSQL benchmark
// corpus.
func corpusPG(b *testing.B) string {
	b.Helper()
	testutil.RequirePostgres(b)
	pgCorpus.once.Do(func() {
		pgCorpus.url = pgDatabase(b)
		ctx := context.Background()
		start := time.Now()
		s, err := OpenPostgres(ctx, pgCorpus.url, Options{Limits: benchLimits, Embedder: newFakeEmbedder(384)})
		if err != nil {
			pgCorpus.err = err
			return
		}
		defer s.Close()
		if pgCorpus.err = buildCorpus(ctx, s); pgCorpus.err != nil {
			return
		}
		_, pgCorpus.err = s.(*pgStore).pool.Exec(ctx, `VACUUM ANALYZE`)
		b.Logf("PostgreSQL corpus built in %v", time.Since(start).Round(time.Second))
	})
	if pgCorpus.err != nil {
		b.Fatalf("build corpus: %v", pgCorpus.err)
	}
	return pgCorpus.url
}

// benchSearch runs searches of generated questions over the corpus.
func benchSearch(b *testing.B, o Options) {
	o.Limits = benchLimits
	runSearches(b, openAt(b, corpusDB(b), o))
}

// benchSearchPG runs searches of generated questions over the PostgreSQL
// corpus.
func benchSearchPG(b *testing.B, o Options) {
	url := corpusPG(b)
	o.Limits = benchLimits
	runSearches(b, storeKinds[1].openAt(b, url, o))
}

// runSearches runs searches of generated questions over s's corpus.
func runSearches(b *testing.B, s Store) {
	ctx := context.Background()
	g := newTextGen(3)
	queries := make([]string, 100)
	for i := range queries {
		queries[i] = g.query()
	}
	// Warm up: the first hybrid search loads the vectors into the cache.
	if _, err := s.Search(ctx, "bench", "corpus", queries[0], 10); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		if _, err := s.Search(ctx, "bench", "corpus", queries[i%len(queries)], 10); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(i), "ms/op")
}

func BenchmarkSearch(b *testing.B) {
	benchSearch(b, Options{})
}

func BenchmarkSearchHybrid(b *testing.B) {
	benchSearch(b, Options{Embedder: newFakeEmbedder(384)})
}

// BenchmarkSearchPostgres is BenchmarkSearch on the PostgreSQL store
// (ts_rank_cd over the GIN index).
func BenchmarkSearchPostgres(b *testing.B) {
	benchSearchPG(b, Options{})
}

// BenchmarkSearchHybridPostgres is BenchmarkSearchHybrid on the
// PostgreSQL store: each search reads the knowledge base's version, and
// its vectors come from the cache.
func BenchmarkSearchHybridPostgres(b *testing.B) {
	benchSearchPG(b, Options{Embedder: newFakeEmbedder(384)})
}
