// Package enginebench compares MDSA's embedded engine with a reference
// OpenAI-compatible server (llama.cpp's llama-server) running the same
// model file, in one run.
//
// Run measures, for each target: single-request latency (sequential
// requests), closed-loop throughput at several client counts (requests/s,
// latency, prompt tokens evaluated per request, CPU-seconds per request of
// the serving process), decode speed of one long streamed answer, and
// aggregate generation speed with one and with several concurrent streams.
// Every request carries the same chat messages for both targets: a finance
// assistant's system prompt and one of NumQuestions user questions in turn,
// so that the prefix is shared and the tail differs, as in real traffic;
// decoding is greedy.
//
// The targets are measured alternately, never at the same time: request by
// request in the latency phase, and in rounds ordered A B B A ... elsewhere,
// so that machine noise and drift hit both alike. Each figure is reported
// for both targets with the ratio MDSA / reference and whether higher or
// lower is better.
package enginebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
	istats "github.com/mdsa-go/mdsa/internal/stats"
)

// Defaults applied by Run to zero-valued Options fields.
const (
	DefaultRequests       = 30
	DefaultWarmupRequests = 3
	DefaultDuration       = 10 * time.Second
	DefaultRounds         = 2
	DefaultDecodeAnswers  = 6
	DefaultMaxTokens      = 16
	DefaultDecodeTokens   = 256
	DefaultStreams        = 8
	DefaultSettle         = time.Second
)

// DefaultClients returns the closed-loop client counts of the throughput
// phase when Options do not say.
func DefaultClients() []int { return []int{1, 4, 8} }

// completionTolerance is how far apart (relative) the completion tokens of
// the two targets may be before the report warns that their speeds were
// measured over different lengths.
const completionTolerance = 0.10

// Options configure Run.
type Options struct {
	// Requests is the number of measured sequential requests per target
	// in the latency phase, after WarmupRequests unmeasured ones (0 means
	// DefaultWarmupRequests, a negative number none).
	Requests, WarmupRequests int
	// Clients are the client counts of the throughput phase.
	Clients []int
	// Duration is the measured time per target and client count, split
	// over Rounds rounds; each target is first warmed up for Warmup at
	// each count (0: Duration/5, between 100 ms and 1 s).
	Duration, Warmup time.Duration
	// Rounds is the number of alternating rounds per target in the
	// throughput, decode and aggregate phases.
	Rounds int
	// MaxTokens is max_tokens of the latency and throughput phases.
	MaxTokens int
	// DecodeTokens is max_tokens of the decode and aggregate phases.
	DecodeTokens int
	// DecodeAnswers is the number of answers per target in the decode
	// phase, alternating; their tokens and times are summed.
	DecodeAnswers int
	// Streams is the number of concurrent streams in the aggregate phase,
	// compared with one stream.
	Streams int
	// SkipDecode leaves out the decode and aggregate phases.
	SkipDecode bool
	// Unique gives every request a question never asked before in the run
	// (UniqueMessages): engines can then reuse the system prompt only, not
	// a repeated question's whole prompt.
	Unique bool
	// Settle bounds the wait, before each turn of a target, for the other
	// target's process to go quiet (0: DefaultSettle; negative: no wait).
	// llama-server's threads keep a core busy for about 90 ms after each
	// answer; without the wait that spin would compete with the next
	// target's first request.
	Settle time.Duration
	// Progress, when not nil, receives one line per step.
	Progress io.Writer
}

func (o *Options) defaults() error {
	setDefault(&o.Requests, DefaultRequests)
	setDefault(&o.Rounds, DefaultRounds)
	setDefault(&o.MaxTokens, DefaultMaxTokens)
	setDefault(&o.DecodeTokens, DefaultDecodeTokens)
	setDefault(&o.DecodeAnswers, DefaultDecodeAnswers)
	setDefault(&o.Streams, DefaultStreams)
	switch {
	case o.WarmupRequests == 0:
		o.WarmupRequests = DefaultWarmupRequests
	case o.WarmupRequests < 0:
		o.WarmupRequests = 0
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Warmup == 0 {
		o.Warmup = min(max(o.Duration/5, 100*time.Millisecond), time.Second)
	}
	if len(o.Clients) == 0 {
		o.Clients = DefaultClients()
	}
	if o.Settle == 0 {
		o.Settle = DefaultSettle
	}
	switch {
	case o.Requests < 1, o.Rounds < 1, o.MaxTokens < 1, o.DecodeTokens < 1, o.DecodeAnswers < 1, o.Streams < 1:
		return fmt.Errorf("enginebench: requests %d, rounds %d, max tokens %d, decode tokens %d, decode answers %d, streams %d: want each >= 1",
			o.Requests, o.Rounds, o.MaxTokens, o.DecodeTokens, o.DecodeAnswers, o.Streams)
	case o.Duration < 0 || o.Warmup < 0:
		return fmt.Errorf("enginebench: duration %s, warm-up %s: want > 0", o.Duration, o.Warmup)
	}
	for _, c := range o.Clients {
		if c < 1 || c > 1024 {
			return fmt.Errorf("enginebench: %d clients: want 1 to 1024", c)
		}
	}
	return nil
}

func setDefault(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

// Better says which way a figure improves.
const (
	Higher = "higher"
	Lower  = "lower"
	Info   = "" // for information (a count), no direction
)

// Compare is one figure of both targets.
type Compare struct {
	Figure string `json:"figure"`
	// MDSA and Reference are the figure of each target; nil means not
	// available (no reference, or CPU time not measurable).
	MDSA      *float64 `json:"mdsa"`
	Reference *float64 `json:"reference,omitempty"`
	// Ratio is MDSA / Reference.
	Ratio *float64 `json:"ratio,omitempty"`
	// Better is "higher" or "lower" (which way the figure, and so the
	// ratio, improves), or "" for a count given for information.
	Better string `json:"better,omitempty"`
	// RoundRatios are the ratios of each alternating round (each answer
	// pair in the decode phase), for the headline figures of a run with a
	// reference and two rounds or more: how far the ratio moves within
	// one run on this machine.
	RoundRatios []float64 `json:"round_ratios,omitempty"`
}

// roundRatios returns mdsa[k] / ref[k] for each k where both are
// positive, or nil when there is no reference or fewer than two.
func roundRatios(mdsa, ref []float64) []float64 {
	var out []float64
	for k := range min(len(mdsa), len(ref)) {
		if mdsa[k] > 0 && ref[k] > 0 {
			out = append(out, mdsa[k]/ref[k])
		}
	}
	if len(out) < 2 {
		return nil
	}
	return out
}

// rate is n per d, 0 for no time.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// TargetInfo describes a measured target.
type TargetInfo struct {
	Role string `json:"role"` // "mdsa" or "reference"
	Name string `json:"name"`
	URL  string `json:"url,omitempty"`
	// PID and Command identify the reference's process, when found.
	PID     int    `json:"pid,omitempty"`
	Command string `json:"command,omitempty"`
	// CPUNote says why CPU time is not available ("" when it is).
	CPUNote string `json:"cpu_note,omitempty"`
}

// Counts are the requests of one target in one phase.
type Counts struct {
	Requests   int    `json:"requests"` // successful
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// LatencyStats is the latency phase of one target.
type LatencyStats struct {
	Counts
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	MeanMS float64 `json:"mean_ms"`
	// Means per request.
	PromptTokens     float64 `json:"prompt_tokens"`
	CachedTokens     float64 `json:"cached_tokens"`
	EvaluatedTokens  float64 `json:"evaluated_tokens"`
	CompletionTokens float64 `json:"completion_tokens"`
}

// LatencyPhase is the single-request latency phase.
type LatencyPhase struct {
	Requests  int           `json:"requests"` // per target
	MaxTokens int           `json:"max_tokens"`
	MDSA      LatencyStats  `json:"mdsa"`
	Reference *LatencyStats `json:"reference,omitempty"`
	Compare   []Compare     `json:"compare"`
}

// ThroughputStats is one target at one client count.
type ThroughputStats struct {
	Counts
	ElapsedS float64 `json:"elapsed_s"`
	RPS      float64 `json:"rps"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
	// Means per request.
	PromptTokens     float64 `json:"prompt_tokens"`
	CachedTokens     float64 `json:"cached_tokens"`
	EvaluatedTokens  float64 `json:"evaluated_tokens"`
	CompletionTokens float64 `json:"completion_tokens"`
	// CPUSecondsPerRequest is the serving process's CPU time over the
	// measured rounds divided by the successful requests; nil when not
	// available (see TargetInfo.CPUNote).
	CPUSecondsPerRequest *float64 `json:"cpu_s_per_request"`
}

// ThroughputLevel is the throughput phase at one client count.
type ThroughputLevel struct {
	Clients   int              `json:"clients"`
	MDSA      ThroughputStats  `json:"mdsa"`
	Reference *ThroughputStats `json:"reference,omitempty"`
	Compare   []Compare        `json:"compare"`
}

// DecodeStats is the decode phase of one target.
type DecodeStats struct {
	Counts
	// CompletionTokens is the mean number of tokens an answer had: what
	// the target actually produced, which may stop short of max_tokens.
	CompletionTokens float64 `json:"completion_tokens"`
	FirstTokenMS     float64 `json:"first_token_ms"` // mean
	// TokensPerSecond is the tokens after the first divided by the time
	// after the first token arrived, over all answers.
	TokensPerSecond float64 `json:"tokens_per_s"`
}

// DecodePhase is the decode speed of one stream.
type DecodePhase struct {
	MaxTokens int          `json:"max_tokens"`
	MDSA      DecodeStats  `json:"mdsa"`
	Reference *DecodeStats `json:"reference,omitempty"`
	Compare   []Compare    `json:"compare"`
}

// StreamStats is one target answering Streams requests at once.
type StreamStats struct {
	Counts
	Streams          int     `json:"streams"`
	CompletionTokens float64 `json:"completion_tokens"` // mean per answer
	ElapsedS         float64 `json:"elapsed_s"`
	// TokensPerSecond is all completion tokens divided by the wall time.
	TokensPerSecond float64 `json:"tokens_per_s"`
}

// AggregateStats is the aggregate phase of one target.
type AggregateStats struct {
	One  StreamStats `json:"one"`
	Many StreamStats `json:"many"`
	// Gain is Many.TokensPerSecond / One.TokensPerSecond.
	Gain float64 `json:"gain"`
}

// AggregatePhase is the aggregate generation speed with one stream and
// with Streams concurrent streams.
type AggregatePhase struct {
	Streams   int             `json:"streams"`
	MaxTokens int             `json:"max_tokens"`
	MDSA      AggregateStats  `json:"mdsa"`
	Reference *AggregateStats `json:"reference,omitempty"`
	Compare   []Compare       `json:"compare"`
}

// Setup describes what was measured; Run leaves it to the caller.
type Setup struct {
	ModelFile   string `json:"model_file"`
	Model       string `json:"model"`
	Synthetic   bool   `json:"synthetic"`
	Cores       int    `json:"cores"`
	Threads     int    `json:"threads"`
	ContextSize int    `json:"context_size"`
	Parallel    int    `json:"parallel"`
	GPULayers   int    `json:"gpu_layers"`
}

// Settings are the Options a run used.
type Settings struct {
	Requests          int     `json:"requests"`
	WarmupRequests    int     `json:"warmup_requests"`
	Clients           []int   `json:"clients"`
	DurationS         float64 `json:"duration_s"`
	WarmupS           float64 `json:"warmup_s"`
	Rounds            int     `json:"rounds"`
	MaxTokens         int     `json:"max_tokens"`
	DecodeTokens      int     `json:"decode_tokens"`
	DecodeAnswers     int     `json:"decode_answers"`
	Streams           int     `json:"streams"`
	SystemPromptBytes int     `json:"system_prompt_bytes"`
	Questions         int     `json:"questions"`
	// Unique: every request's question was new (Options.Unique).
	Unique bool `json:"unique,omitempty"`
}

// Report is everything a run measured.
type Report struct {
	Setup      Setup             `json:"setup"`
	Settings   Settings          `json:"settings"`
	Targets    []TargetInfo      `json:"targets"`
	Latency    LatencyPhase      `json:"latency"`
	Throughput []ThroughputLevel `json:"throughput"`
	Decode     *DecodePhase      `json:"decode,omitempty"`
	Aggregate  *AggregatePhase   `json:"aggregate,omitempty"`
	// Warnings are things a reader must know to trust the figures.
	Warnings []string `json:"warnings,omitempty"`
}

// runner holds one run's state.
type runner struct {
	opts    Options
	targets []Target // mdsa, then the reference if any
	cpuOK   []bool
	asked   atomic.Int64 // requests made, numbering them with Options.Unique
}

// messages returns the chat of the i-th request of a phase: Messages(i), or
// with Options.Unique a question never asked before in the run.
func (r *runner) messages(i int) []engine.Message {
	if r.opts.Unique {
		return UniqueMessages(int(r.asked.Add(1)))
	}
	return Messages(i)
}

// Run measures mdsa, and ref unless it is nil, and returns the report.
// It fails when ctx ends, or when every request of a target in a phase
// failed (the error names the target); fewer errors are counted in the
// report.
func Run(ctx context.Context, mdsa, ref Target, opts Options) (Report, error) {
	if mdsa == nil {
		return Report{}, errors.New("enginebench: no MDSA target")
	}
	if err := opts.defaults(); err != nil {
		return Report{}, err
	}
	r := &runner{opts: opts, targets: []Target{mdsa}}
	if ref != nil {
		r.targets = append(r.targets, ref)
	}
	rep := Report{Settings: Settings{
		Requests: opts.Requests, WarmupRequests: opts.WarmupRequests, Clients: slices.Clone(opts.Clients),
		DurationS: opts.Duration.Seconds(), WarmupS: opts.Warmup.Seconds(), Rounds: opts.Rounds,
		MaxTokens: opts.MaxTokens, DecodeTokens: opts.DecodeTokens, DecodeAnswers: opts.DecodeAnswers, Streams: opts.Streams,
		SystemPromptBytes: len(SystemPrompt), Questions: NumQuestions, Unique: opts.Unique,
	}}
	for i, t := range r.targets {
		info := describe(t, []string{"mdsa", "reference"}[i])
		r.cpuOK = append(r.cpuOK, info.CPUNote == "")
		rep.Targets = append(rep.Targets, info)
	}

	var err error
	if rep.Latency, err = r.latency(ctx); err != nil {
		return rep, err
	}
	for _, c := range opts.Clients {
		lvl, err := r.throughput(ctx, c)
		if err != nil {
			return rep, err
		}
		rep.Throughput = append(rep.Throughput, lvl)
	}
	if !opts.SkipDecode {
		d, err := r.decode(ctx)
		if err != nil {
			return rep, err
		}
		rep.Decode = &d
		a, err := r.aggregate(ctx)
		if err != nil {
			return rep, err
		}
		rep.Aggregate = &a
	}
	rep.Warnings = warnings(rep)
	return rep, nil
}

// describe returns what is known of t.
func describe(t Target, role string) TargetInfo {
	info := TargetInfo{Role: role, Name: t.Name()}
	if o, ok := t.(*OpenAITarget); ok {
		info.URL, info.PID, info.Command = o.URL(), o.PID(), o.Command()
	}
	if _, err := t.CPUTime(); err != nil {
		info.CPUNote = err.Error()
	}
	return info
}

// settleTick is the window over which settle measures a process's CPU;
// a process that used under a fifth of it is quiet. /proc counts CPU time
// in ticks of 10 ms, so a shorter window could read 0 for a process busy
// half the time.
const settleTick = 25 * time.Millisecond

// settle waits until every target but ti whose CPU time is known has gone
// quiet, for at most Options.Settle each, so that what one target left
// running (spinning threads, work after its answer) does not compete with
// ti's turn.
func (r *runner) settle(ctx context.Context, ti int) {
	if r.opts.Settle < 0 {
		return
	}
	for oi, t := range r.targets {
		if oi == ti || !r.cpuOK[oi] {
			continue
		}
		prev, err := t.CPUTime()
		for deadline := time.Now().Add(r.opts.Settle); err == nil && ctx.Err() == nil && time.Now().Before(deadline); {
			time.Sleep(settleTick)
			var cur time.Duration
			if cur, err = t.CPUTime(); err == nil && cur-prev < settleTick/5 {
				break
			}
			prev = cur
		}
	}
}

func (r *runner) progress(format string, args ...any) {
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, "bench engine: "+format+"\n", args...)
	}
}

// order returns the targets' indexes for round k: A B, then B A, and so on,
// so that a steady drift favours neither target.
func (r *runner) order(k int) []int {
	if len(r.targets) == 1 {
		return []int{0}
	}
	if k%2 == 0 {
		return []int{0, 1}
	}
	return []int{1, 0}
}

// allFailed is the error of a phase in which every request of t failed.
func allFailed(t Target, phase string, tl tally) error {
	if tl.ok > 0 || tl.errs == 0 {
		return nil
	}
	return fmt.Errorf("enginebench: %s: all %d requests of the %s failed; the first: %s", t.Name(), tl.errs, phase, tl.firstErr)
}

// latency runs the sequential phase, alternating request by request.
func (r *runner) latency(ctx context.Context) (LatencyPhase, error) {
	o := r.opts
	r.progress("single-request latency: %d warm-up and %d measured requests per target", o.WarmupRequests, o.Requests)
	tallies := make([]tally, len(r.targets))
	warm := make([]tally, len(r.targets))
	for i := range o.WarmupRequests + o.Requests {
		measured := i >= o.WarmupRequests
		for _, ti := range r.order(i) {
			r.settle(ctx, ti)
			out, err := r.targets[ti].Do(ctx, Call{Messages: r.messages(i), MaxTokens: o.MaxTokens})
			if cerr := ctx.Err(); cerr != nil {
				return LatencyPhase{}, fmt.Errorf("enginebench: latency phase: %w", cerr)
			}
			if measured {
				tallies[ti].add(out, err)
			} else {
				warm[ti].add(out, err)
			}
		}
		if i == o.WarmupRequests-1 { // fail fast on a target that never answers
			for ti, t := range r.targets {
				if err := allFailed(t, "warm-up", warm[ti]); err != nil {
					return LatencyPhase{}, err
				}
			}
		}
	}
	ph := LatencyPhase{Requests: o.Requests, MaxTokens: o.MaxTokens}
	stats := make([]LatencyStats, len(r.targets))
	for ti, t := range r.targets {
		if err := allFailed(t, "latency phase", tallies[ti]); err != nil {
			return ph, err
		}
		tl := &tallies[ti]
		var sum time.Duration
		for _, d := range tl.lat {
			sum += d
		}
		stats[ti] = LatencyStats{
			Counts: counts(tl),
			P50MS:  ms(istats.Percentile(tl.lat, 0.50)), P99MS: ms(istats.Percentile(tl.lat, 0.99)),
			MeanMS:       div(ms(sum), float64(tl.ok)),
			PromptTokens: tl.mean(tl.prompt), CachedTokens: tl.mean(tl.cached),
			EvaluatedTokens: tl.evaluated(), CompletionTokens: tl.mean(tl.completion),
		}
	}
	ph.MDSA = stats[0]
	if len(stats) > 1 {
		ph.Reference = &stats[1]
	}
	ph.Compare = compare(stats, []figure[LatencyStats]{
		{"p50 ms", Lower, func(s LatencyStats) *float64 { return ptr(s.P50MS) }},
		{"p99 ms", Lower, func(s LatencyStats) *float64 { return ptr(s.P99MS) }},
		{"prompt tokens / request", Info, func(s LatencyStats) *float64 { return ptr(s.PromptTokens) }},
		{"prompt tokens evaluated / request", Lower, func(s LatencyStats) *float64 { return ptr(s.EvaluatedTokens) }},
		{"completion tokens / request", Info, func(s LatencyStats) *float64 { return ptr(s.CompletionTokens) }},
	})
	return ph, nil
}

func counts(tl *tally) Counts {
	return Counts{Requests: tl.ok, Errors: tl.errs, FirstError: tl.firstErr}
}

// figure extracts one compared figure from a target's stats.
type figure[S any] struct {
	name, better string
	get          func(S) *float64
}

// compare builds the comparison rows of stats (MDSA first, then the
// reference if any).
func compare[S any](stats []S, figs []figure[S]) []Compare {
	out := make([]Compare, 0, len(figs))
	for _, f := range figs {
		c := Compare{Figure: f.name, Better: f.better, MDSA: f.get(stats[0])}
		if len(stats) > 1 {
			c.Reference = f.get(stats[1])
			c.Ratio = Ratio(c.MDSA, c.Reference)
		}
		out = append(out, c)
	}
	return out
}

// throughput runs the closed-loop phase at c clients.
func (r *runner) throughput(ctx context.Context, c int) (ThroughputLevel, error) {
	o := r.opts
	call := func(i int) Call { return Call{Messages: r.messages(i), MaxTokens: o.MaxTokens} }
	for _, ti := range r.order(0) {
		r.progress("throughput, %d clients: warming up %s for %s", c, r.targets[ti].Name(), o.Warmup)
		r.settle(ctx, ti)
		if _, _, err := closedLoop(ctx, r.targets[ti], c, o.Warmup, call); err != nil {
			return ThroughputLevel{}, err
		}
	}
	n := len(r.targets)
	tallies := make([]tally, n)
	elapsed := make([]time.Duration, n)
	cpu := make([]time.Duration, n)
	cpuOK := append([]bool(nil), r.cpuOK...)
	perRound := make([][]float64, n) // requests/s of each round
	round := o.Duration / time.Duration(o.Rounds)
	for k := range o.Rounds {
		for _, ti := range r.order(k) {
			t := r.targets[ti]
			r.progress("throughput, %d clients: %s, round %d/%d (%s)", c, t.Name(), k+1, o.Rounds, round)
			r.settle(ctx, ti)
			c0, err0 := t.CPUTime()
			tl, el, err := closedLoop(ctx, t, c, round, call)
			if err != nil {
				return ThroughputLevel{}, err
			}
			c1, err1 := t.CPUTime()
			if err0 != nil || err1 != nil || c1 < c0 {
				cpuOK[ti] = false
			}
			cpu[ti] += c1 - c0
			perRound[ti] = append(perRound[ti], rate(int64(tl.ok), el))
			tallies[ti].merge(tl)
			elapsed[ti] += el
		}
	}
	lvl := ThroughputLevel{Clients: c}
	stats := make([]ThroughputStats, n)
	for ti, t := range r.targets {
		tl := &tallies[ti]
		if err := allFailed(t, fmt.Sprintf("throughput phase at %d clients", c), *tl); err != nil {
			return lvl, err
		}
		s := ThroughputStats{
			Counts:   counts(tl),
			ElapsedS: elapsed[ti].Seconds(),
			RPS:      div(float64(tl.ok), elapsed[ti].Seconds()),
			P50MS:    ms(istats.Percentile(tl.lat, 0.50)), P99MS: ms(istats.Percentile(tl.lat, 0.99)),
			PromptTokens: tl.mean(tl.prompt), CachedTokens: tl.mean(tl.cached),
			EvaluatedTokens: tl.evaluated(), CompletionTokens: tl.mean(tl.completion),
		}
		if cpuOK[ti] && tl.ok > 0 {
			s.CPUSecondsPerRequest = ptr(cpu[ti].Seconds() / float64(tl.ok))
		}
		stats[ti] = s
	}
	lvl.MDSA = stats[0]
	if n > 1 {
		lvl.Reference = &stats[1]
	}
	lvl.Compare = compare(stats, []figure[ThroughputStats]{
		{"requests/s", Higher, func(s ThroughputStats) *float64 { return ptr(s.RPS) }},
		{"p50 ms", Lower, func(s ThroughputStats) *float64 { return ptr(s.P50MS) }},
		{"p99 ms", Lower, func(s ThroughputStats) *float64 { return ptr(s.P99MS) }},
		{"prompt tokens evaluated / request", Lower, func(s ThroughputStats) *float64 { return ptr(s.EvaluatedTokens) }},
		{"CPU s / request", Lower, func(s ThroughputStats) *float64 { return s.CPUSecondsPerRequest }},
	})
	if n > 1 {
		lvl.Compare[0].RoundRatios = roundRatios(perRound[0], perRound[1])
	}
	return lvl, nil
}

// closedLoop has c clients send calls back to back until d has passed;
// calls started before then are waited for and counted. It returns the
// outcomes and the time from the start to the last answer.
func closedLoop(ctx context.Context, t Target, c int, d time.Duration, call func(int) Call) (tally, time.Duration, error) {
	var (
		mu    sync.Mutex
		total tally
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for range c {
		wg.Go(func() {
			var mine tally
			for ctx.Err() == nil && time.Now().Before(end) {
				out, err := t.Do(ctx, call(int(next.Add(1)-1)))
				if ctx.Err() != nil {
					break
				}
				mine.add(out, err)
			}
			mu.Lock()
			total.merge(mine)
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start)
	if err := ctx.Err(); err != nil {
		return total, el, fmt.Errorf("enginebench: %s at %d clients: %w", t.Name(), c, err)
	}
	return total, el, nil
}

// decodeCall is a long streamed answer, past end-of-generation where the
// target can do that.
func (r *runner) decodeCall(i int) Call {
	return Call{Messages: r.messages(i), MaxTokens: r.opts.DecodeTokens, Stream: true, IgnoreEOS: true}
}

// decode measures the decode speed of one stream, DecodeAnswers answers
// per target.
func (r *runner) decode(ctx context.Context) (DecodePhase, error) {
	o := r.opts
	n := len(r.targets)
	tallies := make([]tally, n)
	perAnswer := make([][]float64, n) // decode tokens/s of each answer (0: failed)
	for k := range o.DecodeAnswers {
		for _, ti := range r.order(k) {
			t := r.targets[ti]
			r.progress("decode: %s, answer %d/%d (max_tokens %d)", t.Name(), k+1, o.DecodeAnswers, o.DecodeTokens)
			r.settle(ctx, ti)
			out, err := t.Do(ctx, r.decodeCall(k))
			if cerr := ctx.Err(); cerr != nil {
				return DecodePhase{}, fmt.Errorf("enginebench: decode phase: %w", cerr)
			}
			var one tally
			one.add(out, err)
			perAnswer[ti] = append(perAnswer[ti], rate(one.decodeTokens, one.decodeTime))
			tallies[ti].merge(one)
		}
	}
	ph := DecodePhase{MaxTokens: o.DecodeTokens}
	stats := make([]DecodeStats, n)
	for ti, t := range r.targets {
		tl := &tallies[ti]
		if err := allFailed(t, "decode phase", *tl); err != nil {
			return ph, err
		}
		stats[ti] = DecodeStats{
			Counts:           counts(tl),
			CompletionTokens: tl.mean(tl.completion),
			FirstTokenMS:     div(ms(tl.firstToken), float64(tl.firstTokenN)),
			TokensPerSecond:  div(float64(tl.decodeTokens), tl.decodeTime.Seconds()),
		}
	}
	ph.MDSA = stats[0]
	if n > 1 {
		ph.Reference = &stats[1]
	}
	ph.Compare = compare(stats, []figure[DecodeStats]{
		{"decode tokens/s", Higher, func(s DecodeStats) *float64 { return ptr(s.TokensPerSecond) }},
		{"first token ms", Lower, func(s DecodeStats) *float64 { return ptr(s.FirstTokenMS) }},
		{"completion tokens / answer", Info, func(s DecodeStats) *float64 { return ptr(s.CompletionTokens) }},
	})
	if n > 1 {
		ph.Compare[0].RoundRatios = roundRatios(perAnswer[0], perAnswer[1])
	}
	return ph, nil
}

// aggregate measures the generation speed of one stream and of Streams
// concurrent streams.
func (r *runner) aggregate(ctx context.Context) (AggregatePhase, error) {
	o := r.opts
	n := len(r.targets)
	stats := make([]AggregateStats, n)
	var perRound [2][][]float64 // [1 stream, many][target]: tokens/s of each round
	for si, streams := range []int{1, o.Streams} {
		perRound[si] = make([][]float64, n)
		tallies := make([]tally, n)
		elapsed := make([]time.Duration, n)
		for k := range o.Rounds {
			for _, ti := range r.order(k) {
				t := r.targets[ti]
				r.progress("aggregate: %s, %d stream(s), round %d/%d", t.Name(), streams, k+1, o.Rounds)
				r.settle(ctx, ti)
				tl, el, err := r.batch(ctx, t, streams, k*streams)
				if err != nil {
					return AggregatePhase{}, err
				}
				perRound[si][ti] = append(perRound[si][ti], rate(tl.completion, el))
				tallies[ti].merge(tl)
				elapsed[ti] += el
			}
		}
		for ti, t := range r.targets {
			tl := &tallies[ti]
			if err := allFailed(t, fmt.Sprintf("aggregate phase with %d streams", streams), *tl); err != nil {
				return AggregatePhase{}, err
			}
			s := StreamStats{
				Counts: counts(tl), Streams: streams,
				CompletionTokens: tl.mean(tl.completion),
				ElapsedS:         elapsed[ti].Seconds(),
				TokensPerSecond:  div(float64(tl.completion), elapsed[ti].Seconds()),
			}
			if streams == 1 {
				stats[ti].One = s
			} else {
				stats[ti].Many = s
			}
		}
	}
	for ti := range stats {
		stats[ti].Gain = div(stats[ti].Many.TokensPerSecond, stats[ti].One.TokensPerSecond)
	}
	ph := AggregatePhase{Streams: o.Streams, MaxTokens: o.DecodeTokens, MDSA: stats[0]}
	if n > 1 {
		ph.Reference = &stats[1]
	}
	many := fmt.Sprintf("%d streams", o.Streams)
	ph.Compare = compare(stats, []figure[AggregateStats]{
		{"tokens/s, 1 stream", Higher, func(s AggregateStats) *float64 { return ptr(s.One.TokensPerSecond) }},
		{"tokens/s, " + many, Higher, func(s AggregateStats) *float64 { return ptr(s.Many.TokensPerSecond) }},
		{"gain " + many + " / 1", Higher, func(s AggregateStats) *float64 { return ptr(s.Gain) }},
		{"completion tokens / answer, " + many, Info, func(s AggregateStats) *float64 { return ptr(s.Many.CompletionTokens) }},
	})
	if n > 1 {
		ph.Compare[0].RoundRatios = roundRatios(perRound[0][0], perRound[0][1])
		ph.Compare[1].RoundRatios = roundRatios(perRound[1][0], perRound[1][1])
	}
	return ph, nil
}

// batch sends streams decode calls to t at once and waits for all of them.
func (r *runner) batch(ctx context.Context, t Target, streams, first int) (tally, time.Duration, error) {
	var (
		mu    sync.Mutex
		total tally
		wg    sync.WaitGroup
	)
	start := time.Now()
	for j := range streams {
		wg.Go(func() {
			out, err := t.Do(ctx, r.decodeCall(first+j))
			mu.Lock()
			total.add(out, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start)
	if err := ctx.Err(); err != nil {
		return total, el, fmt.Errorf("enginebench: %s, %d streams: %w", t.Name(), streams, err)
	}
	return total, el, nil
}

// warnings lists what a reader must know to trust the figures: completion
// lengths that differ between the targets by more than
// completionTolerance, which makes their speeds cover different lengths.
func warnings(rep Report) []string {
	var w []string
	check := func(phase string, a, b float64, why string) {
		if differ(a, b) {
			w = append(w, fmt.Sprintf("%s: mdsa produced %.1f completion tokens per answer and the reference %.1f, more than %.0f%% apart: %s",
				phase, a, b, 100*completionTolerance, why))
		}
	}
	const eos = "the model stops at an end-of-generation token, which mdsa's engine honours and the reference was asked to ignore, so the speeds cover different lengths"
	if rep.Latency.Reference != nil {
		check("single request", rep.Latency.MDSA.CompletionTokens, rep.Latency.Reference.CompletionTokens,
			"the answers differ (not the same model file, or not greedy?)")
	}
	if d := rep.Decode; d != nil && d.Reference != nil {
		check("decode", d.MDSA.CompletionTokens, d.Reference.CompletionTokens, eos)
	}
	if a := rep.Aggregate; a != nil && a.Reference != nil {
		check(fmt.Sprintf("aggregate, %d streams", a.Streams), a.MDSA.Many.CompletionTokens, a.Reference.Many.CompletionTokens, eos)
	}
	return w
}

// differ reports whether a and b are more than completionTolerance apart,
// relative to the larger.
func differ(a, b float64) bool {
	m := math.Max(math.Abs(a), math.Abs(b))
	return m > 0 && math.Abs(a-b)/m > completionTolerance
}
