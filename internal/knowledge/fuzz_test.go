package knowledge

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

// fuzzTypes are the types FuzzExtract picks from.
var fuzzTypes = []string{TypeText, TypeMarkdown, TypeHTML}

// FuzzExtract feeds any bytes, as each type, through extraction and
// chunking (all of Add but the database): no panic; an error is ErrInvalid
// or ErrTooLarge; otherwise the title and chunks are valid UTF-8, no chunk
// is longer than 2*ChunkChars plus its heading path, and there are at most
// ceil(MaxDocBytes/ChunkChars)*2 chunks with MaxDocBytes the body's own
// size, the tightest limit that admits it.
func FuzzExtract(f *testing.F) {
	seeds := []string{
		"plain text\n\nsecond paragraph. Two sentences!",
		"# H1\n\ntext\n\n## H2\n\n```\n# code\n```\n[link](http://x) ![img](y.png)\n\nSetext\n===\n",
		"<html><head><title>T</title><script>x()</script></head><body><h1>A</h1><p>b<br>c</p><ul><li>d<ul><li>e</li></ul></li></ul></body></html>",
		"<ul><ul><ul><ul><ul><li>x<li>y<li>z",
		"# a\nb\n# c\nd\n# e\nf\n",
		strings.Repeat("word ", 500),
		strings.Repeat("x", 3000),
		"\x00\x01\r\n\xff\xfe",
		"<h1>" + strings.Repeat("long heading ", 20) + "</h1>body",
		"[a]: http://x\n[b][a] [c]( <d> ![e](",
	}
	for _, s := range seeds {
		for i := range fuzzTypes {
			f.Add(uint8(i), uint16(64), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, typ uint8, chunkChars uint16, body []byte) {
		l, err := Limits{
			MaxDocBytes: max(len(body), 1),
			ChunkChars:  max(int(chunkChars)%2048, MinChunkChars),
		}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		in := Input{Type: fuzzTypes[int(typ)%len(fuzzTypes)], Body: body}
		p, err := prepare(l, in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("prepare(%s) = %v, want nil or ErrInvalid", in.Type, err)
			}
			return
		}
		if !utf8.ValidString(p.title) || utf8.RuneCountInString(p.title) > MaxTitleRunes {
			t.Fatalf("title %q", p.title)
		}
		if n, most := len(p.chunks), l.maxChunksPerDoc(); n == 0 || n > most {
			t.Fatalf("%d chunks, want 1..%d", n, most)
		}
		for i, c := range p.chunks {
			if !utf8.ValidString(c) {
				t.Fatalf("chunk %d is not valid UTF-8: %q", i, c)
			}
			if strings.IndexByte(c, 0) >= 0 {
				t.Fatalf("chunk %d holds NUL", i)
			}
			if n := utf8.RuneCountInString(c); n > 2*l.ChunkChars+maxPrefixRunes+2 {
				t.Fatalf("chunk %d has %d characters (ChunkChars %d)", i, n, l.ChunkChars)
			}
		}
	})
}

// FuzzQuery searches a small corpus, lexical only and hybrid, in SQLite
// and PostgreSQL, with any query: Search returns nil or ErrInvalid, never
// panics, and finds only the tenant's own chunks of the knowledge base.
func FuzzQuery(f *testing.F) {
	for _, q := range []string{
		"cash machine fee", `NEAR(a b, 3)`, `"unbalanced`, `col:x`, `a* OR ^b NOT c`,
		"", "!!!", "café ☕ 東京", "\x00\xff", `{scope text}: s*`, strings.Repeat("w ", 100),
		`""""`, "AND", "- + * ^ : ( ) { }", "scope : \"s0123\"",
		`cash & !machine | fee:* <-> 'x' \\`, "caf\u00e9 CAFE\u0301 \u00df", "'; SELECT 1; --",
	} {
		f.Add(q)
	}
	ctx := context.Background()
	var stores []Store
	for _, emb := range []Embedder{nil, newFakeEmbedder(32)} {
		stores = append(stores, openAt(f, MemoryPath, Options{Embedder: emb}))
		// The PostgreSQL store too, where the server is installed (and
		// always under CI, where a missing one fails).
		if _, err := testutil.PostgresBinDir(); err == nil || os.Getenv("CI") != "" {
			stores = append(stores, storeKinds[1].open(f, Options{Embedder: emb}))
		}
	}
	for _, s := range stores {
		addFAQ(f, s, "t", "kb")
		mustAdd(f, s, "t", "other", text("other knowledge base: cash machine near scope text"))
		mustAdd(f, s, "u", "kb", text("other tenant: cash machine near scope text"))
	}
	f.Fuzz(func(t *testing.T, q string) {
		for _, s := range stores {
			hits, err := s.Search(ctx, "t", "kb", q, 10)
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Search(%q) = %v, want nil or ErrInvalid", q, err)
				}
				continue
			}
			if len(hits) > 10 {
				t.Fatalf("%d hits", len(hits))
			}
			for _, h := range hits {
				if strings.HasPrefix(h.Text, "other ") {
					t.Fatalf("Search(%q) crossed knowledge bases: %q", q, h.Text)
				}
			}
		}
	})
}
