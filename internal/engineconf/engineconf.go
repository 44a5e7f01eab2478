// Package engineconf maps mdsa.toml's [engine] section onto the llama.cpp
// engine's options, for the host and for `mdsa bench engine`, which must
// run the engine exactly as the host does.
package engineconf

import (
	"log/slog"
	"os"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/hardware"
	"github.com/mdsa-go/mdsa/host/models"
)

// Llama builds the llama.cpp engine options of cfg's [engine] section as
// the host uses them: the library directory, threads (engine.threads, or
// info's recommendation when 0), context size, parallel sequences, the
// prompt cache size (off when 0) and the GPU layers when engine.gpu_layers
// is a count. An "auto" gpu_layers is left at 0 here: it depends on the
// model file (see AutoGPULayers). Cores, PromptCacheDir and Name are the
// caller's.
func Llama(cfg config.Config, info hardware.Info, log *slog.Logger) llamacpp.Options {
	rec := hardware.Recommend(info, nil, hardware.RecommendOptions{})
	o := llamacpp.Options{
		LibDir:           cfg.Resolve(cfg.Engine.LibDir),
		Threads:          cfg.EffectiveThreads(rec.Threads),
		ContextSize:      cfg.Engine.ContextSize,
		Parallel:         cfg.Engine.Parallel,
		GPULayers:        cfg.Engine.GPULayers.Count,
		PromptCacheBytes: int64(cfg.Engine.PromptCacheMB) << 20,
		Logger:           log,
	}
	if o.PromptCacheBytes == 0 {
		o.PromptCacheBytes = -1 // off
	}
	return o
}

// AutoGPULayers resolves engine.gpu_layers = "auto" for the model file at
// path run with o's context and parallelism, on the hardware info describes
// and the llama.cpp build in o's library directory: 0 without a usable GPU.
func AutoGPULayers(info hardware.Info, o llamacpp.Options, name, path string) int {
	n, _ := models.AutoGPULayers(info, LibDir(o), name, path,
		hardware.RecommendOptions{ContextSize: o.ContextSize, Parallel: o.Parallel})
	return n
}

// LibDir is o's library directory, else $MDSA_LLAMA_LIB.
func LibDir(o llamacpp.Options) string {
	if o.LibDir != "" {
		return o.LibDir
	}
	return os.Getenv(llamacpp.EnvLibDir)
}
