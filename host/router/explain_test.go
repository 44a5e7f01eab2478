package router

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"testing"
)

// explainQueries mix clear, ambiguous, misspelled and out-of-scope queries.
var explainQueries = []string{
	"Is it smart to put my retirement savings into stocks?",
	"My headache won't go away, should I see a doctor?",
	"I was charged twice and want a refund",
	"what medications help with a fever",
	"refund my doctor",
	"what is the interest rate on my savings",
	"interest rates for a stock portfolio",
	"how do I reset my pasword",
	"Give me a recipe for pancakes",
	"Write a poem about the sea",
	"zebra xylophone",
	"feeling ill",
	"",
	"!!!",
	"my package never arrived and my account is locked",
	"should I see a doctor about my portfolio",
}

func explainRouters(t *testing.T) map[string]*Hybrid {
	t.Helper()
	ctx := context.Background()
	withBg, err := New(ctx, testDomains(), Options{Threshold: 0.3, Background: DefaultBackground()})
	if err != nil {
		t.Fatal(err)
	}
	emb, err := New(ctx, testDomains(), Options{Threshold: 0.3, Embedder: &fakeEmbedder{}})
	if err != nil {
		t.Fatal(err)
	}
	centroid, err := New(ctx, testDomains(), Options{Threshold: 0.3, linearCells: 1})
	if err != nil {
		t.Fatal(err)
	}
	big, err := New(ctx, domainsOf(10, 50), Options{Threshold: 0.3, TopK: 5})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*Hybrid{
		"plain": mustNew(t, Options{Threshold: 0.3}), "background": withBg, "embedder": emb,
		"centroid": centroid, "held-out": big,
	}
}

func TestExplainDecisionIsRoutes(t *testing.T) {
	ctx := context.Background()
	queries := slices.Clone(explainQueries)
	for _, d := range testDomains() {
		queries = append(queries, d.Examples...)
		queries = append(queries, d.Keywords...)
	}
	queries = append(queries, "what about term3x2 and term3x5", "how do i term7x1", "term1x4 term2x4 please")
	for name, r := range explainRouters(t) {
		for _, q := range queries {
			want := r.Route(ctx, q)
			e := r.Explain(ctx, q)
			if !reflect.DeepEqual(e.Decision, want) {
				t.Errorf("%s: %q: Explain decided %+v, Route %+v", name, q, e.Decision, want)
				continue
			}
			if len(e.Alternatives) != len(want.Alternatives) {
				t.Errorf("%s: %q: %d alternatives explained, %d decided", name, q, len(e.Alternatives), len(want.Alternatives))
				continue
			}
			for i, a := range e.Alternatives {
				if a.Domain != want.Alternatives[i].Domain {
					t.Errorf("%s: %q: alternative %d is %q, decision has %q", name, q, i, a.Domain, want.Alternatives[i].Domain)
				}
				if sum := a.Model + a.Nearest + a.Keyword + a.Embedding; math.Abs(sum-a.Total) > 1e-9 {
					t.Errorf("%s: %q: %s terms add up to %v, total %v", name, q, a.Domain, sum, a.Total)
				}
				if math.Abs(a.Nearest-wKNN*a.Similarity) > 1e-9 {
					t.Errorf("%s: %q: %s nearest term %v for similarity %v", name, q, a.Domain, a.Nearest, a.Similarity)
				}
				if (a.Similarity > 0) != (a.NearestText != "") {
					t.Errorf("%s: %q: %s similarity %v with nearest text %q", name, q, a.Domain, a.Similarity, a.NearestText)
				}
				if (a.Keyword > 0) != (len(a.Keywords) > 0) {
					t.Errorf("%s: %q: %s keyword term %v with keywords %q", name, q, a.Domain, a.Keyword, a.Keywords)
				}
				if a.Embedding != 0 && !e.Embedded {
					t.Errorf("%s: %q: embedding term without an embedding", name, q)
				}
			}
			if (e.Reason == ReasonRouted) != !want.OutOfScope {
				t.Errorf("%s: %q: reason %q for %+v", name, q, e.Reason, want)
			}
			if (e.Background != nil) != (name == "background") {
				t.Errorf("%s: %q: background %+v", name, q, e.Background)
			}
			if e.Background != nil && e.Background.Won != (e.Reason == ReasonBackground) && e.Evidence {
				t.Errorf("%s: %q: background %+v, reason %q", name, q, e.Background, e.Reason)
			}
			if _, err := json.Marshal(e); err != nil {
				t.Errorf("%s: %q: %v", name, q, err)
			}
		}
	}
}

func TestExplainNamesKeywordsAndExamples(t *testing.T) {
	ctx := context.Background()
	r := mustNew(t, Options{Threshold: 0.3})
	e := r.Explain(ctx, "I was charged twice and want a refund")
	if e.Decision.Domain != "support" || e.Reason != ReasonRouted || e.Threshold != 0.3 || !e.Evidence || e.Model != "linear" {
		t.Fatalf("%+v", e)
	}
	sup := e.Alternatives[0]
	slices.Sort(sup.Keywords)
	if !slices.Equal(sup.Keywords, []string{"charged", "refund"}) || sup.Keyword <= 0 {
		t.Fatalf("support keywords %q (term %v)", sup.Keywords, sup.Keyword)
	}
	if !slices.Contains(e.Stems, "refund") || !slices.Contains(e.Words, "twice") || slices.Contains(e.Stems, "and") {
		t.Fatalf("words %q stems %q", e.Words, e.Stems)
	}
	if e.Coverage <= 0 || e.Coverage > 1 {
		t.Fatalf("coverage %v", e.Coverage)
	}
	// The nearest text here is an example.
	e = r.Explain(ctx, "how can I reset the password of my account")
	sup = e.Alternatives[0]
	if sup.Domain != "support" || !slices.Contains(sup.Keywords, "password") {
		t.Fatalf("%+v", e)
	}
	var support Domain
	for _, d := range testDomains() {
		if d.Name == "support" {
			support = d
		}
	}
	if !slices.Contains(support.Examples, sup.NearestText) || sup.NearestIsKeyword || sup.Similarity <= 0 || sup.Similarity > 1+1e-6 {
		t.Fatalf("nearest %q (keyword %v, similarity %v), want one of %q", sup.NearestText, sup.NearestIsKeyword, sup.Similarity, support.Examples)
	}
	// A multi-word keyword is named as written, and a keyword document
	// can be the nearest text.
	e = r.Explain(ctx, "interest rate")
	fin := e.Alternatives[0]
	if fin.Domain != "finance" || !slices.Equal(fin.Keywords, []string{"interest rate"}) {
		t.Fatalf("%+v", fin)
	}
	if fin.NearestText != "interest rate" || !fin.NearestIsKeyword {
		t.Fatalf("nearest %q (keyword %v)", fin.NearestText, fin.NearestIsKeyword)
	}
	// The embedding term shows with an embedder.
	emb, err := New(ctx, testDomains(), Options{Embedder: &fakeEmbedder{}})
	if err != nil {
		t.Fatal(err)
	}
	e = emb.Explain(ctx, "feeling ill")
	if !e.Embedded || e.Alternatives[0].Domain != "medical" || e.Alternatives[0].Embedding <= 0 {
		t.Fatalf("%+v", e)
	}
}

func TestExplainOutOfScope(t *testing.T) {
	ctx := context.Background()
	r := mustNew(t, Options{})
	for _, q := range []string{"zebra xylophone", "", "!!!"} {
		e := r.Explain(ctx, q)
		if !e.Decision.OutOfScope || e.Decision.Domain != "" || e.Evidence || e.Reason != ReasonNoEvidence {
			t.Fatalf("%q: %+v", q, e)
		}
		for _, a := range e.Alternatives {
			if len(a.Keywords) > 0 || a.Keyword != 0 || a.NearestText != "" || a.Nearest != 0 {
				t.Fatalf("%q: evidence in %+v", q, a)
			}
		}
	}
	// With a background class, an everyday query loses to it.
	bg, err := New(ctx, testDomains(), Options{Threshold: 0.3, Background: DefaultBackground()})
	if err != nil {
		t.Fatal(err)
	}
	e := bg.Explain(ctx, "Give me a recipe for pancakes")
	if !e.Decision.OutOfScope || e.Background == nil || e.Reason == ReasonRouted {
		t.Fatalf("%+v", e)
	}
	if e.Background.Won != (e.Background.Score > e.Alternatives[0].Total+bgMargin) {
		t.Fatalf("background %+v, best domain %v", e.Background, e.Alternatives[0].Total)
	}
}

// Route pays nothing for Explain.
func TestRouteAllocationsUnchangedByExplain(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	r := mustNew(t, Options{Threshold: 0.3})
	q := "Is it smart to put my retirement savings into stocks?"
	r.Route(context.Background(), q)
	// The words' strings and the Decision's alternatives, no more.
	want := testing.AllocsPerRun(100, func() { words(q, make([]string, 0, maxWords)) }) + 1
	if n := testing.AllocsPerRun(100, func() { r.Route(context.Background(), q) }); n > want {
		t.Fatalf("Route allocates %v times, want at most %v", n, want)
	}
}

func BenchmarkExplain(b *testing.B) {
	r := mustNew(b, Options{Threshold: 0.3})
	for b.Loop() {
		r.Explain(context.Background(), "Is it smart to put my retirement savings into stocks?")
	}
}
