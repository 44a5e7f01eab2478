package plugin

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

var (
	benchPrompt = abi.PromptRequest{Query: "How do I rebalance a portfolio of index funds?",
		History: []abi.Message{{Role: abi.RoleUser, Content: "hi"}, {Role: abi.RoleAssistant, Content: "hello"}}}
	benchValidate = abi.ValidateRequest{Query: benchPrompt.Query,
		Response: "Sell what is over its target weight and buy what is under.", Domain: "good"}
)

// BenchmarkPromptValidate measures the per-request plugin overhead: one
// Prompt and one Validate on a warm pool, reporting the median and 99th
// percentile of the pair.
//   - json: the good plugin, which decodes its input and encodes its output
//     with encoding/json inside the sandbox (what an SDK plugin does);
//   - minimal: a plugin that reads its input and returns a fixed reply, i.e.
//     the runtime's own cost (go-sdk, wazero, this package);
//   - raw-go-sdk: the same minimal calls made directly with go-sdk's
//     CallWithContext on one instance, without this package (the floor).
func BenchmarkPromptValidate(b *testing.B) {
	rt, _, good := sharedRuntime(b)
	minimal, err := loadBad(b, rt, "minimal")
	if err != nil {
		b.Fatal(err)
	}
	defer minimal.Close(context.Background())
	b.Run("json", func(b *testing.B) { benchPair(b, good) })
	b.Run("minimal", func(b *testing.B) { benchPair(b, minimal) })
	b.Run("raw-go-sdk", func(b *testing.B) {
		ctx := context.Background()
		inst, err := minimal.pool.acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer minimal.pool.release(inst, true)
		pin, _ := json.Marshal(benchPrompt)
		vin, _ := json.Marshal(benchValidate)
		measure(b, func() error {
			if _, _, err := inst.ext.CallWithContext(ctx, abi.ExportPrompt, pin); err != nil {
				return err
			}
			_, _, err := inst.ext.CallWithContext(ctx, abi.ExportValidate, vin)
			return err
		})
	})
}

func benchPair(b *testing.B, p *Plugin) {
	ctx := context.Background()
	measure(b, func() error {
		if _, err := p.Prompt(ctx, benchPrompt); err != nil {
			return err
		}
		_, err := p.Validate(ctx, benchValidate)
		return err
	})
}

// measure runs op b.N times after a warm-up and reports p50 and p99.
func measure(b *testing.B, op func() error) {
	for i := 0; i < 20; i++ { // warm the pooled instances' Go runtimes
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	us := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(us(0.50), "p50-us")
	b.ReportMetric(us(0.99), "p99-us")
}

// BenchmarkLoadCached measures loading the good plugin when its compiled
// code is already cached: "new-runtime" is a restarted host (a new Runtime
// reading the disk compilation cache), "same-runtime" a second load of the
// same bytes in one Runtime (the compiled module is shared; this is
// instantiate + describe).
func BenchmarkLoadCached(b *testing.B) {
	sharedRuntime(b) // fills the disk cache
	ctx := context.Background()
	wasm := wasmBytes(b, "good")
	b.Run("new-runtime", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			rt, err := NewRuntime(ctx, Options{CacheDir: cacheDir, PoolSize: 1})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := rt.LoadBytes(ctx, "good", wasm); err != nil {
				b.Fatal(err)
			}
			if err := rt.Close(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/load")
	})
	b.Run("same-runtime", func(b *testing.B) {
		rt, err := NewRuntime(ctx, Options{CacheDir: cacheDir, PoolSize: 1})
		if err != nil {
			b.Fatal(err)
		}
		defer rt.Close(ctx)
		keep, err := rt.LoadBytes(ctx, "keep", wasm) // holds the compiled module
		if err != nil {
			b.Fatal(err)
		}
		defer keep.Close(ctx)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			p, err := rt.LoadBytes(ctx, "good", wasm)
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Close(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/load")
	})
}
