package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/internal/bytesize"
)

// Errors of the registry. They are wrapped with the model's name and the
// figures involved; test with errors.Is.
var (
	// ErrUnknownModel: no model of that name is registered.
	ErrUnknownModel = errors.New("models: unknown model")
	// ErrNoModel: Pick found no registered model of the tier.
	ErrNoModel = errors.New("models: no model for this tier")
	// ErrOverBudget: the model can never be loaded under the configured
	// memory budget or model count, alone or next to the pinned models.
	ErrOverBudget = errors.New("models: model does not fit the memory budget")
	// ErrInUse: the model is leased (Unload).
	ErrInUse = errors.New("models: model is in use")
	// ErrClosed: the registry was closed.
	ErrClosed = errors.New("models: registry closed")
	// ErrOutOfMemory is what a loader wraps when loading failed for lack of
	// memory (errors.Is(err, ErrOutOfMemory)); the registry then evicts
	// unused models and retries the load once.
	ErrOutOfMemory = errors.New("models: out of memory")
)

// LoadFunc loads the model described by spec. It is called without any
// registry lock held, at most once at a time per model. The ctx carries the
// values of the Get that triggered the load but is never cancelled: a load
// is shared by every Get waiting for the model, so one caller giving up
// does not abort it.
type LoadFunc func(ctx context.Context, spec Spec) (engine.Engine, error)

// EstimateFunc returns the memory in bytes the model needs once loaded.
type EstimateFunc func(spec Spec) (int64, error)

// Options configure a Registry. Only Load is required.
type Options struct {
	// Budget is the memory, in bytes, that loaded models may use together,
	// as the Estimate function counts it. 0 means no limit.
	Budget int64
	// MaxLoaded is the most models loaded at once. 0 means no limit.
	MaxLoaded int
	// KeepAlive unloads a model that nobody has leased for this long
	// (pinned models excepted). 0 keeps models until evicted.
	KeepAlive time.Duration
	// SweepInterval is how often the background janitor looks for models
	// idle past KeepAlive; 0 means KeepAlive/4, at most a minute. Unused
	// when KeepAlive is 0.
	SweepInterval time.Duration
	// Load loads a model (for llama.cpp: llamacpp.Open with the spec's
	// path, its error wrapped by OutOfMemory).
	Load LoadFunc
	// Estimate returns a model's memory need. nil means FileEstimator with
	// default options (the GGUF header of Spec.Path). It is called once per
	// model (again after it fails) unless Spec.MemoryBytes is set.
	Estimate EstimateFunc
	// Now is the clock for keep-alive; nil means time.Now. Tests pass a fake.
	Now func() time.Time
	// Logger receives load, unload and eviction events. nil means
	// slog.Default().
	Logger *slog.Logger
}

// state is where a model is in its life cycle.
type state uint8

const (
	stateIdle      state = iota // not loaded
	stateLoading                // a load is running (no lock held)
	stateReady                  // loaded; may be leased
	stateUnloading              // Close is running (no lock held)
)

var stateNames = [...]string{"unloaded", "loading", "ready", "unloading"}

func (s state) String() string { return stateNames[s] }

// entry is one registered model. All fields are guarded by Registry.mu.
type entry struct {
	spec   Spec
	size   int64 // estimated bytes; 0 until estimated
	state  state
	eng    engine.Engine // set while ready or unloading
	refs   int           // leases out
	pinned bool
	// lastUse orders models for LRU eviction: the registry's use counter at
	// the model's last Get or Release.
	lastUse uint64
	// idleSince is when refs last dropped to 0 (or the load ended), for
	// keep-alive.
	idleSince time.Time
	load      *loadOp       // the running load, while loading
	unloaded  chan struct{} // closed when the running unload ends, while unloading

	hits, loads int64
	loadedAt    time.Time
}

// loadOp is one load attempt, shared by every Get waiting for it.
type loadOp struct {
	done chan struct{} // closed, under Registry.mu, when the load ends
	err  error         // set before done is closed
	eng  engine.Engine // set before done is closed, on success
	// waiters counts the Gets waiting for this load. Each gets one
	// reference when the load succeeds, so that a freshly loaded model
	// cannot be evicted before its waiters see it.
	waiters int
}

// Registry keeps GGUF models loaded under a memory budget and hands them out
// as reference-counted leases. See the package documentation for the
// design. It is safe for concurrent use.
type Registry struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	estimate EstimateFunc

	mu      sync.Mutex
	entries map[string]*entry
	order   []*entry // registration order
	// resident is the estimated size of every model loading, ready or
	// unloading: memory is counted from before a load starts until its
	// unload has finished.
	resident int64
	loaded   int // models loading, ready or unloading
	// unloadingBytes and unloadingCount cover the models being unloaded,
	// whose memory is about to come back.
	unloadingBytes int64
	unloadingCount int
	useClock       uint64
	// changed is closed (and set to nil) when something a waiting Get may
	// be waiting for happens: a reference dropped to zero, an unload or a
	// failed load ended, a model was unpinned, the registry closed. It is
	// created only when someone waits, so the common path allocates
	// nothing.
	changed chan struct{}
	closed  bool
	stats   counters

	stopJanitor chan struct{}
	janitorDone chan struct{}
}

// counters are the cumulative statistics.
type counters struct {
	hits, misses, loads, loadFailures, evictions, idleUnloads int64
	loadTime                                                  time.Duration
}

// New makes a registry. It starts a janitor goroutine when KeepAlive is set;
// Close stops it.
func New(opts Options) (*Registry, error) {
	if opts.Load == nil {
		return nil, errors.New("models: New: Options.Load is required (a LoadFunc that opens a model, e.g. with llamacpp.Open)")
	}
	if opts.Budget < 0 || opts.MaxLoaded < 0 || opts.KeepAlive < 0 || opts.SweepInterval < 0 {
		return nil, fmt.Errorf("models: New: negative option (Budget %d, MaxLoaded %d, KeepAlive %v, SweepInterval %v)",
			opts.Budget, opts.MaxLoaded, opts.KeepAlive, opts.SweepInterval)
	}
	r := &Registry{
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		estimate: opts.Estimate,
		entries:  make(map[string]*entry),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.estimate == nil {
		r.estimate = FileEstimator(EstimateOptions{})
	}
	if opts.KeepAlive > 0 {
		every := opts.SweepInterval
		if every == 0 {
			every = min(opts.KeepAlive/4, time.Minute)
		}
		every = max(every, time.Millisecond)
		r.stopJanitor = make(chan struct{})
		r.janitorDone = make(chan struct{})
		go r.janitor(every)
	}
	return r, nil
}

// Register adds a model. Names are unique; registering a name twice is an
// error. Registration does no I/O: the model is estimated and loaded on its
// first Get.
func (r *Registry) Register(spec Spec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	spec.Tier = strings.ToLower(strings.TrimSpace(spec.Tier))
	spec.Tags = slices.Clone(spec.Tags)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if _, dup := r.entries[spec.Name]; dup {
		return fmt.Errorf("models: register: model %q is already registered", spec.Name)
	}
	e := &entry{spec: spec, size: spec.MemoryBytes}
	r.entries[spec.Name] = e
	r.order = append(r.order, e)
	return nil
}

// Specs returns the registered models in registration order.
func (r *Registry) Specs() []Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Spec, len(r.order))
	for i, e := range r.order {
		out[i] = e.spec
		out[i].Tags = slices.Clone(e.spec.Tags)
	}
	return out
}

// Lease is the right to use a loaded model until Release. While any lease
// on a model is out, the model is never evicted or unloaded.
type Lease struct {
	r        *Registry
	e        *entry
	eng      engine.Engine
	released atomic.Bool
}

// Engine returns the model's engine. It must not be used after Release.
func (l *Lease) Engine() engine.Engine { return l.eng }

// Name returns the registered name of the leased model.
func (l *Lease) Name() string { return l.e.spec.Name }

// Release gives the lease back. Calling it again does nothing.
func (l *Lease) Release() {
	if l.released.Swap(true) {
		return
	}
	l.r.release(l.e)
}

// Get returns a lease on the named model, loading it first if needed.
//
// A model that is loaded is leased at once. Otherwise one load runs, shared
// by every Get of that model that arrives meanwhile (each waits, honouring
// its own ctx); a failed load is reported to every one of them, and the
// next Get tries again. To make room, Get unloads the least recently used
// models that are neither leased nor pinned; when everything loaded is
// leased it waits for a Release rather than exceed the budget. It fails at
// once, with an error wrapping ErrOverBudget, when the model could never
// fit: larger than the budget, or than what the pinned models leave.
func (r *Registry) Get(ctx context.Context, name string) (*Lease, error) {
	r.mu.Lock()
	for {
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		e := r.entries[name]
		if e == nil {
			r.mu.Unlock()
			return nil, fmt.Errorf("%w %q", ErrUnknownModel, name)
		}
		switch e.state {
		case stateReady:
			e.refs++
			e.hits++
			r.stats.hits++
			r.touch(e)
			eng := e.eng
			r.mu.Unlock()
			return &Lease{r: r, e: e, eng: eng}, nil

		case stateLoading:
			op := e.load
			op.waiters++
			r.stats.misses++
			r.mu.Unlock()
			return r.await(ctx, e, op)

		case stateUnloading:
			ch := e.unloaded
			r.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, fmt.Errorf("models: waiting for model %q to unload before reloading it: %w", name, ctx.Err())
			}
			r.mu.Lock()

		case stateIdle:
			if err := ctx.Err(); err != nil {
				r.mu.Unlock()
				return nil, fmt.Errorf("models: getting model %q: %w", name, err)
			}
			if e.size <= 0 {
				spec := e.spec
				r.mu.Unlock()
				size, err := r.estimate(spec)
				if err != nil {
					return nil, fmt.Errorf("models: estimating the memory of model %q: %w", name, err)
				}
				if size <= 0 {
					return nil, fmt.Errorf("models: estimating the memory of model %q: got %d bytes", name, size)
				}
				r.mu.Lock()
				if e.size <= 0 {
					e.size = size
				}
				continue
			}
			if err := r.neverFits(e); err != nil {
				r.mu.Unlock()
				return nil, err
			}
			if r.hasRoom(e.size, 0, 0) {
				op := r.startLoad(e)
				r.mu.Unlock()
				go r.runLoad(ctx, e, op)
				return r.await(ctx, e, op)
			}
			// Memory already on its way back is enough: wait for it.
			if r.hasRoom(e.size, r.unloadingBytes, r.unloadingCount) {
				if err := r.wait(ctx); err != nil {
					r.mu.Unlock()
					return nil, fmt.Errorf("models: waiting for memory to load model %q: %w", name, err)
				}
				continue
			}
			if v := r.victim(e); v != nil {
				r.evict(v, "make room for "+name)
				continue
			}
			if err := r.wait(ctx); err != nil {
				err = fmt.Errorf("models: waiting for a loaded model to be released to make room for %q (%s needed, %s of %s in use by %d models): %w",
					name, bytesize.Format(e.size), bytesize.Format(r.resident), bytesize.Format(r.opts.Budget), r.loaded, err)
				r.mu.Unlock()
				return nil, err
			}
		}
	}
}

// hasRoom reports whether a model of size bytes fits next to the loaded
// ones once the given bytes and models (being unloaded) are gone. Caller
// holds mu.
func (r *Registry) hasRoom(size, freeing int64, freeingCount int) bool {
	if r.opts.Budget > 0 && r.resident-freeing+size > r.opts.Budget {
		return false
	}
	if r.opts.MaxLoaded > 0 && r.loaded-freeingCount+1 > r.opts.MaxLoaded {
		return false
	}
	return true
}

// neverFits returns an error when e cannot be loaded however long Get
// waits: it is larger than the budget, or the pinned models (which are
// never evicted) leave too little. Caller holds mu.
func (r *Registry) neverFits(e *entry) error {
	if r.opts.Budget > 0 && e.size > r.opts.Budget {
		return fmt.Errorf("%w: model %q needs an estimated %s but the budget is %s", ErrOverBudget,
			e.spec.Name, bytesize.Format(e.size), bytesize.Format(r.opts.Budget))
	}
	var pinnedBytes int64
	var pinned int
	for _, o := range r.order {
		if o != e && o.pinned && o.state != stateIdle {
			pinnedBytes += o.size
			pinned++
		}
	}
	if r.opts.Budget > 0 && pinnedBytes+e.size > r.opts.Budget {
		return fmt.Errorf("%w: model %q needs an estimated %s but %d pinned models hold %s of the %s budget",
			ErrOverBudget, e.spec.Name, bytesize.Format(e.size), pinned, bytesize.Format(pinnedBytes), bytesize.Format(r.opts.Budget))
	}
	if r.opts.MaxLoaded > 0 && pinned >= r.opts.MaxLoaded {
		return fmt.Errorf("%w: model %q cannot be loaded: %d pinned models fill MaxLoaded %d",
			ErrOverBudget, e.spec.Name, pinned, r.opts.MaxLoaded)
	}
	return nil
}

// victim returns the least recently used model that may be evicted (ready,
// not leased, not pinned, not except), or nil. Caller holds mu.
func (r *Registry) victim(except *entry) *entry {
	var v *entry
	for _, o := range r.order {
		if o == except || o.state != stateReady || o.refs > 0 || o.pinned {
			continue
		}
		if v == nil || o.lastUse < v.lastUse {
			v = o
		}
	}
	return v
}

// touch marks e as just used. Caller holds mu.
func (r *Registry) touch(e *entry) {
	r.useClock++
	e.lastUse = r.useClock
}

// wait releases mu until something changes or ctx is done, then takes mu
// again. Caller holds mu.
func (r *Registry) wait(ctx context.Context) error {
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	ch := r.changed
	r.mu.Unlock()
	var err error
	select {
	case <-ch:
	case <-ctx.Done():
		err = ctx.Err()
	}
	r.mu.Lock()
	return err
}

// broadcast wakes every waiting Get. Caller holds mu.
func (r *Registry) broadcast() {
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// startLoad moves e to loading and reserves its memory. The caller (with
// one waiter counted) must then run runLoad. Caller holds mu.
func (r *Registry) startLoad(e *entry) *loadOp {
	op := &loadOp{done: make(chan struct{}), waiters: 1}
	e.state = stateLoading
	e.load = op
	r.resident += e.size
	r.loaded++
	r.stats.misses++
	return op
}

// runLoad loads e without holding mu and publishes the outcome to every
// waiter of op.
func (r *Registry) runLoad(ctx context.Context, e *entry, op *loadOp) {
	lctx := context.WithoutCancel(ctx)
	spec := e.spec // immutable after Register
	start := time.Now()
	eng, err := r.callLoad(lctx, spec)
	if err != nil && errors.Is(err, ErrOutOfMemory) {
		if n := r.evictForRetry(e); n > 0 {
			r.log.Warn("model load ran out of memory; evicted unused models, retrying once",
				"model", spec.Name, "evicted", n, "err", err)
			eng, err = r.callLoad(lctx, spec)
		}
	}
	took := time.Since(start)

	r.mu.Lock()
	e.load = nil
	if err != nil {
		e.state = stateIdle
		r.resident -= e.size
		r.loaded--
		r.stats.loadFailures++
		op.err = fmt.Errorf("models: loading model %q from %s: %w", spec.Name, spec.Path, err)
		close(op.done)
		r.broadcast()
		r.mu.Unlock()
		r.log.Error("model load failed", "model", spec.Name, "path", spec.Path, "took", took, "err", err)
		return
	}
	e.eng = eng
	op.eng = eng
	e.state = stateReady
	e.refs += op.waiters
	e.loads++
	e.loadedAt = r.now()
	e.idleSince = e.loadedAt
	r.touch(e)
	r.stats.loads++
	r.stats.loadTime += took
	close(op.done)
	closing := r.closed && e.refs == 0
	if closing {
		r.beginUnload(e)
	}
	r.broadcast()
	r.mu.Unlock()
	r.log.Info("model loaded", "model", spec.Name, "path", spec.Path, "bytes", e.size, "took", took)
	if closing {
		r.finishUnload(e, eng, "registry closed")
	}
}

// callLoad runs the loader, turning a panic into an error so that the
// model's waiters are not stranded.
func (r *Registry) callLoad(ctx context.Context, spec Spec) (eng engine.Engine, err error) {
	defer func() {
		if p := recover(); p != nil {
			eng, err = nil, fmt.Errorf("loader panicked: %v", p)
		}
	}()
	eng, err = r.opts.Load(ctx, spec)
	if err == nil && eng == nil {
		err = errors.New("loader returned no engine")
	}
	return eng, err
}

// evictForRetry unloads least recently used unleased, unpinned models
// worth at least e's size (or all of them when they are worth less) after a
// load of e ran out of memory. It returns how many it unloaded.
func (r *Registry) evictForRetry(e *entry) int {
	r.mu.Lock()
	var victims []*entry
	var engines []engine.Engine
	var freed int64
	for freed < e.size {
		v := r.victim(e)
		if v == nil {
			break
		}
		freed += v.size
		engines = append(engines, v.eng)
		victims = append(victims, v)
		r.beginUnload(v)
		r.stats.evictions++
	}
	r.mu.Unlock()
	for i, v := range victims {
		r.finishUnload(v, engines[i], "out of memory loading "+e.spec.Name)
	}
	return len(victims)
}

// await waits for op, for which the caller was counted as a waiter.
func (r *Registry) await(ctx context.Context, e *entry, op *loadOp) (*Lease, error) {
	select {
	case <-op.done:
	case <-ctx.Done():
		r.mu.Lock()
		select {
		case <-op.done:
			// The load ended while we gave up: a success left us a
			// reference, which must be returned.
			if op.err == nil {
				r.releaseLocked(e)
			}
		default:
			op.waiters--
		}
		r.mu.Unlock()
		return nil, fmt.Errorf("models: waiting for model %q to load: %w", e.spec.Name, ctx.Err())
	}
	if op.err != nil {
		return nil, op.err
	}
	return &Lease{r: r, e: e, eng: op.eng}, nil
}

// evict unloads v to make room; it releases mu while the engine closes and
// takes it again. Caller holds mu.
func (r *Registry) evict(v *entry, why string) {
	eng := v.eng
	r.beginUnload(v)
	r.stats.evictions++
	r.mu.Unlock()
	r.finishUnload(v, eng, why)
	r.mu.Lock()
}

// beginUnload moves e (ready, unleased) to unloading. Its memory stays
// counted until finishUnload. Caller holds mu.
func (r *Registry) beginUnload(e *entry) {
	e.state = stateUnloading
	e.unloaded = make(chan struct{})
	r.unloadingBytes += e.size
	r.unloadingCount++
}

// finishUnload closes the engine without holding mu, then returns e's
// memory to the budget and wakes waiters.
func (r *Registry) finishUnload(e *entry, eng engine.Engine, why string) {
	start := time.Now()
	err := eng.Close()
	took := time.Since(start)
	r.mu.Lock()
	e.eng = nil
	e.state = stateIdle
	r.resident -= e.size
	r.loaded--
	r.unloadingBytes -= e.size
	r.unloadingCount--
	close(e.unloaded)
	e.unloaded = nil
	r.broadcast()
	r.mu.Unlock()
	if err != nil {
		r.log.Warn("closing model engine failed", "model", e.spec.Name, "why", why, "err", err)
		return
	}
	r.log.Info("model unloaded", "model", e.spec.Name, "why", why, "bytes", e.size, "took", took)
}

// release drops one reference.
func (r *Registry) release(e *entry) {
	r.mu.Lock()
	eng, unload := r.releaseLocked(e)
	r.mu.Unlock()
	if unload {
		r.finishUnload(e, eng, "registry closed")
	}
}

// releaseLocked drops one reference; when that was the last one of a closed
// registry it starts the unload, which the caller must finish (without mu)
// with the returned engine. Caller holds mu.
func (r *Registry) releaseLocked(e *entry) (engine.Engine, bool) {
	e.refs--
	r.touch(e)
	if e.refs > 0 {
		return nil, false
	}
	e.idleSince = r.now()
	if r.closed {
		eng := e.eng
		r.beginUnload(e)
		r.broadcast()
		return eng, true
	}
	r.broadcast()
	return nil, false
}

// Pin keeps the named model loaded once it is: it is never evicted or
// unloaded for idleness. It does not load the model.
func (r *Registry) Pin(name string) error { return r.setPinned(name, true) }

// Unpin makes the named model evictable again.
func (r *Registry) Unpin(name string) error { return r.setPinned(name, false) }

func (r *Registry) setPinned(name string, pin bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[name]
	if e == nil {
		return fmt.Errorf("%w %q", ErrUnknownModel, name)
	}
	e.pinned = pin
	if !pin {
		r.broadcast()
	}
	return nil
}

// Unload unloads the named model now, pinned or not, if it is loaded and
// not leased; a leased model gives an error wrapping ErrInUse. A model that
// is loading is waited for first (honouring ctx). Unloading a model that is
// not loaded does nothing.
func (r *Registry) Unload(ctx context.Context, name string) error {
	r.mu.Lock()
	for {
		e := r.entries[name]
		if e == nil {
			r.mu.Unlock()
			return fmt.Errorf("%w %q", ErrUnknownModel, name)
		}
		switch e.state {
		case stateIdle:
			r.mu.Unlock()
			return nil
		case stateLoading, stateUnloading:
			if err := r.wait(ctx); err != nil {
				r.mu.Unlock()
				return fmt.Errorf("models: unloading %q: %w", name, err)
			}
		case stateReady:
			if e.refs > 0 {
				r.mu.Unlock()
				return fmt.Errorf("%w: model %q has %d leases out", ErrInUse, name, e.refs)
			}
			eng := e.eng
			r.beginUnload(e)
			r.mu.Unlock()
			r.finishUnload(e, eng, "unload requested")
			return nil
		}
	}
}

// Sweep unloads the models that nobody has leased for Options.KeepAlive
// (by Options.Now), except pinned ones, and returns how many it unloaded.
// The janitor calls it periodically; it does nothing when KeepAlive is 0.
func (r *Registry) Sweep() int {
	if r.opts.KeepAlive <= 0 {
		return 0
	}
	now := r.now()
	r.mu.Lock()
	var victims []*entry
	var engines []engine.Engine
	for _, e := range r.order {
		if e.state == stateReady && e.refs == 0 && !e.pinned && now.Sub(e.idleSince) >= r.opts.KeepAlive {
			engines = append(engines, e.eng)
			victims = append(victims, e)
			r.beginUnload(e)
			r.stats.idleUnloads++
		}
	}
	r.mu.Unlock()
	for i, e := range victims {
		r.finishUnload(e, engines[i], "idle past keep-alive")
	}
	return len(victims)
}

// janitor runs Sweep every interval until Close.
func (r *Registry) janitor(every time.Duration) {
	defer close(r.janitorDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.stopJanitor:
			return
		case <-t.C:
			r.Sweep()
		}
	}
}

// Close stops the janitor, fails waiting and future Gets with ErrClosed,
// unloads every model not leased, and waits for loads and unloads in
// progress to end. Models still leased are unloaded at their last Release.
// Calling it again does nothing.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	var victims []*entry
	var engines []engine.Engine
	for _, e := range r.order {
		if e.state == stateReady && e.refs == 0 {
			engines = append(engines, e.eng)
			victims = append(victims, e)
			r.beginUnload(e)
		}
	}
	r.broadcast()
	r.mu.Unlock()

	if r.stopJanitor != nil {
		close(r.stopJanitor)
		<-r.janitorDone
	}
	for i, e := range victims {
		r.finishUnload(e, engines[i], "registry closed")
	}
	// Wait for loads and unloads in flight; every transition broadcasts.
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		busy := false
		for _, e := range r.order {
			if e.state == stateLoading || e.state == stateUnloading {
				busy = true
				break
			}
		}
		if !busy {
			return nil
		}
		_ = r.wait(context.Background())
	}
}

// Stats is a snapshot of the registry's counters and loaded models.
type Stats struct {
	Hits         int64         `json:"hits"`          // Gets served by a loaded model
	Misses       int64         `json:"misses"`        // Gets that waited for a load
	Loads        int64         `json:"loads"`         // successful loads
	LoadFailures int64         `json:"load_failures"` // failed loads (after the out-of-memory retry)
	Evictions    int64         `json:"evictions"`     // models unloaded to make room
	IdleUnloads  int64         `json:"idle_unloads"`  // models unloaded after KeepAlive
	LoadTime     time.Duration `json:"load_time"`     // total time of successful loads
	// ResidentBytes is the estimated memory of the models loading, loaded
	// or unloading; it never exceeds BudgetBytes when that is set.
	ResidentBytes int64       `json:"resident_bytes"`
	BudgetBytes   int64       `json:"budget_bytes"`
	Loaded        []ModelStat `json:"loaded"` // in registration order
}

// ModelStat describes one model that is loading, loaded or unloading.
type ModelStat struct {
	Name      string    `json:"name"`
	Tier      string    `json:"tier"`
	State     string    `json:"state"` // loading, ready or unloading
	Bytes     int64     `json:"bytes"` // estimated memory
	Leases    int       `json:"leases"`
	Pinned    bool      `json:"pinned"`
	Hits      int64     `json:"hits"`
	Loads     int64     `json:"loads"`
	LoadedAt  time.Time `json:"loaded_at"`
	IdleSince time.Time `json:"idle_since"` // last time the lease count dropped to zero
	// Placement says how many of its layers run on a GPU, for a loaded
	// engine that knows (engine.Placer); nil otherwise.
	Placement *engine.Placement `json:"placement,omitempty"`
}

// Stats returns a snapshot of the counters and of the loaded models.
func (r *Registry) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{
		Hits:          r.stats.hits,
		Misses:        r.stats.misses,
		Loads:         r.stats.loads,
		LoadFailures:  r.stats.loadFailures,
		Evictions:     r.stats.evictions,
		IdleUnloads:   r.stats.idleUnloads,
		LoadTime:      r.stats.loadTime,
		ResidentBytes: r.resident,
		BudgetBytes:   r.opts.Budget,
	}
	for _, e := range r.order {
		if e.state == stateIdle {
			continue
		}
		ms := ModelStat{
			Name: e.spec.Name, Tier: e.spec.Tier, State: e.state.String(), Bytes: e.size,
			Leases: e.refs, Pinned: e.pinned, Hits: e.hits, Loads: e.loads,
			LoadedAt: e.loadedAt, IdleSince: e.idleSince,
		}
		if p, ok := e.eng.(engine.Placer); ok {
			pl := p.Placement()
			ms.Placement = &pl
		}
		s.Loaded = append(s.Loaded, ms)
	}
	return s
}

// Pick chooses a registered model for a plugin that asks for a tier and
// lists preferences (model names, tags, "name:quant", or name prefixes such
// as "qwen2.5"; see Spec.Tags). An empty tier means any tier. The first
// preference that names a model of the tier wins; when none does, any model
// of the tier will do. Among equally good candidates a model already loaded
// is preferred (no load needed), then the one registered first. Models
// estimated to exceed the whole budget are never picked. It fails with an
// error wrapping ErrNoModel when the tier has no model.
func (r *Registry) Pick(tier string, prefer []string) (string, error) {
	return r.PickFrom(tier, prefer, nil)
}

// PickFrom is Pick restricted to the models allowed names (a tenant's
// allow-list; a name matches like a preference does). Nil allows all.
func (r *Registry) PickFrom(tier string, prefer, allowed []string) (string, error) {
	tier = strings.ToLower(strings.TrimSpace(tier))
	r.mu.Lock()
	defer r.mu.Unlock()
	var cands []*entry
	for _, e := range r.order {
		if tier != "" && e.spec.Tier != tier {
			continue
		}
		if allowed != nil && !slices.ContainsFunc(allowed, e.spec.matches) {
			continue
		}
		if r.opts.Budget > 0 && e.size > r.opts.Budget {
			continue
		}
		cands = append(cands, e)
	}
	if len(cands) == 0 {
		tiers := map[string]bool{}
		var have []string
		for _, e := range r.order {
			if !tiers[e.spec.Tier] {
				tiers[e.spec.Tier] = true
				have = append(have, e.spec.Tier)
			}
		}
		if allowed != nil {
			return "", fmt.Errorf("%w: tier %q among the allowed models %v (registered tiers: %s)", ErrNoModel, tier, allowed, strings.Join(have, ", "))
		}
		return "", fmt.Errorf("%w: tier %q (registered tiers: %s)", ErrNoModel, tier, strings.Join(have, ", "))
	}
	best := func(es []*entry) *entry {
		for _, e := range es {
			if e.state == stateReady || e.state == stateLoading {
				return e
			}
		}
		return es[0]
	}
	for _, p := range prefer {
		var match []*entry
		for _, e := range cands {
			if e.spec.matches(p) {
				match = append(match, e)
			}
		}
		if len(match) > 0 {
			return best(match).spec.Name, nil
		}
	}
	return best(cands).spec.Name, nil
}
