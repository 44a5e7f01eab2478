package host

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/internal/gguf"
	"github.com/mdsa-go/mdsa/internal/testutil"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// BenchmarkPluginOverhead measures what a shipped Go plugin adds to every
// request: one prompt call plus one validate call on a warm instance, with
// the sandbox's call timeout in force. It reports p50 and p99 per request.
func BenchmarkPluginOverhead(b *testing.B) {
	for _, mode := range []struct {
		name        string
		interpreter bool
	}{{"compiler", false}, {"interpreter", true}} {
		for _, name := range shipped {
			b.Run(mode.name+"/"+name, func(b *testing.B) {
				ctx := context.Background()
				rt, err := plugin.NewRuntime(ctx, plugin.Options{CacheDir: fixture.cacheDir, PoolSize: 1,
					Interpreter: mode.interpreter, Logger: quietLogger()})
				if err != nil {
					b.Fatal(err)
				}
				defer rt.Close(ctx)
				p, err := rt.Load(ctx, filepath.Join(fixture.pluginsDir, name+".wasm"))
				if err != nil {
					b.Fatal(err)
				}
				preq := abi.PromptRequest{Query: "I was charged twice for my order and want my money back, what can I do?",
					History: []abi.Message{{Role: abi.RoleUser, Content: "Hi"}, {Role: abi.RoleAssistant, Content: "Hello! How can I help?"}}}
				vreq := abi.ValidateRequest{Query: preq.Query, Domain: name,
					Response: "I'm sorry about the double charge. Please send us the order number and we will refund the duplicate payment within 5 business days."}
				call := func() {
					if _, err := p.Prompt(ctx, preq); err != nil {
						b.Fatal(err)
					}
					if _, err := p.Validate(ctx, vreq); err != nil {
						b.Fatal(err)
					}
				}
				call() // warm: first call initialises the Go runtime inside the instance
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for range b.N {
					t := time.Now()
					call()
					lat = append(lat, time.Since(t))
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_us")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_us")
			})
		}
	}
}

// BenchmarkThroughput compares tokens/s through the whole pipeline (route,
// prompt, generate, validate) with tokens/s of calling the engine directly
// on the same messages and settings, interleaved in one run, on a synthetic
// model of about 100M parameters so that generation dominates as it does
// with real models. It reports both rates and their ratio.
func BenchmarkThroughput(b *testing.B) {
	lib := testutil.LlamaLibDir(b)
	model := filepath.Join(b.TempDir(), "synth-100m.gguf")
	if _, err := gguf.WriteSynth(model, gguf.SynthOptions{Params: 100_000_000, Quant: "Q4_0"}); err != nil {
		b.Fatal(err)
	}
	cfg := testConfig(b, fixture.pluginsDir)
	cfg.Engine.LibDir = lib
	cfg.Engine.Threads = 1 // steadier on a shared 2-core machine; both sides use the same engine
	cfg.Engine.Parallel = 1
	ctx := context.Background()
	h, err := New(ctx, cfg, WithLogger(quietLogger()), WithModelFile(model))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	lease, err := h.lease(ctx, abi.ModelPref{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer lease.Release()
	e := lease.Engine()
	req := Request{Query: "I was charged twice for my order, can I get a refund?"}
	p := h.state.Load().spaces[""].plugins["support"]
	pr, err := p.Prompt(ctx, abi.PromptRequest{Query: req.Query})
	if err != nil {
		b.Fatal(err)
	}
	direct := engine.Request{Messages: toEngineMessages(pr.Messages), Params: h.params(p.Manifest().Generation, pr.Generation)}

	var pipeTime, directTime time.Duration
	var pipeTokens, directTokens int
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		res, err := h.Process(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		pipeTime += time.Since(t)
		pipeTokens += res.Tokens.Completion

		t = time.Now()
		dr, err := e.Generate(ctx, direct, nil)
		if err != nil {
			b.Fatal(err)
		}
		directTime += time.Since(t)
		directTokens += dr.TokensOut
	}
	b.StopTimer()
	pipe := float64(pipeTokens) / pipeTime.Seconds()
	dir := float64(directTokens) / directTime.Seconds()
	b.ReportMetric(pipe, "pipeline_tok/s")
	b.ReportMetric(dir, "direct_tok/s")
	b.ReportMetric(pipe/dir, "ratio")
}
