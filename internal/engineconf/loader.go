package engineconf

import (
	"context"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/models"
)

// Loader returns the registry's LoadFunc for llama.cpp: it opens models
// with llamacpp.Open. Each model gets opts, with Name set to the spec's name
// and ContextSize and Parallel taken from the spec when it sets them. A
// failure whose message says memory ran out is wrapped with
// models.ErrOutOfMemory as well (models.OutOfMemory), so that the registry
// evicts unused models and retries once.
func Loader(opts llamacpp.Options) models.LoadFunc {
	return func(ctx context.Context, spec models.Spec) (engine.Engine, error) {
		eng, err := llamacpp.Open(ctx, spec.Path, llamaOptions(opts, spec))
		if err != nil {
			return nil, models.OutOfMemory(err)
		}
		return eng, nil
	}
}

// llamaOptions applies spec to the loader's options.
func llamaOptions(opts llamacpp.Options, spec models.Spec) llamacpp.Options {
	opts.Name = spec.Name
	if spec.ContextSize > 0 {
		opts.ContextSize = spec.ContextSize
	}
	if spec.Parallel > 0 {
		opts.Parallel = spec.Parallel
	}
	return opts
}

// Estimator returns the registry's EstimateFunc that matches Loader(opts): it
// reads the GGUF header of Spec.Path and estimates the memory for the
// context size and parallelism the loader will use (the spec's, else opts',
// else the engine's defaults), with an f16 KV cache as the engine uses,
// plus the engine's prompt cache budget.
func Estimator(opts llamacpp.Options) models.EstimateFunc {
	return func(spec models.Spec) (int64, error) {
		o := llamaOptions(opts, spec)
		eo := models.EstimateOptions{ContextSize: o.ContextSize, Parallel: o.Parallel}
		if o.BatchSize > 0 {
			eo.BatchSize = min(o.BatchSize, models.MaxPhysicalBatch)
		}
		if o.GPULayers != 0 {
			// Offloaded weights are not repacked on the CPU.
			eo.Repack = models.RepackNever
		}
		est, err := models.EstimateFile(spec.Path, eo)
		if err != nil {
			return 0, err
		}
		// The prompt cache fills up to its budget as prompts come and go.
		cache := o.PromptCacheBytes
		if cache == 0 {
			cache = llamacpp.DefaultPromptCacheBytes
		}
		return est.Total + max(cache, 0), nil
	}
}
