package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/internal/gguf"
	"github.com/mdsa-go/mdsa/internal/wire"
)

// hotswapReport is what mdsa bench hotswap prints.
type hotswapReport struct {
	Plugin    string  `json:"plugin"`
	Clients   int     `json:"clients"`
	Cached    bool    `json:"cached"`
	Requests  int64   `json:"requests"`
	Failed    int64   `json:"failed"`
	Swaps     int     `json:"swaps"`
	SwapMSP50 float64 `json:"swap_ms_p50"`
	SwapMSMax float64 `json:"swap_ms_max"`
	// CompileMSP50 is the median compile time within a swap: near zero
	// when cached; the rest of a swap is load, checks and routing.
	CompileMSP50 float64 `json:"compile_ms_p50"`
	DurationSec  float64 `json:"duration_s"`
	FirstError   string  `json:"first_error,omitempty"`
}

func (a *app) benchHotswapCmd() *cobra.Command {
	var (
		swaps, clients int
		name, model    string
		uncached, js   bool
		interval       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "hotswap",
		Short: "Swap a plugin over and over while clients send queries",
		Long: `Copy the configured plugins into a scratch directory, start C clients sending queries through
the whole pipeline (routed and forced to the swapped plugin; a tiny synthetic model answers unless
--model-file is given), and swap the plugin K times through the same path as a file change in the
plugins directory (Reload). Each new version is the same module with a different custom section,
so its sha256 differs: cached swaps alternate two versions (compiled once each), --uncached makes
every version new, so every swap compiles.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			scratch, err := os.MkdirTemp("", "mdsa-hotswap-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(scratch)
			src := cfg.Resolve(cfg.Host.PluginsDir)
			orig, err := copyPlugins(src, scratch, name)
			if err != nil {
				return err
			}
			if model == "" {
				model = filepath.Join(scratch, "synthetic.gguf")
				if _, err := gguf.WriteSynth(model, gguf.SynthOptions{}); err != nil {
					return err
				}
			}
			cfg.Host.PluginsDir = scratch
			cfg.Engine.MaxTokens = 8
			cfg.Engine.Threads = 1 // spinning decode threads would starve the swaps on small machines
			h, err := host.New(ctx, cfg, host.WithLogger(a.logger(cfg)), compileOption(), host.WithModelFile(model))
			if err != nil {
				return err
			}
			defer h.Close()
			var example string
			for _, p := range h.Plugins() {
				if p.Name == name && len(p.Examples) > 0 {
					example = p.Examples[0]
				}
			}
			if example == "" {
				return fmt.Errorf("bench hotswap: no plugin %q with examples in %s", name, src)
			}
			rep, err := runHotswap(ctx, h, filepath.Join(scratch, name+".wasm"), orig, name, example, swaps, clients, !uncached, interval)
			if err != nil {
				return err
			}
			if js {
				return writeJSON(a.out, rep)
			}
			printHotswap(a.out, rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&swaps, "swaps", 20, "number of swaps (K)")
	f.IntVar(&clients, "clients", 32, "concurrent clients (C)")
	f.StringVar(&name, "plugin", "support", "plugin to swap")
	f.StringVar(&model, "model-file", "", "GGUF model answering the queries (default: a tiny synthetic one)")
	f.BoolVar(&uncached, "uncached", false, "make every version new, so that every swap compiles")
	f.DurationVar(&interval, "interval", 50*time.Millisecond, "pause between swaps")
	f.BoolVar(&js, "json", false, "print JSON")
	return cmd
}

// copyPlugins copies every NAME.wasm of src into dst and returns the bytes
// of the one to swap.
func copyPlugins(src, dst, swapped string) ([]byte, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, fmt.Errorf("bench hotswap: plugins directory: %w", err)
	}
	var orig []byte
	for _, e := range entries {
		path := filepath.Join(src, e.Name())
		name := e.Name()
		if e.IsDir() {
			path, name = filepath.Join(path, name+".wasm"), name+".wasm"
		}
		if filepath.Ext(name) != ".wasm" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			if e.IsDir() {
				continue
			}
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			return nil, err
		}
		if name == swapped+".wasm" {
			orig = b
		}
	}
	if orig == nil {
		return nil, fmt.Errorf("bench hotswap: no %s.wasm in %s (run make plugins)", swapped, src)
	}
	return orig, nil
}

// withCustomSection returns wasm with a custom section appended: the same
// module with other bytes, hence a new version to the host.
func withCustomSection(wasm []byte, payload string) []byte {
	name := "mdsa-bench"
	var body []byte
	body = binary.AppendUvarint(body, uint64(len(name)))
	body = append(body, name...)
	body = append(body, payload...)
	out := slices.Clone(wasm)
	out = append(out, 0) // custom section id
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}

func runHotswap(ctx context.Context, h *host.Host, path string, orig []byte, name, query string, swaps, clients int,
	cached bool, interval time.Duration) (hotswapReport, error) {
	rep := hotswapReport{Plugin: name, Clients: clients, Cached: cached}
	versions := [][]byte{withCustomSection(orig, "a"), withCustomSection(orig, "b")}
	if cached {
		// Compile both versions once before measuring.
		for _, v := range append(versions, orig) {
			if err := os.WriteFile(path, v, 0o644); err != nil {
				return rep, err
			}
			if _, err := h.Reload(ctx); err != nil {
				return rep, err
			}
		}
	}
	var requests, failed atomic.Int64
	var firstErr atomic.Value
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for cctx.Err() == nil {
				req := host.Request{Query: query}
				if c%2 == 0 {
					req.Domain = name
				}
				res, err := h.Process(cctx, req)
				if cctx.Err() != nil {
					return
				}
				requests.Add(1)
				if err != nil || res.Domain != name {
					failed.Add(1)
					if err == nil {
						err = fmt.Errorf("routed to %q", res.Domain)
					}
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	start := time.Now()
	var times, compiles []float64
	for i := range swaps {
		v := versions[i%2]
		if !cached {
			v = withCustomSection(orig, fmt.Sprintf("uncached-%d-%d", time.Now().UnixNano(), i))
		}
		if err := os.WriteFile(path, v, 0o644); err != nil {
			stop()
			wg.Wait()
			return rep, err
		}
		t := time.Now()
		r, err := h.Reload(ctx)
		if err != nil || len(r.Changes) != 1 {
			stop()
			wg.Wait()
			return rep, fmt.Errorf("bench hotswap: swap %d: %+v %v", i, r, err)
		}
		times = append(times, float64(time.Since(t).Microseconds())/1e3)
		compiles = append(compiles, wire.Millis(r.Changes[0].Compile))
		time.Sleep(interval)
	}
	stop()
	wg.Wait()
	slices.Sort(times)
	rep.Requests, rep.Failed, rep.Swaps = requests.Load(), failed.Load(), len(times)
	rep.DurationSec = time.Since(start).Seconds()
	slices.Sort(compiles)
	if len(times) > 0 {
		rep.SwapMSP50, rep.SwapMSMax = times[len(times)/2], times[len(times)-1]
		rep.CompileMSP50 = compiles[len(compiles)/2]
	}
	if e, ok := firstErr.Load().(string); ok {
		rep.FirstError = e
	}
	return rep, nil
}

func printHotswap(w io.Writer, r hotswapReport) {
	mode := "cached"
	if !r.Cached {
		mode = "uncached"
	}
	fmt.Fprintf(w, "hot swap of %s (%s), %d clients, %.1f s\n", r.Plugin, mode, r.Clients, r.DurationSec)
	fmt.Fprintf(w, "  requests %d, failed %d\n", r.Requests, r.Failed)
	fmt.Fprintf(w, "  swaps %d: p50 %.1f ms, max %.1f ms (compiling: p50 %.1f ms)\n", r.Swaps, r.SwapMSP50, r.SwapMSMax, r.CompileMSP50)
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
	}
}
