package instrument

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mdsa-go/mdsa/internal/testutil"
	"github.com/tetratelabs/wazero/api"
)

// The shipped and example plugins that are built here fit well inside the
// default budget (a quarter of each bound); their shapes are logged, which
// is where DefaultBudget's figures come from.
func TestShippedPluginShapes(t *testing.T) {
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "plugins", "*", "*.wasm"))
	more, _ := filepath.Glob(filepath.Join(root, "examples", "plugins", "*", "*.wasm"))
	files = append(files, more...)
	if len(files) == 0 {
		t.Skip("no plugin builds (make setup builds them)")
	}
	quarter := Budget{
		Functions: DefaultBudget.Functions / 4, LocalsTotal: DefaultBudget.LocalsTotal / 4,
		BodyBytes: DefaultBudget.BodyBytes / 4, Nesting: DefaultBudget.Nesting / 4,
		BrTableTargets: DefaultBudget.BrTableTargets / 4, Globals: DefaultBudget.Globals / 4,
		DataSegments: DefaultBudget.DataSegments / 4, ElemSegments: DefaultBudget.ElemSegments / 4,
		Exports: DefaultBudget.Exports / 4,
	}
	for _, f := range files {
		wasm, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, shape, err := Rewrite(wasm, 0, quarter)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		t.Logf("%s (%d KB): %+v", filepath.Base(f), len(wasm)>>10, shape)
	}
}

// A module over any bound is refused while it is read, with an error that
// names the bound.
func TestBudgetRefuses(t *testing.T) {
	// Two functions, the first with 3 locals, three nested blocks and a
	// br_table of 7 targets; a global; two exports.
	code0 := cat([]byte{1, 3, 0x7f}, // locals: 3 x i32
		[]byte{0x02, 0x40, 0x02, 0x40, 0x02, 0x40}, // block block block
		[]byte{0x41, 0x00},                         // i32.const 0
		[]byte{0x0e, 6, 0, 1, 2, 0, 1, 2, 0},       // br_table 0 1 2 0 1 2 (default 0)
		[]byte{0x0b, 0x0b, 0x0b, 0x0b})             // end end end, end of body
	wasm := wasmModule(
		sec(1, vector([]byte{0x60, 0, 0})),
		sec(3, vector([]byte{0}, []byte{0})),
		sec(6, vector([]byte{0x7f, 0x00, 0x41, 0x00, 0x0b})),
		sec(7, vector(cat(str("a"), []byte{0, 0}), cat(str("b"), []byte{0, 1}))),
		sec(10, vector(cat(uleb(uint64(len(code0))), code0), body(0x0b))),
	)
	for _, c := range []struct {
		b    Budget
		what string
	}{
		{Budget{Functions: 1}, "functions"},
		{Budget{LocalsTotal: 2}, "locals in all functions"},
		{Budget{Nesting: 2}, "nesting of blocks in one function"},
		{Budget{BrTableTargets: 6}, "br_table targets"},
		{Budget{Globals: 0, Exports: 1}, "exports"},
		{Budget{BodyBytes: 5}, "bytes in one function body"},
	} {
		_, _, err := Rewrite(wasm, 0, c.b)
		var be *BudgetError
		if !errors.As(err, &be) || be.What != c.what {
			t.Errorf("budget %+v: %v, want over %q", c.b, err, c.what)
		}
	}
	_, shape, err := Rewrite(wasm, 0, Budget{})
	if err != nil {
		t.Fatal(err)
	}
	// Frames: 2 + 3 locals + 1 operand, and 2 for the empty body.
	want := Shape{Functions: 2, LocalsTotal: 3, Nesting: 3, BrTableTargets: 7, Globals: 1, Exports: 2, BodyBytes: shape.BodyBytes,
		FrameBytes: 6 * stackUnit, MedianFrameBytes: 6 * stackUnit}
	if shape != want || shape.BodyBytes == 0 {
		t.Fatalf("shape %+v, want %+v", shape, want)
	}
}

// After a bulk memory operation of 64 KB or more the next loop header
// yields: a loop of large memory.fill reaches the host once per iteration,
// not once per interval iterations, so the host measures (and throttles)
// the time it takes. Small ones (every memmove of Go's wasm code) do not.
func TestBulkMemoryYields(t *testing.T) {
	fillLoop := func(size []byte) []byte {
		f := cat([]byte{0}, // no locals
			[]byte{0x03, 0x40},             // loop
			[]byte{0x41, 0x00, 0x41, 0x00}, // i32.const 0 0
			size,                           // i32.const size
			[]byte{0xfc, 0x0b, 0x00},       // memory.fill
			[]byte{0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00}, // local.get 0; i32.const 1; i32.sub; local.tee 0; br_if 0
			[]byte{0x0b, 0x0b}) // end loop, end body
		return wasmModule(
			sec(1, vector([]byte{0x60, 1, 0x7f, 0})),
			sec(3, vector([]byte{0})),
			sec(5, vector([]byte{0x00, 0x02})), // 2 pages
			sec(7, vector(cat(str("fill"), []byte{0, 0}))),
			sec(10, vector(cat(uleb(uint64(len(f))), f))),
		)
	}
	for _, c := range []struct {
		name     string
		size     []byte
		min, max int64
	}{
		{"64 KB", []byte{0x41, 0x80, 0x80, 0x04}, 9, 11},
		{"4 KB", []byte{0x41, 0x80, 0x20}, 0, 1},
	} {
		rt, yields := newRuntime(t, false, api.CoreFeaturesV2)
		mod := instantiate(t, rt, mustYields(t, fillLoop(c.size), 4096))
		call(t, mod, "fill", 10)
		if n := yields.Load(); n < c.min || n > c.max {
			t.Errorf("%s: %d yields for 10 memory.fill in a loop, want %d to %d", c.name, n, c.min, c.max)
		}
	}
}
