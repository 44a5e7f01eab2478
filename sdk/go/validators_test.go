package sdk

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// run applies v to response (and query) and returns the issue codes and
// the revised response.
func run(t *testing.T, v Validator, query, response string) ([]string, string) {
	t.Helper()
	if err := v.validate(); err != nil {
		t.Fatalf("validator %s: %v", v.Name, err)
	}
	c := &Check{Query: query, Response: response}
	var codes []string
	for _, is := range v.Check(c) {
		if is.Code == "" || is.Message == "" {
			t.Errorf("issue without code or message: %+v", is)
		}
		switch is.Severity {
		case abi.SeverityInfo, abi.SeverityWarning, abi.SeverityError:
		default:
			t.Errorf("bad severity %q", is.Severity)
		}
		codes = append(codes, is.Code)
	}
	return codes, c.Response
}

type vcase struct {
	query, response string
	want            []string // issue codes
	revised         string   // "" means unchanged
}

func runCases(t *testing.T, v Validator, cases []vcase) {
	t.Helper()
	for _, tc := range cases {
		codes, got := run(t, v, tc.query, tc.response)
		if !slices.Equal(codes, tc.want) {
			t.Errorf("%s(%q): codes %q, want %q", v.Name, tc.response, codes, tc.want)
		}
		want := tc.revised
		if want == "" {
			want = tc.response
		}
		if got != want {
			t.Errorf("%s(%q): response %q, want %q", v.Name, tc.response, got, want)
		}
	}
}

func TestLength(t *testing.T) {
	runCases(t, MinLength(5), []vcase{
		{response: "  hi  ", want: []string{CodeTooShort}},
		{response: "héllo"},
	})
	runCases(t, MinLength(1), []vcase{{response: " \n ", want: []string{CodeTooShort}}, {response: "x"}})
	runCases(t, MaxLength(20), []vcase{
		{response: "short enough"},
		{response: "First sentence. Second one is long.", want: []string{CodeTooLong}, revised: "First sentence."},
		{response: "one two three four five six seven", want: []string{CodeTooLong}, revised: "one two three four…"},
		{response: strings.Repeat("é", 30), want: []string{CodeTooLong}, revised: strings.Repeat("é", 19) + "…"},
	})
	if got := cut("line one\nline two is long", 14); got != "line one" {
		t.Errorf("cut at line end: %q", got)
	}
	for _, v := range []Validator{MinLength(0), MaxLength(3)} {
		if v.validate() == nil {
			t.Errorf("%s accepted a bad bound", v.Name)
		}
	}
}

func TestMaxLengthNeverExceeds(t *testing.T) {
	v := MaxLength(40)
	for _, s := range []string{strings.Repeat("word ", 30), strings.Repeat("x", 100), strings.Repeat("日本語. ", 20)} {
		_, got := run(t, v, "", s)
		if n := utf8.RuneCountInString(got); n > 40 || !utf8.ValidString(got) {
			t.Errorf("cut(%q) = %q (%d runes)", s, got, n)
		}
	}
}

func TestNoRepetition(t *testing.T) {
	loop := strings.Repeat("I am sorry but I cannot help with that. ", 6)
	prose := "Compound interest means you earn interest on interest. Over thirty years a small monthly amount can grow a lot, because each year's growth is added to the base."
	lines := "Step one: open the settings page now\nStep one: open the settings page now\nother words here\nStep one: open the settings page now\n"
	code := "Here is the code:\n```go\nif err != nil {\n\treturn err\n}\nif err != nil {\n\treturn err\n}\nif err != nil {\n\treturn err\n}\n```\nThat handles every error path in the function correctly."
	runCases(t, NoRepetition(4, 0.3), []vcase{
		{response: loop, want: []string{CodeRepetition}},
		{response: prose},
		{response: lines, want: []string{CodeRepetition, CodeRepeatedLine}},
		{response: code},
		{response: "too short to judge too short to judge"},
	})
	for _, v := range []Validator{NoRepetition(0, 0.3), NoRepetition(4, 0), NoRepetition(4, 1)} {
		if v.validate() == nil {
			t.Error("bad NoRepetition arguments accepted")
		}
	}
}

func TestBannedTermsAndToxicity(t *testing.T) {
	runCases(t, BannedTerms("risk free", "ass", "crypto"), []vcase{
		{response: "This is RISK-FREE, trust me", want: []string{CodeBannedTerm}},
		{response: "A first-class assessment"},
	})
	codes, _ := run(t, BannedTerms("crypto"), "", "Crypto! crypto.")
	if len(codes) != 1 {
		t.Errorf("one issue expected, got %q", codes)
	}
	runCases(t, NoToxicity(), []vcase{
		{response: "Don't be an idiot.", want: []string{CodeToxic}},
		{response: "Shut up and listen", want: []string{CodeToxic}},
		{response: "Prick your finger for a glucose test; there are no stupid questions."},
		{response: "Classic Scunthorpe assessment"},
	})
	if BannedTerms().validate() == nil || BannedTerms(" ", "!").validate() == nil {
		t.Error("empty term list accepted")
	}
}

func TestRequireDisclaimer(t *testing.T) {
	v := RequireDisclaimer("Not financial advice.", "consult an adviser")
	runCases(t, v, []vcase{
		{response: "Buy bonds.  \n", want: []string{CodeDisclaimerAdded}, revised: "Buy bonds.\n\nNot financial advice."},
		{response: "Buy bonds. (NOT financial-advice!)"},
		{response: "Please consult an adviser first."},
	})
	if RequireDisclaimer("  ").validate() == nil {
		t.Error("empty disclaimer accepted")
	}
}

func TestRelevance(t *testing.T) {
	v := Relevance([]string{"loan", "credit score", "budget"}, 1)
	runCases(t, v, []vcase{
		{query: "how do loans work", response: "Most loans charge interest on the remaining balance every month you owe it."},
		{query: "weather tomorrow please", response: "The weather tomorrow will be sunny with light winds from the west.", want: nil},
		{query: "loans", response: "Sunny."},
	})
	codes, _ := run(t, v, "how do I fix my bike chain", "The weather tomorrow will be sunny with light winds from the west.")
	if !slices.Equal(codes, []string{CodeLowRelevance}) {
		t.Errorf("off-topic answer: %q", codes)
	}
	codes, _ = run(t, Relevance([]string{"loan", "budget"}, 2), "budget", "A budget lists income and spending so you see where money goes each month.")
	if !slices.Equal(codes, []string{CodeLowRelevance}) {
		t.Errorf("minHits 2: %q", codes)
	}
	if Relevance(nil, 1).validate() == nil {
		t.Error("no keywords accepted")
	}
}

func TestNoCertainDiagnoses(t *testing.T) {
	runCases(t, NoCertainDiagnoses(), []vcase{
		{response: "You definitely have a sinus infection.", want: []string{CodeCertainDiagnosis}},
		{response: "Based on this, you have diabetes.", want: []string{CodeCertainDiagnosis}},
		{response: "There is no need to see a doctor.", want: []string{CodeCertainDiagnosis}},
		{response: "I am 100% sure it is nothing.", want: []string{CodeCertainDiagnosis}},
		{response: "If you have diabetes, check your feet daily."},
		{response: "Only a doctor can tell whether you have diabetes."},
		{response: "Do you have a fever? You may have an infection."},
		{response: "You don't need to see a doctor unless the pain gets worse."},
		{response: "This could be a migraine; a doctor can confirm it."},
	})
}

func TestNoPromisedReturns(t *testing.T) {
	runCases(t, NoPromisedReturns(), []vcase{
		{response: "This fund offers guaranteed returns of 8%.", want: []string{CodePromisedReturns}},
		{response: "With this strategy you can't lose money.", want: []string{CodePromisedReturns}},
		{response: "Bitcoin will definitely go up next year.", want: []string{CodePromisedReturns}},
		{response: "It's a sure bet that will double your money.", want: []string{CodePromisedReturns}},
		{response: "No investment can guarantee returns."},
		{response: "Beware of anyone promising guaranteed returns."},
		{response: "There are no guaranteed returns in the stock market."},
		{response: "Treasury bills are often called the risk-free rate."},
		{response: "Sure thing! Here is how budgeting works."},
	})
}

func TestForbidClaimsErrors(t *testing.T) {
	for _, r := range []ClaimRule{
		{Patterns: []string{"a"}},
		{Code: "x"},
		{Code: "x", Patterns: []string{"(a"}},
	} {
		if ForbidClaims(r).validate() == nil {
			t.Errorf("ForbidClaims(%+v) accepted", r)
		}
	}
}

func TestBalancedCodeFences(t *testing.T) {
	runCases(t, BalancedCodeFences(), []vcase{
		{response: "```go\nx := 1\n```"},
		{response: "Try:\n```python\nprint(1)\n", want: []string{CodeUnbalancedFence}, revised: "Try:\n```python\nprint(1)\n```"},
		{response: "~~~~\ncode\n~~~", want: []string{CodeUnbalancedFence}, revised: "~~~~\ncode\n~~~\n~~~~"},
		{response: "````\n```\nnested\n```\n````"},
		{response: "inline `code` and ``more``"},
		{response: "  ```sh\n  ls\n  ```"},
		{response: "```\na\n``` not a close\n", want: []string{CodeUnbalancedFence}, revised: "```\na\n``` not a close\n```"},
	})
}

func TestEvaluate(t *testing.T) {
	req := abi.ValidateRequest{Query: "q", Response: "You definitely have cancer. Call 555-123-4567.", Domain: "medical"}
	v := Evaluate(req, RedactPII(), NoCertainDiagnoses(), RequireDisclaimer("Not medical advice."))
	if v.OK || v.Response == nil || strings.Contains(*v.Response, "4567") || !strings.HasSuffix(*v.Response, "Not medical advice.") {
		t.Fatalf("Evaluate: %+v", v)
	}
	want := (1 - PenaltyWarning) * (1 - PenaltyError) * (1 - PenaltyInfo)
	if v.Score != want || len(v.Issues) != 3 {
		t.Errorf("score %v (want %v), issues %+v", v.Score, want, v.Issues)
	}
	clean := Evaluate(abi.ValidateRequest{Response: "fine"}, MinLength(1))
	if !clean.OK || clean.Score != 1 || clean.Issues == nil || clean.Response != nil {
		t.Errorf("clean: %+v", clean)
	}
	if Score([]abi.Issue{{Severity: "bogus"}}) != 1-PenaltyError {
		t.Error("unknown severity must count as error")
	}
	many := make([]abi.Issue, 100)
	for i := range many {
		many[i].Severity = abi.SeverityError
	}
	if s := Score(many); s < 0 || s > 1 {
		t.Errorf("score out of range: %v", s)
	}
}

// FuzzValidators runs every built-in validator over arbitrary text: no
// panics, scores in [0,1], valid UTF-8 stays valid, and a second pass over
// the revised text changes nothing more (fixes are stable).
func FuzzValidators(f *testing.F) {
	f.Add("q", "You definitely have cancer. Card 4111 1111 1111 1111.\n```go\nx")
	f.Add("loans", strings.Repeat("same words again and again ", 10))
	f.Add("", "")
	f.Add("é", "\xff\xfe```\n~~~")
	vs := []Validator{
		MinLength(1), MaxLength(200), NoRepetition(3, 0.3), NoToxicity(), BannedTerms("risk free"),
		RedactPII(), NoCertainDiagnoses(), NoPromisedReturns(), Relevance([]string{"loan", "credit"}, 1),
		BalancedCodeFences(), RequireDisclaimer("Not advice."),
	}
	f.Fuzz(func(t *testing.T, query, response string) {
		v := Evaluate(abi.ValidateRequest{Query: query, Response: response}, vs...)
		if v.Score < 0 || v.Score > 1 || v.Issues == nil {
			t.Fatalf("bad result %+v", v)
		}
		if v.Response == nil {
			return
		}
		if utf8.ValidString(response) && !utf8.ValidString(*v.Response) {
			t.Fatalf("revision broke UTF-8: %q -> %q", response, *v.Response)
		}
		// Fixing validators must be stable on their own output.
		for _, fix := range []Validator{RedactPII(), BalancedCodeFences(), RequireDisclaimer("Not advice.")} {
			c := &Check{Response: *v.Response}
			fix.Check(c)
			if c.Response != *v.Response && fix.Name != "redact_pii" {
				t.Fatalf("%s not stable: %q -> %q", fix.Name, *v.Response, c.Response)
			}
		}
	})
}

// refScanFences is the plain line-by-line reference for scanFences: it
// returns the text outside fenced blocks and the marker left open.
func refScanFences(s string) (prose, open string) {
	var b strings.Builder
	for line := range strings.Lines(s) {
		marker, info, ok := fenceLine(strings.TrimRight(line, "\r\n"))
		switch {
		case open == "" && ok:
			open = marker
		case open != "" && ok && info == "" && marker[0] == open[0] && len(marker) >= len(open):
			open = ""
		default:
			if open == "" {
				b.WriteString(line)
			}
		}
	}
	return b.String(), open
}

var fenceSeeds = []string{
	"",
	"no fences here",
	"text\n```go\ncode\n```\nmore",
	"text\n```\nunclosed",
	"  ~~~~ info\ncode\n~~~\n~~~~\nafter",
	"a ``` not a fence\n````\nx\n```\nstill inside\n`````\nout",
	"```\r\ncode\r\n```\r\nafter\r\n",
	"\t```py\n```not closing (info)\n```",
	"``\n`` x\n~~ ~\n```a`b\n```",
	"x\n\n   ```\n\n   ```\n",
	strings.Repeat("word ", 20) + "\n```\n" + strings.Repeat("code ", 30) + "\n```\n" + strings.Repeat("tail ", 10),
}

func checkFences(t *testing.T, s string) {
	t.Helper()
	wantProse, wantOpen := refScanFences(s)
	if got := stripFencedCode(s); got != wantProse {
		t.Fatalf("stripFencedCode(%q) = %q, want %q", s, got, wantProse)
	}
	if open, m := openFence(s); open != (wantOpen != "") || m != wantOpen {
		t.Fatalf("openFence(%q) = %v %q, want %q", s, open, m, wantOpen)
	}
}

func TestFencesMatchReference(t *testing.T) {
	for _, s := range fenceSeeds {
		for i := range len(s) + 1 {
			checkFences(t, s[i:])
			checkFences(t, s[:i])
		}
	}
}

// FuzzFences compares the fence scanner with the line-by-line reference.
func FuzzFences(f *testing.F) {
	for _, s := range fenceSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkFences(t, s) })
}
