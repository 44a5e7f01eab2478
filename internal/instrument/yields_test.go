package instrument

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// nestedRef is the Go version of loops.wat's nested.
func nestedRef(n uint32) uint32 {
	var count uint32
	for i := uint32(0); i < n; i++ {
		for j := uint32(0); j < i; j++ {
			if j == 3 {
				continue
			}
			if j == 7 {
				break
			}
			count++
			if count > 1000 {
				return count
			}
		}
	}
	return count
}

func TestLoopsBehaveTheSame(t *testing.T) {
	orig := testdata(t, "loops.wasm")
	cases := []struct {
		name string
		arg  uint64
		want uint64
	}{
		{"sum", 100000, 100000 * 99999 / 2},
		{"sum", 0, 0},
		{"fib", 20, 6765},
		{"nested", 3, uint64(nestedRef(3))},
		{"nested", 50, uint64(nestedRef(50))},
		{"nested", 1000, uint64(nestedRef(1000))},
		{"multi", 10, 165},
		{"multi", 0, 0},
	}
	for _, interval := range []uint32{1, 7, 1000, 0, math.MaxUint32} {
		out := mustYields(t, orig, interval)
		rt, _ := newRuntime(t, false, api.CoreFeaturesV2)
		a, b := instantiate(t, rt, orig), instantiate(t, rt, out)
		for _, c := range cases {
			if got := call(t, b, c.name, c.arg); got != c.want {
				t.Errorf("interval %d: instrumented %s(%d) = %d, want %d", interval, c.name, c.arg, got, c.want)
			}
			if got := call(t, a, c.name, c.arg); got != c.want {
				t.Errorf("original %s(%d) = %d, want %d", c.name, c.arg, got, c.want)
			}
		}
		// No reference values for these: the two modules must agree.
		for _, name := range []string{"simd", "misc"} {
			for _, n := range []uint64{1, 2, 100, 1000} {
				if x, y := call(t, a, name, n), call(t, b, name, n); x != y {
					t.Errorf("interval %d: %s(%d): original %d, instrumented %d", interval, name, n, x, y)
				}
			}
		}
	}
}

// TestYieldCounts checks that the countdown runs once per function entry and
// once per loop iteration.
func TestYieldCounts(t *testing.T) {
	orig := testdata(t, "loops.wasm")
	cases := []struct {
		name     string
		arg      uint64
		interval uint32
		entries  int64 // countdown decrements
	}{
		{"sum", 1_000_000, 1000, 1_000_000 + 1}, // one entry, n loop headers
		{"sum", 1_000_000, 1, 1_000_000 + 1},
		{"sum", 1_000_000, 0, 1_000_000 + 1},
		{"fib", 20, 10, 2*10946 - 1}, // fib(n) makes 2*fib(n+1)-1 calls
		{"multi", 100, 3, 100 + 2},   // one entry, n+1 loop headers
	}
	for _, c := range cases {
		rt, calls := newRuntime(t, false, api.CoreFeaturesV2)
		mod := instantiate(t, rt, mustYields(t, orig, c.interval))
		call(t, mod, c.name, c.arg)
		interval := int64(c.interval)
		if interval == 0 {
			interval = DefaultInterval
		}
		if want := c.entries / interval; calls.Load() != want {
			t.Errorf("%s(%d) with interval %d: %d yields, want %d", c.name, c.arg, c.interval, calls.Load(), want)
		}
	}
}

func TestInfiniteLoopYields(t *testing.T) {
	out := mustYields(t, testdata(t, "loops.wasm"), 0)
	rt, calls := newRuntime(t, false, api.CoreFeaturesV2)
	mod := instantiate(t, rt, out)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := mod.ExportedFunction("spin").Call(ctx)
	if err == nil {
		t.Fatal("spin returned")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("spin stopped after %v", d)
	}
	// A tight loop runs ~1e8 iterations a second here: expect thousands of
	// yields; require a margin below that for slow machines.
	if n := calls.Load(); n < 10 {
		t.Errorf("spin called yield %d times in 200ms", n)
	}
	t.Logf("spin: %d yields in 200ms at interval %d", calls.Load(), DefaultInterval)
}

// TestYieldCanStopTheGuest shows the host side of the contract without
// close-on-context-done: a yield that finds the deadline passed can end the
// call itself by panicking, which wazero turns into the call's error.
func TestYieldCanStopTheGuest(t *testing.T) {
	out := mustYields(t, testdata(t, "loops.wasm"), 100)
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer rt.Close(ctx)
	deadline := time.Now().Add(50 * time.Millisecond)
	errDeadline := errors.New("deadline passed")
	n := 0
	err := schedModule(ctx, rt, func() {
		n++
		if time.Now().After(deadline) {
			panic(errDeadline)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	mod := instantiate(t, rt, out)
	_, err = mod.ExportedFunction("spin").Call(ctx)
	if !errors.Is(err, errDeadline) {
		t.Fatalf("spin: %v, want %v", err, errDeadline)
	}
	if n == 0 {
		t.Fatal("no yields")
	}
}

func TestIndicesShifted(t *testing.T) {
	orig := testdata(t, "indices.wasm")
	out := mustYields(t, orig, 3)

	// The () -> () type is reused and the import appended.
	if a, b := sectionCount(t, orig, secType), sectionCount(t, out, secType); a != b {
		t.Errorf("type count %d -> %d, want the existing () -> () type reused", a, b)
	}
	if a, b := sectionCount(t, orig, secImport), sectionCount(t, out, secImport); b != a+2 {
		t.Errorf("import count %d -> %d", a, b)
	}
	if a, b := sectionCount(t, orig, secGlobal), sectionCount(t, out, secGlobal); b != a+3 { // the countdown, the scratch, the depth
		t.Errorf("global count %d -> %d", a, b)
	}

	steps := []struct {
		name string
		arg  []uint64
		want int64 // -1: traps
	}{
		{"started", nil, 142},
		{"call_table", []uint64{0}, 10},
		{"call_table", []uint64{1}, 20},
		{"call_table", []uint64{2}, 30},
		{"call_table", []uint64{3}, -1}, // ref.null
		{"call_table", []uint64{4}, -1}, // empty until init_passive
		{"call_table2", []uint64{0}, 50},
		{"call_table2", []uint64{1}, 40},
		{"call_table2", []uint64{2}, -1},
		{"init_passive", nil, 0},
		{"call_table", []uint64{4}, 30},
		{"call_table", []uint64{5}, 40},
		{"call_table", []uint64{6}, 50},
		{"call_table", []uint64{7}, 10},
		{"call_global", nil, 10},
		{"call_ref_func", nil, 60},
		{"call_ref_func7", nil, 20},
		{"direct", nil, 70},
		{"imports", nil, 18},
		{"loop_calls", []uint64{5}, 350},
		{"reexport", nil, 2},
		{"f50", nil, 50},
	}
	for _, bin := range [][]byte{orig, out} {
		rt, _ := newRuntime(t, false, api.CoreFeaturesV2)
		ctx := context.Background()
		if _, err := rt.InstantiateWithConfig(ctx, testdata(t, "env.wasm"), wazero.NewModuleConfig().WithName("env")); err != nil {
			t.Fatal(err)
		}
		mod := instantiate(t, rt, bin)
		for _, s := range steps {
			res, err := mod.ExportedFunction(s.name).Call(ctx, s.arg...)
			switch {
			case s.want < 0 && err == nil:
				t.Errorf("%s%v = %v, want a trap", s.name, s.arg, res)
			case s.want >= 0 && err != nil:
				t.Errorf("%s%v: %v", s.name, s.arg, err)
			case s.want > 0 && int64(res[0]) != s.want:
				t.Errorf("%s%v = %d, want %d", s.name, s.arg, res[0], s.want)
			}
		}
	}

	// The name section maps the shifted indices to the original names.
	const imports = 3 // function imports before the added ones
	before, after := functionNames(t, orig), functionNames(t, out)
	if len(before) == 0 {
		t.Fatal("indices.wasm has no function names")
	}
	for idx, name := range before {
		want := idx
		if idx >= imports {
			want += 2
		}
		if after[want] != name {
			t.Errorf("function %d (%q) is named %q at %d", idx, name, after[want], want)
		}
	}
	if after[imports] != ImportDebugName || after[imports+1] != StackImportDebugName {
		t.Errorf("imports %d and %d are named %q and %q, want %q and %q", imports, imports+1,
			after[imports], after[imports+1], ImportDebugName, StackImportDebugName)
	}
	// indices.wasm has a start function, so Yields adds one after the others.
	funcs := sectionCount(t, orig, secFunction)
	if got := sectionCount(t, out, secFunction); got != funcs+1 {
		t.Errorf("%d functions, want %d", got, funcs+1)
	}
	if name := after[uint32(imports+2+funcs)]; name != StartDebugName {
		t.Errorf("the added start function is named %q", name)
	}
	if len(after) != len(before)+3 {
		t.Errorf("%d function names, want %d", len(after), len(before)+3)
	}
	lb, la := localNames(t, orig), localNames(t, out)
	if len(lb) == 0 || len(lb) != len(la) {
		t.Fatalf("local names: %d before, %d after", len(lb), len(la))
	}
	for idx, locals := range lb {
		for li, name := range locals {
			if got := la[idx+2][li]; got != name {
				t.Errorf("local %d of function %d is %q after, want %q", li, idx, got, name)
			}
		}
	}
}

// TestStartFunctionDoesNotYield checks that the countdown is disarmed while
// the start function runs (instantiation) and armed afterwards, whether the
// start function is defined or imported.
func TestStartFunctionDoesNotYield(t *testing.T) {
	loop := body(
		0x03, 0x40, // loop
		0x23, 0x00, 0x41, 0x01, 0x6a, 0x24, 0x00, // g += 1
		0x23, 0x00, 0x41, 0xe8, 0x07, 0x49, 0x0d, 0x00, // br_if (g < 1000)
		0x0b, 0x0b)
	get := body(0x23, 0x00, 0x0b)
	types := sec(secType, vector([]byte{0x60, 0, 0}, []byte{0x60, 0, 1, 0x7f}))
	global := sec(secGlobal, vector([]byte{0x7f, 1, 0x41, 0, 0x0b}))
	defined := wasmModule(types,
		sec(secFunction, vector([]byte{0}, []byte{1})),
		global,
		sec(secExport, vector(cat(str("get"), []byte{0, 1}))),
		sec(secStart, []byte{0}),
		sec(secCode, vector(loop, get)),
	)
	imported := wasmModule(types,
		sec(secImport, vector(cat(str("env"), str("init"), []byte{0, 0}))),
		sec(secFunction, vector([]byte{0}, []byte{1})),
		global,
		sec(secExport, vector(cat(str("get"), []byte{0, 2}))),
		sec(secStart, []byte{0}),
		sec(secCode, vector(loop, get)),
	)
	for name, mod := range map[string][]byte{"defined": defined, "imported": imported} {
		t.Run(name, func(t *testing.T) {
			out := mustYields(t, mod, 1)
			rt, calls := newRuntime(t, false, api.CoreFeaturesV2)
			ctx := context.Background()
			inits := 0
			_, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().
				WithFunc(func() { inits++ }).Export("init").Instantiate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			inst := instantiate(t, rt, out)
			if n := calls.Load(); n != 0 {
				t.Fatalf("%d yields during instantiation", n)
			}
			if name == "imported" && inits != 1 {
				t.Errorf("env.init ran %d times", inits)
			}
			want := uint64(0)
			if name == "defined" {
				want = 1000
			}
			if got := call(t, inst, "get"); got != want {
				t.Errorf("get() = %d, want %d: the start function did not run", got, want)
			}
			if n := calls.Load(); n != 1 { // interval 1: get's entry yields
				t.Errorf("%d yields after the start function, want 1", n)
			}
		})
	}
}

func TestReusesExistingImport(t *testing.T) {
	orig := testdata(t, "reuse.wasm")
	out := mustYields(t, orig, 1)
	if n := sectionCount(t, out, secImport); n != 2 {
		t.Errorf("%d imports, want the existing one reused and the stack import added", n)
	}
	if a, b := sectionCount(t, orig, secType), sectionCount(t, out, secType); a != b {
		t.Errorf("type count %d -> %d", a, b)
	}
	rt, calls := newRuntime(t, false, api.CoreFeaturesV2)
	mod := instantiate(t, rt, out)
	if got := call(t, mod, "twice", 21); got != 42 {
		t.Errorf("twice(21) = %d", got)
	}
	if n := calls.Load(); n != 2 { // the module's own call and the countdown at entry
		t.Errorf("%d yields, want 2", n)
	}
}

func TestRefusesImportWithOtherType(t *testing.T) {
	_, err := Yields(testdata(t, "wrongtype.wasm"), 0)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "type other than () -> ()") {
		t.Fatalf("err = %v", err)
	}
}

func TestEmptyModule(t *testing.T) {
	out := mustYields(t, testdata(t, "empty.wasm"), 0)
	var ids []byte
	for _, s := range sections(t, out) {
		ids = append(ids, s.id)
	}
	if !bytes.Equal(ids, []byte{secType, secImport, secGlobal}) {
		t.Errorf("sections %v, want type, import, global", ids)
	}
	rt, _ := newRuntime(t, true, api.CoreFeaturesV2)
	instantiate(t, rt, out)
}

func TestTailCalls(t *testing.T) {
	orig := testdata(t, "tail.wasm")
	out := mustYields(t, orig, 1000)
	rt, calls := newRuntime(t, false, api.CoreFeaturesV2|experimental.CoreFeaturesTailCall)
	mod := instantiate(t, rt, out)
	const n = 100000
	if got := call(t, mod, "count", n, 5); got != n+5 {
		t.Errorf("count = %d", got)
	}
	// count and count2 are each entered n times, count once more.
	if got, want := calls.Load(), int64(2*n+1)/1000; got != want {
		t.Errorf("%d yields, want %d", got, want)
	}
}

func TestThreads(t *testing.T) {
	orig := testdata(t, "threads.wasm")
	rt, calls := newRuntime(t, false, api.CoreFeaturesV2|experimental.CoreFeaturesThreads)
	a, b := instantiate(t, rt, orig), instantiate(t, rt, mustYields(t, orig, 10))
	x, y := call(t, a, "atomics", 1000), call(t, b, "atomics", 1000)
	if x != y || x != 2000+999 {
		t.Errorf("atomics: original %d, instrumented %d", x, y)
	}
	if calls.Load() != 100 {
		t.Errorf("%d yields, want 100", calls.Load())
	}
}

// TestEncodings uses hand-made encodings that wat2wasm never produces: a
// loop whose block type is a type index that takes two bytes, padded LEB128
// block types, call indices and counts, and a multi-byte s33 block type.
func TestEncodings(t *testing.T) {
	var types [][]byte
	for i := 0; i < 70; i++ {
		types = append(types, []byte{0x60, 1, 0x7f, 1, 0x7f}) // (i32) -> i32
	}
	code := []byte{
		0x20, 0x00, // local.get 0
		0x03, 0xc5, 0x00, // loop (type 69)
		0x41, 0x01, 0x6b, // i32.const 1; i32.sub
		0x22, 0x00, 0x20, 0x00, // local.tee 0; local.get 0
		0x0d, 0x00, // br_if 0
		0x0b,             // end
		0x02, 0xc0, 0x7f, // block with a padded empty block type
		0x0b,
		0x10, 0x81, 0x80, 0x00, // call 1, padded
		0x0b,
	}
	mod := wasmModule(
		sec(secType, vector(types...)),
		sec(secFunction, []byte{0x82, 0x80, 0x00, 0, 0}), // padded count 2
		sec(secExport, vector(cat(str("f"), []byte{0, 0}))),
		sec(secCode, vector(body(code...), body(0x20, 0, 0x41, 1, 0x6a, 0x0b))),
		sec(secCustom, str("producers"), []byte{0}),
		sec(secCustom, str(".debug_info"), []byte{1, 2, 3}),
	)
	out := mustYields(t, mod, 1)
	rt, calls := newRuntime(t, false, api.CoreFeaturesV2)
	a, b := instantiate(t, rt, mod), instantiate(t, rt, out)
	if x, y := call(t, a, "f", 10), call(t, b, "f", 10); x != 1 || y != 1 {
		t.Errorf("f(10): original %d, instrumented %d, want 1", x, y)
	}
	if n := calls.Load(); n != 12 { // f's entry, 10 loop headers, the callee's entry
		t.Errorf("%d yields, want 12", n)
	}
	for _, s := range sections(t, out) {
		if s.id == secCustom {
			t.Errorf("custom section %q kept", s.name)
		}
	}
	if n := sectionCount(t, out, secType); n != 71 {
		t.Errorf("%d types, want 71", n)
	}
}

func TestDoesNotModifyInput(t *testing.T) {
	orig := testdata(t, "indices.wasm")
	keep := bytes.Clone(orig)
	mustYields(t, orig, 0)
	if !bytes.Equal(orig, keep) {
		t.Fatal("Yields modified its input")
	}
}

func TestErrors(t *testing.T) {
	valid := wasmModule(
		sec(secType, vector([]byte{0x60, 0, 0})),
		sec(secFunction, vector([]byte{0})),
		sec(secCode, vector(body(0x01, 0x0b))),
	)
	// withOp returns a module whose only body is op followed by end, and
	// the offset of op.
	withOp := func(op ...byte) ([]byte, int) {
		m := wasmModule(
			sec(secType, vector([]byte{0x60, 0, 0})),
			sec(secFunction, vector([]byte{0})),
			sec(secCode, vector(body(append(op, 0x0b)...))),
		)
		return m, len(m) - len(op) - 1
	}
	eh, ehAt := withOp(0x06, 0x40)
	gc, gcAt := withOp(0xfb, 0x00)
	simd, simdAt := withOp(0xfd, 0x9a, 0x01)
	misc, miscAt := withOp(0xfc, 0x12)
	atom, atomAt := withOp(0xfe, 0x04)
	short, shortAt := withOp(0x44, 1, 2)
	long, longAt := withOp(0x20, 0x80, 0x80, 0x80, 0x80, 0x10)
	unclosed, _ := withOp(0x02, 0x40, 0x01)
	// Out-of-range references would become valid (reaching the countdown
	// global or the added function) after the rewrite.
	global, globalAt := withOp(0x41, 0, 0x24, 0x00)
	callOut, callOutAt := withOp(0x10, 0x01)
	after, afterAt := withOp(0x01, 0x0b, 0x01)
	cases := []struct {
		name string
		in   []byte
		msg  string
		at   int
	}{
		{"empty", nil, "bad magic", 0},
		{"bad magic", []byte("\x00asn\x01\x00\x00\x00"), "bad magic", 0},
		{"bad version", []byte("\x00asm\x02\x00\x00\x00"), "version", 4},
		{"exception handling", eh, "unsupported opcode 0x06 (exception handling)", ehAt},
		{"gc", gc, "unsupported opcode 0xfb (garbage collection)", gcAt},
		{"bad simd", simd, "unsupported opcode 0xfd 0x9a", simdAt},
		{"bad misc", misc, "unsupported opcode 0xfc 0x12", miscAt},
		{"bad atomic", atom, "unsupported opcode 0xfe 0x04", atomAt},
		{"truncated immediate", short, "truncated", shortAt},
		{"overlong u32", long, "overflows", longAt},
		{"missing end", unclosed, "missing end", len(unclosed)},
		{"global out of range", global, "global index 0 out of range", globalAt + 2},
		{"function out of range", callOut, "function index 1 out of range", callOutAt},
		{"after end", after, "bytes after the end", afterAt + 2},
		{"linking", cat(valid, sec(secCustom, str("linking"), []byte{2})), "relocatable", len(valid)},
		{"reloc", cat(valid, sec(secCustom, str("reloc.CODE"), []byte{0})), "relocatable", len(valid)},
		{"huge count", wasmModule(sec(secType, []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x60})), "cannot fit", 10},
		{"section past end", cat(valid, []byte{secData, 0x10, 0}), "runs past the end", len(valid)},
		{"section order", wasmModule(sec(secFunction, vector()), sec(secType, vector())), "out of order", 11},
		{"unknown section", wasmModule(sec(13, vector())), "unsupported section id 13", 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Yields(c.in, 0)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if !strings.Contains(e.Msg, c.msg) {
				t.Errorf("err = %v, want %q", err, c.msg)
			}
			if e.Offset != c.at {
				t.Errorf("offset %d, want %d (%v)", e.Offset, c.at, err)
			}
		})
	}
}

// TestTruncated feeds every prefix of every test module: Yields must never
// panic, and whatever it accepts must still compile.
func TestTruncated(t *testing.T) {
	rt, _ := newRuntime(t, true, api.CoreFeaturesV2|experimental.CoreFeaturesThreads|experimental.CoreFeaturesTailCall)
	ctx := context.Background()
	files, _ := filepath.Glob("testdata/*.wasm")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(b); n++ {
			out, err := Yields(b[:n], 5)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Offset < 0 || e.Offset > n {
					t.Fatalf("%s[:%d]: %v", f, n, err)
				}
				continue
			}
			if cm, cerr := rt.CompileModule(ctx, b[:n]); cerr == nil {
				cm.Close(ctx)
				cm, err := rt.CompileModule(ctx, out)
				if err != nil {
					t.Errorf("%s[:%d]: output does not compile: %v", f, n, err)
					continue
				}
				cm.Close(ctx)
			}
		}
	}
}

// TestTestdataUpToDate rebuilds the .wasm files from their .wat sources when
// wat2wasm is installed (it is not in CI) and checks they match.
func TestTestdataUpToDate(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm not installed")
	}
	files, _ := filepath.Glob("testdata/*.wat")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cmd []string
		for _, line := range strings.Split(string(src), "\n") {
			if l := strings.TrimSpace(strings.TrimPrefix(line, ";;")); strings.HasPrefix(l, "wat2wasm ") {
				cmd = strings.Fields(l)
				break
			}
		}
		if cmd == nil {
			t.Errorf("%s has no wat2wasm command line", f)
			continue
		}
		tmp := filepath.Join(t.TempDir(), "out.wasm")
		cmd[len(cmd)-1] = tmp
		c := exec.Command(cmd[0], cmd[1:]...)
		c.Dir = "testdata"
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", f, err, b)
		}
		want, _ := os.ReadFile(tmp)
		got, _ := os.ReadFile(strings.TrimSuffix(f, ".wat") + ".wasm")
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run %s", strings.TrimSuffix(f, ".wat")+".wasm", strings.Join(cmd[:len(cmd)-1], " ")+" "+filepath.Base(strings.TrimSuffix(f, ".wat"))+".wasm")
		}
	}
}

// TestOpcodeTablesMatchWazero cross-checks the immediate layouts against
// wazero: every one-byte, 0xFC, 0xFD and 0xFE opcode is put, with
// well-formed immediates for its layout, into unreachable code (where
// wazero's validator accepts any operand types), and Yields must accept the
// module exactly when wazero compiles it, and then produce a module wazero
// compiles.
func TestOpcodeTablesMatchWazero(t *testing.T) {
	rt, _ := newRuntime(t, true, api.CoreFeaturesV2|experimental.CoreFeaturesThreads|experimental.CoreFeaturesTailCall)
	ctx := context.Background()
	memarg := []byte{0, 0}
	mod := func(instr []byte) []byte {
		// One i32 local; unreachable; instr; unreachable (drops what instr
		// pushed); end.
		code := cat([]byte{1, 1, 0x7f, 0x00}, instr, []byte{0x00, 0x0b})
		return wasmModule(
			sec(secType, vector([]byte{0x60, 0, 0})),
			sec(secFunction, vector([]byte{0})),
			sec(secTable, vector([]byte{0x70, 0, 1})),
			sec(secMemory, vector([]byte{0, 1})),
			sec(secGlobal, vector([]byte{0x7f, 1, 0x41, 0, 0x0b})),
			sec(secElement, vector([]byte{1, 0, 1, 0})), // passive, funcref, [func 0]
			sec(secDataCount, []byte{1}),
			sec(secCode, vector(cat(uleb(uint64(len(code))), code))),
			sec(secData, vector([]byte{1, 1, 0xaa})), // passive
		)
	}
	// check reports whether wazero compiles the module with instr.
	check := func(name string, instr []byte) bool {
		t.Helper()
		in := mod(instr)
		out, yerr := Yields(in, 3)
		cm, werr := rt.CompileModule(ctx, in)
		if werr == nil {
			cm.Close(ctx)
		}
		if werr != nil && yerr == nil && strings.Contains(werr.Error(), "invalid memory alignment") {
			return false // a rule on the immediate's value, not its layout
		}
		switch {
		case werr == nil && yerr != nil:
			t.Errorf("%s % x: wazero compiles it, Yields refuses: %v", name, instr, yerr)
		case werr != nil && yerr == nil:
			t.Errorf("%s % x: Yields accepts it, wazero does not: %v", name, instr, werr)
		case yerr == nil:
			cm, err := rt.CompileModule(ctx, out)
			if err != nil {
				t.Errorf("%s % x: output does not compile: %v", name, instr, err)
			} else {
				cm.Close(ctx)
			}
		}
		return werr == nil
	}
	for op := 0; op < 256; op++ {
		var imm []byte
		switch opKinds[op] {
		case kBlock, kLoop:
			imm = []byte{0x40, 0x0b} // empty block type, then its end
		case kIndex, kGlobal:
			imm = []byte{0}
		case kIndex2:
			imm = []byte{0, 0}
		case kBrTable:
			imm = []byte{0, 0}
		case kFunc:
			imm = []byte{0}
		case kSelectT:
			imm = []byte{1, 0x7f}
		case kMemarg:
			imm = memarg
		case kI32, kI64:
			imm = []byte{0}
		case kF32:
			imm = make([]byte, 4)
		case kF64:
			imm = make([]byte, 8)
		case kEnd, kMisc, kVec, kAtomic:
			continue // end closes the body; prefixes are checked below
		}
		switch op {
		case 0x05: // else needs an if
			check("else", []byte{0x04, 0x40, 0x05, 0x0b})
			continue
		case 0xd0: // ref.null takes a heap type
			imm = []byte{0x70}
		}
		check(fmt.Sprintf("opcode 0x%02x", op), append([]byte{byte(op)}, imm...))
	}
	for sub := 0; sub < 0x20; sub++ {
		imm := map[int][]byte{8: {0, 0}, 9: {0}, 10: {0, 0}, 11: {0}, 12: {0, 0}, 13: {0}, 14: {0, 0}, 15: {0}, 16: {0}, 17: {0}}[sub]
		check(fmt.Sprintf("0xfc 0x%02x", sub), cat([]byte{0xfc}, uleb(uint64(sub)), imm))
	}
	for sub := 0; sub < 256; sub++ {
		var imm []byte
		switch vecKinds[sub] {
		case vMemarg:
			imm = memarg
		case vMemLane:
			imm = []byte{0, 0, 0}
		case vLane:
			imm = []byte{0}
		case vBytes16:
			imm = make([]byte, 16)
		}
		instr := cat([]byte{0xfd, byte(sub)}, imm)
		if sub >= 0x80 {
			// The spec's LEB128 encoding of sub-opcodes >= 0x80 ends in 0x01.
			instr = cat([]byte{0xfd, byte(sub), 0x01}, imm)
		}
		check(fmt.Sprintf("0xfd 0x%02x", sub), instr)
	}
	for sub := 0; sub < 256; sub++ {
		if sub == 0x03 {
			check("atomic.fence", []byte{0xfe, 0x03, 0x00})
			continue
		}
		// Atomics need their natural alignment: try each.
		compiled := false
		for align := byte(0); align < 4; align++ {
			if check(fmt.Sprintf("0xfe 0x%02x", sub), []byte{0xfe, byte(sub), align, 0}) {
				compiled = true
			}
		}
		if _, err := Yields(mod([]byte{0xfe, byte(sub), 0, 0}), 3); err == nil && !compiled {
			t.Errorf("0xfe 0x%02x: Yields accepts it, wazero never does", sub)
		}
	}
}

// TestMalformedNameSectionDropped: a name section Yields cannot parse
// strictly (here a module-name subsection with a trailing byte, then a
// function name that is not UTF-8) is dropped, not copied, since wazero
// would misread it in the output; a valid one is kept.
func TestMalformedNameSectionDropped(t *testing.T) {
	base := []([]byte){
		sec(secType, vector([]byte{0x60, 0, 0})),
		sec(secFunction, vector([]byte{0})),
		sec(secCode, vector(body(0x0b))),
	}
	cases := map[string]struct {
		names []byte
		kept  bool
	}{
		"valid":         {cat([]byte{0, 3}, str("ab"), []byte{1, 4, 1, 0}, str("f")), true},
		"trailing byte": {cat([]byte{0, 4}, str("ab"), []byte{'x'}), false},
		"not utf-8":     {cat([]byte{1, 5, 1, 0, 2, 0xff, 0xfe}), false},
	}
	for name, c := range cases {
		in := wasmModule(append(base, sec(secCustom, str("name"), c.names))...)
		out := mustYields(t, in, 0)
		kept := false
		for _, s := range sections(t, out) {
			kept = kept || s.name == "name"
		}
		if kept != c.kept {
			t.Errorf("%s: name section kept = %v", name, kept)
		}
		rt, _ := newRuntime(t, true, api.CoreFeaturesV2)
		instantiate(t, rt, out)
	}
}

// The imports of the kernel functions that hand the host something to copy
// move to GuardModule, keeping their names and types; other kernel imports
// stay where they were.
func TestGuardedImports(t *testing.T) {
	types := sec(1, vector(
		[]byte{0x60, 2, 0x7e, 0x7e, 0}, // (i64, i64) -> ()
		[]byte{0x60, 1, 0x7e, 0},       // (i64) -> ()
		[]byte{0x60, 1, 0x7e, 1, 0x7e}, // (i64) -> i64
	))
	imports := sec(2, vector(
		cat(str(ExtismModule), str("output_set"), []byte{0, 0}),
		cat(str(ExtismModule), str("error_set"), []byte{0, 1}),
		cat(str(ExtismModule), str("alloc"), []byte{0, 2}),
		cat(str("other"), str("output_set"), []byte{0, 0}),
	))
	out := mustYields(t, wasmModule(types, imports), 0)
	rt := wazero.NewRuntime(context.Background())
	defer rt.Close(context.Background())
	cm, err := rt.CompileModule(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		got = append(got, mod+"."+name)
	}
	want := []string{GuardModule + ".output_set", GuardModule + ".error_set", ExtismModule + ".alloc", "other.output_set", ImportModule + "." + ImportName, ImportModule + "." + StackImportName}
	if !slices.Equal(got, want) {
		t.Fatalf("imports %v, want %v", got, want)
	}
}
