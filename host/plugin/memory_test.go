package plugin

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Every instance's memory comes out of the runtime's budget and goes back
// when the instance closes.
func TestMemoryBudgetAccounts(t *testing.T) {
	rt := newRuntime(t, Options{PoolSize: 2})
	before := rt.MemoryStats()
	if before.Used != 0 || before.Limit != DefaultMaxTotalMemoryBytes {
		t.Fatalf("a new runtime: %+v", before)
	}
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	loaded := rt.MemoryStats()
	if loaded.Used == 0 {
		t.Fatalf("a loaded plugin's instance holds no memory: %+v", loaded)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := rt.MemoryStats(); after.Used != 0 || after.Peak < loaded.Used {
		t.Fatalf("after close: %+v (loaded: %+v)", after, loaded)
	}
}

// A plugin that allocates without bound is stopped by the total budget
// before its own cap: its grow fails (out of memory in the guest), the
// budget counts the refusal, and the memory is back once the instance is
// discarded. While the budget is full, a new instance is refused with
// ErrMemoryBudget rather than made.
func TestMemoryBudgetBoundsTotal(t *testing.T) {
	const total = 48 << 20
	rt := newRuntime(t, Options{PoolSize: 2, MaxTotalMemoryBytes: total})
	p, err := loadBad(t, rt, "oom", WithLimits(Limits{MaxMemoryBytes: 256 << 20, ThrottleShare: 1, CallTimeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	base := rt.MemoryStats().Used
	_, err = p.Prompt(context.Background(), abi.PromptRequest{Query: "hi"})
	if !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), "out of memory") {
		t.Fatalf("oom under a 48 MB total: %v", err)
	}
	st := rt.MemoryStats()
	if st.Refused == 0 || st.Peak > total {
		t.Fatalf("the budget did not refuse the grow, or let it past: %+v", st)
	}
	if st.Used > base {
		t.Fatalf("the failed instance's memory was not given back: used %d, %d before the call", st.Used, base)
	}
	t.Logf("budget %d MB: peak %d MB, %d grows refused", total>>20, st.Peak>>20, st.Refused)

	// Fill the budget with a held instance's memory, then ask for another.
	full := newMemoryBudget(1)
	if !full.take(2, true) || !full.exhausted() {
		t.Fatal("a forced take past the limit does not leave the budget exhausted")
	}
	rt.mem = full
	_, err = p.Prompt(context.Background(), abi.PromptRequest{Query: "hi"})
	if !errors.Is(err, ErrMemoryBudget) || !strings.Contains(err.Error(), "plugins.total_memory_mb") {
		t.Fatalf("a call with the budget exhausted: %v", err)
	}
}
