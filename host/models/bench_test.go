package models

// Benchmarks. The figures they report:
//
//	go test -run '^$' -bench 'GetRelease' ./host/models
//	    p50-ns, p99-ns: one cached Get + Release (goal p50 <= 1000 ns)
//	go test -run '^$' -bench 'LoadOverhead' -benchtime 20x ./host/models
//	    direct-ms, registry-ms, ratio: loading a synthetic model through the
//	    registry vs llamacpp.Open directly (goal ratio <= 1.05)
//	go test -run '^$' -bench 'EstimateVsRSS' -benchtime 1x ./host/models
//	    estimate-MiB vs rss-MiB (resident memory added by loading the model
//	    and running one prompt longer than a batch), their ratio, the split
//	    of the RSS into anonymous and file-backed pages, and gguf-parser-go's
//	    estimate (parser-MiB)

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebitengine/purego"
	parser "github.com/gpustack/gguf-parser-go"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/internal/bytesize"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

// percentile returns the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func BenchmarkGetRelease(b *testing.B) {
	k := newTracker(b, 0)
	r := newTestRegistry(b, k, Options{Budget: 1 << 30}, "a", "b", "c")
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c"} {
		use(b, r, n)
	}
	samples := make([]time.Duration, 0, min(b.N, 1<<20))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		l, err := r.Get(ctx, "b")
		if err != nil {
			b.Fatal(err)
		}
		l.Release()
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(samples)
	b.ReportMetric(float64(percentile(samples, 50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(samples, 99).Nanoseconds()), "p99-ns")
}

func BenchmarkGetReleaseParallel(b *testing.B) {
	k := newTracker(b, 0)
	r := newTestRegistry(b, k, Options{}, "a", "b", "c")
	for _, n := range []string{"a", "b", "c"} {
		use(b, r, n)
	}
	names := []string{"a", "b", "c"}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := 0
		for pb.Next() {
			l, err := r.Get(ctx, names[i%3])
			if err != nil {
				b.Error(err)
				return
			}
			l.Release()
			i++
		}
	})
}

// BenchmarkLoadOverhead alternates loading a 10M-parameter synthetic model
// directly with llamacpp.Open and through the registry (Get, Release,
// Unload), and reports the medians and their ratio. The registry's first
// load also reads the GGUF header for the estimate (reported as
// estimate-us); later loads reuse it.
func BenchmarkLoadOverhead(b *testing.B) {
	lib := llamaLib(b)
	path, _ := synth(b, 10_000_000, "Q4_0")
	lopts := llamacpp.Options{LibDir: lib, Threads: 2, Logger: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	r, err := New(Options{Load: llamaLoad(lopts), Estimate: FileEstimator(EstimateOptions{}), Logger: lopts.Logger})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if err := r.Register(Spec{Name: "m", Path: path}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := FileEstimator(EstimateOptions{})(Spec{Name: "m", Path: path}); err != nil {
		b.Fatal(err)
	}
	estimate := time.Since(start)
	// Warm up: libraries loaded, file in the page cache.
	if e, err := llamacpp.Open(ctx, path, lopts); err == nil {
		e.Close()
	} else {
		b.Fatal(err)
	}

	var direct, viaReg []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		e, err := llamacpp.Open(ctx, path, lopts)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		e.Close()
		t2 := time.Now()
		l, err := r.Get(ctx, "m")
		if err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		l.Release()
		if err := r.Unload(ctx, "m"); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, t1.Sub(t0))
		viaReg = append(viaReg, t3.Sub(t2))
	}
	b.StopTimer()
	slices.Sort(direct)
	slices.Sort(viaReg)
	d, g := percentile(direct, 50), percentile(viaReg, 50)
	b.ReportMetric(float64(d.Microseconds())/1000, "direct-ms")
	b.ReportMetric(float64(g.Microseconds())/1000, "registry-ms")
	b.ReportMetric(float64(g)/float64(d), "ratio")
	b.ReportMetric(float64(estimate.Microseconds()), "estimate-us")
}

// trimHeap returns the C heap's free memory to the system (glibc's
// malloc_trim), so that memory freed by an earlier model does not hide the
// next one's allocations from an RSS delta. It does nothing where libc
// cannot be opened.
var trimHeap = sync.OnceValue(func() func() {
	lib, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return func() {}
	}
	var mallocTrim func(pad uintptr) int32
	purego.RegisterLibFunc(&mallocTrim, lib, "malloc_trim")
	return func() { mallocTrim(0) }
})

// memSnapshot is the process's resident memory, from /proc/self/status.
type memSnapshot struct{ rss, anon, file int64 }

func readMem(tb testing.TB) memSnapshot {
	tb.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	var m memSnapshot
	for _, line := range strings.Split(string(data), "\n") {
		var kb int64
		for key, dst := range map[string]*int64{"VmRSS:": &m.rss, "RssAnon:": &m.anon, "RssFile:": &m.file} {
			if strings.HasPrefix(line, key) {
				if _, err := fmt.Sscan(strings.TrimPrefix(line, key), &kb); err == nil {
					*dst = kb << 10
				}
			}
		}
	}
	return m
}

// spmVocab makes archModel write a SentencePiece vocabulary of n tokens with
// the 256 byte tokens, so that llama.cpp can tokenize any text with it (one
// token per byte for text that matches no other token).
func spmVocab(n int) func(w *gguf.Writer) {
	return func(w *gguf.Writer) {
		toks := make([]string, n)
		types := make([]int32, n)
		scores := make([]float32, n)
		for i := range toks {
			toks[i] = fmt.Sprintf("t%d", i)
			types[i] = 1
		}
		toks[0], toks[1], toks[2] = "<unk>", "<s>", "</s>"
		types[0], types[1], types[2] = 2, 3, 3
		for c := 0; c < 256; c++ {
			toks[3+c] = fmt.Sprintf("<0x%02X>", c)
			types[3+c] = 6
		}
		w.SetString("tokenizer.ggml.model", "llama")
		for _, a := range []struct {
			key string
			val any
		}{{"tokenizer.ggml.tokens", toks}, {"tokenizer.ggml.token_type", types}, {"tokenizer.ggml.scores", scores}} {
			if err := w.SetArray(a.key, a.val); err != nil {
				panic(err)
			}
		}
		w.SetUint32("tokenizer.ggml.bos_token_id", 1)
		w.SetUint32("tokenizer.ggml.eos_token_id", 2)
	}
}

// BenchmarkEstimateVsRSS loads models at context 2048, runs a prompt longer
// than one physical batch so that the compute buffer is used in full, and
// compares the estimate with the resident memory the process gained:
// synthetic Q4_0 models of 10M and 100M parameters (860-token vocabulary,
// weights repacked by llama.cpp) and a 2-layer Q8_0 model with the shape
// and 152K-token vocabulary of Qwen2.5-0.5B (where llama.cpp reserves
// 297 MiB of logits buffer that stays untouched). gguf-parser-go's own
// estimate (RAM of its summary) is reported as parser-MiB for comparison.
func BenchmarkEstimateVsRSS(b *testing.B) {
	lib := llamaLib(b)
	lopts := llamacpp.Options{LibDir: lib, Threads: 2, ContextSize: 2048, Logger: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		path   func(b *testing.B) string
		prompt string
	}{
		{"10M-Q4_0", func(b *testing.B) string { p, _ := synth(b, 10_000_000, "Q4_0"); return p },
			strings.Repeat("the cat and the dog ", 140)}, // about 700 tokens
		{"100M-Q4_0", func(b *testing.B) string { p, _ := synth(b, 100_000_000, "Q4_0"); return p },
			strings.Repeat("the cat and the dog ", 140)},
		{"152K-vocab-Q8_0", func(b *testing.B) string {
			p := filepath.Join(testModelDir, "vocab152k.gguf")
			if _, err := os.Stat(p); err != nil {
				archModel{arch: "llama", embd: 896, ff: 4864, layers: 2, heads: 14, kvH: 2, vocab: 151936,
					typ: gguf.Q8_0, edit: spmVocab(151936)}.write(b, p)
			}
			return p
		}, strings.Repeat("abc ", 200)}, // 800 byte tokens
	} {
		b.Run(tc.name, func(b *testing.B) {
			path := tc.path(b)
			meta, err := ReadMetadata(path)
			if err != nil {
				b.Fatal(err)
			}
			est := Estimate(meta, EstimateOptions{ContextSize: lopts.ContextSize})
			var parserRAM float64
			if gf, err := parser.ParseGGUFFile(path, parser.SkipLargeMetadata()); err == nil {
				run := gf.EstimateLLaMACppRun(parser.WithLLaMACppContextSize(int32(lopts.ContextSize)),
					parser.WithLLaMACppOffloadLayers(0))
				sum := run.Summarize(true, 0, 0)
				if len(sum.Items) > 0 {
					parserRAM = float64(sum.Items[0].RAM.UMA)
				}
			}
			run := func() (memSnapshot, memSnapshot) {
				trimHeap()()
				before := readMem(b)
				e, err := llamacpp.Open(ctx, path, lopts)
				if err != nil {
					b.Fatal(err)
				}
				res, err := e.Generate(ctx, engine.Request{Prompt: tc.prompt, Params: engine.Params{MaxTokens: 4}}, nil)
				if err != nil || res.TokensIn < 512 {
					b.Fatalf("generate: %d prompt tokens, %v", res.TokensIn, err)
				}
				after := readMem(b)
				e.Close()
				return before, after
			}
			run() // warm up: libraries, page cache, allocator arenas
			var before, after memSnapshot
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				before, after = run()
			}
			b.StopTimer()
			const mib = 1 << 20
			rss := after.rss - before.rss
			b.ReportMetric(float64(est.Total)/mib, "estimate-MiB")
			b.ReportMetric(float64(rss)/mib, "rss-MiB")
			b.ReportMetric(float64(est.Total)/float64(rss), "ratio")
			b.ReportMetric(float64(after.anon-before.anon)/mib, "anon-MiB")
			b.ReportMetric(float64(after.file-before.file)/mib, "file-MiB")
			b.ReportMetric(parserRAM/mib, "parser-MiB")
			b.Logf("%s: estimate %s; llama.cpp compute reservation %s; RSS +%s (anonymous +%s, file +%s)",
				filepath.Base(path), est, bytesize.Format(est.ComputeReserved),
				bytesize.Format(rss), bytesize.Format(after.anon-before.anon), bytesize.Format(after.file-before.file))
		})
	}
}
