package host

import (
	"context"
	"errors"
	"fmt"
	"github.com/mdsa-go/mdsa/internal/atomicfile"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// swapDir copies the shipped plugins into a fresh plugins directory.
func swapDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range shipped {
		copyFile(t, filepath.Join(fixture.pluginsDir, name+".wasm"), filepath.Join(dir, name+".wasm"))
	}
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteBytes(to, b); err != nil {
		t.Fatal(err)
	}
}

func versionOf(t *testing.T, h *Host, tenant, name string) string {
	t.Helper()
	ps, err := tenantPlugins(h, tenant)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Name == name {
			return p.Version
		}
	}
	return ""
}

func TestHotSwapUnderTraffic(t *testing.T) {
	ctx := context.Background()
	dir := swapDir(t)
	h := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	v1 := filepath.Join(fixture.pluginsDir, "support.wasm")
	target := filepath.Join(dir, "support.wasm")

	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req := Request{Query: "I was charged twice for my order, can I get a refund?"}
				if g%2 == 0 {
					req.Domain = "support"
				}
				res, err := h.Process(ctx, req)
				if err != nil || res.Domain != "support" {
					failed.Add(1)
					t.Errorf("request during swaps: %+v %v", res, err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	const swaps = 6
	for i := range swaps {
		src, want := fixture.supportV2, "2.0.0"
		if i%2 == 1 {
			src, want = v1, "1.0.0"
		}
		copyFile(t, src, target)
		rep, err := h.Reload(ctx)
		if err != nil || len(rep.Changes) != 1 || rep.Changes[0].Action != "swapped" || rep.Changes[0].Version != want {
			t.Fatalf("swap %d: %+v %v", i, rep, err)
		}
		if got := versionOf(t, h, "", "support"); got != want {
			t.Fatalf("swap %d: serving %s, want %s", i, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d failed, %d swaps", ok.Load(), failed.Load(), swaps)
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d requests failed (%d ok)", failed.Load(), ok.Load())
	}
	// Nothing changed: a reload is a no-op.
	if rep, err := h.Reload(ctx); err != nil || len(rep.Changes) != 0 {
		t.Fatalf("idle reload: %+v %v", rep, err)
	}
}

func TestBadVersionIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := swapDir(t)
	h := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	if err := os.WriteFile(filepath.Join(dir, "support.wasm"), []byte("\x00asm garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := h.Reload(ctx)
	if err != nil || len(rep.Changes) != 0 || len(rep.Refused) != 1 || rep.Refused[0].Name != "support" {
		t.Fatalf("reload of a corrupt file: %+v %v", rep, err)
	}
	if res, err := h.Process(ctx, Request{Domain: "support", Query: "where is my order"}); err != nil || res.Status == "" {
		t.Fatalf("the old version stopped serving: %+v %v", res, err)
	}
	// Installing through the API: garbage, and a module that is another plugin.
	if _, err := h.InstallPlugin(ctx, "support", []byte("nope")); !errors.Is(err, ErrRefused) {
		t.Fatalf("garbage install: %v", err)
	}
	fin, _ := os.ReadFile(filepath.Join(fixture.pluginsDir, "finance.wasm"))
	if _, err := h.InstallPlugin(ctx, "support", fin); !errors.Is(err, ErrRefused) {
		t.Fatalf("finance installed as support: %v", err)
	}
	if got := versionOf(t, h, "", "support"); got != "1.0.0" {
		t.Fatalf("version after refusals: %s", got)
	}
	// A good version installs, and lands on disk.
	v2, _ := os.ReadFile(fixture.supportV2)
	ch, err := h.InstallPlugin(ctx, "support", v2)
	if err != nil || ch.Action != "swapped" || ch.Version != "2.0.0" || ch.OldVersion != "1.0.0" {
		t.Fatalf("install v2: %+v %v", ch, err)
	}
	if disk, _ := os.ReadFile(filepath.Join(dir, "support.wasm")); sha256Hex(disk) != ch.SHA256 {
		t.Fatal("installed version not written to the plugins directory")
	}
}

// A file may not take another plugin's name: not at start-up by sorting
// first, not on reload, not through the admin API.
func TestNameHijackRefused(t *testing.T) {
	ctx := context.Background()
	dir := swapDir(t)
	// support v2 dropped in as a file that sorts before support.wasm.
	copyFile(t, fixture.supportV2, filepath.Join(dir, "aaa.wasm"))
	h := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	if got := versionOf(t, h, "", "support"); got != "1.0.0" {
		t.Fatalf("start-up: support is version %q, want 1.0.0 from support.wasm", got)
	}
	if err := h.LoadErrors(); err == nil || !strings.Contains(err.Error(), `aaa.wasm: the manifest names the plugin "support" but its file is aaa.wasm`) {
		t.Fatalf("start-up errors: %v", err)
	}
	// On reload a new file with a taken name is refused; so is a file
	// whose name is free but not its manifest's.
	copyFile(t, fixture.supportV2, filepath.Join(dir, "zzz.wasm"))
	rep, err := h.Reload(ctx)
	if err != nil || len(rep.Changes) != 0 || len(rep.Refused) != 2 {
		t.Fatalf("reload with two misnamed files: %+v %v", rep, err)
	}
	for _, r := range rep.Refused {
		if !strings.Contains(r.Reason, "the manifest names the plugin \"support\"") {
			t.Errorf("refusal of %s: %s", r.Path, r.Reason)
		}
	}
	if got := versionOf(t, h, "", "support"); got != "1.0.0" {
		t.Fatalf("after reload support is version %q, want 1.0.0", got)
	}
	// The admin API installs NAME only as NAME.
	v2, _ := os.ReadFile(fixture.supportV2)
	if _, err := h.InstallPlugin(ctx, "billing", v2); !errors.Is(err, ErrRefused) {
		t.Fatalf("support installed as billing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "billing.wasm")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused install left a file: %v", err)
	}
}

func TestRemovePlugin(t *testing.T) {
	ctx := context.Background()
	dir := swapDir(t)
	h := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	ch, err := h.RemovePlugin(ctx, "technical")
	if err != nil || ch.Action != "removed" {
		t.Fatalf("remove: %+v %v", ch, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "technical.wasm")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file still there: %v", err)
	}
	if _, err := h.Process(ctx, Request{Domain: "technical", Query: "segfault"}); !errors.Is(err, ErrUnknownDomain) {
		t.Fatalf("removed domain still served: %v", err)
	}
	if d := h.Route(ctx, "my python script throws a segmentation fault"); d.Domain == "technical" {
		t.Fatalf("removed domain still routed to: %+v", d)
	}
	if _, err := h.RemovePlugin(ctx, "technical"); !errors.Is(err, ErrUnknownDomain) {
		t.Fatalf("second remove: %v", err)
	}
	// Put it back by dropping the file in and reloading.
	copyFile(t, filepath.Join(fixture.pluginsDir, "technical.wasm"), filepath.Join(dir, "technical.wasm"))
	if rep, err := h.Reload(ctx); err != nil || len(rep.Changes) != 1 || rep.Changes[0].Action != "added" {
		t.Fatalf("re-add: %+v %v", rep, err)
	}
}

func TestSwapReachesTenants(t *testing.T) {
	ctx := context.Background()
	h := tenantHostIn(t, swapDir(t))
	v2, _ := os.ReadFile(fixture.supportV2)
	if _, err := h.InstallPlugin(ctx, "support", v2); err != nil {
		t.Fatal(err)
	}
	if got := versionOf(t, h, "acme", "support"); got != "2.0.0" {
		t.Fatalf("acme serves support %s after the swap", got)
	}
	if ps, _ := tenantPlugins(h, "globex"); slices.ContainsFunc(ps, func(p PluginInfo) bool { return p.Name == "support" }) {
		t.Fatal("globex got support by the swap")
	}
}

func TestWatchReloads(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := swapDir(t)
	h := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	reports := make(chan ReloadReport, 8)
	done := make(chan error, 1)
	go func() { done <- h.Watch(ctx, func(r ReloadReport, _ error) { reports <- r }) }()
	time.Sleep(100 * time.Millisecond) // let the watcher start
	copyFile(t, fixture.supportV2, filepath.Join(dir, "support.wasm"))
	deadline := time.After(60 * time.Second)
	for {
		select {
		case r := <-reports:
			if len(r.Changes) == 1 && r.Changes[0].Version == "2.0.0" {
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				return
			}
		case <-deadline:
			t.Fatal("the watcher did not swap support within 60 s")
		}
	}
}

// BenchmarkSwapCached swaps the support plugin between two versions the
// runtime has already compiled, through Reload.
func BenchmarkSwapCached(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	for _, name := range shipped {
		src, _ := os.ReadFile(filepath.Join(fixture.pluginsDir, name+".wasm"))
		os.WriteFile(filepath.Join(dir, name+".wasm"), src, 0o644)
	}
	h := newHostIn(b, dir, WithEngine(&fakeEngine{}))
	v1, _ := os.ReadFile(filepath.Join(fixture.pluginsDir, "support.wasm"))
	v2, _ := os.ReadFile(fixture.supportV2)
	target := filepath.Join(dir, "support.wasm")
	i := 0
	swap := func() {
		v := v1
		if i%2 == 0 {
			v = v2
		}
		i++
		os.WriteFile(target, v, 0o644)
		if rep, err := h.Reload(ctx); err != nil || len(rep.Changes) != 1 {
			b.Fatalf("%+v %v", rep, err)
		}
	}
	swap()
	swap()
	for b.Loop() {
		swap()
	}
}

// The host's services refuse host work over what is left of the call's
// budget before the engine runs, with the code budget_exceeded.
func TestServicesWorkBudget(t *testing.T) {
	fe := &fakeEngine{}
	h := newHostIn(t, swapDir(t), WithEngine(fe))
	s := services{h}
	ctx := context.Background()
	_, err := s.Embed(ctx, plugin.Call{Plugin: "support", WorkLeft: 3}, abi.EmbedRequest{Input: []string{"one two", "three four"}})
	var ce *plugin.CodedError
	if !errors.As(err, &ce) || ce.Code != abi.ErrBudget || !strings.Contains(err.Error(), "plugins.max_work_tokens") {
		t.Fatalf("embed of 4 tokens with 3 left: %v", err)
	}
	// Generate passes what is left to the engine as the prompt's bound.
	if _, err := s.Generate(ctx, plugin.Call{Plugin: "support", WorkLeft: 7}, abi.GenerateRequest{Prompt: "hi"}); err != nil {
		t.Fatal(err)
	}
	fe.mu.Lock()
	got := fe.last.Params.MaxPromptTokens
	fe.mu.Unlock()
	if got != 7 {
		t.Fatalf("engine saw MaxPromptTokens %d, want 7", got)
	}
	if err := engineError(fmt.Errorf("x: %w", engine.ErrOverBudget)); !errors.As(err, &ce) || ce.Code != abi.ErrBudget {
		t.Fatalf("an engine budget error maps to %v", err)
	}
	if err := engineError(fmt.Errorf("x: %w", engine.ErrInvalidInput)); !errors.As(err, &ce) || ce.Code != abi.ErrBadRequest {
		t.Fatalf("an engine input error maps to %v", err)
	}
}

// A request pins the state it started on; a swap makes a new state current
// at once, and the old one drains when its last request ends. Nothing
// waits: a request that loaded the old state just before the swap and
// finds it drained takes the new one.
func TestStateReferences(t *testing.T) {
	h := &Host{}
	old := newState(nil)
	h.state.Store(old)
	st, slow := h.acquire() // a long generation on the old state
	if st != old {
		t.Fatal("acquire did not pin the current state")
	}
	next := newState(nil)
	h.state.Store(next)
	old.unref()
	select {
	case <-old.drained:
		t.Fatal("the old state drained while a request still runs on it")
	default:
	}
	st, release := h.acquire()
	if st != next {
		t.Fatal("a new request did not take the new state")
	}
	release()
	slow()
	select {
	case <-old.drained:
	default:
		t.Fatal("the old state did not drain when its last request ended")
	}
	if old.ref() {
		t.Fatal("a drained state was pinned again")
	}
	if next.refs.Load() != 1 {
		t.Fatalf("the current state holds %d references, want 1", next.refs.Load())
	}
}
