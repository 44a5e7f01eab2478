package instrument

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// BenchmarkYields measures the rewrite itself on real plugins: a 4 MB Go
// domain plugin and the ~40-190 KB example plugins when they are built on
// this machine, and the small Go module from testdata.
func BenchmarkYields(b *testing.B) {
	type input struct {
		name string
		wasm []byte
	}
	var inputs []input
	files := findPlugins(b, true)
	for _, f := range files {
		w, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		inputs = append(inputs, input{filepath.Base(f), w})
	}
	inputs = append(inputs, input{"goplugin.wasm", buildGoPlugin(b)}, input{"loops.wasm", testdata(b, "loops.wasm")})
	for _, in := range inputs {
		b.Run(fmt.Sprintf("%s-%dKB", in.name, len(in.wasm)>>10), func(b *testing.B) {
			b.SetBytes(int64(len(in.wasm)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Yields(in.wasm, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoopOverhead measures what the countdown costs a loop-heavy
// function: sum over 1e8 iterations (loops.wasm), compiled by wazero's
// compiler, plain and instrumented, run alternately in each op. The yield
// host function reads the clock as a throttling host would. Reported:
// ns/iter of each and their ratio. closeOnDone=true is how MDSA runs
// plugins; false shows the countdown's own cost (close-on-context-done adds
// a call to a termination check at every loop header, which dominates).
func BenchmarkLoopOverhead(b *testing.B) {
	const iters = 100_000_000
	orig := testdata(b, "loops.wasm")
	for _, closeOnDone := range []bool{true, false} {
		for _, interval := range []uint32{1 << 10, 1 << 12, 1 << 14, 1 << 16} {
			name := fmt.Sprintf("closeOnDone=%v/interval=%d", closeOnDone, interval)
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(closeOnDone))
				defer rt.Close(ctx)
				deadline := time.Now().Add(time.Hour)
				yields := 0
				err := schedModule(ctx, rt, func() {
					yields++
					if time.Now().After(deadline) {
						panic("deadline")
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				plain := instantiate(b, rt, orig).ExportedFunction("sum")
				instr := instantiate(b, rt, mustYields(b, orig, interval)).ExportedFunction("sum")
				var tPlain, tInstr time.Duration
				for b.Loop() {
					start := time.Now()
					r1, err1 := plain.Call(ctx, iters)
					mid := time.Now()
					r2, err2 := instr.Call(ctx, iters)
					tInstr += time.Since(mid)
					tPlain += mid.Sub(start)
					if err1 != nil || err2 != nil || r1[0] != r2[0] {
						b.Fatalf("plain %v %v, instrumented %v %v", r1, err1, r2, err2)
					}
				}
				n := float64(b.N) * iters
				b.ReportMetric(float64(tPlain.Nanoseconds())/n, "plain-ns/iter")
				b.ReportMetric(float64(tInstr.Nanoseconds())/n, "yields-ns/iter")
				b.ReportMetric(float64(tInstr)/float64(tPlain), "ratio")
				b.ReportMetric(float64(yields)/float64(b.N), "yields/op")
			})
		}
	}
}

// BenchmarkYieldCost measures one call of the yield import from compiled
// code (a Go host function that reads the clock): sum with interval 1 (a
// yield every iteration) against interval 2^32-1 (none), per iteration.
func BenchmarkYieldCost(b *testing.B) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer rt.Close(ctx)
	deadline := time.Now().Add(time.Hour)
	err := schedModule(ctx, rt, func() {
		if time.Now().After(deadline) {
			panic("deadline")
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	orig := testdata(b, "loops.wasm")
	every := instantiate(b, rt, mustYields(b, orig, 1)).ExportedFunction("sum")
	never := instantiate(b, rt, mustYields(b, orig, 1<<32-1)).ExportedFunction("sum")
	const iters = 1_000_000
	var tEvery, tNever time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := never.Call(ctx, iters); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if _, err := every.Call(ctx, iters); err != nil {
			b.Fatal(err)
		}
		tEvery += time.Since(mid)
		tNever += mid.Sub(start)
	}
	b.ReportMetric(float64((tEvery-tNever).Nanoseconds())/float64(b.N*iters), "ns/yield")
}

// BenchmarkCallOverhead measures what the rewrite adds to a function call
// (the countdown and the stack bound's entry and exit): rec(1000), 1,001
// nested calls, plain and rewritten, per call.
func BenchmarkCallOverhead(b *testing.B) {
	i32 := []byte{0x7f}
	orig := stackModule(i32, i32, 0, recBody...)
	out, _, err := Rewrite(orig, 0, Budget{})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		wasm []byte
	}{{"plain", orig}, {"rewritten", out}} {
		b.Run(c.name, func(b *testing.B) {
			rt, _ := newRuntime(b, false, api.CoreFeaturesV2)
			f := instantiate(b, rt, c.wasm).ExportedFunction("f")
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				if _, err := f.Call(ctx, 1000); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1001, "ns/call")
		})
	}
}
