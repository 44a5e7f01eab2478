package models

// Tests of the registry with real llama.cpp engines on synthetic models.
// They skip when the llama.cpp libraries are absent (`make setup` installs
// them in .deps/llama; CI always has them).

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/internal/bytesize"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

// llamaLib returns the llama.cpp library directory or skips the test.
func llamaLib(tb testing.TB) string {
	tb.Helper()
	dir, err := llamacpp.FindLibDir(".")
	if err != nil {
		tb.Skipf("llama.cpp libraries not available (run `make setup` or set %s): %v", llamacpp.EnvLibDir, err)
	}
	return dir
}

// llamaLoad opens models with llama.cpp, named after their spec. (The
// host's own LoadFunc, with its options mapping, is engineconf.Loader; the
// registry does not depend on it.)
func llamaLoad(opts llamacpp.Options) LoadFunc {
	return func(ctx context.Context, spec Spec) (engine.Engine, error) {
		o := opts
		o.Name = spec.Name
		eng, err := llamacpp.Open(ctx, spec.Path, o)
		if err != nil {
			return nil, OutOfMemory(err)
		}
		return eng, nil
	}
}

// hookedEngine calls onClose after closing the engine it wraps.
type hookedEngine struct {
	engine.Engine
	once    sync.Once
	onClose func()
}

func (h *hookedEngine) Close() error {
	err := h.Engine.Close()
	h.once.Do(h.onClose)
	return err
}

func TestRegistryWithLlamaCpp(t *testing.T) {
	lib := llamaLib(t)
	watchdog(t, 5*time.Minute)
	quiet := slog.New(slog.DiscardHandler)
	lopts := llamacpp.Options{LibDir: lib, ContextSize: 256, Threads: 1, Logger: quiet}
	estimate := FileEstimator(EstimateOptions{ContextSize: lopts.ContextSize})

	names := []string{"m1", "m2", "m3", "m4", "m5"}
	dir := t.TempDir()
	var size int64
	specs := make([]Spec, len(names))
	for i, n := range names {
		p := filepath.Join(dir, n+".gguf")
		if _, err := gguf.WriteSynth(p, gguf.SynthOptions{Name: n}); err != nil {
			t.Fatal(err)
		}
		specs[i] = Spec{Name: n, Tier: TierDomain, Path: p}
		s, err := estimate(specs[i])
		if err != nil {
			t.Fatal(err)
		}
		size = max(size, s)
	}
	budget := 2*size + size/2 // two models fit, three do not

	var resident, peak atomic.Int64
	live := make(map[string]int)
	var liveMu sync.Mutex
	load := llamaLoad(lopts)
	r, err := New(Options{
		Budget:   budget,
		Estimate: estimate,
		Logger:   quiet,
		Load: func(ctx context.Context, spec Spec) (engine.Engine, error) {
			now := resident.Add(size)
			if now > budget {
				t.Errorf("loading %s: %d bytes resident, budget %d", spec.Name, now, budget)
			}
			for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
			}
			liveMu.Lock()
			live[spec.Name]++
			if live[spec.Name] > 1 {
				t.Errorf("%s loaded twice", spec.Name)
			}
			liveMu.Unlock()
			eng, err := load(ctx, spec)
			if err != nil {
				resident.Add(-size)
				return nil, err
			}
			if eng.Model() != spec.Name {
				t.Errorf("engine for %s reports model %q", spec.Name, eng.Model())
			}
			return &hookedEngine{Engine: eng, onClose: func() {
				resident.Add(-size)
				liveMu.Lock()
				live[spec.Name]--
				liveMu.Unlock()
			}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, s := range specs {
		if err := r.Register(s); err != nil {
			t.Fatal(err)
		}
	}

	const goroutines, perG = 50, 2
	var wg sync.WaitGroup
	var served atomic.Int64
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			for i := 0; i < perG; i++ {
				name := names[rng.IntN(len(names))]
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				l, err := r.Get(ctx, name)
				if err != nil {
					cancel()
					t.Errorf("Get(%s): %v", name, err)
					continue
				}
				res, err := l.Engine().Generate(ctx, engine.Request{
					Prompt: gguf.SynthRawPrompt,
					Params: engine.Params{MaxTokens: 32},
				}, nil)
				l.Release()
				cancel()
				if err != nil || res.Text != gguf.SynthRawContinuation || res.Model != name {
					t.Errorf("%s generated %q (model %q), %v", name, res.Text, res.Model, err)
					continue
				}
				served.Add(1)
			}
		}(g)
	}
	wg.Wait()
	s := r.Stats()
	t.Logf("llama.cpp registry: %d served, hits %d misses %d loads %d evictions %d, load time %v, peak %s of %s",
		served.Load(), s.Hits, s.Misses, s.Loads, s.Evictions, s.LoadTime, bytesize.Format(peak.Load()), bytesize.Format(budget))
	if served.Load() != goroutines*perG {
		t.Errorf("served %d of %d", served.Load(), goroutines*perG)
	}
	if s.Evictions == 0 || peak.Load() > budget || s.ResidentBytes > budget {
		t.Errorf("evictions %d, peak %d, resident %d, budget %d", s.Evictions, peak.Load(), s.ResidentBytes, budget)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := resident.Load(); n != 0 {
		t.Errorf("%d bytes still loaded after Close", n)
	}
}

// TestRegistryRejectsBadFiles checks that broken model files fail with
// errors that name them, before llama.cpp is asked to load them.
func TestRegistryRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	good, _ := synth(t, 0, "Q4_0")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "truncated.gguf")
	if err := os.WriteFile(trunc, data[:len(data)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	html := filepath.Join(dir, "download-error.gguf")
	if err := os.WriteFile(html, []byte("<html>404</html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	mamba := filepath.Join(dir, "mamba.gguf")
	archModel{arch: "mamba", embd: 64, ff: 128, layers: 2, heads: 4, kvH: 4, vocab: 40, typ: gguf.F32}.write(t, mamba)

	r, err := New(Options{
		Estimate: FileEstimator(EstimateOptions{}),
		Logger:   slog.New(slog.DiscardHandler),
		Load: func(_ context.Context, s Spec) (engine.Engine, error) {
			t.Errorf("loader called for %s", s.Path)
			return nil, errors.New("unexpected")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tc := range []struct {
		path string
		want error
	}{
		{trunc, ErrCorrupt},
		{html, ErrCorrupt},
		{mamba, ErrUnsupportedArchitecture},
		{filepath.Join(dir, "missing.gguf"), os.ErrNotExist},
	} {
		name := filepath.Base(tc.path)
		if err := r.Register(Spec{Name: name, Path: tc.path}); err != nil {
			t.Fatal(err)
		}
		_, err := r.Get(context.Background(), name)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: %v, want %v naming the file", name, err, tc.want)
		}
	}
}
