// Package instrument rewrites WebAssembly modules before they are compiled so
// that untrusted guest code gives the host a chance to act while it runs.
//
// wazero's compiled code cannot be preempted by the Go scheduler: a guest
// that spins holds its OS thread until its call times out. Yields adds a
// countdown to the start of every function and to every loop header; each
// time the countdown runs out the guest calls the imported host function
// ImportModule.ImportName, which can then throttle a call that has run too
// long (for example by sleeping), giving the CPU back to other tenants.
//
// The rewriter understands WebAssembly 2.0 as wazero's api.CoreFeaturesV2
// accepts it (MVP, sign extension, non-trapping float-to-int, bulk memory,
// reference types, multi-value, SIMD), plus threads (atomics) and tail
// calls. Instructions are decoded the way wazero v1.12 decodes them, so a
// module wazero accepts is rewritten into a module wazero accepts.
//
// Compile only Yields' output, never its input: Yields also bounds every
// count and length by the size of the input, caps locals per function and
// drops custom sections, whereas wazero v1.12's decoder allocates vectors as
// large as their declared counts before reading them (a 15-byte import
// section makes it allocate about 14 GB; a custom section header claiming
// 4 GB, 4 GB).
//
// Yields also bounds each call's wasm stack (see stack.go and
// Budget.StackBytes): a call that would nest deeper calls the import
// ImportModule.StackImportName and traps.
//
// The countdown counts function entries and loop iterations, not
// instructions: between two yields a guest runs at most interval times the
// longest loop-free stretch of one function body, which a large straight-line
// function makes long. It therefore complements wazero's
// close-on-context-done rather than replacing it.
package instrument

import (
	"bytes"
	"fmt"
	"math"
	"slices"
)

// ImportModule and ImportName name the function import Yields adds; its
// type is () -> (). StackImportName is the second import it adds to
// ImportModule, also () -> (): the guest calls it when a call's stack would
// pass its bound (see Budget.StackBytes), and the host is expected to trap
// the call (the guest executes unreachable should it return).
const (
	ImportModule    = "mdsa:sched"
	ImportName      = "yield"
	StackImportName = "stack_exhausted"
)

// GuardModule is where Yields moves the module's imports of the Extism
// kernel functions that hand the host something to copy: output_set and
// error_set of ExtismModule. The host serves them under GuardModule with a
// size check before forwarding to the kernel, so an oversized output or
// error message is refused before go-sdk copies it out of the plugin's
// memory.
const (
	GuardModule  = "mdsa:guard"
	ExtismModule = "extism:host/env"
)

// Guarded are the ExtismModule functions Yields moves to GuardModule.
func Guarded(name string) bool { return name == "output_set" || name == "error_set" }

// ImportDebugName and StartDebugName are the names Yields gives the added
// import and the added start function in the module's "name" section (they
// show in stack traces).
const (
	ImportDebugName      = "mdsa_yield"
	StackImportDebugName = "mdsa_stack_exhausted"
	StartDebugName       = "mdsa_start"
)

// DefaultInterval is the countdown Yields uses when given 0: the guest calls
// the yield import once per DefaultInterval function entries and loop
// iterations. Measured with wazero's compiler on a 2-core x86-64 machine
// (BenchmarkYieldCost, BenchmarkLoopOverhead): one yield (a Go host function
// reading the clock) costs about 80 ns, while the tightest loop runs 1.1 ns
// per iteration instrumented (0.55 ns plain), or 25 ns with wazero's
// close-on-context-done, which MDSA uses. At 4096 the yield calls add under
// 2% to that loop without close-on-context-done and under 0.1% with it, and
// the guest reaches the host every ~5 us (0.1 ms with close-on-context-done)
// in a tight loop: fine-grained enough to throttle at sub-millisecond
// granularity. Larger intervals barely lower the cost (the countdown itself,
// paid on every iteration, is most of it) and lengthen the period.
const DefaultInterval = 1 << 12

// header is the magic number and version every module starts with.
const header = "\x00asm\x01\x00\x00\x00"

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

// order gives each known section's place in the required section order;
// 0 means the id is not supported. It and the other tables are read-only.
var order = [...]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5,
	secGlobal: 6, secExport: 7, secStart: 8, secElement: 9, secDataCount: 10,
	secCode: 11, secData: 12,
}

var sectionNames = [...]string{
	secCustom: "custom", secType: "type", secImport: "import", secFunction: "function",
	secTable: "table", secMemory: "memory", secGlobal: "global", secExport: "export",
	secStart: "start", secElement: "element", secCode: "code", secData: "data",
	secDataCount: "data count",
}

// section is one section of the input: id, where its id byte is, and the
// bounds of its content.
type section struct {
	id         byte
	at         int
	start, end int
	name       []byte // custom sections only
}

// module is what Yields learns about the input before rewriting it.
type module struct {
	b []byte

	numTypes       uint32   // types defined, counting each member of a rec group
	sigs           []sig    // each type's parameter and result counts, by type index
	funcTypes      []uint32 // each input function's type index, imports first
	voidTypes      []uint32
	standaloneVoid int64 // a ()->() type outside any rec group, or -1
	numFuncImps    uint32
	numGlobalImps  uint32
	numGlobals     uint32 // defined globals
	numFuncs       uint32 // defined functions
	existing       int64  // function index of an existing ImportModule.ImportName import, or -1
	existingType   uint32 // its type
	existingStack  int64  // function index of an existing ImportModule.StackImportName import, or -1
	hasStart       bool
	start          uint32 // the start function, as an input index

	// Decisions.
	newTypes  []byte            // encoded function types appended to the type section
	numNew    uint32            // how many
	added     map[string]uint32 // their indices, by encoding
	blockType map[uint32][]byte // the wrapper block type of functions of each type index
	addYield  bool              // append the yield import
	addStack  bool              // append the stack import
	nAdd      uint32            // imports appended: function indices >= shiftFrom move up by nAdd
	typeIdx   uint32            // the imports' type, () -> ()
	yieldIdx  uint32            // function index of the yield import in the output
	stackIdx  uint32            // function index of the stack import in the output
	shiftFrom uint32
	counter   uint32 // global index of the countdown
	depth     uint32 // global index of the stack depth (the global after the scratch)
	stackMax  int32  // the most stack units a call may hold
	initial   uint32 // the countdown's initial value
	wrapStart bool   // add a start function that runs the module's and then arms the countdown
	startFunc uint32 // its function index

	prologue []byte // the countdown sequence
	// bulk precedes every bulk memory or table operation: when its size
	// operand is at least bulkYieldSize and the countdown is armed, the
	// countdown is set to 1, so the next function entry or loop header
	// yields. One memory.fill of megabytes takes milliseconds, and a loop
	// of them would otherwise reach a yield once per interval iterations:
	// seconds of CPU the host never measured. The size goes through an
	// added scratch global (the global after the countdown).
	bulk    []byte
	scratch uint32 // global index of the scratch global

	// Set once the counts are known: references beyond them are refused,
	// since the added function, global and type would make them valid
	// (code could then reset the countdown).
	decided   bool
	numFuncsT uint64 // imported and defined functions in the input

	skipBodies bool // checkStructure: check everything but the instructions

	h      heights // the operand stack of the body being rewritten
	frames []int32 // each body's frame estimate, in stack units
	leaves []int   // where the current body's decrements hold its frame estimate

	budget Budget
	shape  Shape
}

// MaxLocals is the most locals Yields accepts in one function (V8's limit
// too). wazero allocates a function's locals up front, so a body declaring
// billions of them would make it allocate gigabytes.
const MaxLocals = 50000

// Yields returns a copy of the wasm module with a countdown at the start of
// every function body and at every loop header (right after each loop
// instruction): an added mutable i32 global is decremented, and when it
// reaches 0 it is reset to interval and the imported function
// ImportModule.ImportName (type () -> ()) is called. interval 0 means
// DefaultInterval.
//
// The import is appended after the module's imports (or an existing import of
// that name and type is reused), and so is the stack import (see stack.go),
// so every defined function's index moves up by one or two; Yields fixes
// every reference (calls, ref.func, exports, the start
// function, element segments, constant expressions and the "name" section).
//
// Other custom sections are dropped, since offsets such as DWARF's would no
// longer hold.
//
// The countdown is disarmed while the module's start function runs, so the
// import is never called during instantiation (a host function may need the
// context of a call: Extism's host functions panic without it): when the
// module has a start function, the counter starts at 0 (the first decrement
// wraps it to 2^32-1) and an added start function calls the module's and
// then sets the counter to interval.
//
// Yields returns an *Error for input it cannot rewrite: malformed or
// truncated modules, relocatable object files, instructions outside the
// supported feature set, functions with more than MaxLocals locals, or an
// existing import of the same name with another type. It never modifies
// wasm.
func Yields(wasm []byte, interval uint32) ([]byte, error) {
	out, _, err := Rewrite(wasm, interval, Budget{})
	return out, err
}

// Rewrite is Yields within budget (zero fields: DefaultBudget): a module
// over any of its bounds fails with a *BudgetError, found while reading,
// before any compiler sees the module. It also returns the module's shape.
func Rewrite(wasm []byte, interval uint32, budget Budget) ([]byte, Shape, error) {
	if interval == 0 {
		interval = DefaultInterval
	}
	return rewrite(wasm, interval, false, budget.withDefaults())
}

// checkStructure checks what Yields checks except the instructions of
// function bodies. The fuzz test uses it to know when wazero can be given an
// input safely: wazero v1.12's decoder allocates vectors as large as their
// declared counts before reading them, and this check bounds every count.
func checkStructure(wasm []byte) error {
	_, _, err := rewrite(wasm, 1, true, DefaultBudget)
	return err
}

func rewrite(wasm []byte, interval uint32, skipBodies bool, budget Budget) ([]byte, Shape, error) {
	if len(wasm) < len(header) || string(wasm[:4]) != header[:4] {
		return nil, Shape{}, &Error{Offset: 0, Msg: "not a WebAssembly module (bad magic number)"}
	}
	if string(wasm[4:8]) != header[4:] {
		return nil, Shape{}, &Error{Offset: 4, Msg: "unsupported WebAssembly binary version"}
	}
	secs, err := frame(wasm)
	if err != nil {
		return nil, Shape{}, err
	}
	m := &module{b: wasm, standaloneVoid: -1, existing: -1, existingStack: -1, skipBodies: skipBodies, budget: budget}
	if err := m.analyse(secs); err != nil {
		return nil, m.shape, err
	}
	if err := m.decide(interval); err != nil {
		return nil, m.shape, err
	}
	out, err := m.write(secs, interval)
	return out, m.shape, err
}

// frame splits the module into sections, checking their sizes and order.
func frame(b []byte) ([]section, error) {
	r := &reader{b: b, pos: len(header), end: len(b)}
	var secs []section
	last := 0
	for r.pos < r.end {
		at := r.pos
		id, _ := r.byte("section id")
		size, err := r.u32("section size")
		if err != nil {
			return nil, err
		}
		if int64(size) > int64(r.remaining()) {
			return nil, r.errf(at, "section of %d bytes runs past the end of the module (%d bytes left)", size, r.remaining())
		}
		s := section{id: id, at: at, start: r.pos, end: r.pos + int(size)}
		if id == secCustom {
			cr := &reader{b: b, pos: s.start, end: s.end}
			name, err := cr.name("custom section name")
			if err != nil {
				return nil, err
			}
			if string(name) == "linking" || bytes.HasPrefix(name, []byte("reloc.")) {
				return nil, r.errf(at, "relocatable object file (custom section %q): link it into a module first", name)
			}
			s.name = name
			s.start = cr.pos
		} else {
			if int(id) >= len(order) || order[id] == 0 {
				return nil, r.errf(at, "unsupported section id %d", id)
			}
			if order[id] <= last {
				return nil, r.errf(at, "%s section out of order or repeated", sectionNames[id])
			}
			last = order[id]
		}
		secs = append(secs, s)
		r.pos = s.end
	}
	return secs, nil
}

func (m *module) reader(s section) *reader {
	return &reader{b: m.b, pos: s.start, end: s.end}
}

// analyse reads what the rewrite depends on: the types, the imports, and the
// numbers of defined globals and functions, and the start function.
func (m *module) analyse(secs []section) error {
	for _, s := range secs {
		switch s.id {
		case secType:
			if err := m.types(m.reader(s)); err != nil {
				return annotate(err, "type section")
			}
		case secImport:
			// The output of this first pass is discarded; it only fills the counts.
			w := &rewriter{reader: *m.reader(s), m: m}
			if err := m.imports(w, true); err != nil {
				return annotate(err, "import section")
			}
		case secGlobal:
			r := m.reader(s)
			n, err := r.count("global count", 3)
			if err != nil {
				return annotate(err, "global section")
			}
			m.numGlobals = n
			m.shape.Globals = int(n)
			if err := over("globals", int(n), m.budget.Globals); err != nil {
				return err
			}
		case secFunction:
			r := m.reader(s)
			n, err := r.count("function count", 1)
			if err != nil {
				return annotate(err, "function section")
			}
			m.numFuncs = n
			m.shape.Functions = int(n)
			if err := over("functions", int(n), m.budget.Functions); err != nil {
				return err
			}
			for i := uint32(0); i < n; i++ {
				at := r.pos
				t, err := r.u32("function type index")
				if err != nil {
					return annotate(err, "function section")
				}
				if t >= m.numTypes {
					return annotate(r.errf(at, "function type index %d out of range (%d types)", t, m.numTypes), "function section")
				}
				m.funcTypes = append(m.funcTypes, t)
			}
		case secStart:
			r := m.reader(s)
			v, err := r.u32("start function index")
			if err == nil {
				err = r.done("start section")
			}
			if err != nil {
				return annotate(err, "start section")
			}
			m.hasStart, m.start = true, v
		}
	}
	return nil
}

// types reads the type section, recording the () -> () types.
func (m *module) types(r *reader) error {
	n, err := r.count("type count", 2)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if r.pos < r.end && r.b[r.pos] == 0x4e { // rec group
			r.pos++
			k, err := r.count("rec group size", 3)
			if err != nil {
				return err
			}
			for j := uint32(0); j < k; j++ {
				if err := m.funcType(r, false); err != nil {
					return err
				}
			}
			continue
		}
		if err := m.funcType(r, true); err != nil {
			return err
		}
	}
	return r.done("type section")
}

func (m *module) funcType(r *reader, standalone bool) error {
	at := r.pos
	form, err := r.byte("function type")
	if err != nil {
		return err
	}
	if form != 0x60 {
		return r.errf(at, "unsupported type form 0x%02x (want a function type, 0x60)", form)
	}
	np, err := r.count("parameter count", 1)
	if err != nil {
		return err
	}
	for k := uint32(0); k < np; k++ {
		if err := r.valType("parameter type"); err != nil {
			return err
		}
	}
	nr, err := r.count("result count", 1)
	if err != nil {
		return err
	}
	resAt := r.pos
	for k := uint32(0); k < nr; k++ {
		if err := r.valType("result type"); err != nil {
			return err
		}
	}
	m.sigs = append(m.sigs, sig{params: np, results: nr, resAt: resAt, resEnd: r.pos})
	if m.numTypes == math.MaxUint32 {
		return r.errf(at, "too many types")
	}
	if np == 0 && nr == 0 {
		m.voidTypes = append(m.voidTypes, m.numTypes)
		if standalone && m.standaloneVoid < 0 {
			m.standaloneVoid = int64(m.numTypes)
		}
	}
	m.numTypes++
	return nil
}

func (m *module) isVoid(t uint32) bool {
	for _, v := range m.voidTypes {
		if v == t {
			return true
		}
	}
	return false
}

// decide picks the indices of the types, imports and globals to add and
// builds the countdown sequence.
func (m *module) decide(interval uint32) error {
	m.addYield, m.addStack = m.existing < 0, m.existingStack < 0
	m.shiftFrom = m.numFuncImps
	next := m.numFuncImps
	if m.addYield {
		m.yieldIdx, next = next, next+1
	} else {
		m.yieldIdx = uint32(m.existing)
	}
	if m.addStack {
		m.stackIdx, next = next, next+1
	} else {
		m.stackIdx = uint32(m.existingStack)
	}
	m.nAdd = next - m.numFuncImps
	switch {
	case m.existing >= 0:
		m.typeIdx = m.existingType
	case m.standaloneVoid >= 0:
		m.typeIdx = uint32(m.standaloneVoid)
	default:
		t, err := m.addType(nil)
		if err != nil {
			return err
		}
		m.typeIdx = t
	}
	if err := m.blockTypes(); err != nil {
		return err
	}
	if uint64(m.numGlobalImps)+uint64(m.numGlobals) >= math.MaxUint32-2 {
		return &Error{Msg: "too many globals to add three"}
	}
	m.counter = m.numGlobalImps + m.numGlobals
	m.scratch = m.counter + 1
	m.depth = m.counter + 2
	m.stackMax = int32(min(m.budget.StackBytes/stackUnit, maxStackUnits))
	m.initial = interval
	if m.hasStart {
		// The start function runs during instantiation, when a host may not
		// be ready for calls (Extism host functions panic there: they need
		// the plugin in the context). The countdown starts at 0, which
		// wraps to 2^32-1 on the first decrement, and an added start
		// function arms it once the module's own has returned.
		n := uint64(m.numFuncImps) + uint64(m.numFuncs) + uint64(m.nAdd)
		if n >= math.MaxUint32 {
			return &Error{Msg: "too many functions to add one"}
		}
		m.wrapStart, m.startFunc, m.initial = true, uint32(n), 0
	}

	m.decided = true
	m.numFuncsT = uint64(m.numFuncImps) + uint64(m.numFuncs)
	if m.numFuncsT > math.MaxUint32-uint64(m.nAdd)-1 {
		return &Error{Msg: "too many functions to add the imports"}
	}

	p := make([]byte, 0, 40)
	p = append(p, 0x23) // global.get $c
	p = appendU32(p, m.counter)
	p = append(p, 0x41, 0x01, 0x6b, 0x24) // i32.const 1; i32.sub; global.set $c
	p = appendU32(p, m.counter)
	p = append(p, 0x23) // global.get $c
	p = appendU32(p, m.counter)
	p = append(p, 0x45, 0x04, 0x40, 0x41) // i32.eqz; if; i32.const interval
	p = appendS32(p, int32(interval))
	p = append(p, 0x24) // global.set $c
	p = appendU32(p, m.counter)
	p = append(p, 0x10) // call $yield
	p = appendU32(p, m.yieldIdx)
	p = append(p, 0x0b) // end
	m.prologue = p

	f := make([]byte, 0, 48)
	f = append(f, 0x24) // global.set $s
	f = appendU32(f, m.scratch)
	f = append(f, 0x23) // global.get $s
	f = appendU32(f, m.scratch)
	f = append(f, 0x41) // i32.const bulkYieldSize
	f = appendS32(f, bulkYieldSize)
	f = append(f, 0x4f, 0x04, 0x40, 0x23) // i32.ge_u; if; global.get $c
	f = appendU32(f, m.counter)
	f = append(f, 0x41) // i32.const interval
	f = appendS32(f, int32(interval))
	f = append(f, 0x4d, 0x04, 0x40, 0x41, 0x01, 0x24) // i32.le_u; if; i32.const 1; global.set $c
	f = appendU32(f, m.counter)
	f = append(f, 0x0b, 0x0b, 0x23) // end; end; global.get $s
	f = appendU32(f, m.scratch)
	m.bulk = f
	return nil
}

// write produces the output module.
func (m *module) write(secs []section, interval uint32) ([]byte, error) {
	out := make([]byte, 0, len(m.b)+len(m.b)/8+256)
	out = append(out, header...)
	seenType, seenImport, seenGlobal, seenFunction, seenCode := false, false, false, false, false
	// missing adds the sections the module lacks, before the first section
	// that must follow them.
	missing := func(out []byte, next int) []byte {
		if !seenType && m.numNew > 0 && next > order[secType] {
			var mark int
			out, mark = open(append(out, secType))
			out = append(appendU32(out, m.numNew), m.newTypes...)
			out, _ = finish(out, mark, 0, "type section")
			seenType = true
		}
		if !seenImport && m.nAdd > 0 && next > order[secImport] {
			var mark int
			out, mark = open(append(out, secImport))
			out = m.appendImport(appendU32(out, m.nAdd))
			out, _ = finish(out, mark, 0, "import section")
			seenImport = true
		}
		if !seenFunction && m.wrapStart && next > order[secFunction] {
			var mark int
			out, mark = open(append(out, secFunction))
			out = appendU32(append(out, 1), m.typeIdx)
			out, _ = finish(out, mark, 0, "function section")
			seenFunction = true
		}
		if !seenGlobal && next > order[secGlobal] {
			var mark int
			out, mark = open(append(out, secGlobal))
			out = m.appendGlobal(append(out, 3))
			out, _ = finish(out, mark, 0, "global section")
			seenGlobal = true
		}
		if !seenCode && m.wrapStart && next > order[secCode] {
			var mark int
			out, mark = open(append(out, secCode))
			out = m.appendStartBody(append(out, 1), interval)
			out, _ = finish(out, mark, 0, "code section")
			seenCode = true
		}
		return out
	}
	keptName := false
	for _, s := range secs {
		if s.id == secCustom {
			if string(s.name) == "name" && !keptName {
				keptName = true
				out = m.names(s, out)
			}
			continue
		}
		out = missing(out, order[s.id])
		var err error
		switch s.id {
		case secType:
			seenType = true
			out, err = m.section(s, out, m.typeSection)
		case secImport:
			seenImport = true
			out, err = m.section(s, out, func(w *rewriter) error { return m.imports(w, false) })
		case secTable:
			out, err = m.section(s, out, m.tables)
		case secGlobal:
			seenGlobal = true
			out, err = m.section(s, out, m.globals)
		case secExport:
			out, err = m.section(s, out, m.exports)
		case secFunction:
			seenFunction = true
			out, err = m.section(s, out, m.functions)
		case secStart:
			out, err = m.section(s, out, func(w *rewriter) error {
				// analyse read the index; the added start function calls it.
				w.pos = w.end
				w.replaceFrom(s.start)
				w.out = appendU32(w.out, m.startFunc)
				return nil
			})
		case secElement:
			out, err = m.section(s, out, m.elements)
		case secCode:
			seenCode = true
			out, err = m.section(s, out, func(w *rewriter) error { return m.code(w, interval) })
		case secData:
			out, err = m.section(s, out, m.data)
		default: // memory, data count: nothing to change
			out = append(out, s.id)
			out = appendU32(out, uint32(s.end-s.start))
			out = append(out, m.b[s.start:s.end]...)
		}
		if err != nil {
			return nil, err
		}
	}
	out = missing(out, math.MaxInt)
	return out, nil
}

// section rewrites one section with fn, which reads the section's content
// through w and appends to w.out whatever it changes; the parts it leaves
// alone are copied.
func (m *module) section(s section, out []byte, fn func(w *rewriter) error) ([]byte, error) {
	out = append(out, s.id)
	out, mark := open(out)
	w := &rewriter{reader: *m.reader(s), m: m, out: out, last: s.start}
	if err := fn(w); err != nil {
		return nil, annotate(err, sectionNames[s.id]+" section")
	}
	w.flush()
	return finish(w.out, mark, s.at, sectionNames[s.id]+" section")
}

// appendImport appends the imports Yields adds (m.nAdd of them).
func (m *module) appendImport(out []byte) []byte {
	one := func(out []byte, name string) []byte {
		out = appendU32(out, uint32(len(ImportModule)))
		out = append(out, ImportModule...)
		out = appendU32(out, uint32(len(name)))
		out = append(out, name...)
		out = append(out, 0x00)
		return appendU32(out, m.typeIdx)
	}
	if m.addYield {
		out = one(out, ImportName)
	}
	if m.addStack {
		out = one(out, StackImportName)
	}
	return out
}

// appendGlobal appends the three globals Yields adds.
func (m *module) appendGlobal(out []byte) []byte {
	out = append(out, 0x7f, 0x01, 0x41) // the countdown: mutable i32 = i32.const initial
	out = appendS32(out, int32(m.initial))
	out = append(out, 0x0b, 0x7f, 0x01, 0x41, 0x00, 0x0b) // the scratch: mutable i32 = 0
	return append(out, 0x7f, 0x01, 0x41, 0x00, 0x0b)      // the stack depth: mutable i32 = 0
}

// bulkYieldSize is the size operand (bytes, or table elements) from which
// a bulk operation makes the next function entry or loop header yield.
const bulkYieldSize = 64 << 10

// appendStartBody appends the body of the added start function: call the
// module's start function, then set the countdown to interval.
func (m *module) appendStartBody(out []byte, interval uint32) []byte {
	start, _ := m.shift(m.start)
	b := make([]byte, 0, 24)
	b = append(b, 0, 0x10) // no locals; call
	b = appendU32(b, start)
	b = append(b, 0x41) // i32.const interval
	b = appendS32(b, int32(interval))
	b = append(b, 0x24) // global.set $c
	b = appendU32(b, m.counter)
	b = append(b, 0x0b)
	out = appendU32(out, uint32(len(b)))
	return append(out, b...)
}

// rewriter copies a region of the input to out, replacing the parts that
// change. Bytes between last and the read position are pending: they are
// copied when something is replaced or at the end.
type rewriter struct {
	reader
	m    *module
	out  []byte
	last int
}

func (w *rewriter) flush() {
	w.out = append(w.out, w.b[w.last:w.pos]...)
	w.last = w.pos
}

// replaceFrom drops the pending input from at on, so that a replacement can
// be appended in its place.
func (w *rewriter) replaceFrom(at int) {
	w.out = append(w.out, w.b[w.last:at]...)
	w.last = w.pos
}

// funcIndex reads a function index and shifts it past the added import.
func (w *rewriter) funcIndex(what string) error {
	at := w.pos
	v, err := w.u32(what)
	if err != nil {
		return err
	}
	if w.m.decided && uint64(v) >= w.m.numFuncsT {
		return w.errf(at, "%s %d out of range (%d functions)", what, v, w.m.numFuncsT)
	}
	if w.m.nAdd > 0 && v >= w.m.shiftFrom {
		if v > math.MaxUint32-w.m.nAdd {
			return w.errf(at, "%s %d cannot be shifted", what, v)
		}
		w.replaceFrom(at)
		w.out = appendU32(w.out, v+w.m.nAdd)
	}
	return nil
}

// globalIndex reads a global index and checks that the input has the
// global: the added countdown global must stay out of the module's reach.
func (w *rewriter) globalIndex() error {
	at := w.pos
	v, err := w.u32("global index")
	if err == nil && w.m.decided && v >= w.m.counter {
		err = w.errf(at, "global index %d out of range (%d globals)", v, w.m.counter)
	}
	return err
}

// recount reads a vector count and replaces it with count+extra.
func (w *rewriter) recount(what string, minSize int, extra uint32) (uint32, error) {
	at := w.pos
	n, err := w.count(what, minSize)
	if err != nil {
		return 0, err
	}
	if extra != 0 {
		if uint64(n)+uint64(extra) > math.MaxUint32 {
			return 0, w.errf(at, "%s %d is too large to add to", what, n)
		}
		w.replaceFrom(at)
		w.out = appendU32(w.out, n+extra)
	}
	return n, nil
}

// annotate prefixes an *Error's message with where it happened.
func annotate(err error, where string) error {
	if e, ok := err.(*Error); ok {
		e.Msg = where + ": " + e.Msg
	}
	return err
}

func (r *reader) done(what string) error {
	if r.pos != r.end {
		return r.errf(r.pos, "%d unexpected bytes at the end of the %s", r.end-r.pos, what)
	}
	return nil
}

func (m *module) typeSection(w *rewriter) error {
	if _, err := w.recount("type count", 3, m.numNew); err != nil {
		return err
	}
	w.pos = w.end // the types themselves were checked by analyse
	if m.numNew > 0 {
		w.flush()
		w.out = append(w.out, m.newTypes...)
	}
	return nil
}

// imports reads the import section. On the first pass it counts imports and
// looks for an existing yield import; on the second it appends the new one.
func (m *module) imports(w *rewriter, first bool) error {
	extra := uint32(0)
	if !first {
		extra = m.nAdd
	}
	n, err := w.recount("import count", 4, extra)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		at := w.pos
		modAt := w.pos
		mod, err := w.name("import module name")
		if err != nil {
			return err
		}
		fieldAt := w.pos
		field, err := w.name("import field name")
		if err != nil {
			return err
		}
		ours := string(mod) == ImportModule && (string(field) == ImportName || string(field) == StackImportName)
		kindAt := w.pos
		kind, err := w.byte("import kind")
		if err != nil {
			return err
		}
		switch kind {
		case 0x00:
			if !first && string(mod) == ExtismModule && Guarded(string(field)) {
				// The same import, from GuardModule.
				w.replaceFrom(modAt)
				w.out = appendU32(w.out, uint32(len(GuardModule)))
				w.out = append(w.out, GuardModule...)
				w.out = append(w.out, w.b[fieldAt:w.pos]...)
			}
			tAt := w.pos
			t, err := w.u32("import type index")
			if err != nil {
				return err
			}
			if first {
				if t >= m.numTypes {
					return w.errf(tAt, "import %s.%s has type index %d out of range", mod, field, t)
				}
				if ours {
					if !m.isVoid(t) {
						return w.errf(at, "module already imports %s.%s with a type other than () -> ()", ImportModule, field)
					}
					switch {
					case string(field) == ImportName && m.existing < 0:
						m.existing = int64(m.numFuncImps)
						m.existingType = t
					case string(field) == StackImportName && m.existingStack < 0:
						m.existingStack = int64(m.numFuncImps)
					}
				}
				if m.numFuncImps == math.MaxUint32 {
					return w.errf(at, "too many function imports")
				}
				m.numFuncImps++
				m.funcTypes = append(m.funcTypes, t)
			}
		case 0x01:
			if ours {
				return w.errf(at, "module already imports %s.%s as a table", ImportModule, field)
			}
			if err := w.table(); err != nil {
				return err
			}
		case 0x02:
			if ours {
				return w.errf(at, "module already imports %s.%s as a memory", ImportModule, field)
			}
			if err := w.limits("memory limits"); err != nil {
				return err
			}
		case 0x03:
			if ours {
				return w.errf(at, "module already imports %s.%s as a global", ImportModule, field)
			}
			if err := w.valType("global type"); err != nil {
				return err
			}
			if _, err := w.byte("global mutability"); err != nil {
				return err
			}
			if first {
				if m.numGlobalImps == math.MaxUint32 {
					return w.errf(at, "too many global imports")
				}
				m.numGlobalImps++
			}
		default:
			return w.errf(kindAt, "unsupported import kind 0x%02x", kind)
		}
	}
	if err := w.done("import section"); err != nil {
		return err
	}
	if extra != 0 {
		w.flush()
		w.out = m.appendImport(w.out)
	}
	return nil
}

// table reads a table type, which in wazero may carry an initialiser
// (0x40 0x00 reftype limits expr).
func (w *rewriter) table() error {
	if w.pos < w.end && w.b[w.pos] == 0x40 {
		w.pos++
		at := w.pos
		c, err := w.byte("table prefix")
		if err != nil {
			return err
		}
		if c != 0 {
			return w.errf(at, "invalid byte 0x%02x after table prefix 0x40", c)
		}
		if err := w.refType("table element type"); err != nil {
			return err
		}
		if err := w.limits("table limits"); err != nil {
			return err
		}
		return w.constExpr("table initialiser")
	}
	if err := w.refType("table element type"); err != nil {
		return err
	}
	return w.limits("table limits")
}

func (m *module) tables(w *rewriter) error {
	n, err := w.count("table count", 3)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := w.table(); err != nil {
			return err
		}
	}
	return w.done("table section")
}

func (m *module) globals(w *rewriter) error {
	n, err := w.recount("global count", 3, 3)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := w.valType("global type"); err != nil {
			return err
		}
		if _, err := w.byte("global mutability"); err != nil {
			return err
		}
		if err := w.constExpr("global initialiser"); err != nil {
			return err
		}
	}
	if err := w.done("global section"); err != nil {
		return err
	}
	w.flush()
	w.out = m.appendGlobal(w.out)
	return nil
}

func (m *module) exports(w *rewriter) error {
	n, err := w.count("export count", 3)
	if err != nil {
		return err
	}
	m.shape.Exports = int(n)
	if err := over("exports", int(n), m.budget.Exports); err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := w.name("export name"); err != nil {
			return err
		}
		at := w.pos
		kind, err := w.byte("export kind")
		if err != nil {
			return err
		}
		switch {
		case kind == 0x00:
			err = w.funcIndex("exported function index")
		case kind == 0x03:
			err = w.globalIndex()
		case kind <= 0x02:
			_, err = w.u32("export index")
		default:
			err = w.errf(at, "unsupported export kind 0x%02x", kind)
		}
		if err != nil {
			return err
		}
	}
	return w.done("export section")
}

func (m *module) elements(w *rewriter) error {
	n, err := w.count("element segment count", 2)
	if err != nil {
		return err
	}
	m.shape.ElemSegments = int(n)
	if err := over("element segments", int(n), m.budget.ElemSegments); err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		at := w.pos
		flags, err := w.u32("element segment flags")
		if err != nil {
			return err
		}
		if flags > 7 {
			return w.errf(at, "unsupported element segment flags %d", flags)
		}
		if flags&3 == 2 { // explicit table index
			if _, err := w.u32("element table index"); err != nil {
				return err
			}
		}
		if flags&1 == 0 { // active: offset expression
			if err := w.constExpr("element offset"); err != nil {
				return err
			}
		}
		exprs := flags&4 != 0
		if flags&3 != 0 { // element kind or reference type
			if exprs {
				err = w.refType("element reference type")
			} else {
				kAt := w.pos
				var kind byte
				kind, err = w.byte("element kind")
				if err == nil && kind != 0 {
					err = w.errf(kAt, "unsupported element kind 0x%02x", kind)
				}
			}
			if err != nil {
				return err
			}
		}
		k, err := w.count("element count", 1)
		if err != nil {
			return err
		}
		for j := uint32(0); j < k; j++ {
			if exprs {
				err = w.constExpr("element expression")
			} else {
				err = w.funcIndex("element function index")
			}
			if err != nil {
				return err
			}
		}
	}
	return w.done("element section")
}

func (m *module) data(w *rewriter) error {
	n, err := w.count("data segment count", 2)
	if err != nil {
		return err
	}
	m.shape.DataSegments = int(n)
	if err := over("data segments", int(n), m.budget.DataSegments); err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		at := w.pos
		flags, err := w.u32("data segment flags")
		if err != nil {
			return err
		}
		switch flags {
		case 0:
			err = w.constExpr("data offset")
		case 1:
		case 2:
			if _, err = w.u32("data memory index"); err == nil {
				err = w.constExpr("data offset")
			}
		default:
			err = w.errf(at, "unsupported data segment flags %d", flags)
		}
		if err != nil {
			return err
		}
		if _, err := w.name("data segment bytes"); err != nil {
			return err
		}
	}
	return w.done("data section")
}

// constExpr copies a constant expression, shifting ref.func indices. It
// takes the instructions wazero's constant expression decoder takes.
func (w *rewriter) constExpr(what string) error {
	for {
		at := w.pos
		op, err := w.byte(what)
		if err != nil {
			return err
		}
		switch op {
		case 0x0b: // end
			return nil
		case 0x41: // i32.const
			err = w.skipSigned(5, "i32.const immediate")
		case 0x42: // i64.const
			err = w.skipSigned(10, "i64.const immediate")
		case 0x43: // f32.const
			err = w.skip(4, "f32.const immediate")
		case 0x44: // f64.const
			err = w.skip(8, "f64.const immediate")
		case 0x23: // global.get
			err = w.globalIndex()
		case 0xd0: // ref.null heaptype
			_, err = w.u32("ref.null heap type")
		case 0xd2: // ref.func
			err = w.funcIndex("ref.func index")
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant expressions
		case 0xfd:
			var sub byte
			sub, err = w.byte("vector opcode")
			if err == nil && sub != 0x0c {
				return w.errf(at, "unsupported vector opcode 0xfd 0x%02x in %s", sub, what)
			}
			if err == nil {
				err = w.skip(16, "v128.const immediate")
			}
		default:
			return w.errf(at, "unsupported opcode 0x%02x in %s", op, what)
		}
		if err != nil {
			return err
		}
	}
}

// code rewrites the code section: each body keeps its local declarations and
// gets the countdown at its start and after every loop instruction.
func (m *module) code(w *rewriter, interval uint32) error {
	extra := uint32(0)
	if m.wrapStart {
		extra = 1
	}
	n, err := w.recount("function body count", 2, extra)
	if err != nil {
		return err
	}
	w.flush()
	for i := uint32(0); i < n; i++ {
		at := w.pos
		size, err := w.u32("function body size")
		if err != nil {
			return err
		}
		if int64(size) > int64(w.remaining()) {
			return w.errf(at, "function body %d of %d bytes runs past the end of the section (%d bytes left)", i, size, w.remaining())
		}
		end := w.pos + int(size)
		m.shape.BodyBytes = max(m.shape.BodyBytes, int(size))
		if err := over("bytes in one function body", int(size), m.budget.BodyBytes); err != nil {
			return annotate(err, fmt.Sprintf("function body %d", i))
		}
		r := &reader{b: w.b, pos: w.pos, end: end}
		nl, err := r.count("local declaration count", 2)
		var locals uint64
		for j := uint32(0); j < nl && err == nil; j++ {
			lAt := r.pos
			var k uint32
			if k, err = r.u32("local count"); err == nil {
				if locals += uint64(k); locals > MaxLocals {
					err = r.errf(lAt, "more than %d locals", MaxLocals)
				} else {
					err = r.valType("local type")
				}
			}
		}
		if err == nil {
			m.shape.LocalsTotal += int(locals)
			err = over("locals in all functions", m.shape.LocalsTotal, m.budget.LocalsTotal)
		}
		if err != nil {
			return annotate(err, fmt.Sprintf("function body %d", i))
		}
		if m.skipBodies {
			w.pos = end
			continue
		}
		fn := uint64(m.numFuncImps) + uint64(i)
		if fn >= uint64(len(m.funcTypes)) {
			return w.errf(at, "function body %d has no function (%d functions)", i, m.numFuncs)
		}
		t := m.funcTypes[fn]
		out, mark := open(w.out)
		out = append(out, w.b[w.pos:r.pos]...)
		out, enter := m.stackEnter(out)
		out = append(out, m.prologue...)
		out = append(append(out, 0x02), m.blockType[t]...) // the wrapper block
		m.h.reset(int(m.sigs[t].results))
		out, err = m.body(w.b, r.pos, end, out)
		if err != nil {
			return annotate(err, fmt.Sprintf("function body %d", i))
		}
		// The frame's estimate (see stack.go), at most maxStackUnits: the
		// parameters, the locals, the operand stack at its highest, and
		// the return address and frame pointer.
		frame := int32(min(2+uint64(m.sigs[t].params)+locals+uint64(m.h.max), maxStackUnits))
		putConst5(out[enter:], frame)
		m.frames = append(m.frames, frame)
		for _, at := range m.leaves {
			putConst5(out[at:], frame)
		}
		if w.out, err = finish(out, mark, at, "function body"); err != nil {
			return err
		}
		w.pos, w.last = end, end
	}
	if err := w.done("code section"); err != nil {
		return err
	}
	if len(m.frames) > 0 {
		slices.Sort(m.frames)
		m.shape.FrameBytes = int(m.frames[len(m.frames)-1]) * stackUnit
		m.shape.MedianFrameBytes = int(m.frames[len(m.frames)/2]) * stackUnit
	}
	if m.wrapStart {
		w.out = m.appendStartBody(w.out, interval)
	}
	return nil
}

// functions appends the added start function's type to the function section.
func (m *module) functions(w *rewriter) error {
	extra := uint32(0)
	if m.wrapStart {
		extra = 1
	}
	n, err := w.recount("function count", 1, extra)
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := w.u32("function type index"); err != nil {
			return err
		}
	}
	if err := w.done("function section"); err != nil {
		return err
	}
	if m.wrapStart {
		w.flush()
		w.out = appendU32(w.out, m.typeIdx)
	}
	return nil
}
