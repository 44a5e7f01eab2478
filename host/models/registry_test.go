package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// fakeEngine is an engine.Engine test double whose Close reports to its
// tracker.
type fakeEngine struct {
	name    string
	closed  atomic.Bool
	onClose func()
}

func (f *fakeEngine) Model() string { return f.name }
func (f *fakeEngine) Generate(context.Context, engine.Request, engine.TokenFunc) (engine.Result, error) {
	if f.closed.Load() {
		return engine.Result{}, engine.ErrClosed
	}
	return engine.Result{Text: "from " + f.name, Model: f.name}, nil
}
func (f *fakeEngine) Embed(context.Context, []string) ([][]float32, error) {
	return nil, engine.ErrNotSupported
}
func (f *fakeEngine) CountTokens(context.Context, string) (int, error) { return 0, nil }
func (f *fakeEngine) Close() error {
	if f.closed.Swap(true) {
		return nil
	}
	if f.onClose != nil {
		f.onClose()
	}
	return nil
}

// tracker is a fake loader that simulates the memory of loaded models and
// checks, at every load and unload, that the registry keeps within budget
// and never loads a model twice.
type tracker struct {
	t      testing.TB
	budget int64 // 0: not checked
	// physical, when set, is the simulated machine's memory: a load that
	// would exceed it fails with ErrOutOfMemory.
	physical int64
	delay    time.Duration
	sizes    map[string]int64 // bytes per model; default 100

	mu       sync.Mutex
	resident int64
	peak     int64
	live     map[string]int
	loads    map[string]int // load attempts
	events   []string       // "load A", "unload A"
	// fail, when set, may fail a load attempt (1-based).
	fail func(name string, attempt int) error
	// gate, when set for a model, blocks its loads until closed.
	gate map[string]chan struct{}
}

func newTracker(t testing.TB, budget int64) *tracker {
	return &tracker{t: t, budget: budget, sizes: map[string]int64{}, live: map[string]int{},
		loads: map[string]int{}, gate: map[string]chan struct{}{}}
}

func (k *tracker) size(name string) int64 {
	if s, ok := k.sizes[name]; ok {
		return s
	}
	return 100
}

func (k *tracker) estimate(spec Spec) (int64, error) { return k.size(spec.Name), nil }

func (k *tracker) load(_ context.Context, spec Spec) (engine.Engine, error) {
	k.mu.Lock()
	k.loads[spec.Name]++
	attempt := k.loads[spec.Name]
	gate := k.gate[spec.Name]
	fail := k.fail
	k.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if fail != nil {
		if err := fail(spec.Name, attempt); err != nil {
			return nil, err
		}
	}
	size := k.size(spec.Name)
	k.mu.Lock()
	if k.physical > 0 && k.resident+size > k.physical {
		k.mu.Unlock()
		return nil, fmt.Errorf("allocating %d bytes for %s: %w", size, spec.Name, ErrOutOfMemory)
	}
	k.resident += size
	k.peak = max(k.peak, k.resident)
	if k.budget > 0 && k.resident > k.budget {
		k.t.Errorf("loading %s: resident %d exceeds budget %d", spec.Name, k.resident, k.budget)
	}
	k.live[spec.Name]++
	if k.live[spec.Name] > 1 {
		k.t.Errorf("model %s loaded %d times at once", spec.Name, k.live[spec.Name])
	}
	k.events = append(k.events, "load "+spec.Name)
	k.mu.Unlock()
	if k.delay > 0 {
		time.Sleep(k.delay)
	}
	return &fakeEngine{name: spec.Name, onClose: func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.resident -= size
		k.live[spec.Name]--
		if k.live[spec.Name] < 0 || k.resident < 0 {
			k.t.Errorf("unloading %s: live %d, resident %d", spec.Name, k.live[spec.Name], k.resident)
		}
		k.events = append(k.events, "unload "+spec.Name)
	}}, nil
}

func (k *tracker) eventList() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.events)
}

func (k *tracker) attempts(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.loads[name]
}

func (k *tracker) isLive(name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.live[name] > 0
}

// newTestRegistry makes a registry over k with models named by names.
func newTestRegistry(t testing.TB, k *tracker, opts Options, names ...string) *Registry {
	t.Helper()
	opts.Load = k.load
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Estimate == nil {
		opts.Estimate = k.estimate
	}
	if opts.Budget == 0 {
		opts.Budget = k.budget
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	for _, n := range names {
		if err := r.Register(Spec{Name: n, Tier: TierDomain, Path: "/models/" + n + ".gguf"}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// watchdog fails the test with every goroutine's stack if it runs past d,
// which is what a deadlock looks like.
func watchdog(t *testing.T, d time.Duration) {
	t.Helper()
	timer := time.AfterFunc(d, func() { panic(fmt.Sprintf("%s still running after %v: deadlock?", t.Name(), d)) })
	t.Cleanup(func() { timer.Stop() })
}

// use gets and releases name, failing the test on error.
func use(t testing.TB, r *Registry, name string) {
	t.Helper()
	l, err := r.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	if got := l.Engine().Model(); got != name {
		t.Fatalf("Get(%s) returned engine %s", name, got)
	}
	l.Release()
}

func TestConcurrentGetsStayWithinBudget(t *testing.T) {
	watchdog(t, 60*time.Second)
	k := newTracker(t, 250) // five models of 100 bytes; two fit
	k.delay = time.Millisecond
	names := []string{"a", "b", "c", "d", "e"}
	r := newTestRegistry(t, k, Options{}, names...)

	const goroutines, perG = 50, 20
	var wg sync.WaitGroup
	var served atomic.Int64
	errs := make(chan error, goroutines*perG)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := 0; i < perG; i++ {
				name := names[rng.IntN(len(names))]
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				l, err := r.Get(ctx, name)
				cancel()
				if err != nil {
					errs <- err
					continue
				}
				res, err := l.Engine().Generate(context.Background(), engine.Request{Prompt: "hi"}, nil)
				if err != nil || res.Model != name {
					errs <- fmt.Errorf("leased %s, generate gave %q, %v", name, res.Model, err)
				}
				if rng.IntN(4) == 0 {
					time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
				}
				if s := r.Stats(); s.ResidentBytes > 250 {
					errs <- fmt.Errorf("registry resident %d over budget", s.ResidentBytes)
				}
				l.Release()
				l.Release() // idempotent
				served.Add(1)
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if served.Load() != goroutines*perG {
		t.Errorf("served %d of %d requests", served.Load(), goroutines*perG)
	}
	s := r.Stats()
	if s.Hits+s.Misses != goroutines*perG {
		t.Errorf("hits %d + misses %d != %d", s.Hits, s.Misses, goroutines*perG)
	}
	loads := 0
	for _, n := range names {
		loads += k.attempts(n)
	}
	if int64(loads) != s.Loads || s.LoadFailures != 0 {
		t.Errorf("tracker saw %d loads, stats %d loads %d failures", loads, s.Loads, s.LoadFailures)
	}
	if s.Evictions == 0 || s.Evictions != s.Loads-int64(len(s.Loaded)) {
		t.Errorf("evictions %d, loads %d, still loaded %d", s.Evictions, s.Loads, len(s.Loaded))
	}
	if k.peak > 250 || s.ResidentBytes > 250 {
		t.Errorf("peak resident %d, now %d, budget 250", k.peak, s.ResidentBytes)
	}
	for _, m := range s.Loaded {
		if m.Leases != 0 {
			t.Errorf("model %s still has %d leases", m.Name, m.Leases)
		}
	}
	t.Logf("stats: hits %d misses %d loads %d evictions %d peak %d", s.Hits, s.Misses, s.Loads, s.Evictions, k.peak)
}

func TestEvictionIsLeastRecentlyUsed(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"budget", Options{Budget: 200}},
		{"max-loaded", Options{MaxLoaded: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newTracker(t, tc.opts.Budget)
			r := newTestRegistry(t, k, tc.opts, "a", "b", "c")
			use(t, r, "a")
			use(t, r, "b")
			use(t, r, "a") // a is now more recent than b
			use(t, r, "c") // evicts b
			use(t, r, "a") // hit
			use(t, r, "b") // evicts c, the least recent
			// An unload finishes before the load it makes room for starts.
			want := []string{"load a", "load b", "unload b", "load c", "unload c", "load b"}
			if got := k.eventList(); !slices.Equal(got, want) {
				t.Errorf("events\n got %v\nwant %v", got, want)
			}
			s := r.Stats()
			if s.Hits != 2 || s.Misses != 4 || s.Evictions != 2 || s.Loads != 4 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestPinnedModelsAreNotEvicted(t *testing.T) {
	k := newTracker(t, 200)
	r := newTestRegistry(t, k, Options{}, "a", "b", "c")
	if err := r.Pin("a"); err != nil {
		t.Fatal(err)
	}
	use(t, r, "a")
	use(t, r, "b")
	use(t, r, "c") // a is least recent but pinned: b goes
	if !k.isLive("a") || k.isLive("b") || !k.isLive("c") {
		t.Fatalf("after loading c: events %v", k.eventList())
	}
	// With a and c pinned nothing can make room for b: fail fast.
	if err := r.Pin("c"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := r.Get(ctx, "b")
	if !errors.Is(err, ErrOverBudget) || !strings.Contains(err.Error(), "pinned") || time.Since(start) > 5*time.Second {
		t.Fatalf("Get(b) with the budget pinned: %v after %v", err, time.Since(start))
	}
	if err := r.Unpin("c"); err != nil {
		t.Fatal(err)
	}
	use(t, r, "b") // evicts c now
	if !k.isLive("a") || k.isLive("c") {
		t.Errorf("events %v", k.eventList())
	}
	if err := r.Pin("nope"); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("Pin(nope): %v", err)
	}
	// MaxLoaded full of pinned models fails fast too.
	k2 := newTracker(t, 0)
	r2 := newTestRegistry(t, k2, Options{MaxLoaded: 1}, "a", "b")
	r2.Pin("a")
	use(t, r2, "a")
	if _, err := r2.Get(ctx, "b"); !errors.Is(err, ErrOverBudget) {
		t.Errorf("MaxLoaded full of pinned models: %v", err)
	}
}

// eventually polls cond for up to 5 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestKeepAliveUnloadsIdleModels(t *testing.T) {
	clock := testutil.NewClock()
	k := newTracker(t, 0)
	r := newTestRegistry(t, k, Options{KeepAlive: time.Minute, SweepInterval: time.Millisecond, Now: clock.Now},
		"idle", "leased", "pinned")
	r.Pin("pinned")
	use(t, r, "idle")
	use(t, r, "pinned")
	held, err := r.Get(context.Background(), "leased")
	if err != nil {
		t.Fatal(err)
	}

	clock.Advance(59 * time.Second)
	time.Sleep(20 * time.Millisecond) // the janitor runs many times
	if !k.isLive("idle") {
		t.Fatal("model unloaded before its keep-alive ran out")
	}
	clock.Advance(2 * time.Second)
	eventually(t, "the idle model is unloaded", func() bool { return !k.isLive("idle") })
	if !k.isLive("leased") || !k.isLive("pinned") {
		t.Fatalf("leased or pinned model unloaded: %v", k.eventList())
	}

	// Unpinned, a model idle for longer than the keep-alive goes at once.
	r.Unpin("pinned")
	eventually(t, "the unpinned model is unloaded", func() bool { return !k.isLive("pinned") })

	// The lease was taken long ago; keep-alive counts from the release.
	held.Release()
	clock.Advance(30 * time.Second)
	time.Sleep(20 * time.Millisecond)
	if !k.isLive("leased") {
		t.Fatal("model unloaded 30s after its release")
	}
	clock.Advance(31 * time.Second)
	eventually(t, "the released model is unloaded", func() bool { return !k.isLive("leased") })
	if s := r.Stats(); s.IdleUnloads != 3 || s.Evictions != 0 || s.ResidentBytes != 0 || len(s.Loaded) != 0 {
		t.Errorf("stats %+v", s)
	}
	// An unloaded model loads again on demand.
	use(t, r, "idle")
	if k.attempts("idle") != 2 {
		t.Errorf("idle loaded %d times", k.attempts("idle"))
	}
}

func TestLeasedModelIsNeverEvicted(t *testing.T) {
	watchdog(t, 30*time.Second)
	k := newTracker(t, 150) // one model at a time
	r := newTestRegistry(t, k, Options{}, "a", "b")
	la, err := r.Get(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	// b must wait for a's release, not exceed the budget.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = r.Get(ctx, "b")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("Get(b) while a is leased: %v", err)
	}
	if err := r.Unload(context.Background(), "a"); !errors.Is(err, ErrInUse) {
		t.Errorf("Unload of a leased model: %v", err)
	}
	if r.Sweep() != 0 || !k.isLive("a") {
		t.Fatal("leased model unloaded")
	}

	got := make(chan error, 1)
	go func() {
		lb, err := r.Get(context.Background(), "b")
		if err == nil {
			lb.Release()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if !k.isLive("a") || k.isLive("b") {
		t.Fatalf("b loaded while a was leased: %v", k.eventList())
	}
	la.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if want := []string{"load a", "unload a", "load b"}; !slices.Equal(k.eventList(), want) {
		t.Errorf("events %v, want %v", k.eventList(), want)
	}
}

func TestFailedLoadReachesEveryWaiterAndIsRetried(t *testing.T) {
	watchdog(t, 30*time.Second)
	k := newTracker(t, 0)
	boom := errors.New("boom: corrupt tensor data")
	k.fail = func(name string, attempt int) error {
		if attempt == 1 {
			return boom
		}
		return nil
	}
	k.gate["m"] = make(chan struct{})
	r := newTestRegistry(t, k, Options{}, "m")

	const waiters = 10
	errs := make(chan error, waiters)
	for i := 0; i < waiters; i++ {
		go func() {
			l, err := r.Get(context.Background(), "m")
			if err == nil {
				l.Release()
			}
			errs <- err
		}()
	}
	eventually(t, "all Gets wait for the load", func() bool { return r.Stats().Misses == waiters })
	close(k.gate["m"])
	for i := 0; i < waiters; i++ {
		err := <-errs
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"m"`) || !strings.Contains(err.Error(), "/models/m.gguf") {
			t.Errorf("waiter %d: %v", i, err)
		}
	}
	if n := k.attempts("m"); n != 1 {
		t.Errorf("%d load attempts for one failure, want 1 (single flight)", n)
	}
	if s := r.Stats(); s.LoadFailures != 1 || s.ResidentBytes != 0 || len(s.Loaded) != 0 {
		t.Errorf("after failure: %+v", s)
	}
	use(t, r, "m") // retried
	if n := k.attempts("m"); n != 2 {
		t.Errorf("%d load attempts, want 2", n)
	}
}

func TestSingleFlightAndWaiterCancellation(t *testing.T) {
	watchdog(t, 30*time.Second)
	k := newTracker(t, 0)
	k.gate["m"] = make(chan struct{})
	r := newTestRegistry(t, k, Options{}, "m")

	// One waiter gives up; the load carries on for the others.
	ctx, cancel := context.WithCancel(context.Background())
	quitter := make(chan error, 1)
	go func() {
		_, err := r.Get(ctx, "m")
		quitter <- err
	}()
	const waiters = 20
	leases := make(chan *Lease, waiters)
	for i := 0; i < waiters; i++ {
		go func() {
			l, err := r.Get(context.Background(), "m")
			if err != nil {
				t.Error(err)
			}
			leases <- l
		}()
	}
	eventually(t, "all Gets wait", func() bool { return r.Stats().Misses == waiters+1 })
	cancel()
	if err := <-quitter; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled waiter: %v", err)
	}
	close(k.gate["m"])
	var eng engine.Engine
	for i := 0; i < waiters; i++ {
		l := <-leases
		if eng == nil {
			eng = l.Engine()
		} else if l.Engine() != eng {
			t.Error("waiters got different engines")
		}
		if l.Name() != "m" {
			t.Errorf("lease name %q", l.Name())
		}
		defer l.Release()
	}
	if n := k.attempts("m"); n != 1 {
		t.Errorf("%d loads, want 1", n)
	}
	s := r.Stats()
	if len(s.Loaded) != 1 || s.Loaded[0].Leases != waiters {
		t.Errorf("leases %+v, want %d (the cancelled waiter's must not leak)", s.Loaded, waiters)
	}
}

func TestCancelledWaiterAfterLoadReturnsItsReference(t *testing.T) {
	// A waiter whose ctx ends just as the load succeeds must not keep the
	// reference the load gave it, or the model could never be evicted.
	watchdog(t, 30*time.Second)
	for i := 0; i < 40; i++ {
		k := newTracker(t, 150)
		k.gate["a"] = make(chan struct{})
		r := newTestRegistry(t, k, Options{}, "a", "b")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if l, err := r.Get(ctx, "a"); err == nil {
				l.Release()
			}
		}()
		eventually(t, "the Get waits", func() bool { return r.Stats().Misses == 1 })
		if i%2 == 0 {
			cancel()
			close(k.gate["a"])
		} else {
			close(k.gate["a"])
			cancel()
		}
		<-done
		eventually(t, "a is loaded", func() bool {
			s := r.Stats()
			return len(s.Loaded) == 1 && s.Loaded[0].State == "ready"
		})
		if s := r.Stats(); s.Loaded[0].Leases != 0 {
			t.Fatalf("iteration %d: %d leases leaked", i, s.Loaded[0].Leases)
		}
		use(t, r, "b") // must be able to evict a
		r.Close()
	}
}

func TestOutOfMemoryEvictsAndRetriesOnce(t *testing.T) {
	k := newTracker(t, 0)
	k.physical = 250 // the estimates are optimistic: only two fit for real
	r := newTestRegistry(t, k, Options{Budget: 1000}, "a", "b", "c")
	use(t, r, "a")
	use(t, r, "b")
	use(t, r, "c") // first attempt fails with ErrOutOfMemory; a is evicted; retry works
	if k.attempts("c") != 2 {
		t.Errorf("c load attempts %d, want 2", k.attempts("c"))
	}
	if k.isLive("a") || !k.isLive("b") || !k.isLive("c") {
		t.Errorf("events %v", k.eventList())
	}
	if s := r.Stats(); s.Evictions != 1 || s.LoadFailures != 0 || s.Loads != 3 {
		t.Errorf("stats %+v", s)
	}

	// Only one retry: a second out-of-memory failure is reported.
	k.fail = func(name string, _ int) error {
		if name == "a" {
			return fmt.Errorf("ggml: %w", ErrOutOfMemory)
		}
		return nil
	}
	before := k.attempts("a")
	_, err := r.Get(context.Background(), "a")
	if !errors.Is(err, ErrOutOfMemory) || k.attempts("a")-before != 2 {
		t.Errorf("err %v after %d attempts", err, k.attempts("a")-before)
	}

	// With nothing to evict there is no retry.
	k2 := newTracker(t, 0)
	k2.fail = func(string, int) error { return ErrOutOfMemory }
	r2 := newTestRegistry(t, k2, Options{}, "x")
	if _, err := r2.Get(context.Background(), "x"); !errors.Is(err, ErrOutOfMemory) || k2.attempts("x") != 1 {
		t.Errorf("err %v after %d attempts", err, k2.attempts("x"))
	}
}

func TestModelLargerThanBudgetFailsFast(t *testing.T) {
	k := newTracker(t, 50)
	r := newTestRegistry(t, k, Options{}, "big")
	_, err := r.Get(context.Background(), "big")
	if !errors.Is(err, ErrOverBudget) {
		t.Fatalf("err = %v", err)
	}
	for _, s := range []string{`"big"`, "100 B", "50 B"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %s", err, s)
		}
	}
	if k.attempts("big") != 0 {
		t.Error("loader called for a model that cannot fit")
	}
	// Pick never offers it.
	if _, err := r.Pick(TierDomain, nil); !errors.Is(err, ErrNoModel) {
		t.Errorf("Pick: %v", err)
	}
}

func TestEstimateErrors(t *testing.T) {
	k := newTracker(t, 0)
	calls := 0
	r := newTestRegistry(t, k, Options{Estimate: func(s Spec) (int64, error) {
		calls++
		if calls == 1 {
			return 0, fmt.Errorf("%w: %s: truncated", ErrCorrupt, s.Path)
		}
		return 10, nil
	}}, "m")
	_, err := r.Get(context.Background(), "m")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "/models/m.gguf") {
		t.Fatalf("err = %v", err)
	}
	use(t, r, "m") // estimated again, then loaded
	use(t, r, "m") // estimate cached
	if calls != 2 {
		t.Errorf("estimate called %d times", calls)
	}
	// Spec.MemoryBytes skips the estimate.
	if err := r.Register(Spec{Name: "sized", MemoryBytes: 5}); err != nil {
		t.Fatal(err)
	}
	use(t, r, "sized")
	if calls != 2 {
		t.Errorf("estimate called for a sized spec")
	}
}

func TestLoaderPanicIsAnError(t *testing.T) {
	watchdog(t, 10*time.Second)
	r, err := New(Options{Load: func(context.Context, Spec) (engine.Engine, error) { panic("kaboom") },
		Estimate: func(Spec) (int64, error) { return 1, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Register(Spec{Name: "m"})
	if _, err := r.Get(context.Background(), "m"); err == nil || !strings.Contains(err.Error(), "kaboom") {
		t.Errorf("err = %v", err)
	}
	r2, _ := New(Options{Load: func(context.Context, Spec) (engine.Engine, error) { return nil, nil },
		Estimate: func(Spec) (int64, error) { return 1, nil }})
	defer r2.Close()
	r2.Register(Spec{Name: "m"})
	if _, err := r2.Get(context.Background(), "m"); err == nil {
		t.Error("nil engine accepted")
	}
}

func TestRegisterAndErrors(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without Load succeeded")
	}
	if _, err := New(Options{Load: newTracker(t, 0).load, Budget: -1}); err == nil {
		t.Error("negative budget accepted")
	}
	k := newTracker(t, 0)
	r := newTestRegistry(t, k, Options{}, "a")
	if err := r.Register(Spec{Name: "a"}); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("duplicate: %v", err)
	}
	for _, s := range []Spec{{}, {Name: " "}, {Name: "x", ContextSize: -1}, {Name: "x", Parallel: -1}, {Name: "x", MemoryBytes: -1}} {
		if err := r.Register(s); err == nil {
			t.Errorf("Register(%+v) succeeded", s)
		}
	}
	if _, err := r.Get(context.Background(), "nope"); !errors.Is(err, ErrUnknownModel) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown: %v", err)
	}
	if err := r.Unload(context.Background(), "nope"); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("Unload unknown: %v", err)
	}
	if err := r.Unload(context.Background(), "a"); err != nil {
		t.Errorf("Unload of an unloaded model: %v", err)
	}
	use(t, r, "a")
	if err := r.Unload(context.Background(), "a"); err != nil || k.isLive("a") {
		t.Errorf("Unload: %v, live %v", err, k.isLive("a"))
	}
	if specs := r.Specs(); len(specs) != 1 || specs[0].Name != "a" || specs[0].Tier != TierDomain {
		t.Errorf("Specs() = %+v", specs)
	}
}

func TestCloseUnloadsAndRejects(t *testing.T) {
	watchdog(t, 30*time.Second)
	k := newTracker(t, 0)
	k.gate["slow"] = make(chan struct{})
	r := newTestRegistry(t, k, Options{KeepAlive: time.Hour}, "idle", "held", "slow")
	use(t, r, "idle")
	held, err := r.Get(context.Background(), "held")
	if err != nil {
		t.Fatal(err)
	}
	slow := make(chan *Lease, 1)
	go func() {
		l, _ := r.Get(context.Background(), "slow")
		slow <- l
	}()
	eventually(t, "slow is loading", func() bool { return k.attempts("slow") == 1 })

	closed := make(chan struct{})
	go func() {
		r.Close()
		close(closed)
	}()
	eventually(t, "idle is unloaded", func() bool { return !k.isLive("idle") })
	select {
	case <-closed:
		t.Fatal("Close returned while a load was in flight")
	case <-time.After(20 * time.Millisecond):
	}
	close(k.gate["slow"])
	<-closed
	if _, err := r.Get(context.Background(), "idle"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if err := r.Register(Spec{Name: "late"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Register after Close: %v", err)
	}
	if !k.isLive("held") {
		t.Fatal("leased model unloaded by Close")
	}
	held.Release()
	if k.isLive("held") {
		t.Error("leased model not unloaded at its release after Close")
	}
	if l := <-slow; l != nil {
		l.Release()
	}
	if k.isLive("slow") {
		t.Error("model loaded during Close still live after its release")
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestPick(t *testing.T) {
	k := newTracker(t, 0)
	r := newTestRegistry(t, k, Options{})
	for _, s := range []Spec{
		{Name: "qwen2.5-0.5b-instruct", Tier: "Domain", Quant: "Q4_K_M", Tags: []string{"small"}},
		{Name: "qwen2.5-1.5b-instruct", Tier: "domain", Quant: "Q8_0"},
		{Name: "phi-3.5-mini", Tier: "reasoner"},
		{Name: "bge-small", Tier: "router"},
	} {
		if err := r.Register(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		tier   string
		prefer []string
		want   string
	}{
		{"domain", nil, "qwen2.5-0.5b-instruct"},
		{"domain", []string{"qwen2.5-1.5b-instruct"}, "qwen2.5-1.5b-instruct"},
		{"domain", []string{"llama-3", "QWEN2.5-1.5B-INSTRUCT:q8_0"}, "qwen2.5-1.5b-instruct"},
		{"domain", []string{"small"}, "qwen2.5-0.5b-instruct"},
		{"domain", []string{"qwen2.5"}, "qwen2.5-0.5b-instruct"},
		{"domain", []string{"qwen2"}, "qwen2.5-0.5b-instruct"}, // fallback: "qwen2" is not a whole prefix
		{"domain", []string{"phi-3.5-mini"}, "qwen2.5-0.5b-instruct"},
		{"reasoner", []string{"qwen2.5"}, "phi-3.5-mini"},
		{"", []string{"phi"}, "phi-3.5-mini"},
		{"ROUTER", nil, "bge-small"},
	} {
		got, err := r.Pick(tc.tier, tc.prefer)
		if err != nil || got != tc.want {
			t.Errorf("Pick(%q, %q) = %q, %v; want %q", tc.tier, tc.prefer, got, err, tc.want)
		}
	}
	// A loaded model wins among equals.
	use(t, r, "qwen2.5-1.5b-instruct")
	if got, _ := r.Pick("domain", []string{"qwen2.5"}); got != "qwen2.5-1.5b-instruct" {
		t.Errorf("Pick prefers %q over the loaded model", got)
	}
	_, err := r.Pick("vision", nil)
	if !errors.Is(err, ErrNoModel) || !strings.Contains(err.Error(), "vision") || !strings.Contains(err.Error(), "reasoner") {
		t.Errorf("Pick(vision): %v", err)
	}
}

// placedEngine is a fakeEngine that knows where its layers run.
type placedEngine struct {
	fakeEngine
	gpu, layers int
}

func (p *placedEngine) Placement() engine.Placement {
	return engine.Placement{GPULayers: p.gpu, Layers: p.layers}
}

func TestStatsPlacement(t *testing.T) {
	r, err := New(Options{
		Estimate: func(Spec) (int64, error) { return 10, nil },
		Load: func(_ context.Context, s Spec) (engine.Engine, error) {
			if s.Name == "gpu" {
				return &placedEngine{fakeEngine: fakeEngine{name: s.Name}, gpu: 33, layers: 33}, nil
			}
			return &fakeEngine{name: s.Name}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, name := range []string{"gpu", "remote"} {
		if err := r.Register(Spec{Name: name, Tier: TierDomain, Path: name + ".gguf"}); err != nil {
			t.Fatal(err)
		}
		l, err := r.Get(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
	}
	got := map[string]*engine.Placement{}
	for _, m := range r.Stats().Loaded {
		got[m.Name] = m.Placement
	}
	if p := got["gpu"]; p == nil || *p != (engine.Placement{GPULayers: 33, Layers: 33}) {
		t.Errorf("placement of the GPU model = %+v, want 33 of 33 layers", p)
	}
	if p, ok := got["remote"]; !ok || p != nil {
		t.Errorf("an engine that does not say where it runs: placement %+v (listed %v), want nil", p, ok)
	}
}
