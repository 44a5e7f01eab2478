package instrument

import "fmt"

// Budget bounds the static shape of a module, checked while Rewrite reads
// it, before anything is compiled: a small module can make a compiler
// spend gigabytes and minutes (thousands of functions with tens of
// thousands of locals each, deeply nested blocks, a huge br_table,
// millions of globals or segments). A zero field takes the default; the
// defaults leave the shipped Go plugins (4 MB modules) far inside.
type Budget struct {
	Functions      int // defined functions
	LocalsTotal    int // locals declared by all function bodies together
	BodyBytes      int // bytes of the largest function body
	Nesting        int // deepest nesting of blocks, loops and ifs in one body
	BrTableTargets int // targets of all br_table instructions together
	Globals        int // defined globals
	DataSegments   int
	ElemSegments   int
	Exports        int

	// StackBytes bounds the wasm call stack of one call into the module,
	// as Yields estimates it (see stack.go): a call that would hold more
	// calls ImportModule.StackImportName and then traps. It is not a
	// shape budget: Rewrite builds it into the module.
	StackBytes int
}

// DefaultBudget is the Budget used for zero fields, at least four times
// what the shipped Go plugins (4 MB modules) need; TestShippedPluginShapes
// logs their shapes: about 2,500 functions, 10,900 locals, a 50 KB body,
// nesting 549 (Go's switch lowering), 93,000 br_table targets, 8 globals,
// 43,800 data segments and 5 exports.
var DefaultBudget = Budget{
	Functions:      50_000,
	LocalsTotal:    500_000,
	BodyBytes:      2 << 20,
	Nesting:        2_500,
	BrTableTargets: 500_000,
	Globals:        10_000,
	DataSegments:   200_000,
	ElemSegments:   10_000,
	Exports:        10_000,
	StackBytes:     DefaultStackBytes,
}

// DefaultStackBytes is the default Budget.StackBytes: 1 MiB of estimated
// frames, at least 2,400 nested calls of the shipped Go plugins' largest
// frame (432 bytes) and 7,000 of their median one (144 bytes);
// TestShippedPluginShapes logs the estimates. (Go's own stack lives in
// linear memory and Go unwinds the wasm stack when it grows it, so Go
// code rarely nests wasm calls that deep.)
const DefaultStackBytes = 1 << 20

// withDefaults fills zero fields from DefaultBudget.
func (b Budget) withDefaults() Budget {
	d := DefaultBudget
	for _, f := range []struct{ v, def *int }{
		{&b.Functions, &d.Functions}, {&b.LocalsTotal, &d.LocalsTotal}, {&b.BodyBytes, &d.BodyBytes},
		{&b.Nesting, &d.Nesting}, {&b.BrTableTargets, &d.BrTableTargets}, {&b.Globals, &d.Globals},
		{&b.DataSegments, &d.DataSegments}, {&b.ElemSegments, &d.ElemSegments}, {&b.Exports, &d.Exports},
		{&b.StackBytes, &d.StackBytes},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return b
}

// Shape is what Rewrite measured of a module, the quantities Budget bounds.
type Shape struct {
	Functions, LocalsTotal, BodyBytes, Nesting, BrTableTargets int
	Globals, DataSegments, ElemSegments, Exports               int
	// FrameBytes is the largest frame estimate of the stack bound and
	// MedianFrameBytes the median over all functions (see stack.go).
	FrameBytes, MedianFrameBytes int
}

// BudgetError says which budget a module went over.
type BudgetError struct {
	What  string // "functions", "locals in all functions", ...
	Have  int    // at least this many (reading stops at the first excess)
	Limit int
}

// Error implements error.
func (e *BudgetError) Error() string {
	return fmt.Sprintf("module over budget: %s: %d, limit %d", e.What, e.Have, e.Limit)
}

// over returns a *BudgetError when have > limit.
func over(what string, have, limit int) error {
	if have > limit {
		return &BudgetError{What: what, Have: have, Limit: limit}
	}
	return nil
}
