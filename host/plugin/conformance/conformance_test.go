package conformance

import (
	"context"
	"github.com/mdsa-go/mdsa/internal/stats"
	"strings"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

func logReport(t *testing.T, rep Report) {
	t.Helper()
	t.Logf("%s %s: passed=%v compile=%.1fms instantiate=%.1fms calls(us)=%v", rep.Plugin, rep.Version, rep.Passed, rep.CompileMS, rep.InstantiateMS, rep.CallUS)
	for _, c := range rep.Checks {
		t.Logf("  %-8s passed=%-5v %8s  %s", c.Name, c.Passed, c.Duration.Round(time.Millisecond), c.Detail)
	}
}

func TestSupportPasses(t *testing.T) {
	rep := check(t, "support.wasm", fix.support, Options{
		Samples:        []string{"my parcel never arrived, what now?"},
		MaxCallLatency: latencyBudget,
	})
	logReport(t, rep)
	if !rep.Passed || len(rep.Failed()) != 0 {
		t.Fatalf("support does not pass: %+v", rep.Failed())
	}
	var names []string
	for _, c := range rep.Checks {
		names = append(names, c.Name)
	}
	want := []string{CheckDescribe, CheckPrompt, CheckValidate, CheckHandle, CheckTools, CheckSandbox, CheckLatency}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("checks %v, want %v", names, want)
	}
	if rep.Plugin != "support" || rep.Version != "1.0.0" || rep.Size != len(fix.support) || len(rep.SHA256) != 64 {
		t.Fatalf("identity: %+v", rep)
	}
	for _, k := range []string{"prompt", "validate", "prompt+validate"} {
		if rep.CallUS[k] <= 0 {
			t.Fatalf("call_us[%s] missing: %v", k, rep.CallUS)
		}
	}
	if _, ok := rep.CallUS["handle"]; ok {
		t.Fatalf("support has no handle export, yet call_us has handle: %v", rep.CallUS)
	}
	if rep.InstantiateMS <= 0 {
		t.Fatalf("instantiate_ms not measured: %+v", rep)
	}
	if h, _ := rep.Result(CheckHandle); !strings.Contains(h.Detail, "no handle export") {
		t.Fatalf("handle detail: %q", h.Detail)
	}
	if tl, _ := rep.Result(CheckTools); !tl.Passed || tl.Detail != "no tools (nothing to check)" {
		t.Fatalf("tools result: %+v", tl)
	}
	if _, ok := rep.CallUS["tool"]; ok {
		t.Fatalf("support has no tools, yet call_us has tool: %v", rep.CallUS)
	}
	if l, _ := rep.Result(CheckLatency); !strings.Contains(l.Detail, "p50 prompt+validate") {
		t.Fatalf("latency detail: %q", l.Detail)
	}
}

// TestBadModes checks that each misbehaviour of testdata/bad fails the
// check it should, with a detail that says why.
func TestBadModes(t *testing.T) {
	cases := []struct {
		mode, check, detail string
		limits              plugin.Limits
	}{
		{mode: "loop", check: CheckPrompt, detail: "timed out"},
		{mode: "badjson", check: CheckPrompt, detail: "invalid JSON"},
		{mode: "badutf8", check: CheckPrompt, detail: "invalid UTF-8"},
		{mode: "bigout", check: CheckPrompt, detail: "output too large"},
		{mode: "abi99", check: CheckDescribe, detail: "unsupported ABI version 99"},
		{mode: "trap", check: CheckPrompt, detail: "trapped"},
		{mode: "oom", check: CheckPrompt, detail: "out of memory", limits: plugin.Limits{MaxMemoryBytes: 16 << 20, CallTimeout: 5 * time.Second}},
		{mode: "nocap", check: CheckPrompt, detail: "capability denied"},
		{mode: "flood", check: CheckPrompt, detail: "host-call cap"},
		{mode: "minimal", check: CheckPrompt, detail: "does not appear verbatim"},
		{mode: "minimal", check: CheckSandbox, detail: "returned success for malformed input"},
	}
	for _, tc := range cases {
		t.Run(tc.mode+"/"+tc.check, func(t *testing.T) {
			rep := check(t, "bad.wasm", fix.bad, Options{Config: map[string]string{"mode": tc.mode}, Limits: tc.limits})
			if rep.Passed {
				logReport(t, rep)
				t.Fatal("passed")
			}
			r, ok := rep.Result(tc.check)
			if testing.Verbose() {
				logReport(t, rep)
			}
			if !ok || r.Passed || !strings.Contains(r.Detail, tc.detail) || !strings.HasPrefix(r.Detail, tc.check+": ") {
				logReport(t, rep)
				t.Fatalf("%s check: %+v, want a failure mentioning %q", tc.check, r, tc.detail)
			}
			if tc.mode == "abi99" && len(rep.Checks) != 1 {
				t.Fatalf("checks ran after a failed load: %+v", rep.Checks)
			}
			if tc.mode != "abi99" && rep.Plugin != tc.mode {
				t.Fatalf("plugin name %q, want %q", rep.Plugin, tc.mode)
			}
			if tc.mode == "loop" {
				// The spin costs one CallTimeout; every later use of prompt
				// fails with the timeout without waiting for it again.
				timeout := DefaultLimits().CallTimeout
				if r.Duration < timeout || r.Duration > timeout+3*time.Second {
					t.Fatalf("prompt check took %s, call timeout %s", r.Duration, timeout)
				}
				l, _ := rep.Result(CheckLatency)
				s, _ := rep.Result(CheckSandbox)
				if l.Passed || !strings.Contains(l.Detail, "timed out") || s.Passed || !strings.Contains(s.Detail, "timed out") {
					t.Fatalf("latency/sandbox after a timeout: %+v / %+v", l, s)
				}
				if l.Duration > timeout/2 || s.Duration > timeout+3*time.Second {
					t.Fatalf("latency/sandbox waited for the spinning export again: %s / %s", l.Duration, s.Duration)
				}
			}
		})
	}
}

func TestBadManifestDetails(t *testing.T) {
	rep := check(t, "bad.wasm", fix.bad, Options{Config: map[string]string{"mode": "minimal"}, LatencyCalls: 5})
	d, _ := rep.Result(CheckDescribe)
	for _, want := range []string{"description is empty", "1 keywords, want at least 3", "1 examples, want at least 5"} {
		if d.Passed || !strings.Contains(d.Detail, want) {
			t.Fatalf("describe detail %q lacks %q", d.Detail, want)
		}
	}
	// validate and latency work for this mode: they must pass.
	for _, name := range []string{CheckValidate, CheckHandle, CheckLatency} {
		if r, _ := rep.Result(name); !r.Passed {
			t.Fatalf("%s failed: %+v", name, r)
		}
	}
}

func TestNotWasm(t *testing.T) {
	rep := check(t, "junk.wasm", []byte("this is not a module"), Options{})
	if rep.Passed || len(rep.Checks) != 1 || rep.Checks[0].Name != CheckDescribe ||
		!strings.Contains(rep.Checks[0].Detail, "not a WebAssembly module") || rep.Plugin != "junk.wasm" {
		t.Fatalf("report: %+v", rep)
	}
}

func TestLatencyBudget(t *testing.T) {
	rep := check(t, "support.wasm", fix.support, Options{MaxCallLatency: time.Nanosecond, LatencyCalls: 5})
	r, _ := rep.Result(CheckLatency)
	if rep.Passed || r.Passed || !strings.Contains(r.Detail, "over the 1ns budget") || !strings.Contains(r.Detail, "5 pairs") {
		t.Fatalf("latency: %+v", r)
	}
	if len(rep.Failed()) != 1 {
		t.Fatalf("only latency should fail: %+v", rep.Failed())
	}
}

func TestDescribeChecks(t *testing.T) {
	good := abi.Manifest{
		ABI: 1, Name: "cooking", Version: "1.0.0", Description: "Cooking.",
		Keywords:     []string{"recipe", "bake", "oven"},
		Examples:     []string{"a", "b", "c", "d", "How long do I bake bread?"},
		Capabilities: []string{"generate"},
	}
	cases := []struct {
		name string
		edit func(m *abi.Manifest)
		want string // "" = passes
	}{
		{"good", func(m *abi.Manifest) {}, ""},
		{"no keywords", func(m *abi.Manifest) { m.Keywords = nil }, "keywords is empty"},
		{"few examples", func(m *abi.Manifest) { m.Examples = m.Examples[:4] }, "4 examples, want at least 5"},
		{"empty keyword", func(m *abi.Manifest) { m.Keywords = []string{"a", " ", "b"} }, "keywords[1] is empty"},
		{"duplicate example", func(m *abi.Manifest) { m.Examples = append(m.Examples, " how long do I  BAKE bread? ") }, `examples[5] " how long do I  BAKE bread? " duplicates examples[4]`},
		{"examples are keywords", func(m *abi.Manifest) {
			m.Keywords = []string{"a", "b", "c", "d", "e"}
			m.Examples = []string{"A", "b", "c", "d", "e"}
		}, "every example is also a keyword"},
		{"unknown capability", func(m *abi.Manifest) { m.Capabilities = []string{"generate", "shell"} }, `capabilities[1] "shell" is unknown`},
		{"duplicate capability", func(m *abi.Manifest) { m.Capabilities = []string{"embed", "embed"} }, "is a duplicate"},
		{"no capabilities", func(m *abi.Manifest) { m.Capabilities = nil }, "capabilities is missing"},
		{"no description", func(m *abi.Manifest) { m.Description = "  " }, "description is empty"},
		{"bad name", func(m *abi.Manifest) { m.Name = "Cooking" }, "must match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := good
			m.Keywords = append([]string(nil), good.Keywords...)
			m.Examples = append([]string(nil), good.Examples...)
			tc.edit(&m)
			c := &checker{manifest: m}
			probs := strings.Join(c.checkDescribe(), "; ")
			if tc.want == "" && probs != "" || tc.want != "" && !strings.Contains(probs, tc.want) {
				t.Fatalf("problems %q, want %q", probs, tc.want)
			}
		})
	}
}

func TestCheckVerdict(t *testing.T) {
	s := "fixed"
	bad := "caf\xe9"
	cases := []struct {
		v    abi.Validation
		want string
	}{
		{abi.Validation{OK: true, Score: 1, Issues: []abi.Issue{}}, ""},
		{abi.Validation{OK: false, Score: 0.5, Issues: []abi.Issue{{Code: "x", Severity: "error", Message: "m"}}, Response: &s}, ""},
		{abi.Validation{OK: true, Score: 1.5, Issues: []abi.Issue{}}, "outside [0, 1]"},
		{abi.Validation{OK: true, Score: 1}, "issues is missing"},
		{abi.Validation{OK: true, Score: 1, Issues: []abi.Issue{{Code: "x", Severity: "error"}}}, "ok is true but"},
		{abi.Validation{OK: false, Score: 1, Issues: []abi.Issue{{Code: "x", Severity: "warning"}}}, "ok is false but"},
		{abi.Validation{OK: true, Score: 1, Issues: []abi.Issue{{Code: "", Severity: "fatal"}}}, `severity "fatal" is unknown`},
		{abi.Validation{OK: true, Score: 1, Issues: []abi.Issue{}, Response: &bad}, "revised response is not valid UTF-8"},
	}
	for i, tc := range cases {
		probs := strings.Join(checkVerdict(tc.v), "; ")
		if tc.want == "" && probs != "" || tc.want != "" && !strings.Contains(probs, tc.want) {
			t.Errorf("case %d: problems %q, want %q", i, probs, tc.want)
		}
	}
}

func TestCheckMessages(t *testing.T) {
	q := "where is my parcel"
	cases := []struct {
		msgs []abi.Message
		want string
	}{
		{[]abi.Message{{Role: "system", Content: "be nice"}, {Role: "user", Content: "Q: where is my parcel"}}, ""},
		{nil, "no messages"},
		{[]abi.Message{{Role: "user", Content: q}, {Role: "assistant", Content: "ok"}}, "last message has role \"assistant\""},
		{[]abi.Message{{Role: "tool", Content: q}, {Role: "user", Content: "x"}}, `messages[0] has role "tool"`},
		{[]abi.Message{{Role: "user", Content: "where is my"}}, "does not appear verbatim"},
	}
	for i, tc := range cases {
		probs := strings.Join(checkMessages(tc.msgs, "  "+q+"\n"), "; ")
		if tc.want == "" && probs != "" || tc.want != "" && !strings.Contains(probs, tc.want) {
			t.Errorf("case %d: problems %q, want %q", i, probs, tc.want)
		}
	}
}

func TestSamples(t *testing.T) {
	s := promptSamples(abi.Manifest{Examples: []string{"first?", "second?"}}, []string{"extra one", "  "}, false)
	if len(s) != 6 || s[0].req.Query != "first?" || s[1].req.Query != "second?" || s[5].req.Query != "extra one" {
		t.Fatalf("samples: %+v", s)
	}
	if n := len(s[4].req.Query); n < 16<<10-8 || n > 16<<10 {
		t.Fatalf("long sample is %d bytes", n)
	}
	if got := longText("é", 5); got != "(1)" { // cut before a split rune, then trimmed
		t.Fatalf("longText cut: %q", got)
	}
	d := []time.Duration{5, 1, 4, 2, 3}
	if median(d) != 3 || stats.Percentile(d, 0.9) != 5 || stats.Percentile(nil, 0.5) != 0 {
		t.Fatal("percentile")
	}
}

func TestFakeServices(t *testing.T) {
	f := FakeServices{}
	ctx := t.Context()
	g, err := f.Generate(ctx, plugin0(), abi.GenerateRequest{Prompt: "a b c", Generation: abi.Generation{MaxTokens: 3}})
	if err != nil || g.Text != "Thanks for your" || g.FinishReason != "length" || g.TokensOut != 3 || g.TokensIn != 3 || g.Model != FakeModel {
		t.Fatalf("generate: %+v %v", g, err)
	}
	g, _ = FakeServices{Text: "fixed"}.Generate(ctx, plugin0(), abi.GenerateRequest{Prompt: "x"})
	if g.Text != "fixed" || g.FinishReason != "stop" {
		t.Fatalf("generate: %+v", g)
	}
	e1, _ := f.Embed(ctx, plugin0(), abi.EmbedRequest{Input: []string{"one", "two"}})
	e2, _ := f.Embed(ctx, plugin0(), abi.EmbedRequest{Input: []string{"one"}})
	if len(e1.Vectors) != 2 || len(e1.Vectors[0]) != 8 || e1.Vectors[0][3] != e2.Vectors[0][3] || e1.Vectors[0][3] == e1.Vectors[1][3] {
		t.Fatalf("embed: %+v", e1)
	}
	var n float32
	for _, x := range e1.Vectors[1] {
		n += x * x
	}
	if n < 0.999 || n > 1.001 {
		t.Fatalf("embed norm² %v", n)
	}
	if c, _ := f.CountTokens(ctx, plugin0(), abi.CountTokensRequest{Text: " a  b c "}); c.Count != 3 {
		t.Fatalf("count: %+v", c)
	}
}

func plugin0() plugin.Call { return plugin.Call{} }

func TestHandle(t *testing.T) {
	rep := check(t, "good.wasm", fix.good, Options{LatencyCalls: 5})
	h, _ := rep.Result(CheckHandle)
	if !h.Passed || h.Detail != "" || rep.CallUS["handle"] <= 0 {
		logReport(t, rep)
		t.Fatalf("handle with fake services: %+v, call_us %v", h, rep.CallUS)
	}
	for _, name := range []string{CheckPrompt, CheckValidate, CheckTools, CheckSandbox, CheckLatency} {
		if r, _ := rep.Result(name); !r.Passed {
			t.Fatalf("%s failed: %+v", name, r)
		}
	}
	// good's manifest is thin (2 keywords, 1 example).
	if d, _ := rep.Result(CheckDescribe); d.Passed || !strings.Contains(d.Detail, "2 keywords, want at least 3") {
		t.Fatalf("describe: %+v", d)
	}

	// Without services every host call is refused, and good's handle fails.
	rt, err := plugin.NewRuntime(t.Context(), plugin.Options{CacheDir: fix.cacheDir, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	rep = Check(t.Context(), rt, "good.wasm", fix.good, Options{CacheDir: fix.cacheDir, LatencyCalls: 5})
	h, _ = rep.Result(CheckHandle)
	if h.Passed || !strings.Contains(h.Detail, "unavailable") || !strings.Contains(h.Detail, "the same failure as sample plain") {
		t.Fatalf("handle without services: %+v", h)
	}
}

// BenchmarkCheckSupport runs the whole kit on the support plugin and
// reports its figures: median call times and the time of one Check (the
// module stays compiled in the runtime between iterations).
func BenchmarkCheckSupport(b *testing.B) {
	var rep Report
	for b.Loop() {
		rep = check(b, "support.wasm", fix.support, Options{MaxCallLatency: time.Second})
		if !rep.Passed {
			b.Fatalf("support failed: %+v", rep.Failed())
		}
	}
	for k, v := range rep.CallUS {
		b.ReportMetric(v, k+"-us")
	}
	b.ReportMetric(rep.InstantiateMS, "instantiate-ms")
}
