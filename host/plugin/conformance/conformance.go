package conformance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Names of the checks, in the order Check runs them.
const (
	CheckDescribe = "describe"
	CheckPrompt   = "prompt"
	CheckValidate = "validate"
	CheckHandle   = "handle"
	CheckTools    = "tools"
	CheckSandbox  = "sandbox"
	CheckLatency  = "latency"
)

// Defaults of Options.
const (
	// DefaultMaxCallLatency is the default budget of the median
	// prompt+validate pair.
	DefaultMaxCallLatency = 5 * time.Millisecond
	// DefaultSlowCall is the default budget of any single call.
	DefaultSlowCall = 200 * time.Millisecond
	// DefaultLatencyCalls is the default number of measured
	// prompt+validate pairs.
	DefaultLatencyCalls = 50
)

// Minimums the describe check asks of a manifest.
const (
	MinKeywords = 3
	MinExamples = 5
)

// DefaultLimits are the sandbox limits Check applies to every zero field of
// Options.Limits: stricter than the host's defaults (plugin.Default*), so a
// plugin that passes has headroom in a default deployment.
func DefaultLimits() plugin.Limits {
	return plugin.Limits{
		CallTimeout:    time.Second,
		MaxMemoryBytes: 64 << 20,
		MaxInputBytes:  1 << 20,
		MaxOutputBytes: 256 << 10,
		MaxHostCalls:   8,
		MaxTokens:      4096,
		MaxModuleBytes: 64 << 20,
		// Throttling off: the budgets are set against the plugin's own
		// speed, not the host's pacing of long calls.
		ThrottleShare: 1,
	}
}

// Options adjust Check. The zero value is ready to use.
type Options struct {
	// Limits are the sandbox caps the plugin is loaded with (they override
	// the Runtime's). A zero field takes the value of DefaultLimits.
	Limits plugin.Limits
	// Config is the plugin's Extism configuration (config_get).
	Config map[string]string
	// Samples are extra queries for the prompt check (and handle), e.g.
	// real user questions of the plugin's domain.
	Samples []string
	// MaxCallLatency is the budget of the median prompt+validate pair of
	// the latency check. Default DefaultMaxCallLatency.
	MaxCallLatency time.Duration
	// SlowCall is the budget of any single prompt, validate, handle or
	// tool call (16 KB and 64 KB inputs included); a slower call fails its
	// check.
	// Calls are timed by the plugin's own CPU time (plugin.Stats.GuestTime,
	// at most the wall time), so neither a busy machine nor the host's
	// throttling of long calls fails a plugin. Default DefaultSlowCall.
	SlowCall time.Duration
	// LatencyCalls is the number of prompt+validate pairs the latency check
	// measures (after a short warm-up). Default DefaultLatencyCalls.
	LatencyCalls int

	// quick leaves out the 16 KB and 64 KB inputs (CheckLoaded).
	quick bool
	// CacheDir is the wazero compilation cache directory of the tools and
	// sandbox checks' own probe instance, which feeds exports raw,
	// malformed input and unknown tool names (something a plugin.Plugin
	// never sends). Pass the Runtime's
	// plugin.Options.CacheDir so the module is compiled only once. Empty:
	// the probe compiles the module again, in memory.
	CacheDir string
}

func (o Options) withDefaults() Options {
	o.Limits = DefaultLimits().Override(o.Limits)
	if o.MaxCallLatency <= 0 {
		o.MaxCallLatency = DefaultMaxCallLatency
	}
	if o.SlowCall <= 0 {
		o.SlowCall = DefaultSlowCall
	}
	if o.LatencyCalls <= 0 {
		o.LatencyCalls = DefaultLatencyCalls
	}
	o.Config = maps.Clone(o.Config)
	o.Samples = slices.Clone(o.Samples)
	return o
}

// Report is the outcome of Check.
type Report struct {
	// Plugin is the manifest name, or Check's name argument when the
	// module did not load.
	Plugin string `json:"plugin"`
	// Version is the manifest version ("" when the module did not load).
	Version string `json:"version"`
	// SHA256 is the hex sha256 of the module bytes.
	SHA256 string `json:"sha256"`
	// Size is the module size in bytes.
	Size int `json:"size"`
	// Passed is true when every check passed.
	Passed bool `json:"passed"`
	// Checks are the results, in the order they ran.
	Checks []Result `json:"checks"`
	// CompileMS is the compile step of the load, in milliseconds (near
	// zero when the Runtime's compilation cache already held the module).
	CompileMS float64 `json:"compile_ms"`
	// InstantiateMS is the rest of the load: making the first instance and
	// running describe on it (for Go plugins this includes the Go
	// runtime's start-up), in milliseconds.
	InstantiateMS float64 `json:"instantiate_ms"`
	// CallUS holds median call times in microseconds: "prompt", "validate"
	// and "prompt+validate" from the latency check, "handle" from the
	// handle check, "tool" from the tools check.
	CallUS map[string]float64 `json:"call_us"`
}

// Result is the outcome of one check.
type Result struct {
	// Name is one of the Check* constants.
	Name string `json:"name"`
	// Passed tells whether the check passed.
	Passed bool `json:"passed"`
	// Detail says what failed (every problem found, prefixed with the
	// check's name), or carries a note or figure when the check passed.
	Detail string `json:"detail,omitempty"`
	// Duration is how long the check ran.
	Duration time.Duration `json:"duration_ns"`
}

// Failed returns the results that did not pass.
func (r Report) Failed() []Result {
	var out []Result
	for _, c := range r.Checks {
		if !c.Passed {
			out = append(out, c)
		}
	}
	return out
}

// Result returns the result of the named check and whether it ran.
func (r Report) Result(name string) (Result, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Result{}, false
}

// Check loads wasm into rt (with opts.Limits and opts.Config; name labels
// it until its manifest is known), runs every check on it, closes it and
// returns the report. It does not fail: a module that cannot be loaded
// yields a report whose describe check failed with the load error. Build rt
// with FakeServices (see the package documentation). Check makes calls one
// after another, so the plugin uses one instance of rt's pool (more after a
// failure).
func Check(ctx context.Context, rt *plugin.Runtime, name string, wasm []byte, opts Options) Report {
	opts = opts.withDefaults()
	sum := sha256.Sum256(wasm)
	rep := Report{
		Plugin: name,
		SHA256: hex.EncodeToString(sum[:]),
		Size:   len(wasm),
		CallUS: make(map[string]float64),
	}
	c := &checker{ctx: ctx, opts: opts, wasm: wasm, rep: &rep, dead: make(map[string]error)}

	start := time.Now()
	p, err := rt.LoadBytes(ctx, name, wasm, plugin.WithLimits(opts.Limits), plugin.WithConfig(opts.Config))
	loadTime := time.Since(start)
	if err != nil {
		rep.Checks = append(rep.Checks, Result{Name: CheckDescribe, Detail: CheckDescribe + ": load: " + err.Error(), Duration: loadTime})
		return rep
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*opts.Limits.CallTimeout+time.Second)
		defer cancel()
		_ = p.Close(cctx)
	}()
	defer func() {
		if c.pr != nil {
			c.pr.close(context.WithoutCancel(ctx))
		}
	}()
	c.p = p
	rep.Plugin, rep.Version = p.Name(), p.Version()
	ct := p.Stats().CompileTime
	rep.CompileMS = ms(ct)
	rep.InstantiateMS = ms(max(loadTime-ct, 0))
	c.manifest = p.Manifest()
	c.samples = promptSamples(c.manifest, opts.Samples, false)

	c.run(CheckDescribe, loadTime, c.checkDescribe)
	c.run(CheckPrompt, 0, c.checkPrompt)
	c.run(CheckValidate, 0, c.checkValidate)
	c.run(CheckHandle, 0, c.checkHandle)
	c.run(CheckTools, 0, c.checkTools)
	c.run(CheckSandbox, 0, c.checkSandbox)
	c.run(CheckLatency, 0, c.checkLatency)

	rep.Passed = len(rep.Failed()) == 0
	return rep
}

// CheckLoaded runs the checks that need neither a model nor a second
// instance (describe, prompt, validate) on a plugin already loaded by the
// caller, which keeps it. The host runs it on every new version before a
// hot swap: without the 16 KB and 64 KB inputs it takes a few
// milliseconds. The full kit is Check.
func CheckLoaded(ctx context.Context, p *plugin.Plugin, opts Options) Report {
	opts = opts.withDefaults()
	rep := Report{Plugin: p.Name(), Version: p.Version(), SHA256: p.Hash(), CallUS: make(map[string]float64)}
	c := &checker{ctx: ctx, opts: opts, rep: &rep, dead: make(map[string]error), p: p}
	c.manifest = p.Manifest()
	c.opts.quick = true
	c.samples = promptSamples(c.manifest, opts.Samples, true)
	c.run(CheckDescribe, 0, c.checkDescribe)
	c.run(CheckPrompt, 0, c.checkPrompt)
	c.run(CheckValidate, 0, c.checkValidate)
	rep.Passed = len(rep.Failed()) == 0
	return rep
}

// checker holds the state of one Check.
type checker struct {
	ctx      context.Context
	opts     Options
	wasm     []byte
	rep      *Report
	p        *plugin.Plugin
	manifest abi.Manifest
	samples  []sample
	// dead holds the exports that timed out: they are not called again.
	dead map[string]error
	// note is set by a passing check that has something to say.
	note string
	// pr is the probe instance of the tools and sandbox checks, made on
	// first use (prErr when that failed).
	pr    *prober
	prErr error
}

// maxProblems bounds the problems listed in one Detail.
const maxProblems = 8

// run runs one check; fn returns the problems it found. extra is time spent
// before run was called (the load, for describe).
func (c *checker) run(name string, extra time.Duration, fn func() []string) {
	c.note = ""
	start := time.Now()
	problems := fn()
	r := Result{Name: name, Passed: len(problems) == 0, Duration: extra + time.Since(start)}
	switch {
	case len(problems) > maxProblems:
		r.Detail = fmt.Sprintf("%s: %s; and %d more", name, strings.Join(problems[:maxProblems], "; "), len(problems)-maxProblems)
	case len(problems) > 0:
		r.Detail = name + ": " + strings.Join(problems, "; ")
	default:
		r.Detail = c.note
	}
	c.rep.Checks = append(c.rep.Checks, r)
}

// errNotRun is the error of a call skipped because its export timed out
// earlier.
type errNotRun struct {
	export string
	cause  error
}

func (e *errNotRun) Error() string {
	return fmt.Sprintf("%s not called: it timed out earlier (%v)", e.export, e.cause)
}

func (e *errNotRun) Unwrap() error { return e.cause }

// call runs one export call through the plugin, timing it (the plugin's
// CPU time, at most the wall time) and remembering a timeout.
func (c *checker) call(export string, fn func(ctx context.Context) error) (time.Duration, error) {
	if cause, ok := c.dead[export]; ok {
		return 0, &errNotRun{export: export, cause: cause}
	}
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("%s not called: %w", export, err)
	}
	ctx := plugin.WithRequestInfo(c.ctx, plugin.RequestInfo{ID: "conformance-" + export})
	// The plugin's own CPU time, not wall time: neither a busy machine nor
	// the host's throttling must fail a plugin's budgets. The kit's calls
	// are the only ones on c.p.
	before := c.p.Stats().GuestTime
	start := time.Now()
	err := fn(ctx)
	d := time.Since(start)
	if g := c.p.Stats().GuestTime - before; g > 0 {
		d = min(d, g)
	}
	if errors.Is(err, plugin.ErrTimeout) {
		c.dead[export] = err
	}
	return d, err
}

func (c *checker) prompt(req abi.PromptRequest) (abi.PromptResponse, time.Duration, error) {
	var resp abi.PromptResponse
	d, err := c.call(abi.ExportPrompt, func(ctx context.Context) (err error) {
		resp, err = c.p.Prompt(ctx, req)
		return err
	})
	return resp, d, err
}

func (c *checker) validate(req abi.ValidateRequest) (abi.Validation, time.Duration, error) {
	var v abi.Validation
	d, err := c.call(abi.ExportValidate, func(ctx context.Context) (err error) {
		v, err = c.p.Validate(ctx, req)
		return err
	})
	return v, d, err
}

func (c *checker) handle(req abi.PromptRequest) (abi.HandleResponse, time.Duration, error) {
	var h abi.HandleResponse
	d, err := c.call(abi.ExportHandle, func(ctx context.Context) (err error) {
		h, err = c.p.Handle(ctx, req)
		return err
	})
	return h, d, err
}

// slow returns a problem when d is over the single-call budget.
func (c *checker) slow(what string, d time.Duration) (string, bool) {
	if d > c.opts.SlowCall {
		return fmt.Sprintf("%s took %s, over the %s budget of one call", what, round(d), c.opts.SlowCall), true
	}
	return "", false
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// round shortens a duration for a message.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
