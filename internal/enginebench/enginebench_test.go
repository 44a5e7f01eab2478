package enginebench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// quick are Options that keep a run short: figures are checked for
// consistency, never against wall-clock expectations.
func quick() Options {
	return Options{Requests: 4, WarmupRequests: 1, Clients: []int{1, 3}, Duration: 60 * time.Millisecond,
		Warmup: 10 * time.Millisecond, MaxTokens: 8, DecodeTokens: 20, Streams: 3, Settle: -1}
}

// spinTarget answers at once, then "spins" (its CPU time rises at every
// read) for spin reads; busyAtStart records, for each of its calls, how
// many spinning reads the other target still had left.
type spinTarget struct {
	mu          sync.Mutex
	spin, left  int
	cpu         time.Duration
	other       *spinTarget
	busyAtStart []int
}

func (s *spinTarget) Name() string { return "spin" }

func (s *spinTarget) Do(context.Context, Call) (Outcome, error) {
	o := s.other
	o.mu.Lock()
	left := o.left
	o.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busyAtStart = append(s.busyAtStart, left)
	s.left = s.spin
	return Outcome{PromptTokens: 10, CompletionTokens: 2, Latency: time.Millisecond}, nil
}

func (s *spinTarget) CPUTime() (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left > 0 {
		s.left--
		s.cpu += settleTick // a whole core
	}
	return s.cpu, nil
}

// A target's turn starts once the other target's process has gone quiet,
// and the wait is bounded by Options.Settle.
func TestSettleBetweenTargets(t *testing.T) {
	a, b := &spinTarget{}, &spinTarget{spin: 5}
	a.other, b.other = b, a
	o := quick()
	o.Settle = time.Second
	o.SkipDecode = true
	o.Clients = []int{1}
	if _, err := Run(context.Background(), a, b, o); err != nil {
		t.Fatal(err)
	}
	if len(a.busyAtStart) == 0 {
		t.Fatal("no calls")
	}
	for i, left := range a.busyAtStart {
		if left != 0 {
			t.Fatalf("call %d of a started while b still spun (%d reads left)", i, left)
		}
	}
	// A target that never goes quiet delays each turn by Settle at most.
	b.spin = 1 << 30
	o.Settle = 30 * time.Millisecond
	o.Requests, o.WarmupRequests = 2, -1
	start := time.Now()
	if _, err := Run(context.Background(), a, b, o); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("a run against a target that never goes quiet took %s", d)
	}
}

func TestRunAgainstReference(t *testing.T) {
	srv := newFakeServer(t, 6)
	srv.setFail(func(n int64) bool { return n%7 == 0 }) // some errors, never a whole phase
	ref, err := NewOpenAITarget(OpenAIOptions{URL: srv.URL, Model: "m", PID: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.CloseIdle()
	if ref.CPUNote() == "" {
		t.Fatal("a pid that does not exist has CPU time")
	}
	var progress bytes.Buffer
	opts := quick()
	opts.Progress = &progress
	rep, err := Run(context.Background(), EngineTarget{Engine: &fakeEngine{stopAt: 6}}, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Targets) != 2 || rep.Targets[0].Role != "mdsa" || rep.Targets[1].Role != "reference" ||
		rep.Targets[1].URL != srv.URL || rep.Targets[0].CPUNote != "" || rep.Targets[1].CPUNote == "" {
		t.Fatalf("targets: %+v", rep.Targets)
	}

	l := rep.Latency
	if l.MDSA.Requests != 4 || l.Reference == nil || l.Reference.Requests+l.Reference.Errors != 4 {
		t.Fatalf("latency counts: %+v %+v", l.MDSA, l.Reference)
	}
	if l.MDSA.P50MS <= 0 || l.MDSA.P99MS < l.MDSA.P50MS || l.Reference.P99MS < l.Reference.P50MS {
		t.Errorf("latency percentiles: %+v %+v", l.MDSA, l.Reference)
	}
	// The fake engine caches nothing; the fake server all but 10 tokens.
	if l.MDSA.EvaluatedTokens != l.MDSA.PromptTokens || l.MDSA.PromptTokens < 50 || l.Reference.EvaluatedTokens != 10 {
		t.Errorf("latency tokens: %+v %+v", l.MDSA, l.Reference)
	}
	if l.MDSA.CompletionTokens != 6 || l.Reference.CompletionTokens != 6 {
		t.Errorf("completion tokens: %v %v", l.MDSA.CompletionTokens, l.Reference.CompletionTokens)
	}
	checkCompare(t, "latency", l.Compare, 5)

	if len(rep.Throughput) != 2 || rep.Throughput[0].Clients != 1 || rep.Throughput[1].Clients != 3 {
		t.Fatalf("throughput levels: %+v", rep.Throughput)
	}
	for _, lvl := range rep.Throughput {
		for _, s := range []*ThroughputStats{&lvl.MDSA, lvl.Reference} {
			if s == nil || s.Requests <= 0 || s.RPS <= 0 || s.ElapsedS <= 0 || s.P99MS < s.P50MS {
				t.Errorf("%d clients: %+v", lvl.Clients, s)
			}
		}
		if lvl.MDSA.CPUSecondsPerRequest == nil || *lvl.MDSA.CPUSecondsPerRequest < 0 || lvl.Reference.CPUSecondsPerRequest != nil {
			t.Errorf("%d clients: CPU %v / %v, want a figure for mdsa and n/a for the reference", lvl.Clients,
				lvl.MDSA.CPUSecondsPerRequest, lvl.Reference.CPUSecondsPerRequest)
		}
		checkCompare(t, "throughput", lvl.Compare, 5)
		if c := lvl.Compare[4]; c.Figure != "CPU s / request" || c.Reference != nil || c.Ratio != nil || c.MDSA == nil {
			t.Errorf("CPU row: %+v", c)
		}
		if lvl.Reference.EvaluatedTokens != 10 {
			t.Errorf("reference evaluated %v tokens per request, want 10", lvl.Reference.EvaluatedTokens)
		}
	}

	d := rep.Decode
	if d == nil || d.Reference == nil || d.MDSA.Requests != DefaultDecodeAnswers || d.MDSA.CompletionTokens != 6 || d.Reference.CompletionTokens != 20 {
		t.Fatalf("decode: %+v", d)
	}
	if d.MDSA.TokensPerSecond <= 0 || d.Reference.TokensPerSecond <= 0 || d.MDSA.FirstTokenMS <= 0 {
		t.Errorf("decode speeds: %+v %+v", d.MDSA, d.Reference)
	}
	checkCompare(t, "decode", d.Compare, 3)

	a := rep.Aggregate
	if a == nil || a.Reference == nil || a.Streams != 3 || a.MDSA.One.Streams != 1 || a.MDSA.Many.Streams != 3 {
		t.Fatalf("aggregate: %+v", a)
	}
	if a.MDSA.Many.Requests != 6 || a.MDSA.One.Requests != 2 || a.MDSA.Gain <= 0 ||
		math.Abs(a.MDSA.Gain-a.MDSA.Many.TokensPerSecond/a.MDSA.One.TokensPerSecond) > 1e-9 {
		t.Errorf("aggregate mdsa: %+v", a.MDSA)
	}
	checkCompare(t, "aggregate", a.Compare, 4)

	// The headline figures carry the ratio of each round (each answer pair
	// in the decode phase); the others none.
	rounds := map[string][]Compare{"decode": d.Compare, "aggregate": a.Compare}
	for _, lvl := range rep.Throughput {
		rounds[fmt.Sprintf("throughput %d", lvl.Clients)] = lvl.Compare
	}
	for phase, rows := range rounds {
		for i, c := range rows {
			headline := i == 0 || (phase == "aggregate" && i == 1)
			// A round with nothing to compare is left out, and one round
			// alone gives no ratios: an aggregate round of one stream is one
			// request, which the reference's injected failures may take,
			// and a 30 ms throughput round on a busy machine may hold one
			// request too. The six decode pairs lose at most one answer
			// (every 7th request fails), so they always give ratios.
			mayLack := phase != "decode"
			switch {
			case !headline && c.RoundRatios != nil:
				t.Errorf("%s %s: round ratios %v", phase, c.Figure, c.RoundRatios)
			case headline && len(c.RoundRatios) == 0 && !mayLack,
				len(c.RoundRatios) == 1, len(c.RoundRatios) > DefaultDecodeAnswers:
				t.Errorf("%s %s: round ratios %v", phase, c.Figure, c.RoundRatios)
			}
			for _, r := range c.RoundRatios {
				if r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
					t.Errorf("%s %s: round ratio %v", phase, c.Figure, r)
				}
			}
		}
	}

	// 6 tokens against 20: the decode and aggregate phases are warned about.
	if len(rep.Warnings) != 2 || !strings.Contains(rep.Warnings[0], "decode") || !strings.Contains(rep.Warnings[1], "aggregate") {
		t.Errorf("warnings: %q", rep.Warnings)
	}
	// Every 7th request failed: counted, and the first quoted.
	all := []Counts{l.Reference.Counts, d.Reference.Counts, a.Reference.One.Counts, a.Reference.Many.Counts}
	for _, lvl := range rep.Throughput {
		all = append(all, lvl.Reference.Counts)
	}
	errs := 0
	for _, c := range all {
		errs += c.Errors
		if c.Errors > 0 && !strings.Contains(c.FirstError, "fake overload") {
			t.Errorf("first error: %q", c.FirstError)
		}
	}
	if errs == 0 {
		t.Error("no reference errors counted")
	}
	if !strings.Contains(progress.String(), "round 2/2") {
		t.Errorf("progress: %s", progress.String())
	}

	// The whole report is JSON (no NaN or Inf), and the text has a table
	// per phase.
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"single request:", "throughput:", "decode:", "aggregate:", " 3 clients  requests/s", "  rounds ",
		"reference", "ratio", "higher", "lower", "n/a", "warning: decode", "requests failed; the first:"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text has no %q:\n%s", want, text.String())
		}
	}
}

// checkCompare checks that rows has n figures, each with both values and
// the ratio MDSA / reference when both are there.
func checkCompare(t *testing.T, phase string, rows []Compare, n int) {
	t.Helper()
	if len(rows) != n {
		t.Fatalf("%s: %d rows, want %d", phase, len(rows), n)
	}
	for _, c := range rows {
		if c.Better != Higher && c.Better != Lower && c.Better != Info {
			t.Errorf("%s %s: better %q", phase, c.Figure, c.Better)
		}
		if c.MDSA == nil || c.Reference == nil {
			continue
		}
		if *c.Reference == 0 {
			if c.Ratio != nil {
				t.Errorf("%s %s: ratio %v over 0", phase, c.Figure, *c.Ratio)
			}
			continue
		}
		if c.Ratio == nil || math.Abs(*c.Ratio - *c.MDSA / *c.Reference) > 1e-9 {
			t.Errorf("%s %s: ratio %v, mdsa %v, reference %v", phase, c.Figure, c.Ratio, *c.MDSA, *c.Reference)
		}
	}
}

func TestRunMDSAOnly(t *testing.T) {
	opts := quick()
	opts.SkipDecode = true
	rep, err := Run(context.Background(), EngineTarget{Engine: &fakeEngine{stopAt: 3}}, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Targets) != 1 || rep.Latency.Reference != nil || rep.Decode != nil || rep.Aggregate != nil || len(rep.Warnings) != 0 {
		t.Fatalf("report: %+v", rep)
	}
	for _, c := range rep.Latency.Compare {
		if c.Reference != nil || c.Ratio != nil || c.MDSA == nil {
			t.Errorf("row without a reference: %+v", c)
		}
	}
	var text bytes.Buffer
	WriteText(&text, rep)
	for _, lvl := range rep.Throughput {
		if lvl.Compare[0].RoundRatios != nil {
			t.Errorf("round ratios without a reference: %v", lvl.Compare[0].RoundRatios)
		}
	}
	if strings.Contains(text.String(), "n/a") || strings.Contains(text.String(), "decode") || strings.Contains(text.String(), "  rounds ") {
		t.Errorf("text:\n%s", text.String())
	}
}

func TestRunFailures(t *testing.T) {
	ctx := context.Background()
	// A reference that fails every request fails the run at warm-up, with
	// its URL in the error.
	srv := newFakeServer(t, 5)
	srv.setFail(func(int64) bool { return true })
	ref, _ := NewOpenAITarget(OpenAIOptions{URL: srv.URL})
	_, err := Run(ctx, EngineTarget{Engine: &fakeEngine{stopAt: 5}}, ref, quick())
	if err == nil || !strings.Contains(err.Error(), srv.URL) || !strings.Contains(err.Error(), "fake overload") {
		t.Fatalf("all failing: %v", err)
	}
	// So does one that fails once warm: the latency phase fails.
	srv2 := newFakeServer(t, 5)
	srv2.setFail(func(n int64) bool { return n > 1 })
	ref2, _ := NewOpenAITarget(OpenAIOptions{URL: srv2.URL})
	_, err = Run(ctx, EngineTarget{Engine: &fakeEngine{stopAt: 5}}, ref2, quick())
	if err == nil || !strings.Contains(err.Error(), "latency phase") || !strings.Contains(err.Error(), srv2.URL) {
		t.Fatalf("failing after warm-up: %v", err)
	}
	// An engine that always fails, the same.
	_, err = Run(ctx, EngineTarget{Engine: &fakeEngine{fail: func(int64) bool { return true }}}, nil, quick())
	if err == nil || !strings.Contains(err.Error(), "mdsa engine") {
		t.Fatalf("failing engine: %v", err)
	}
	// A cancelled run stops with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Run(cctx, EngineTarget{Engine: &fakeEngine{stopAt: 5}}, nil, quick()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	// Bad options.
	for _, o := range []Options{{Clients: []int{0}}, {Requests: -1}, {Duration: -time.Second}, {Streams: -2}} {
		if _, err := Run(ctx, EngineTarget{Engine: &fakeEngine{}}, nil, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if _, err := Run(ctx, nil, nil, quick()); err == nil {
		t.Error("no target accepted")
	}
}

func TestRunCancelMidway(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	eng := &fakeEngine{stopAt: 2, fail: func(n int64) bool {
		if n == 20 {
			cancel()
		}
		return false
	}}
	opts := quick()
	opts.Duration = time.Hour // only cancellation ends the throughput phase
	if _, err := Run(ctx, EngineTarget{Engine: eng}, nil, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestPercentileAndRatio(t *testing.T) {

	if r := Ratio(ptr(3), ptr(2)); r == nil || *r != 1.5 {
		t.Fatalf("3/2: %v", r)
	}
	for _, c := range [][2]*float64{{nil, ptr(1)}, {ptr(1), nil}, {ptr(1), ptr(0)}, {ptr(math.Inf(1)), ptr(1)}, {ptr(math.NaN()), ptr(1)}} {
		if r := Ratio(c[0], c[1]); r != nil {
			t.Errorf("Ratio(%v, %v) = %v, want nil", c[0], c[1], *r)
		}
	}
	if !differ(14, 256) || differ(100, 95) || differ(0, 0) || !differ(0, 1) {
		t.Error("differ")
	}
	if num(nil) != "n/a" || num(ptr(1234.5)) != "1234" || num(ptr(12.345)) != "12.35" || num(ptr(0.01234)) != "0.0123" || num(ptr(0)) != "0.00" {
		t.Errorf("num: %s %s %s %s", num(ptr(1234.5)), num(ptr(12.345)), num(ptr(0.01234)), num(ptr(0)))
	}
}

func TestTally(t *testing.T) {
	var a, b tally
	a.add(Outcome{PromptTokens: 100, CachedTokens: 90, CompletionTokens: 11, Latency: 30 * time.Millisecond, FirstToken: 10 * time.Millisecond}, nil)
	a.add(Outcome{}, errors.New("first"))
	b.add(Outcome{}, errors.New("second"))
	b.add(Outcome{PromptTokens: 50, CompletionTokens: 1, Latency: 5 * time.Millisecond, FirstToken: 5 * time.Millisecond}, nil)
	a.merge(b)
	if a.ok != 2 || a.errs != 2 || a.firstErr != "first" || len(a.lat) != 2 {
		t.Fatalf("counts: %+v", a)
	}
	if a.evaluated() != 30 || a.mean(a.completion) != 6 {
		t.Errorf("evaluated %v, completion %v", a.evaluated(), a.mean(a.completion))
	}
	// Decode: 10 tokens after the first in 20 ms; a one-token answer adds nothing.
	if a.decodeTokens != 10 || a.decodeTime != 20*time.Millisecond || a.firstTokenN != 2 {
		t.Errorf("decode: %d tokens in %v, %d first tokens", a.decodeTokens, a.decodeTime, a.firstTokenN)
	}
}

func TestMessages(t *testing.T) {
	if n := len(SystemPrompt); n < 400 || n > 700 {
		t.Errorf("system prompt is %d bytes, want about 500", n)
	}
	if n := len(strings.Split(questionList, "\n")); n != NumQuestions {
		t.Fatalf("%d questions, NumQuestions %d", n, NumQuestions)
	}
	seen := map[string]bool{}
	for i := range NumQuestions {
		m := Messages(i)
		if len(m) != 2 || m[0].Role != "system" || m[0].Content != SystemPrompt || m[1].Role != "user" || seen[m[1].Content] {
			t.Fatalf("request %d: %+v", i, m)
		}
		seen[m[1].Content] = true
	}
	if Messages(NumQuestions)[1] != Messages(0)[1] || Messages(-1)[1] != Messages(NumQuestions - 1)[1] {
		t.Error("questions do not rotate")
	}
}

// recordTarget answers at once and keeps the user turn of every call.
type recordTarget struct {
	mu    sync.Mutex
	users []string
}

func (r *recordTarget) Name() string { return "record" }

func (r *recordTarget) Do(_ context.Context, c Call) (Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(c.Messages) != 2 || c.Messages[0].Content != SystemPrompt {
		return Outcome{}, errors.New("not the benchmark's chat")
	}
	r.users = append(r.users, c.Messages[1].Content)
	return Outcome{PromptTokens: 10, CompletionTokens: 2, Latency: time.Millisecond}, nil
}

func (r *recordTarget) CPUTime() (time.Duration, error) { return 0, nil }

// With Unique no question is asked twice in a run, by either target;
// without it the 20 questions repeat.
func TestRunUnique(t *testing.T) {
	for _, unique := range []bool{false, true} {
		a, b := &recordTarget{}, &recordTarget{}
		opts := quick()
		opts.Requests, opts.DecodeAnswers, opts.Unique = NumQuestions+5, 2, unique
		rep, err := Run(context.Background(), a, b, opts)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, u := range append(a.users, b.users...) {
			seen[u]++
		}
		repeated := 0
		for _, n := range seen {
			if n > 1 {
				repeated++
			}
		}
		switch {
		case unique && (repeated != 0 || !rep.Settings.Unique):
			t.Errorf("unique: %d questions asked more than once (settings %+v)", repeated, rep.Settings)
		case !unique && repeated == 0:
			t.Error("without unique the questions do not repeat")
		}
		var text bytes.Buffer
		WriteText(&text, rep)
		if got := strings.Contains(text.String(), "never asked before"); got != unique {
			t.Errorf("unique %v: text says %q", unique, strings.SplitN(text.String(), "\n", 5)[3])
		}
	}
	if m := UniqueMessages(7); !strings.HasPrefix(m[1].Content, "Request 7. ") || !strings.HasSuffix(m[1].Content, Messages(7)[1].Content) {
		t.Errorf("UniqueMessages(7): %q", m[1].Content)
	}
}
