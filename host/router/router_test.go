package router

import (
	"strings"
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

func mustNew(t testing.TB, opts Options) Router {
	t.Helper()
	r, err := New(testDomains(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRoutesToTheRightDomain(t *testing.T) {
	r := mustNew(t, Options{Threshold: 0.2})
	for q, want := range map[string]string{
		"Is it smart to put my retirement savings into stocks?": "finance",
		"My headache won't go away, should I see a doctor?":     "medical",
		"I was charged twice and want a refund":                 "support",
		"what medications help with a fever":                    "medical",
	} {
		d := r.Route(q)
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
	r := mustNew(t, Options{Threshold: 0.2})
	for _, q := range []string{"Give me a recipe for pancakes", "Write a poem about the sea", "", "!!!"} {
		if d := r.Route(q); !d.OutOfScope || d.Domain != "" {
			t.Errorf("%q -> %+v, want out of scope", q, d)
		}
	}
	// Threshold 0 still refuses a query with no evidence at all.
	if d := mustNew(t, Options{}).Route("zebra xylophone"); !d.OutOfScope {
		t.Errorf("no-evidence query routed: %+v", d)
	}
}

func TestConfidenceFallsWhenAmbiguous(t *testing.T) {
	r := mustNew(t, Options{})
	clear := r.Route("I want a refund for my order")
	mixed := r.Route("refund my doctor")
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
		if _, err := New(ds, Options{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(testDomains(), Options{Threshold: 2}); err == nil {
		t.Error("threshold 2 accepted")
	}
}

func TestTokens(t *testing.T) {
	got := strings.Join(tokens("I've been CHARGED twice: charges, charging & charge!"), " ")
	if got != "charg twic charg charg charg" {
		t.Fatalf("tokens = %q", got)
	}
}

func FuzzRoute(f *testing.F) {
	r := mustNew(f, Options{Threshold: 0.2})
	f.Add("I want a refund")
	f.Add("\xff\xfe\xfd")
	f.Add(strings.Repeat("stock ", 5000))
	f.Fuzz(func(t *testing.T, q string) {
		d := r.Route(q)
		if d.Confidence < 0 || d.Confidence > 1 || (d.OutOfScope != (d.Domain == "")) {
			t.Fatalf("bad decision %+v", d)
		}
		for _, tok := range tokens(q) {
			if !utf8.ValidString(tok) || tok == "" {
				t.Fatalf("bad token %q", tok)
			}
		}
	})
}

func BenchmarkRoute(b *testing.B) {
	r := mustNew(b, Options{Threshold: 0.2})
	for b.Loop() {
		r.Route("Is it smart to put my retirement savings into stocks?")
	}
}
