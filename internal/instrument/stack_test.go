package instrument

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// stackModule is a module of one function type (params) -> (results),
// exported as "f", with extra locals of type i32, and the given body.
func stackModule(params, results []byte, locals uint32, code ...byte) []byte {
	var decl []byte
	if locals > 0 {
		decl = cat(uleb(1), uleb(uint64(locals)), []byte{0x7f})
	} else {
		decl = uleb(0)
	}
	b := cat(decl, code)
	return wasmModule(
		sec(secType, vector(cat([]byte{0x60}, vector(bytesOf(params)...), vector(bytesOf(results)...)))),
		sec(secFunction, vector([]byte{0})),
		sec(secExport, vector(cat(str("f"), []byte{0, 0}))),
		sec(secCode, vector(cat(uleb(uint64(len(b))), b))),
	)
}

func bytesOf(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

// rec(n) = n == 0 ? 0 : rec(n-1) + 1, returning through return at the
// bottom and through the end of the body on the way up.
var recBody = []byte{
	0x20, 0x00, 0x45, 0x04, 0x40, // local.get 0; i32.eqz; if
	0x41, 0x00, 0x0f, // i32.const 0; return
	0x0b,                         // end
	0x20, 0x00, 0x41, 0x01, 0x6b, // local.get 0; i32.const 1; i32.sub
	0x10, 0x00, // call 0
	0x41, 0x01, 0x6a, // i32.const 1; i32.add
	0x0b,
}

func rewriteStack(t *testing.T, wasm []byte, stackBytes int) []byte {
	t.Helper()
	out, _, err := Rewrite(wasm, 0, Budget{StackBytes: stackBytes})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStackBoundStopsDeepRecursion(t *testing.T) {
	i32 := []byte{0x7f}
	// rec's frame is estimated at 2 + 1 parameter + 2 operand values = 5
	// units of 16 bytes: 64 KiB holds 819 of them.
	out := rewriteStack(t, stackModule(i32, i32, 0, recBody...), 64<<10)
	rt, _ := newRuntime(t, false, api.CoreFeaturesV2)
	f := instantiate(t, rt, out).ExportedFunction("f")
	ctx := context.Background()
	// Both ways out of rec give their frame back: 100 calls of 700 frames
	// would pass the bound many times over otherwise.
	for range 100 {
		res, err := f.Call(ctx, 700)
		if err != nil {
			t.Fatalf("rec(700): %v", err)
		}
		if res[0] != 700 {
			t.Fatalf("rec(700) = %d", res[0])
		}
	}
	if _, err := f.Call(ctx, 818); err != nil {
		t.Fatalf("rec(818), 819 frames of 80 bytes: %v", err)
	}
	_, err := instantiate(t, rt, out).ExportedFunction("f").Call(ctx, 819)
	if !errors.Is(err, errStackExhausted) {
		t.Fatalf("rec(819), 820 frames: %v, want the stack import's error", err)
	}
	// Unbounded, wazero would grow this call's stack to 50 MB, allocating
	// about 200 MB on the way; bounded, it allocates a few hundred KB.
	deep := instantiate(t, rt, out).ExportedFunction("f")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = deep.Call(ctx, 10_000_000)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errStackExhausted) {
		t.Fatalf("rec(10,000,000): %v, want the stack import's error", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Fatalf("rec(10,000,000) under a 64 KiB bound allocated %d MB", n>>20)
	}
}

func TestStackEstimateCountsLocals(t *testing.T) {
	i32 := []byte{0x7f}
	// 2,000 locals: a frame of about 32 KB, so 64 KiB holds one frame
	// and a bit.
	out := rewriteStack(t, stackModule(i32, i32, 2000, recBody...), 64<<10)
	rt, _ := newRuntime(t, false, api.CoreFeaturesV2)
	ctx := context.Background()
	if _, err := instantiate(t, rt, out).ExportedFunction("f").Call(ctx, 1); err != nil {
		t.Fatalf("rec(1), two frames: %v", err)
	}
	if _, err := instantiate(t, rt, out).ExportedFunction("f").Call(ctx, 2); !errors.Is(err, errStackExhausted) {
		t.Fatalf("rec(2), three frames of 2,000 locals: %v, want the stack import's error", err)
	}
}

func TestStackEstimateCountsOperands(t *testing.T) {
	i32 := []byte{0x7f}
	// rec with 3,000 values on the operand stack around the recursive
	// call (a frame of about 48 KB).
	var code []byte
	code = append(code, 0x20, 0x00, 0x45, 0x04, 0x40, 0x41, 0x00, 0x0f, 0x0b)
	for range 3000 {
		code = append(code, 0x41, 0x01) // i32.const 1
	}
	code = append(code, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x00)
	for range 3000 {
		code = append(code, 0x6a) // i32.add
	}
	code = append(code, 0x0b)
	out := rewriteStack(t, stackModule(i32, i32, 0, code...), 128<<10)
	rt, _ := newRuntime(t, false, api.CoreFeaturesV2)
	ctx := context.Background()
	res, err := instantiate(t, rt, out).ExportedFunction("f").Call(ctx, 1)
	if err != nil || res[0] != 3000 {
		t.Fatalf("f(1) = %v, %v; want 3000", res, err)
	}
	if _, err := instantiate(t, rt, out).ExportedFunction("f").Call(ctx, 3); !errors.Is(err, errStackExhausted) {
		t.Fatalf("f(3), four frames of 3,000 operands: %v, want the stack import's error", err)
	}
}

func TestStackTailCallsDoNotAccumulate(t *testing.T) {
	i32 := []byte{0x7f}
	// count(n) = n == 0 ? 7 : count(n-1), by return_call.
	code := []byte{
		0x20, 0x00, 0x45, 0x04, 0x7f, // local.get 0; i32.eqz; if (result i32)
		0x41, 0x07, // i32.const 7
		0x05,                         // else
		0x20, 0x00, 0x41, 0x01, 0x6b, // local.get 0; i32.const 1; i32.sub
		0x12, 0x00, // return_call 0
		0x0b, 0x0b,
	}
	out := rewriteStack(t, stackModule(i32, i32, 0, code...), 4<<10)
	rt, _ := newRuntime(t, false, api.CoreFeaturesV2|experimental.CoreFeaturesTailCall)
	res, err := instantiate(t, rt, out).ExportedFunction("f").Call(context.Background(), 100_000)
	if err != nil || res[0] != 7 {
		t.Fatalf("count(100,000) = %v, %v; want 7: a tail call must give its frame back first", res, err)
	}
}

func TestStackBranchesToTheFunctionLabel(t *testing.T) {
	i32 := []byte{0x7f}
	// f(n) leaves by br_if to the function's label when n != 0, from
	// inside a block by br 1 when n == 1... and otherwise by its end.
	code := []byte{
		0x41, 0x07, 0x20, 0x00, 0x0d, 0x00, // i32.const 7; local.get 0; br_if 0 (the function)
		0x1a,       // drop
		0x02, 0x40, // block
		0x41, 0x08, 0x0c, 0x01, // i32.const 8; br 1 (the function)
		0x0b,
		0x41, 0x09, // unreachable in practice
		0x0b,
	}
	out := rewriteStack(t, stackModule(i32, i32, 0, code...), 4<<10)
	rt, _ := newRuntime(t, false, api.CoreFeaturesV2)
	f := instantiate(t, rt, out).ExportedFunction("f")
	ctx := context.Background()
	// 4 KiB holds about 50 frames: a branch that skipped the decrement
	// would leave 80 bytes behind per call.
	for i := range 2000 {
		n := uint64(i % 2)
		res, err := f.Call(ctx, n)
		if err != nil {
			t.Fatalf("call %d: f(%d): %v", i, n, err)
		}
		if want := map[uint64]uint64{0: 8, 1: 7}[n]; res[0] != want {
			t.Fatalf("f(%d) = %d, want %d", n, res[0], want)
		}
	}
}

func TestStackMultiValueWrapper(t *testing.T) {
	i32, i64 := byte(0x7f), byte(0x7e)
	cases := []struct {
		name            string
		params, results []byte
		code            []byte
		args            []uint64
		want            []uint64
	}{
		{"params", []byte{i32, i64}, []byte{i64, i32}, []byte{0x20, 0x01, 0x20, 0x00, 0x0f, 0x0b}, []uint64{3, 4}, []uint64{4, 3}},
		{"no params", nil, []byte{i32, i32}, []byte{0x41, 0x01, 0x41, 0x02, 0x0b}, nil, []uint64{1, 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := rewriteStack(t, stackModule(c.params, c.results, 0, c.code...), 0)
			rt, _ := newRuntime(t, false, api.CoreFeaturesV2)
			res, err := instantiate(t, rt, out).ExportedFunction("f").Call(context.Background(), c.args...)
			if err != nil {
				t.Fatal(err)
			}
			for i := range c.want {
				if res[i] != c.want[i] {
					t.Fatalf("f%v = %v, want %v", c.args, res, c.want)
				}
			}
		})
	}
}

// The wrapper of a function with parameters and several results reuses
// the module's own () -> results type when it has one.
func TestStackMultiValueWrapperReusesType(t *testing.T) {
	i32 := byte(0x7f)
	code := []byte{0, 0x20, 0x00, 0x20, 0x00, 0x0b} // no locals; local.get 0; local.get 0
	wasm := wasmModule(
		sec(secType, vector(
			cat([]byte{0x60}, vector([]byte{i32}), vector([]byte{i32}, []byte{i32})),
			cat([]byte{0x60}, vector(), vector([]byte{i32}, []byte{i32})),
		)),
		sec(secFunction, vector([]byte{0})),
		sec(secExport, vector(cat(str("f"), []byte{0, 0}))),
		sec(secCode, vector(cat(uleb(uint64(len(code))), code))),
	)
	out := rewriteStack(t, wasm, 0)
	// One type added: the imports' () -> (); the wrapper's is type 1.
	if a, b := sectionCount(t, wasm, secType), sectionCount(t, out, secType); b != a+1 {
		t.Errorf("type count %d -> %d, want the () -> (i32, i32) type reused", a, b)
	}
	rt, _ := newRuntime(t, false, api.CoreFeaturesV2)
	res, err := instantiate(t, rt, out).ExportedFunction("f").Call(context.Background(), 9)
	if err != nil || res[0] != 9 || res[1] != 9 {
		t.Fatalf("f(9) = %v, %v", res, err)
	}
}
