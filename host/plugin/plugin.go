package plugin

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Plugin is one loaded plugin with its instance pool. It is safe for
// concurrent use: each call runs on its own instance.
type Plugin struct {
	rt     *Runtime
	comp   *compiled
	source string
	hash   string
	limits Limits
	config map[string]string
	log    *slog.Logger
	pool   *pool

	// Set once during load, read-only afterwards.
	name        string
	manifest    abi.Manifest
	caps        capSet
	hasHandle   bool
	tools       []structured.Tool // compiled from the manifest's tools
	compileTime time.Duration
	language    string // Language of the original module bytes

	kill      context.CancelFunc // stops in-flight calls (Close with an expired ctx)
	killCtx   context.Context
	drained   chan struct{} // closed when every instance is closed
	closeOnce sync.Once

	calls, errs, traps, timeouts, canceled atomic.Uint64
	backedOff                              atomic.Uint64
	brk                                    breaker
	hostCalls, hostRefused                 atomic.Uint64
	throttled                              atomic.Uint64
	throttledNanos, guestNanos             atomic.Int64
}

// Stats are counters of one plugin since it was loaded.
type Stats struct {
	Calls       uint64 // export calls, describe at load included
	Errors      uint64 // calls that failed for any reason
	Traps       uint64 // of which: the instance trapped or exited
	Timeouts    uint64 // of which: CallTimeout ran out
	Canceled    uint64 // of which: the caller's context ended first
	BackedOff   uint64 // of which: refused by the circuit breaker, without running
	HostCalls   uint64 // host-function calls made by the plugin
	HostRefused uint64 // of which: refused (capability, caps, bad request, no service)
	// Throttled counts calls and instantiations whose guest code ran past
	// Limits.ThrottleAfter and was slowed down; ThrottledTime is the time
	// they were made to wait in all.
	Throttled     uint64
	ThrottledTime time.Duration
	// GuestTime is the CPU time of the plugin's own code in its export
	// calls (host functions and throttle pauses excluded). Unlike wall
	// time, it does not grow when the machine is busy.
	GuestTime time.Duration

	Instances        int           // instances alive now (in use or idle)
	PeakInstances    int           // most instances alive at once
	InUse            int           // instances running a call now
	Idle             int           // instances waiting for a call
	InstancesCreated uint64        // instances made
	InstancesDropped uint64        // instances closed (after an error, or at Close)
	CompileTime      time.Duration // compile step of the load (near zero when shared or cached)
}

// instance is one Extism instance with its captured stderr.
type instance struct {
	ext    *extism.Plugin
	stderr *tailBuffer
	warm   bool // it has served a call
}

func (i *instance) close() {
	_ = i.ext.Close(context.Background())
}

func newPlugin(r *Runtime, comp *compiled, source, hash string, cfg loadConfig) *Plugin {
	p := &Plugin{
		rt:      r,
		comp:    comp,
		source:  source,
		hash:    hash,
		limits:  cfg.limits,
		config:  cfg.config,
		drained: make(chan struct{}),
	}
	p.log = r.log.With("plugin", source)
	p.killCtx, p.kill = context.WithCancel(context.Background())
	p.pool = newPool(r.poolSize, p.newInstance, p.onDrain)
	return p
}

func (p *Plugin) setManifest(m abi.Manifest) {
	p.manifest = m
	p.name = m.Name
	p.log = p.rt.log.With("plugin", m.Name)
	for _, c := range m.Capabilities {
		p.caps |= capBit(c)
	}
}

// newInstance makes one sandboxed instance: no files, no network, no
// environment, the caller's config only, real clock, crypto randomness,
// stdout dropped, stderr kept (bounded) for error messages.
func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	stderr := &tailBuffer{max: 8 << 10}
	mc := wazero.NewModuleConfig().
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader).
		WithStdout(io.Discard).
		WithStderr(stderr)
	// The module's start code is guest code too, bounded by the call
	// timeout (it runs once per instance and is not throttled).
	ictx, cancel := context.WithTimeoutCause(ctx, p.limits.CallTimeout, errGuestTimeout)
	defer cancel()
	// Every memory of the instance comes out of the runtime's budget.
	if p.rt.mem.exhausted() {
		return nil, fmt.Errorf("instantiate: %w", ErrMemoryBudget)
	}
	ictx = experimental.WithMemoryAllocator(ictx, p.rt.mem)
	ext, err := p.comp.cp.Instance(ictx, extism.PluginInstanceConfig{ModuleConfig: mc})
	if err != nil {
		if errors.Is(context.Cause(ictx), errGuestTimeout) && ctx.Err() == nil {
			p.timeouts.Add(1)
			return nil, fmt.Errorf("instantiate: start code still running after %v; stopped", p.limits.CallTimeout)
		}
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	ext.Config = p.config
	ext.AllowedHosts = nil
	ext.AllowedPaths = nil
	// Only reached if the process sets extism's global log level (off by default).
	ext.SetLogger(func(level extism.LogLevel, msg string) {
		p.log.Log(context.Background(), slogLevel(level), "plugin log", "msg", sanitize(msg, 1024))
	})
	return &instance{ext: ext, stderr: stderr}, nil
}

func slogLevel(l extism.LogLevel) slog.Level {
	switch l {
	case extism.LogLevelTrace, extism.LogLevelDebug:
		return slog.LevelDebug
	case extism.LogLevelInfo:
		return slog.LevelInfo
	case extism.LogLevelWarn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// Manifest returns the plugin's checked manifest. Callers must not modify
// its slices.
func (p *Plugin) Manifest() abi.Manifest { return p.manifest }

// Name returns the manifest name.
func (p *Plugin) Name() string { return p.name }

// Version returns the manifest version.
func (p *Plugin) Version() string { return p.manifest.Version }

// Hash returns the hex sha256 of the module bytes.
func (p *Plugin) Hash() string { return p.hash }

// Language returns the source language of the module, as Language told
// from the bytes it was loaded from ("" when unknown).
func (p *Plugin) Language() string { return p.language }

// Path returns the file the plugin was loaded from (or LoadBytes's name).
func (p *Plugin) Path() string { return p.source }

// HasHandle reports whether the plugin exports handle.
func (p *Plugin) HasHandle() bool { return p.hasHandle }

// Prompt calls the prompt export and returns its checked response.
func (p *Plugin) Prompt(ctx context.Context, req abi.PromptRequest) (abi.PromptResponse, error) {
	var resp abi.PromptResponse
	err := p.call(ctx, abi.ExportPrompt, req, func(out []byte) (err error) {
		resp, err = abi.DecodePromptResponse(out)
		return err
	})
	return resp, err
}

// Validate calls the validate export and returns its checked verdict.
func (p *Plugin) Validate(ctx context.Context, req abi.ValidateRequest) (abi.Validation, error) {
	var v abi.Validation
	err := p.call(ctx, abi.ExportValidate, req, func(out []byte) (err error) {
		v, err = abi.DecodeValidation(out)
		return err
	})
	return v, err
}

// Handle calls the optional handle export, in which the plugin drives host
// calls itself. It fails with ErrNoHandle when the plugin has none.
func (p *Plugin) Handle(ctx context.Context, req abi.PromptRequest) (abi.HandleResponse, error) {
	if !p.hasHandle {
		return abi.HandleResponse{}, &CallError{Plugin: p.name, Export: abi.ExportHandle, Kind: ErrNoHandle}
	}
	var resp abi.HandleResponse
	err := p.call(ctx, abi.ExportHandle, req, func(out []byte) (err error) {
		resp, err = abi.DecodeHandleResponse(out)
		return err
	})
	return resp, err
}

// setTools compiles the tools manifest m declares; a plugin that declares
// tools must export tool.
func (p *Plugin) setTools(m abi.Manifest, hasExport bool) error {
	if len(m.Tools) == 0 {
		return nil
	}
	if !hasExport {
		return fmt.Errorf("manifest: tools: %d tools declared but no %q export", len(m.Tools), abi.ExportTool)
	}
	for i, spec := range m.Tools {
		t, err := structured.NewTool(spec.Name, spec.Description, spec.Parameters, false)
		if err != nil {
			return fmt.Errorf("manifest: tools[%d]: %w", i, err)
		}
		t.Domain = m.Name
		p.tools = append(p.tools, t)
	}
	return nil
}

// Tools returns the plugin's tools (ABI 1.1), compiled; nil when it has
// none. The slice is shared: do not modify it.
func (p *Plugin) Tools() []structured.Tool { return p.tools }

// Tool calls the tool export to run one of the plugin's tools. It fails
// with ErrNoTool when the plugin declares no tool of that name.
func (p *Plugin) Tool(ctx context.Context, req abi.ToolRequest) (abi.ToolResponse, error) {
	known := false
	for _, t := range p.tools {
		known = known || t.Name == req.Name
	}
	if !known {
		return abi.ToolResponse{}, &CallError{Plugin: p.name, Export: abi.ExportTool, Kind: ErrNoTool,
			Err: fmt.Errorf("no tool named %q", req.Name)}
	}
	var resp abi.ToolResponse
	err := p.call(ctx, abi.ExportTool, req, func(out []byte) (err error) {
		resp, err = abi.DecodeToolResponse(out)
		return err
	})
	return resp, err
}

// Stats returns the plugin's counters.
func (p *Plugin) Stats() Stats {
	live, peak, held, idle, created, dropped := p.pool.stats()
	return Stats{
		Calls:            p.calls.Load(),
		Errors:           p.errs.Load(),
		Traps:            p.traps.Load(),
		Timeouts:         p.timeouts.Load(),
		Canceled:         p.canceled.Load(),
		BackedOff:        p.backedOff.Load(),
		HostCalls:        p.hostCalls.Load(),
		HostRefused:      p.hostRefused.Load(),
		Throttled:        p.throttled.Load(),
		ThrottledTime:    time.Duration(p.throttledNanos.Load()),
		GuestTime:        time.Duration(p.guestNanos.Load()),
		Instances:        live,
		PeakInstances:    peak,
		InUse:            held,
		Idle:             idle,
		InstancesCreated: created,
		InstancesDropped: dropped,
		CompileTime:      p.compileTime,
	}
}

// Close stops new calls and waits for in-flight ones to finish. If ctx ends
// first, in-flight calls are stopped (their callers get ErrClosed) and Close
// returns ctx's error; the plugin's resources are freed as those calls
// unwind. Close is safe to call more than once.
func (p *Plugin) Close(ctx context.Context) error {
	p.pool.close()
	select {
	case <-p.drained:
		return nil
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("plugin %q: close: in-flight calls stopped: %w", p.name, ctx.Err())
	}
}

// abandon closes a plugin that never finished loading.
func (p *Plugin) abandon() {
	p.pool.close()
	<-p.drained
}

// onDrain runs once, when the pool is closed and no instance is left.
func (p *Plugin) onDrain() {
	p.closeOnce.Do(func() {
		p.kill()
		p.rt.forget(p)
		p.rt.release(p.comp)
		close(p.drained)
	})
}

// call runs one export on a pooled instance.
func (p *Plugin) call(ctx context.Context, export string, req any, decode func([]byte) error) error {
	input, err := json.Marshal(req)
	if err != nil {
		p.calls.Add(1)
		p.errs.Add(1)
		return &CallError{Plugin: p.name, Export: export, Kind: ErrFailed, Err: fmt.Errorf("encode request: %w", err)}
	}
	if len(input) > p.limits.MaxInputBytes {
		p.calls.Add(1)
		p.errs.Add(1)
		return &CallError{Plugin: p.name, Export: export, Kind: ErrInputTooLarge,
			Err: fmt.Errorf("%d bytes, limit %d", len(input), p.limits.MaxInputBytes)}
	}
	if wait, ok := p.brk.allow(time.Now()); !ok {
		p.calls.Add(1)
		p.errs.Add(1)
		p.backedOff.Add(1)
		return &CallError{Plugin: p.name, Export: export, Kind: ErrBackedOff,
			Err: fmt.Errorf("%d or more calls failed in a row; calls are refused for %v more", breakerAfter, wait.Round(time.Millisecond))}
	}
	// The call's wasm stack counts in the total memory budget too: wazero
	// grows it by doubling, so a call bounded by stackBytes allocates at
	// most about three times that (the new stack and the old one it is
	// copied from).
	stack := 3 * uint64(p.rt.stackBytes)
	if !p.rt.mem.take(stack, false) {
		p.calls.Add(1)
		p.errs.Add(1)
		return &CallError{Plugin: p.name, Export: export, Kind: ErrMemoryBudget,
			Err: fmt.Errorf("no room for the call's stack (3 x plugins.stack_kb): the plugin instances of this host hold all of plugins.total_memory_mb (%d MB)", p.rt.mem.limit>>20)}
	}
	defer p.rt.mem.give(stack)
	inst, err := p.pool.acquire(ctx)
	if err != nil {
		p.calls.Add(1)
		p.errs.Add(1)
		switch {
		case errors.Is(err, ErrClosed):
			return &CallError{Plugin: p.name, Export: export, Kind: ErrClosed}
		case ctx.Err() != nil:
			p.canceled.Add(1)
			return &CallError{Plugin: p.name, Export: export, Kind: ctx.Err(), Err: errors.New("waiting for a free instance")}
		case errors.Is(err, ErrMemoryBudget):
			return &CallError{Plugin: p.name, Export: export, Kind: ErrMemoryBudget,
				Err: fmt.Errorf("no new instance: the plugin instances of this host hold all of plugins.total_memory_mb (%d MB)", p.rt.mem.limit>>20)}
		default:
			return &CallError{Plugin: p.name, Export: export, Kind: ErrFailed, Err: err}
		}
	}
	reuse, err := p.invoke(ctx, inst, export, input, decode)
	p.pool.release(inst, reuse)
	if failed, counts := breakerOutcome(err); counts {
		if d := p.brk.record(time.Now(), failed); d > 0 {
			p.log.Warn("plugin backed off after repeated failures", "export", export, "backoff", d, "err", err)
		}
	}
	return err
}

// breakerOutcome says whether a call's outcome counts for the circuit
// breaker (the caller's cancellation and Close do not) and whether it
// failed: the plugin's own failures, which throw the instance away.
func breakerOutcome(err error) (failed, counts bool) {
	var ce *CallError
	if err == nil {
		return false, true
	}
	if !errors.As(err, &ce) {
		return false, false
	}
	switch ce.Kind {
	case ErrTimeout, ErrTrap, ErrFailed, ErrBadOutput, ErrOutputTooLarge, ErrCapability, ErrHostCallLimit:
		return true, true
	}
	return false, false
}

// countThrottle adds a finished call's time and throttling to the
// counters.
func (p *Plugin) countThrottle(t *throttle) {
	p.guestNanos.Add(int64(t.finish()))
	if t.pauses > 0 {
		p.throttled.Add(1)
		p.throttledNanos.Add(int64(t.paused))
	}
}

// errGuestTimeout is the cancel cause set when CallTimeout runs out.
var errGuestTimeout = errors.New("plugin call timeout")

// invoke runs export on inst and classifies the outcome. It reports whether
// inst may be reused: only after a clean success.
func (p *Plugin) invoke(ctx context.Context, inst *instance, export string, input []byte, decode func([]byte) error) (reuse bool, err error) {
	p.calls.Add(1)
	// base is the call's own context: the caller's, also ended by a forced
	// Close. Services called from host functions get it.
	base, baseCancel := context.WithCancelCause(ctx)
	defer baseCancel(nil)
	stopKill := context.AfterFunc(p.killCtx, func() { baseCancel(ErrClosed) })
	defer stopKill()
	// callCtx also ends when the plugin's own time runs out; wazero watches
	// it and closes the instance (WithCloseOnContextDone).
	callCtx, cancel := context.WithCancelCause(base)
	defer cancel(nil)

	st := &callState{
		p:          p,
		export:     export,
		svcCtx:     base,
		callCtx:    callCtx,
		info:       RequestInfoFrom(ctx),
		tokensLeft: p.limits.MaxTokens,
		workLeft:   p.limits.MaxWorkTokens,
		hostLeft:   p.limits.MaxHostTime,
	}
	if st.info.MaxTokens > 0 && st.info.MaxTokens < st.tokensLeft {
		st.tokensLeft = st.info.MaxTokens
	}
	// describe (once per load) is bounded by the timeout alone, and the
	// first call on an instance (lazy initialisation inside the guest)
	// runs up to half the timeout at full speed before the throttle holds
	// it, unless the plugin has already run into the timeout or its last
	// call failed (a plugin that spins and then fails gets the allowance
	// once, not once per request: mdsa bench hostile measured 0.38
	// CPU-s per request of such a plugin with it, the breaker aside). (Left
	// unthrottled, a plugin that spins and then fails would get a fresh,
	// unthrottled instance for every request; the circuit breaker bounds
	// how many. 50 ms was tried: under the race detector on a loaded
	// machine a Go plugin's first call can take more, and throttled
	// past it, 1 call in ~4,000 of the hot-swap tests timed out.)
	share, after := p.limits.ThrottleShare, p.limits.ThrottleAfter
	if p.timeouts.Load() == 0 && !p.brk.failing() {
		switch {
		case export == abi.ExportDescribe:
			share = 1
		case !inst.warm:
			after = max(after, p.limits.CallTimeout/2)
		}
	}
	inst.warm = true
	// The call keeps its OS thread to itself, so that the thread's CPU
	// clock, which the throttle and the timeout read, counts this guest
	// alone: otherwise, on a loaded machine, a goroutine descheduled in Go
	// code (at a yield, say) came back to a thread that had meanwhile run
	// other requests, and their CPU was charged to this plugin.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st.throttle = newThrottle(after, share)
	st.clock.start(p.limits.CallTimeout, st.throttle.charged, func() { cancel(errGuestTimeout) })
	defer st.clock.stop()

	inst.stderr.reset()
	began := time.Now()
	rc, out, callErr := inst.ext.CallWithContext(context.WithValue(callCtx, callStateKey{}, st), export, input)
	st.clock.stop()
	p.countThrottle(st.throttle)
	if len(inst.ext.Var) > 0 {
		clear(inst.ext.Var) // no state carried to the next request through vars
	}

	fail := func(kind, detail error) (bool, error) {
		p.errs.Add(1)
		ce := &CallError{Plugin: p.name, Export: export, Kind: kind, Err: detail}
		p.log.Warn("plugin call failed", "export", export, "request_id", st.info.ID, "err", ce)
		if tail := inst.stderr.String(); tail != "" {
			p.log.Debug("plugin stderr", "export", export, "stderr", sanitize(tail, 2048))
		}
		return false, ce
	}

	if callErr != nil || rc != 0 {
		if callCtx.Err() != nil {
			switch cause := context.Cause(callCtx); {
			case errors.Is(cause, errGuestTimeout):
				p.timeouts.Add(1)
				return fail(ErrTimeout, fmt.Errorf("stopped after %v (%v of its own time charged: CPU and throttle pauses; the limit is %v)",
					time.Since(began).Round(time.Millisecond), st.throttle.charged().Round(time.Millisecond), p.limits.CallTimeout))
			case errors.Is(cause, ErrClosed):
				return fail(ErrClosed, errors.New("call stopped by Close"))
			case ctx.Err() != nil:
				p.canceled.Add(1)
				return fail(ctx.Err(), errors.New("call stopped"))
			}
		}
		if st.stackExhausted != nil {
			p.traps.Add(1)
			return fail(ErrTrap, st.stackExhausted)
		}
		if callErr != nil && isTrap(callErr) {
			p.traps.Add(1)
			return fail(ErrTrap, errors.New(trapDetail(callErr, inst.stderr.String())))
		}
		detail := fmt.Sprintf("returned status %d", rc)
		if callErr != nil {
			detail = "plugin error: " + quoteUntrusted(callErr.Error())
		}
		if st.violation != nil {
			return fail(st.violationKind, fmt.Errorf("%w (and the export then %s)", st.violation, detail))
		}
		if st.firstRefusal != "" {
			detail += fmt.Sprintf(" (after the host refused %d call(s), first: %s)", st.refused, st.firstRefusal)
		}
		return fail(ErrFailed, errors.New(detail))
	}
	if st.violation != nil {
		return fail(st.violationKind, st.violation)
	}
	if len(out) > p.limits.MaxOutputBytes {
		return fail(ErrOutputTooLarge, fmt.Errorf("%d bytes, limit %d", len(out), p.limits.MaxOutputBytes))
	}
	if err := decode(out); err != nil {
		return fail(ErrBadOutput, err)
	}
	// A timer that fired as the call returned may have closed the instance.
	return callCtx.Err() == nil, nil
}

// isTrap tells a trap or exit (the instance is dead) from an error the
// plugin set itself with error_set.
func isTrap(err error) bool {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "wasm stack trace") ||
		strings.HasPrefix(msg, "wasm error") ||
		strings.HasPrefix(msg, "failed to initialize runtime") ||
		strings.HasPrefix(msg, "module closed") ||
		msg == "module is closed"
}

// trapDetail describes a trap: the wazero error's first line, and the Go
// runtime's panic or fatal error line from stderr when there is one.
func trapDetail(err error, stderr string) string {
	var detail string
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		detail = fmt.Sprintf("exit code %d", exit.ExitCode())
	} else {
		detail, _, _ = strings.Cut(err.Error(), "\n")
		detail = sanitize(detail, 300)
	}
	if line := panicLine(stderr); line != "" {
		detail += ": " + sanitize(line, 300)
	}
	return detail
}

// panicLine finds the last "panic: " or "fatal error: " line in stderr, or
// else its last non-empty line.
func panicLine(stderr string) string {
	lines := strings.Split(stderr, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			return l
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}

// quoteUntrusted quotes a plugin-supplied message for an error.
func quoteUntrusted(s string) string {
	return fmt.Sprintf("%q", sanitize(s, 512))
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	n := len(b)
	if len(b) >= t.max {
		t.buf = append(t.buf[:0], b[len(b)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(b) - t.max; over > 0 {
		t.buf = t.buf[:copy(t.buf, t.buf[over:])]
	}
	t.buf = append(t.buf, b...)
	return n, nil
}

func (t *tailBuffer) reset()         { t.buf = t.buf[:0] }
func (t *tailBuffer) String() string { return string(t.buf) }
