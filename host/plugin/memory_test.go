package plugin

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/internal/instrument"
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

// A running call's wasm stack counts in the total budget (three times
// plugins.stack_kb: wazero's doubling): a call whose stack cannot fit is
// refused before it runs, and the reservation is given back after each
// call.
func TestStackCountsInMemoryBudget(t *testing.T) {
	rt := newRuntime(t, Options{PoolSize: 1, MaxTotalMemoryBytes: 64 << 20, MaxStackBytes: 32 << 20})
	p, err := loadBad(t, rt, "badjson")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	base := rt.MemoryStats().Used
	_, err = p.Prompt(context.Background(), abi.PromptRequest{Query: "hi"})
	if !errors.Is(err, ErrMemoryBudget) || !strings.Contains(err.Error(), "plugins.stack_kb") {
		t.Fatalf("a call whose stack (96 MB) cannot fit a 64 MB budget: %v", err)
	}
	if used := rt.MemoryStats().Used; used != base {
		t.Fatalf("used %d after the refused call, %d before", used, base)
	}

	rt2 := newRuntime(t, Options{PoolSize: 1})
	q, err := loadBad(t, rt2, "badjson")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	if _, err := q.Prompt(context.Background(), abi.PromptRequest{Query: "hi"}); !errors.Is(err, ErrBadOutput) {
		t.Fatalf("badjson with room for its stack: %v", err)
	}
	if st := rt2.MemoryStats(); st.Peak < 3*uint64(instrument.DefaultStackBytes) {
		t.Fatalf("the call's stack was not reserved: peak %d", st.Peak)
	}
}
