package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/hardware"
	"github.com/mdsa-go/mdsa/internal/enginebench"
	"github.com/mdsa-go/mdsa/internal/engineconf"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

// benchEngineParams is the size of the synthetic model bench engine writes
// when no --model-file is given.
const benchEngineParams = 100_000_000

// benchEngineRefPort is the port of the llama-server command line bench
// engine suggests.
const benchEngineRefPort = 8089

func (a *app) benchEngineCmd() *cobra.Command {
	var (
		modelFile, against, againstModel string
		againstPID                       int
		clients                          []int
		duration, settle                 time.Duration
		requests, maxTokens, decodeToks  int
		decodeAnswers                    int
		rounds                           int
		js, skipDecode, unique           bool
	)
	cmd := &cobra.Command{
		Use:   "engine [--against URL]",
		Short: "Compare the embedded llama.cpp engine with a reference OpenAI-compatible server on the same model",
		Long: `Measure MDSA's embedded engine (llama.cpp in this process, opened with the configuration's
engine settings: threads, context_size, parallel, gpu_layers) and, with --against, a reference
OpenAI-compatible server such as llama.cpp's llama-server running the same model file, in one run:

  1. single-request latency: --requests sequential requests after a few warm-up ones (p50, p99);
  2. throughput: for each --clients count, closed-loop clients for --duration after a warm-up:
     requests/s, p50/p99, prompt tokens evaluated per request (prompt - cached), CPU-seconds per
     request of the serving process (this process for mdsa; the reference's from /proc);
  3. decode tokens/s of one streamed --decode-tokens answer at a time, --decode-answers per target
     (tokens after the first / time after it);
  4. aggregate completion tokens/s with 1 and with 8 concurrent streams, and the gain.

Every request carries the same chat for both targets: a finance assistant's system prompt and one
of 20 user questions in turn (shared prefix, different tail); greedy. With --unique every request's
question is new ("Request N." before one of the 20), so that neither target can reuse a repeated
question's whole prompt from a cache, only the system prompt. The reference gets
POST /v1/chat/completions with "cache_prompt": true, and "ignore_eos": true in phases 3-4.
The targets run alternately, never together: before each turn the other target's process is given
up to --settle to go quiet (llama-server's threads keep a core busy for about 90 ms after each
answer, which would otherwise slow the next target's first request). Each figure has the ratio
mdsa / reference and says whether higher or lower is better; requests/s, decode and aggregate
tokens/s also give the range of their ratio over the rounds (decode: over the answer pairs), which
shows how far the machine's noise moves it within the run.

Without --model-file a synthetic model of about 100M parameters (Q4_0) is written to the temporary
directory and kept, with the llama-server command line to start the reference on it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := enginebench.Options{
				Requests: requests, Clients: clients, Duration: duration, MaxTokens: maxTokens,
				DecodeTokens: decodeToks, DecodeAnswers: decodeAnswers, SkipDecode: skipDecode, Progress: a.errw,
				Settle: settle, Rounds: rounds, Unique: unique,
			}
			if settle == 0 {
				opts.Settle = -1 // the flag's 0 means no wait, not the default
			}
			switch {
			case duration <= 0:
				return fmt.Errorf("bench engine: --duration %s: want > 0", duration)
			case settle < 0:
				return fmt.Errorf("bench engine: --settle %s: want >= 0", settle)
			case requests < 1:
				return fmt.Errorf("bench engine: --requests %d: want >= 1", requests)
			case maxTokens < 1 || decodeToks < 1 || decodeAnswers < 1 || rounds < 1:
				return fmt.Errorf("bench engine: --max-tokens %d, --decode-tokens %d, --decode-answers %d, --rounds %d: want >= 1", maxTokens, decodeToks, decodeAnswers, rounds)
			case len(clients) == 0:
				return fmt.Errorf("bench engine: --clients: want at least one count")
			case againstPID < 0:
				return fmt.Errorf("bench engine: --against-pid %d: want a process id", againstPID)
			case against == "" && (againstPID != 0 || againstModel != ""):
				return fmt.Errorf("bench engine: --against-pid and --against-model need --against")
			}
			for _, c := range clients {
				if c < 1 || c > 1024 {
					return fmt.Errorf("bench engine: --clients %d: want 1 to 1024", c)
				}
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			setup := enginebench.Setup{Cores: runtime.NumCPU()}
			if modelFile == "" {
				path, info, err := writeBenchEngineModel(ctx)
				if err != nil {
					return err
				}
				modelFile, setup.Synthetic = path, true
				setup.Model = fmt.Sprintf("synthetic, %d parameters, %s, %d bytes", info.Params, info.Quant, info.Bytes)
				fmt.Fprintf(a.errw, "bench engine: no --model-file: wrote a synthetic model (%s) to %s; it is kept for the reference\n",
					setup.Model, path)
			} else {
				modelFile = absPath(modelFile)
				if _, err := os.Stat(modelFile); err != nil {
					return fmt.Errorf("bench engine: --model-file: %w", err)
				}
			}
			setup.ModelFile = modelFile
			log := a.logger(cfg)
			lopts, err := benchEngineOptions(ctx, cfg, modelFile, log)
			if err != nil {
				return err
			}
			setup.Threads, setup.ContextSize, setup.Parallel, setup.GPULayers = lopts.Threads, lopts.ContextSize, lopts.Parallel, lopts.GPULayers
			if against == "" {
				fmt.Fprintf(a.errw, "bench engine: no --against: measuring mdsa alone. To compare with llama.cpp's server on the same file, start\n  %s\nand run again with --model-file %s --against http://127.0.0.1:%d\n",
					referenceCommand(modelFile, lopts), modelFile, benchEngineRefPort)
			}

			var ref enginebench.Target // stays a nil interface without --against
			if against != "" {
				if againstModel == "" {
					againstModel = filepath.Base(modelFile)
				}
				t, err := enginebench.NewOpenAITarget(enginebench.OpenAIOptions{
					URL: against, Model: againstModel, PID: againstPID,
					MaxConns: max(slices.Max(clients), enginebench.DefaultStreams),
				})
				if err != nil {
					return fmt.Errorf("bench engine: --against: %w", err)
				}
				defer t.CloseIdle()
				ref = t
			}

			eng, err := llamacpp.Open(ctx, modelFile, lopts)
			if err != nil {
				return fmt.Errorf("bench engine: opening the model for mdsa: %w", err)
			}
			defer eng.Close()
			if setup.Model == "" {
				setup.Model = eng.Model()
			}

			rep, err := enginebench.Run(ctx, enginebench.EngineTarget{Engine: eng}, ref, opts)
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return fmt.Errorf("bench engine: interrupted: %w", err)
				}
				return fmt.Errorf("bench engine: %w", err)
			}
			rep.Setup = setup
			if js {
				for _, t := range rep.Targets {
					if t.CPUNote != "" {
						fmt.Fprintf(a.errw, "bench engine: CPU time of the %s: n/a: %s\n", t.Role, t.CPUNote)
					}
				}
				for _, line := range rep.Problems() {
					fmt.Fprintf(a.errw, "bench engine: %s\n", line)
				}
				return writeJSON(a.out, rep)
			}
			return enginebench.WriteText(a.out, rep)
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelFile, "model-file", "", "GGUF model for both targets (default: a synthetic ~100M-parameter Q4_0 model in the temporary directory)")
	f.StringVar(&against, "against", "", "base URL of the reference OpenAI-compatible server, e.g. http://127.0.0.1:8089 (default: measure mdsa alone)")
	f.StringVar(&againstModel, "against-model", "", "model name sent to the reference (default: the model file's base name)")
	f.IntVar(&againstPID, "against-pid", 0, "process id of the reference, for its CPU time (default: the process listening on the URL's port on loopback)")
	f.IntSliceVar(&clients, "clients", enginebench.DefaultClients(), "closed-loop client counts of the throughput phase")
	f.DurationVar(&duration, "duration", enginebench.DefaultDuration, "measured time per target and client count")
	f.IntVar(&requests, "requests", enginebench.DefaultRequests, "sequential requests per target in the latency phase")
	f.IntVar(&maxTokens, "max-tokens", enginebench.DefaultMaxTokens, "max_tokens of the latency and throughput phases")
	f.IntVar(&decodeToks, "decode-tokens", enginebench.DefaultDecodeTokens, "max_tokens of the decode and aggregate phases")
	f.IntVar(&decodeAnswers, "decode-answers", enginebench.DefaultDecodeAnswers, "answers per target in the decode phase")
	f.IntVar(&rounds, "rounds", enginebench.DefaultRounds, "alternating rounds per target in the throughput and aggregate phases (more rounds, steadier ratios on a noisy machine)")
	f.BoolVar(&skipDecode, "skip-decode", false, "leave out the decode and aggregate phases")
	f.BoolVar(&unique, "unique", false, `give every request a question never asked before ("Request N." first): only the system prompt can be reused`)
	f.DurationVar(&settle, "settle", enginebench.DefaultSettle, "longest wait before a target's turn for the other target's process to go quiet (0: no wait)")
	f.BoolVar(&js, "json", false, "print JSON")
	return cmd
}

// writeBenchEngineModel writes the synthetic model into the temporary
// directory, where it stays so that the reference can be started on it.
// The write is atomic, so a server that has the previous copy open keeps it.
func writeBenchEngineModel(ctx context.Context) (string, gguf.SynthInfo, error) {
	dir := filepath.Join(os.TempDir(), "mdsa-bench-engine")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", gguf.SynthInfo{}, fmt.Errorf("bench engine: %w", err)
	}
	path := filepath.Join(dir, "synthetic-100m-q4_0.gguf")
	info, err := gguf.WriteSynthContext(ctx, path, gguf.SynthOptions{Params: benchEngineParams, Quant: "Q4_0"})
	if err != nil {
		return "", info, fmt.Errorf("bench engine: writing the synthetic model %s: %w", path, err)
	}
	return path, info, nil
}

// referenceCommand is the llama-server command line matching mdsa's
// engine: the same threads and GPU layers, and 4 slots of (at least) mdsa's
// context each.
func referenceCommand(modelFile string, o llamacpp.Options) string {
	s := fmt.Sprintf("llama-server -m %s --port %d -t %d -np 4", modelFile, benchEngineRefPort, o.Threads)
	if o.ContextSize > 0 {
		s += fmt.Sprintf(" -c %d", 4*o.ContextSize)
	}
	switch {
	case o.GPULayers < 0:
		s += " -ngl 999"
	case o.GPULayers > 0:
		s += fmt.Sprintf(" -ngl %d", o.GPULayers)
	}
	return s
}

// benchEngineOptions are the llama.cpp options the host would give this
// model file under cfg, as host.openRegistry builds them: the library
// directory, the threads (engine.threads, or the hardware recommendation
// when 0), context size, parallel sequences and GPU layers (resolved for
// this file when engine.gpu_layers is "auto"). Nothing is tuned.
func benchEngineOptions(ctx context.Context, cfg config.Config, modelFile string, log *slog.Logger) (llamacpp.Options, error) {
	var info hardware.Info
	if cfg.Engine.Threads == 0 || cfg.Engine.GPULayers.Auto {
		var err error
		if info, err = hardware.Detect(ctx, hardware.Options{Logger: log}); err != nil {
			return llamacpp.Options{}, fmt.Errorf("bench engine: detecting the hardware for engine.threads = 0 or engine.gpu_layers = \"auto\" in %s (set them to skip): %w", cfg.File, err)
		}
	}
	o := engineconf.Llama(cfg, info, log)
	o.LibDir = benchEngineLibDir(cfg)
	// The prompt cache as configured, never persisted: every run starts
	// cold.
	o.PromptCacheDir = ""
	if cfg.Engine.GPULayers.Auto {
		o.GPULayers = engineconf.AutoGPULayers(info, o, filepath.Base(modelFile), modelFile)
	}
	return o, nil
}

// benchEngineLibDir is the configured llama.cpp library directory, resolved
// against the configuration's directory, or the one llamacpp.FindLibDir
// finds when the configured one has no libllama.so.
func benchEngineLibDir(cfg config.Config) string {
	dir := cfg.Resolve(cfg.Engine.LibDir)
	if dir == "" {
		return ""
	}
	if _, err := os.Stat(filepath.Join(dir, "libllama.so")); err == nil {
		return dir
	}
	if found, err := llamacpp.FindLibDir("."); err == nil {
		return found
	}
	return dir
}
