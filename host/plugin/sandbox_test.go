package plugin

import (
	"context"
	"strings"
	"testing"
)

// A module over a configured shape budget is refused before anything
// compiles it, with the budget named; the default budgets take it.
func TestSandboxShapeBudget(t *testing.T) {
	ctx := context.Background()
	wasm := wasmBytes(t, "bad")
	_, err := Sandbox{Shape: ShapeBudget{Functions: 100}}.Compile(ctx, wasm)
	if err == nil || !strings.Contains(err.Error(), "module over budget: functions") {
		t.Fatalf("a Go plugin under a 100-function budget: %v", err)
	}
	cp, err := Sandbox{Interpreter: true}.Compile(ctx, wasm)
	if err != nil {
		t.Fatalf("default budgets: %v", err)
	}
	cp.Close(ctx)
}
