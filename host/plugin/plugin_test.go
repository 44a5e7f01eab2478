package plugin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// slack is how much longer than a timeout a stopped call may take to return
// (generous: -race and a loaded 2-core machine).
const slack = 2 * time.Second

// assertGoodServes checks that the shared good plugin still answers.
func assertGoodServes(t *testing.T) {
	t.Helper()
	_, _, good := sharedRuntime(t)
	resp, err := good.Prompt(context.Background(), abi.PromptRequest{Query: "still there?"})
	if err != nil {
		t.Fatalf("good plugin stopped serving: %v", err)
	}
	if len(resp.Messages) != 2 || resp.Messages[1].Content != "still there?" {
		t.Fatalf("good plugin answered wrongly: %+v", resp)
	}
}

func TestGoodPlugin(t *testing.T) {
	_, svc, good := sharedRuntime(t)
	ctx := context.Background()

	m := good.Manifest()
	if good.Name() != "good" || good.Version() != "1.0.0" || m.ABI != 1 || m.Model.Tier != abi.TierDomain ||
		m.Generation.MaxTokens != 64 || len(m.Keywords) != 2 || !good.HasHandle() {
		t.Fatalf("manifest/identity wrong: name=%q version=%q %+v", good.Name(), good.Version(), m)
	}
	sum := sha256.Sum256(wasmBytes(t, "good"))
	if good.Hash() != hex.EncodeToString(sum[:]) || good.Path() != wasmPath("good") {
		t.Fatalf("hash/path wrong: %s %s", good.Hash(), good.Path())
	}

	resp, err := good.Prompt(ctx, abi.PromptRequest{Query: "what is good?"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Messages) != 2 || resp.Messages[0].Content != "You are good." || resp.Messages[1].Content != "what is good?" {
		t.Fatalf("prompt: %+v", resp)
	}

	v, err := good.Validate(ctx, abi.ValidateRequest{Query: "q", Response: "fine", Domain: "good"})
	if err != nil || !v.OK || v.Score != 1 {
		t.Fatalf("validate: %+v %v", v, err)
	}
	v, err = good.Validate(ctx, abi.ValidateRequest{Query: "q", Response: ""})
	if err != nil || v.OK || len(v.Issues) != 1 || v.Issues[0].Severity != abi.SeverityError {
		t.Fatalf("validate empty: %+v %v", v, err)
	}

	rctx := WithRequestInfo(ctx, RequestInfo{ID: "req-42", Tenant: "acme"})
	h, err := good.Handle(rctx, abi.PromptRequest{Query: "hello there"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Response != "echo: hello there" || !h.Validation.OK {
		t.Fatalf("handle: %+v", h)
	}
	var seen *fakeCall
	for _, c := range svc.callsFor("good") {
		if c.Call.RequestID == "req-42" {
			seen = &c
		}
	}
	if seen == nil {
		t.Fatal("Services did not see the handle's generate call")
	}
	c := seen.Call
	if seen.Fn != "generate" || c.Export != "handle" || c.Tenant != "acme" || c.HostCall != 1 ||
		c.Manifest == nil || c.Manifest.Name != "good" || c.Hash != good.Hash() || c.TokensLeft != DefaultMaxTokens {
		t.Fatalf("Call = %+v", c)
	}
	// The plugin asked for 16 tokens; temperature and stop come from its
	// manifest's generation defaults.
	if seen.Gen.MaxTokens != 16 || len(seen.Gen.Messages) != 1 || seen.Gen.Temperature == nil ||
		*seen.Gen.Temperature != 0.5 || len(seen.Gen.Stop) != 1 || seen.Gen.Stop[0] != "\n\n" {
		t.Fatalf("generate request = %+v", seen.Gen)
	}

	st := good.Stats()
	if st.Calls < 5 || st.Instances < 1 || st.Instances > sharedPoolSize || st.HostCalls < 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestSandbox(t *testing.T) {
	_, _, good := sharedRuntime(t)
	ctx := context.Background()
	probe := func() string {
		resp, err := good.Prompt(ctx, abi.PromptRequest{Query: "probe"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Messages[0].Content
	}
	a, b := probe(), probe()
	t.Logf("sandbox probe: %s", a)
	m := regexp.MustCompile(`^file_error=true env=0 year=(\d+) rand=([0-9a-f]{16})$`).FindStringSubmatch(a)
	if m == nil {
		t.Fatalf("probe = %q: want no file access, no env", a)
	}
	if m[1] < "2025" {
		t.Errorf("plugin clock says year %s: not the real clock", m[1])
	}
	if a[len(a)-16:] == b[len(b)-16:] {
		t.Errorf("two probes drew the same random bytes %s: not crypto randomness", m[2])
	}

	before := good.Stats()
	_, err := good.Prompt(ctx, abi.PromptRequest{Query: "probe-http"})
	if !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("http_request: want a trap saying not allowed, got %v", err)
	}
	if after := good.Stats(); after.InstancesDropped != before.InstancesDropped+1 {
		t.Fatalf("trapped instance not discarded: %d -> %d", before.InstancesDropped, after.InstancesDropped)
	}
	assertGoodServes(t)
}

func TestConfig(t *testing.T) {
	rt := newRuntime(t, Options{PoolSize: 1})
	p, err := rt.Load(context.Background(), wasmPath("good"), WithConfig(map[string]string{"system": "Be terse."}))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Prompt(context.Background(), abi.PromptRequest{Query: "x"})
	if err != nil || resp.Messages[0].Content != "Be terse." {
		t.Fatalf("config not visible: %+v %v", resp, err)
	}
	// Without WithConfig the plugin sees none (shared runtime).
	assertGoodServes(t)
	_, _, good := sharedRuntime(t)
	resp, err = good.Prompt(context.Background(), abi.PromptRequest{Query: "x"})
	if err != nil || resp.Messages[0].Content != "You are good." {
		t.Fatalf("config leaked: %+v %v", resp, err)
	}
}

func TestBadPlugins(t *testing.T) {
	cases := []struct {
		name   string
		limits Limits
		kind   error
		want   []string
		stat   func(Stats) uint64
	}{
		{name: "trap", kind: ErrTrap, want: []string{`plugin "trap": prompt: trapped: wasm error: unreachable: panic: runtime error: index out of range [7] with length 0`},
			stat: func(s Stats) uint64 { return s.Traps }},
		{name: "loop", limits: Limits{CallTimeout: 300 * time.Millisecond}, kind: ErrTimeout,
			want: []string{`plugin "loop": prompt: timed out: stopped after `, `the limit is 300ms`},
			stat: func(s Stats) uint64 { return s.Timeouts }},
		// oom and bigout run long (the race detector slows wazero's exits
		// to Go, and a busy machine more: oom once took 1.35 s of charged
		// time); throttling and the timeout are not what they test.
		{name: "oom", limits: Limits{MaxMemoryBytes: 32 << 20, ThrottleShare: 1, CallTimeout: time.Minute}, kind: ErrTrap,
			want: []string{`plugin "oom": prompt: trapped`, "out of memory"},
			stat: func(s Stats) uint64 { return s.Traps }},
		{name: "recurse", limits: Limits{ThrottleShare: 1, CallTimeout: time.Minute}, kind: ErrTrap, want: []string{`plugin "recurse": prompt: trapped: call stack exhausted: its frames passed 1024 KiB (plugins.stack_kb)`},
			stat: func(s Stats) uint64 { return s.Traps }},
		{name: "badjson", kind: ErrBadOutput, want: []string{`plugin "badjson": prompt: invalid output: prompt response: invalid JSON`}},
		{name: "badutf8", kind: ErrBadOutput, want: []string{`plugin "badutf8": prompt: invalid output: prompt response: invalid UTF-8 at byte 42`}},
		{name: "bigout", limits: Limits{ThrottleShare: 1, CallTimeout: time.Minute}, kind: ErrOutputTooLarge, want: []string{`plugin "bigout": prompt: output too large: 3145771 bytes, limit 1048576 (refused at output_set, before any copy)`}},
		{name: "bigerr", limits: Limits{ThrottleShare: 1, CallTimeout: time.Minute}, kind: ErrOutputTooLarge, want: []string{`plugin "bigerr": prompt: output too large: error message of 4194304 bytes, limit 65536 (refused at error_set, before any copy)`}},
		{name: "nocap", kind: ErrCapability, want: []string{`plugin "nocap": prompt: capability denied: mdsa_generate needs capability "generate", which plugin "nocap" did not declare`}},
		{name: "flood", kind: ErrHostCallLimit, want: []string{`plugin "flood": prompt: host-call cap exceeded: mdsa_count_tokens: more than 8 host calls in one prompt call`}},
	}
	rt, svc, _ := sharedRuntime(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := loadBad(t, rt, tc.name, WithLimits(tc.limits))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(context.Background())
			// Twice: the broken instance must be replaced, not reused.
			for i := 0; i < 2; i++ {
				start := time.Now()
				_, err := p.Prompt(context.Background(), abi.PromptRequest{Query: "hi"})
				took := time.Since(start)
				if !errors.Is(err, tc.kind) {
					t.Fatalf("call %d: want %v, got %v", i, tc.kind, err)
				}
				var ce *CallError
				if !errors.As(err, &ce) || ce.Plugin != tc.name || ce.Export != "prompt" {
					t.Fatalf("not a CallError naming the plugin: %#v", err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("error %q does not contain %q", err, w)
					}
				}
				if tc.limits.CallTimeout > 0 && took > tc.limits.CallTimeout+slack {
					t.Fatalf("call %d took %v, timeout %v", i, took, tc.limits.CallTimeout)
				}
				if i == 0 {
					t.Logf("%s: %v (in %v)", tc.name, err, took.Round(time.Millisecond))
				}
				assertGoodServes(t)
			}
			st := p.Stats()
			if st.Errors != 2 || st.InstancesDropped != 2 || st.Instances != 0 || st.InstancesCreated != 2 {
				t.Fatalf("each failed instance must be discarded: %+v", st)
			}
			if tc.stat != nil && tc.stat(st) != 2 {
				t.Fatalf("kind counter not 2: %+v", st)
			}
			// validate still works on a fresh instance.
			if _, err := p.Validate(context.Background(), abi.ValidateRequest{Query: "q", Response: "r"}); err != nil {
				t.Fatalf("validate after failures: %v", err)
			}
		})
	}
	// The flood plugin reached Services exactly MaxHostCalls times per call.
	if n := len(svc.callsFor("flood")); n != 2*DefaultMaxHostCalls {
		t.Errorf("flood reached Services %d times, want %d", n, 2*DefaultMaxHostCalls)
	}
	if n := len(svc.callsFor("nocap")); n != 0 {
		t.Errorf("nocap reached Services %d times", n)
	}
}

func TestUnknownABIRefusedAtLoad(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	p, err := loadBad(t, rt, "abi99")
	if err == nil {
		p.Close(context.Background())
		t.Fatal("loaded a plugin with ABI 99")
	}
	want := "plugin: load " + wasmPath("bad") + ": describe: invalid output: manifest: abi: unsupported ABI version 99 (host supports 1)"
	if !errors.Is(err, abi.ErrUnsupportedABI) || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
	// A describe that fails refuses the load too.
	_, err = rt.Load(context.Background(), wasmPath("bad"))
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), `describe: failed: plugin error: "unknown mode`) {
		t.Fatalf("error = %v", err)
	}
	assertGoodServes(t)
}

func TestLoadBytesRejectsNonWasm(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	good := wasmBytes(t, "good")
	cases := map[string][]byte{
		"empty":     nil,
		"text":      []byte("this is not wasm\n"),
		"truncated": good[:1000],
		"garbage":   append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{0xff}, 64)...),
	}
	for name, b := range cases {
		_, err := rt.LoadBytes(context.Background(), name+".wasm", b)
		if err == nil || !strings.Contains(err.Error(), "plugin: load "+name+".wasm: ") {
			t.Errorf("%s: error = %v", name, err)
		}
	}
	assertGoodServes(t)
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	cp := func(src, dst string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, wasmBytes(t, src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cp("good", filepath.Join(dir, "good.wasm"))
	cp("bad", filepath.Join(dir, "nocap", "nocap.wasm")) // dir/<name>/<name>.wasm layout; "nocap" by config
	cp("good", filepath.Join(dir, "good", "good.wasm"))  // the name good.wasm already has
	cp("good", filepath.Join(dir, "aaa-first.wasm"))     // sorts first and says "good": no hijack
	rnd := rand.New(rand.NewPCG(1, 2))
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(rnd.Uint32())
	}
	must(t, os.WriteFile(filepath.Join(dir, "corrupt.wasm"), junk, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "notes.wasm"), []byte("# not a module\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "README.md"), []byte("ignored"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "empty"), 0o755))

	rt := newRuntime(t, Options{})
	// Every plugin gets this config; good ignores it, bad becomes "nocap".
	plugins, err := rt.LoadDir(context.Background(), dir, WithConfig(map[string]string{"mode": "nocap"}))
	var names []string
	for _, p := range plugins {
		names = append(names, p.Name())
	}
	if strings.Join(names, ",") != "good,nocap" { // path order: good.wasm, nocap/nocap.wasm
		t.Fatalf("loaded %v", names)
	}
	if err == nil {
		t.Fatal("no error for the bad files")
	}
	t.Logf("LoadDir error:\n%v", err)
	for _, want := range []string{"corrupt.wasm: not a WebAssembly module", "notes.wasm: not a WebAssembly module",
		`good/good.wasm: duplicate plugin name "good"`,
		`aaa-first.wasm: the manifest names the plugin "good" but its file is aaa-first.wasm`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q", want)
		}
	}
	if n := strings.Count(err.Error(), "plugin: load "); n != 4 {
		t.Errorf("%d errors, want 4 (README.md and empty/ must be ignored)", n)
	}
	for _, p := range plugins {
		if _, err := p.Validate(context.Background(), abi.ValidateRequest{Response: "x"}); err != nil {
			t.Errorf("%s: %v", p.Name(), err)
		}
	}
	if _, err := rt.LoadDir(context.Background(), filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir: no error")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPoolBound(t *testing.T) {
	const poolSize, callers = 3, 32
	svc := &fakeServices{}
	svc.delay.Store(int64(5 * time.Millisecond))
	rt := newRuntime(t, Options{Services: svc, PoolSize: poolSize})
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, callers*3)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if _, err := p.Handle(ctx, abi.PromptRequest{Query: "q"}); err != nil {
				errs <- err
			}
			if _, err := p.Prompt(ctx, abi.PromptRequest{Query: "q"}); err != nil {
				errs <- err
			}
			if _, err := p.Validate(ctx, abi.ValidateRequest{Response: "r"}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := p.Stats()
	t.Logf("stats after %d callers: %+v, max concurrent generate %d", callers, st, svc.maxSeen.Load())
	if st.PeakInstances > poolSize || int(svc.maxSeen.Load()) > poolSize {
		t.Fatalf("pool bound %d exceeded: peak instances %d, concurrent calls %d", poolSize, st.PeakInstances, svc.maxSeen.Load())
	}
	if svc.maxSeen.Load() < 2 {
		t.Errorf("calls never overlapped (max %d): the pool is not used concurrently", svc.maxSeen.Load())
	}
	if st.InstancesCreated > poolSize || st.Errors != 0 || st.InUse != 0 || st.Calls != 1+3*callers {
		t.Fatalf("instances must be reused: %+v", st)
	}
}

func TestAcquireHonoursContext(t *testing.T) {
	svc := &fakeServices{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	rt := newRuntime(t, Options{Services: svc, PoolSize: 1})
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.Handle(context.Background(), abi.PromptRequest{Query: "slow"})
		done <- err
	}()
	<-svc.entered // the only instance is now busy
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = p.Prompt(ctx, abi.PromptRequest{Query: "q"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a free instance") {
		t.Fatalf("want deadline while waiting, got %v", err)
	}
	if took := time.Since(start); took > slack {
		t.Fatalf("acquire ignored ctx: %v", took)
	}
	close(svc.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestInstanceDiscardedAfterError(t *testing.T) {
	_, _, good := sharedRuntime(t)
	before := good.Stats()
	ctx := WithRequestInfo(context.Background(), RequestInfo{ID: "r1", Tenant: "denied"})
	_, err := good.Handle(ctx, abi.PromptRequest{Query: "hi"})
	// The plugin reports the refusal with error_set and status 1.
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), `plugin "good": handle: failed: plugin error: "generate failed: model_denied: mdsa_generate: model_denied: tenant \"denied\" may not use model fake"`) {
		t.Fatalf("error = %v", err)
	}
	after := good.Stats()
	if after.InstancesDropped != before.InstancesDropped+1 || after.Errors != before.Errors+1 {
		t.Fatalf("failed instance not discarded: before %+v after %+v", before, after)
	}
	if after.HostRefused != before.HostRefused+1 {
		t.Fatalf("refusal not counted: before %+v after %+v", before, after)
	}
	assertGoodServes(t)
}

func TestTokenBudget(t *testing.T) {
	_, svc, good := sharedRuntime(t)
	ctx := WithRequestInfo(context.Background(), RequestInfo{ID: "budget-3", MaxTokens: 3})
	if _, err := good.Handle(ctx, abi.PromptRequest{Query: "count"}); err != nil {
		t.Fatal(err)
	}
	var got *fakeCall
	for _, c := range svc.callsFor("good") {
		if c.Call.RequestID == "budget-3" {
			got = &c
		}
	}
	if got == nil || got.Gen.MaxTokens != 3 || got.Call.TokensLeft != 3 {
		t.Fatalf("max_tokens not clamped to the request budget: %+v", got)
	}
}

func TestCallTimeoutExcludesHostTime(t *testing.T) {
	svc := &fakeServices{}
	svc.delay.Store(int64(600 * time.Millisecond))
	rt := newRuntime(t, Options{Services: svc, PoolSize: 1, Limits: Limits{CallTimeout: 200 * time.Millisecond}})
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	// Warm up: the first call runs the Go runtime's initialisation.
	if _, err := p.Prompt(context.Background(), abi.PromptRequest{Query: "warm"}); err != nil {
		t.Fatal(err)
	}
	h, err := p.Handle(context.Background(), abi.PromptRequest{Query: "slow model"})
	if err != nil || h.Response != "echo: slow model" {
		t.Fatalf("a slow model must not count against the plugin's CallTimeout: %+v %v", h, err)
	}
}

func TestCallerDeadlineStopsSpinningPlugin(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	p, err := loadBad(t, rt, "loop", WithLimits(Limits{CallTimeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = p.Prompt(ctx, abi.PromptRequest{Query: "spin"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `plugin "loop": prompt`) {
		t.Fatalf("error = %v", err)
	}
	if took := time.Since(start); took > 200*time.Millisecond+slack {
		t.Fatalf("took %v", took)
	}
	if st := p.Stats(); st.Canceled != 1 || st.Timeouts != 0 || st.InstancesDropped != 1 {
		t.Fatalf("stats %+v", st)
	}
	assertGoodServes(t)
}

func TestCloseDrains(t *testing.T) {
	svc := &fakeServices{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	rt := newRuntime(t, Options{Services: svc, PoolSize: 2})
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.Handle(context.Background(), abi.PromptRequest{Query: "in flight"})
		done <- err
	}()
	<-svc.entered
	closed := make(chan error, 1)
	go func() { closed <- p.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a call was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := p.Prompt(context.Background(), abi.PromptRequest{Query: "late"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("call on a closing plugin: %v", err)
	}
	close(svc.block)
	if err := <-done; err != nil {
		t.Fatalf("in-flight call failed: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Instances != 0 || st.InUse != 0 {
		t.Fatalf("instances left after Close: %+v", st)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCloseStopsSpinningCall(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	p, err := loadBad(t, rt, "loop", WithLimits(Limits{CallTimeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.Prompt(context.Background(), abi.PromptRequest{Query: "spin"})
		done <- err
	}()
	for p.Stats().InUse == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want deadline exceeded", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("stopped call: %v", err)
		}
	case <-time.After(slack):
		t.Fatal("Close did not stop the spinning call")
	}
	assertGoodServes(t)
}

func TestNoServices(t *testing.T) {
	rt := newRuntime(t, Options{PoolSize: 1})
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Handle(context.Background(), abi.PromptRequest{Query: "q"})
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "unavailable: mdsa_generate: no inference service") {
		t.Fatalf("error = %v", err)
	}
}

func TestHandleMissing(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	p, err := loadBad(t, rt, "badjson")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if p.HasHandle() {
		t.Fatal("badjson has no handle export")
	}
	if _, err := p.Handle(context.Background(), abi.PromptRequest{}); !errors.Is(err, ErrNoHandle) {
		t.Fatalf("error = %v", err)
	}
}

func TestInputTooLarge(t *testing.T) {
	_, _, good := sharedRuntime(t)
	_, err := good.Prompt(context.Background(), abi.PromptRequest{Query: strings.Repeat("x", DefaultMaxInputBytes)})
	if !errors.Is(err, ErrInputTooLarge) {
		t.Fatalf("error = %v", err)
	}
}

func TestSameBytesCompiledOnce(t *testing.T) {
	rt := newRuntime(t, Options{PoolSize: 1})
	b := wasmBytes(t, "good")
	p1, err := rt.LoadBytes(context.Background(), "one", b)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := rt.LoadBytes(context.Background(), "two", b)
	if err != nil {
		t.Fatal(err)
	}
	if p1.comp != p2.comp {
		t.Fatal("same bytes compiled twice")
	}
	must(t, p1.Close(context.Background()))
	if _, err := p2.Prompt(context.Background(), abi.PromptRequest{Query: "q"}); err != nil {
		t.Fatalf("closing one plugin broke the other sharing its module: %v", err)
	}
	must(t, p2.Close(context.Background()))
	rt.mu.Lock()
	n, idle := len(rt.compiled), len(rt.idle)
	rt.mu.Unlock()
	// The unused module stays, idle, for a quick reload of the same bytes.
	if n != 1 || idle != 1 {
		t.Fatalf("%d compiled modules (%d idle) left after closing every plugin, want 1 idle", n, idle)
	}
	p3, err := rt.LoadBytes(context.Background(), "three", b)
	if err != nil {
		t.Fatal(err)
	}
	rt.mu.Lock()
	idle = len(rt.idle)
	rt.mu.Unlock()
	if p3.comp != p2.comp || idle != 0 {
		t.Fatalf("reload of the same bytes did not reuse the idle module (idle %d)", idle)
	}
	must(t, p3.Close(context.Background()))
}

func TestIdleModulesAreBounded(t *testing.T) {
	rt := newRuntime(t, Options{})
	good := wasmBytes(t, "good")
	for i := range keepIdle + 3 {
		// Appending a custom section gives a new module of the same code.
		b := append(append([]byte{}, good...), 0, 3, 1, 't', byte('a'+i))
		p, err := rt.LoadBytes(context.Background(), fmt.Sprint(i), b)
		if err != nil {
			t.Fatal(err)
		}
		must(t, p.Close(context.Background()))
	}
	rt.mu.Lock()
	n, idle := len(rt.compiled), len(rt.idle)
	rt.mu.Unlock()
	if n != keepIdle || idle != keepIdle {
		t.Fatalf("%d compiled, %d idle; want %d of each", n, idle, keepIdle)
	}
}

func TestCompileCacheHit(t *testing.T) {
	sharedRuntime(t) // its first load compiled the good plugin into the empty shared cache
	rt := newRuntime(t, Options{PoolSize: 1})
	start := time.Now()
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	warm := time.Since(start)
	must(t, p.Close(context.Background()))
	cold := shared.cold
	t.Logf("load of the good plugin: first load in this test binary %v, from the disk cache in a new runtime %v (%.0fx faster)",
		cold.Round(time.Millisecond), warm.Round(time.Millisecond), float64(cold)/float64(warm))
	// Timings flake on a loaded machine (and the shared cache may already be
	// warm from an earlier run); what must hold is that the cache has the
	// compiled code. BenchmarkLoadCached reports the figures.
	entries, err := os.ReadDir(cacheDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("compilation cache %s is empty after a load (%v)", cacheDir, err)
	}
}

func TestAllHostFunctions(t *testing.T) {
	_, svc, good := sharedRuntime(t)
	ctx := WithRequestInfo(context.Background(), RequestInfo{ID: "all-3"})
	h, err := good.Handle(ctx, abi.PromptRequest{Query: "all-host-functions"})
	if err != nil {
		t.Fatal(err)
	}
	want := `echo: all-host-functions | count={"count":1} | embed={"model":"fake-embed","vectors":[[18,1],[1,1]]}`
	if h.Response != want {
		t.Fatalf("response %q\nwant     %q", h.Response, want)
	}
	var got []string
	for _, c := range svc.callsFor("good") {
		if c.Call.RequestID == "all-3" {
			got = append(got, c.Fn+"#"+strconv.Itoa(c.Call.HostCall))
		}
	}
	if strings.Join(got, ",") != "count_tokens#1,embed#2,generate#3" {
		t.Fatalf("Services saw %v", got)
	}
}

func TestMemoryCapBelowModuleMinimum(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	_, err := rt.Load(context.Background(), wasmPath("good"), WithLimits(Limits{MaxMemoryBytes: 64 << 10}))
	if err == nil || !strings.Contains(err.Error(), "good.wasm: compile: ") || !strings.Contains(err.Error(), "over limit of 1 pages") {
		t.Fatalf("error = %v", err)
	}
	t.Log(err)
}

func TestRuntimeClose(t *testing.T) {
	rt, err := NewRuntime(context.Background(), Options{CacheDir: cacheDir, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	must(t, rt.Close(context.Background()))
	if _, err := p.Prompt(context.Background(), abi.PromptRequest{Query: "q"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after runtime close: %v", err)
	}
	if _, err := rt.Load(context.Background(), wasmPath("good")); !errors.Is(err, ErrClosed) {
		t.Fatalf("load after runtime close: %v", err)
	}
	must(t, rt.Close(context.Background()))
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"panic: boom\n\ngoroutine 1", "\x1b[31mred\x1b[0m", "caf\xe9", strings.Repeat("é", 100)} {
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = max%600 + 1
		if max < 1 {
			max += 600
		}
		out := sanitize(s, max)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
		if len(out) > max+len("...") {
			t.Fatalf("%d bytes, max %d", len(out), max)
		}
		for _, r := range out {
			if !unicode.IsGraphic(r) {
				t.Fatalf("non-graphic rune %U in %q", r, out)
			}
		}
		_ = panicLine(s)
	})
}

// The host work of one export call is bounded: embedding spends the budget
// that generation then lacks; the request's max_tokens lowers the
// generation cap; what is left reaches Services in Call.WorkLeft.
func TestWorkTokenBudget(t *testing.T) {
	svc := &fakeServices{embedded: 6} // 2 inputs: 12 tokens
	rt := newRuntime(t, Options{Services: svc, Limits: Limits{MaxWorkTokens: 12}})
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithRequestInfo(context.Background(), RequestInfo{ID: "work-1"})
	_, err = p.Handle(ctx, abi.PromptRequest{Query: "all-host-functions"})
	if err == nil || !strings.Contains(err.Error(), "budget_exceeded") || !strings.Contains(err.Error(), "plugins.max_work_tokens") {
		t.Fatalf("generate after the budget went to embedding: %v", err)
	}
	calls := svc.callsFor("good")
	if len(calls) != 2 || calls[1].Fn != "embed" || calls[1].Call.WorkLeft != 12 {
		t.Fatalf("Services saw %+v", calls)
	}

	// With room for both, generate gets what is left, and the request's
	// max_tokens.
	svc2 := &fakeServices{embedded: 6}
	rt2 := newRuntime(t, Options{Services: svc2, Limits: Limits{MaxWorkTokens: 100}})
	p2, err := rt2.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	ctx = WithRequestInfo(context.Background(), RequestInfo{ID: "work-2", MaxTokens: 2})
	if _, err := p2.Handle(ctx, abi.PromptRequest{Query: "all-host-functions"}); err != nil {
		t.Fatal(err)
	}
	calls = svc2.callsFor("good")
	if len(calls) != 3 || calls[2].Fn != "generate" || calls[2].Call.WorkLeft != 88 || calls[2].Gen.MaxTokens != 2 {
		t.Fatalf("Services saw %+v", calls)
	}
}

// A plugin that keeps failing is refused for a while instead of getting a
// fresh instance for every call.
func TestCircuitBreaker(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	p, err := loadBad(t, rt, "trap")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	for i := range breakerAfter {
		if _, err := p.Prompt(context.Background(), abi.PromptRequest{Query: "hi"}); !errors.Is(err, ErrTrap) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err = p.Prompt(context.Background(), abi.PromptRequest{Query: "hi"})
	if !errors.Is(err, ErrBackedOff) || !strings.Contains(err.Error(), "calls are refused for") {
		t.Fatalf("after %d traps in a row: %v", breakerAfter, err)
	}
	if st := p.Stats(); st.InstancesCreated != breakerAfter || st.BackedOff != 1 {
		t.Fatalf("a backed-off call made an instance, or was not counted: %+v", st)
	}
}

func TestBreakerStates(t *testing.T) {
	var b breaker
	now := time.Unix(1000, 0)
	for i := range breakerAfter - 1 {
		if d := b.record(now, true); d != 0 {
			t.Fatalf("failure %d opened the breaker", i+1)
		}
	}
	b.record(now, false) // a success in between starts the count again
	for range breakerAfter - 1 {
		b.record(now, true)
	}
	if _, ok := b.allow(now); !ok {
		t.Fatal("open before breakerAfter failures in a row")
	}
	if d := b.record(now, true); d != breakerMin {
		t.Fatalf("back-off %v, want %v", d, breakerMin)
	}
	if wait, ok := b.allow(now.Add(breakerMin / 2)); ok || wait != breakerMin/2 {
		t.Fatalf("during the back-off: %v %v", wait, ok)
	}
	// The trial call fails: twice as long; again and again, up to the cap.
	now = now.Add(breakerMin)
	if _, ok := b.allow(now); !ok {
		t.Fatal("refused after the back-off")
	}
	want := breakerMin
	for range 10 {
		want = min(2*want, breakerMax)
		if d := b.record(now, true); d != want {
			t.Fatalf("back-off %v, want %v", d, want)
		}
		now = now.Add(want)
	}
	// A successful trial closes it.
	b.record(now, false)
	for i := range breakerAfter - 1 {
		if d := b.record(now, true); d != 0 {
			t.Fatalf("closed breaker: failure %d opened it", i+1)
		}
	}
}

// The first call on a fresh instance gets a bounded allowance at full
// speed (half the timeout), not the whole timeout: a plugin that spins and
// fails gets a fresh instance each time, and must be throttled all the
// same. Two calls at once: one runs on the instance describe warmed, the
// other on a fresh one.
func TestFreshInstanceThrottled(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	limit := 400 * time.Millisecond
	p, err := loadBad(t, rt, "loop", WithLimits(Limits{CallTimeout: limit}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := p.Prompt(context.Background(), abi.PromptRequest{Query: "hi"}); !errors.Is(err, ErrTimeout) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st := p.Stats()
	if st.InstancesCreated != 2 || st.Throttled != 2 {
		t.Fatalf("both calls, the fresh instance's included, must be throttled: %+v", st)
	}
	// CPU time, which a busy machine does not inflate: the warm call about
	// ThrottleAfter at full speed, the fresh one half the timeout, then
	// each a tenth of a CPU; unthrottled they would use 2 x 400 ms.
	if st.GuestTime > limit {
		t.Fatalf("the spinning calls used %v of CPU within %v timeouts", st.GuestTime, limit)
	}
	t.Logf("guest CPU %v, throttled %v", st.GuestTime, st.ThrottledTime)
}

// Host work has a time budget per export call: a generation that runs past
// it is cancelled and reported as budget_exceeded, instead of running until
// the client goes away.
func TestHostTimeBudget(t *testing.T) {
	svc := &fakeServices{block: make(chan struct{})} // Generate waits for ctx
	rt := newRuntime(t, Options{Services: svc, Limits: Limits{MaxHostTime: 200 * time.Millisecond}})
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Handle(WithRequestInfo(context.Background(), RequestInfo{ID: "slow"}), abi.PromptRequest{Query: "hi"})
	if err == nil || !strings.Contains(err.Error(), "budget_exceeded") || !strings.Contains(err.Error(), "plugins.max_host_time") {
		t.Fatalf("a generation past the host-time budget: %v", err)
	}
}
