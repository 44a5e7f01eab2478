package router

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func testDomains() []Domain {
	return []Domain{
		{Name: "finance", Keywords: []string{"stock", "invest", "portfolio", "retirement", "interest rate"},
			Examples: []string{"Should I invest in index funds?", "How do I rebalance my portfolio?",
				"What is a good savings rate for retirement?", "Are bonds safer than stocks?"}},
		{Name: "medical", Keywords: []string{"symptom", "fever", "headache", "doctor", "medication"},
			Examples: []string{"I have a fever and a sore throat", "Can I take ibuprofen with my medication?",
				"What are the symptoms of the flu?", "When should I see a doctor about back pain?"}},
		{Name: "support", Keywords: []string{"refund", "order", "account", "password", "charged"},
			Examples: []string{"I want a refund for my order", "I can't log into my account",
				"How do I reset my password?", "My package never arrived"}},
	}
}

func mustNew(t testing.TB, opts Options) *Hybrid {
	t.Helper()
	r, err := New(context.Background(), testDomains(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRoutesToTheRightDomain(t *testing.T) {
	r := mustNew(t, Options{Threshold: 0.3})
	for q, want := range map[string]string{
		"Is it smart to put my retirement savings into stocks?": "finance",
		"My headache won't go away, should I see a doctor?":     "medical",
		"I was charged twice and want a refund":                 "support",
		"what medications help with a fever":                    "medical",
	} {
		d := r.Route(context.Background(), q)
		if d.Domain != want || d.OutOfScope {
			t.Errorf("%q -> %+v, want %s", q, d, want)
		}
		if d.Confidence <= 0 || d.Confidence > 1 {
			t.Errorf("%q confidence %v out of (0,1]", q, d.Confidence)
		}
		if len(d.Alternatives) != 3 || d.Alternatives[0].Domain != want {
			t.Errorf("%q alternatives %+v", q, d.Alternatives)
		}
	}
}

func TestOutOfScope(t *testing.T) {
	r := mustNew(t, Options{Threshold: 0.3})
	for _, q := range []string{"Give me a recipe for pancakes", "Write a poem about the sea", "", "!!!"} {
		if d := r.Route(context.Background(), q); !d.OutOfScope || d.Domain != "" {
			t.Errorf("%q -> %+v, want out of scope", q, d)
		}
	}
	// Threshold 0 still refuses a query with no evidence at all.
	if d := mustNew(t, Options{}).Route(context.Background(), "zebra xylophone"); !d.OutOfScope {
		t.Errorf("no-evidence query routed: %+v", d)
	}
}

func TestConfidenceFallsWhenAmbiguous(t *testing.T) {
	r := mustNew(t, Options{})
	clear := r.Route(context.Background(), "I want a refund for my order")
	mixed := r.Route(context.Background(), "refund my doctor")
	if !(clear.Confidence > mixed.Confidence) {
		t.Fatalf("clear %v <= ambiguous %v", clear.Confidence, mixed.Confidence)
	}
}

func TestNewRejectsBadDomains(t *testing.T) {
	for name, ds := range map[string][]Domain{
		"no name":   {{Keywords: []string{"x"}}},
		"duplicate": {{Name: "a", Keywords: []string{"x"}}, {Name: "a", Keywords: []string{"y"}}},
		"empty":     {{Name: "a"}},
	} {
		if _, err := New(context.Background(), ds, Options{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(context.Background(), testDomains(), Options{Threshold: 2}); err == nil {
		t.Error("threshold 2 accepted")
	}
}

func FuzzRoute(f *testing.F) {
	r := mustNew(f, Options{Threshold: 0.3})
	f.Add("I want a refund")
	f.Add("\xff\xfe\xfd")
	f.Add(strings.Repeat("stock ", 5000))
	f.Fuzz(func(t *testing.T, q string) {
		d := r.Route(context.Background(), q)
		if d.Confidence < 0 || d.Confidence > 1 || (d.OutOfScope != (d.Domain == "")) {
			t.Fatalf("bad decision %+v", d)
		}
		for _, tok := range words(q, nil) {
			if !utf8.ValidString(tok) || tok == "" {
				t.Fatalf("bad token %q", tok)
			}
		}
	})
}

func BenchmarkRoute(b *testing.B) {
	r := mustNew(b, Options{Threshold: 0.3})
	for b.Loop() {
		r.Route(context.Background(), "Is it smart to put my retirement savings into stocks?")
	}
}

func TestDomainThresholds(t *testing.T) {
	ctx := context.Background()
	r := mustNew(t, Options{Threshold: 0.1})
	q := "I want a refund for my order"
	d := r.Route(ctx, q)
	if d.Domain != "support" {
		t.Fatalf("%q -> %+v", q, d)
	}
	strict, err := r.WithThresholds(0.1, map[string]float64{"support": math.Nextafter(d.Confidence, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if s := strict.Route(ctx, q); !s.OutOfScope || s.Confidence != d.Confidence {
		t.Fatalf("per-domain threshold ignored: %+v", s)
	}
	if m := strict.Route(ctx, "I have a fever and a sore throat"); m.Domain != "medical" {
		t.Fatalf("other domains affected: %+v", m)
	}
	for _, bad := range []map[string]float64{{"support": 1.5}, {"nosuch": 0.5}} {
		if _, err := r.WithThresholds(0.1, bad); err == nil {
			t.Errorf("thresholds %v accepted", bad)
		}
	}
}

func TestCalibrate(t *testing.T) {
	ctx := context.Background()
	if got := mustNew(t, Options{}).Info().Calibration; got != "prior" {
		t.Fatalf("calibration %q of a tiny router, want prior", got)
	}
	big, err := New(ctx, domainsOf(10, 50), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := big.Info(); got.Calibration != "held-out" || got.CalibrationSamples < minCalPoints {
		t.Fatalf("calibration %+v, want held-out", got)
	}
	r := mustNew(t, Options{Threshold: 0.3})
	samples := []Sample{
		{"my order is late and I want my money back", "support"},
		{"reset my password please", "support"},
		{"my throat hurts and I have a fever", "medical"},
		{"should I buy more index funds", "finance"},
		{"bake a chocolate cake", ""},
		{"who won the football game", ""},
		{"refund the doctor", "finance"},
	}
	c, err := r.Calibrate(ctx, samples)
	if err != nil {
		t.Fatal(err)
	}
	if c.Info().Calibration != "samples" || c.Info().CalibrationSamples != len(samples) {
		t.Fatalf("info %+v", c.Info())
	}
	if r.Info().Calibration != "prior" {
		t.Fatal("Calibrate changed the original router")
	}
	if _, err := r.Calibrate(ctx, []Sample{{"x", "nosuch"}}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("unknown domain: %v", err)
	}
	if _, err := r.Calibrate(ctx, samples[:2]); err == nil {
		t.Fatal("calibration with only right answers accepted")
	}
}

func TestPriorCalibrationWithFewExamples(t *testing.T) {
	r, err := New(context.Background(), []Domain{{Name: "a", Keywords: []string{"apple"}}, {Name: "b", Keywords: []string{"banana"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Info().Calibration != "prior" {
		t.Fatalf("info %+v", r.Info())
	}
	if d := r.Route(context.Background(), "banana bread"); d.Alternatives[0].Domain != "b" {
		t.Fatalf("%+v", d)
	}
}

func TestCentroidModel(t *testing.T) {
	r, err := New(context.Background(), testDomains(), Options{Threshold: 0.3, linearCells: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Info().Model != "centroid" {
		t.Fatalf("model %q", r.Info().Model)
	}
	for q, want := range map[string]string{
		"Is it smart to put my retirement savings into stocks?": "finance",
		"My headache won't go away, should I see a doctor?":     "medical",
		"I was charged twice and want a refund":                 "support",
	} {
		if d := r.Route(context.Background(), q); d.Alternatives[0].Domain != want {
			t.Errorf("%q -> %+v, want %s", q, d, want)
		}
	}
}

// fakeEmbedder maps a text to the unit vector of the first marker word it
// contains: markers only the embedding stage knows about.
type fakeEmbedder struct {
	fail  bool
	calls int
}

func (f *fakeEmbedder) Embed(_ context.Context, in []string) ([][]float32, error) {
	f.calls++
	if f.fail {
		return nil, errors.New("embedder down")
	}
	out := make([][]float32, len(in))
	for i, s := range in {
		v := make([]float32, 4)
		v[3] = 0.1
		switch {
		case strings.Contains(s, "money") || strings.Contains(s, "invest") || strings.Contains(s, "bond"):
			v[0] = 1
		case strings.Contains(s, "ill") || strings.Contains(s, "fever") || strings.Contains(s, "doctor"):
			v[1] = 1
		case strings.Contains(s, "order") || strings.Contains(s, "password") || strings.Contains(s, "refund"):
			v[2] = 1
		}
		out[i] = v
	}
	return out, nil
}

func TestEmbeddingStage(t *testing.T) {
	ctx := context.Background()
	emb := &fakeEmbedder{}
	with, err := New(ctx, testDomains(), Options{Embedder: emb})
	if err != nil {
		t.Fatal(err)
	}
	without := mustNew(t, Options{})
	if !with.Info().Embedded || without.Info().Embedded {
		t.Fatal("Info.Embedded wrong")
	}
	// "feeling ill" has no lexical evidence for medical; the embedding has.
	q := "feeling ill"
	a, b := with.Route(ctx, q), without.Route(ctx, q)
	if a.Alternatives[0].Domain != "medical" {
		t.Fatalf("with embeddings: %+v (without: %+v)", a, b)
	}
	// A failing embedder at query time falls back to lexical routing.
	emb.fail = true
	if d := with.Route(ctx, "I want a refund for my order"); d.Domain != "support" {
		t.Fatalf("fallback: %+v", d)
	}
	if _, err := New(ctx, testDomains(), Options{Embedder: &fakeEmbedder{fail: true}}); err == nil ||
		!strings.Contains(err.Error(), "embedding") {
		t.Fatalf("failing embedder at New: %v", err)
	}
}

func TestConcurrentRoutes(t *testing.T) {
	r := mustNew(t, Options{Threshold: 0.3})
	want := r.Route(context.Background(), "I want a refund for my order")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if d := r.Route(context.Background(), "I want a refund for my order"); d.Domain != want.Domain || d.Confidence != want.Confidence {
					t.Errorf("concurrent route differs: %+v vs %+v", d, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestHugeQueryIsBounded(t *testing.T) {
	q := strings.Repeat("refund order password ", 50000) // ~1 MB
	ws := words(q, nil)
	if len(ws) > maxWords {
		t.Fatalf("%d words kept", len(ws))
	}
	if d := mustNew(t, Options{Threshold: 0.3}).Route(context.Background(), q); d.Domain != "support" {
		t.Fatalf("%+v", d)
	}
}

func TestWords(t *testing.T) {
	got := strings.Join(words("I've been CHARGED twice: Ünïcode, don’t\xffstop "+strings.Repeat("x", 100), nil), " ")
	want := "ive been charged twice ünïcode dont stop " + strings.Repeat("x", maxWordBytes)
	if got != want {
		t.Fatalf("words = %q\nwant    %q", got, want)
	}
}

func FuzzWords(f *testing.F) {
	f.Add("I want a refund")
	f.Add("\xff\xfe\xfd")
	f.Add("ÀÉÎõü ß ΣΑΣ 日本語 don't")
	f.Add(strings.Repeat("ab ", 3000))
	f.Fuzz(func(t *testing.T, q string) {
		ws := words(q, nil)
		if len(ws) > maxWords {
			t.Fatalf("%d words", len(ws))
		}
		for _, w := range ws {
			if w == "" || !utf8.ValidString(w) || len(w) > maxWordBytes+utf8.UTFMax {
				t.Fatalf("bad word %q", w)
			}
		}
		// Features per word are bounded by the n-gram counts.
		if n := len(featureHashes(ws, nil)); n > len(ws)*(2+3*(maxWordBytes+2)) {
			t.Fatalf("%d features for %d words", n, len(ws))
		}
	})
}

// domainsOf makes n synthetic domains of m examples each from disjoint
// made-up vocabularies plus shared filler words.
func domainsOf(n, m int) []Domain {
	filler := []string{"how", "do", "i", "what", "is", "the", "my", "can", "you", "please", "help", "with"}
	ds := make([]Domain, n)
	for d := range ds {
		ds[d].Name = fmt.Sprintf("domain%04d", d)
		for e := 0; e < m; e++ {
			ds[d].Examples = append(ds[d].Examples, fmt.Sprintf("%s %s term%dx%d about term%dx%d and %s",
				filler[e%len(filler)], filler[(e+3)%len(filler)], d, e%7, d, (e*3)%11, filler[(e+5)%len(filler)]))
		}
	}
	return ds
}

func TestTrainsTenByHundred(t *testing.T) {
	r, err := New(context.Background(), domainsOf(10, 100), Options{Threshold: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10 domains x 100 examples: %+v", r.Info())
	if d := r.Route(context.Background(), "what about term3x2 and term3x5"); d.Domain != "domain0003" {
		t.Fatalf("%+v", d)
	}
}

func BenchmarkTrain(b *testing.B) {
	for _, n := range []int{10, 100} {
		ds := domainsOf(n, 100)
		b.Run(fmt.Sprintf("domains=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := New(context.Background(), ds, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
