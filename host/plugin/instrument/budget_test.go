package instrument

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mdsa-go/mdsa/internal/testutil"
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
	want := Shape{Functions: 2, LocalsTotal: 3, Nesting: 3, BrTableTargets: 7, Globals: 1, Exports: 2, BodyBytes: shape.BodyBytes}
	if shape != want || shape.BodyBytes == 0 {
		t.Fatalf("shape %+v, want %+v", shape, want)
	}
}
