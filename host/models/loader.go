package models

import (
	"context"
	"fmt"
	"strings"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
)

// LlamaLoader returns a LoadFunc that opens models with llama.cpp through
// llamacpp.Open. Each model gets opts, with Name set to the spec's name and
// ContextSize and Parallel taken from the spec when it sets them. A failure
// whose message says memory ran out ("out of memory", "failed to allocate",
// "cannot allocate") is wrapped with ErrOutOfMemory as well, so that the
// registry evicts unused models and retries once.
func LlamaLoader(opts llamacpp.Options) LoadFunc {
	return func(ctx context.Context, spec Spec) (engine.Engine, error) {
		o := llamaOptions(opts, spec)
		eng, err := llamacpp.Open(ctx, spec.Path, o)
		if err != nil {
			if looksOutOfMemory(err) {
				return nil, fmt.Errorf("%w: %w", ErrOutOfMemory, err)
			}
			return nil, err
		}
		return eng, nil
	}
}

// llamaOptions applies spec to the loader's options.
func llamaOptions(opts llamacpp.Options, spec Spec) llamacpp.Options {
	opts.Name = spec.Name
	if spec.ContextSize > 0 {
		opts.ContextSize = spec.ContextSize
	}
	if spec.Parallel > 0 {
		opts.Parallel = spec.Parallel
	}
	return opts
}

// looksOutOfMemory recognises llama.cpp's and the C library's wording for
// a failed allocation.
func looksOutOfMemory(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"out of memory", "failed to allocate", "cannot allocate", "enomem"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// LlamaEstimator returns the EstimateFunc that matches LlamaLoader(opts): it
// reads the GGUF header of Spec.Path and estimates the memory for the
// context size and parallelism the loader will use (the spec's, else opts',
// else the engine's defaults), with an f16 KV cache as the engine uses,
// plus the engine's prompt cache budget.
func LlamaEstimator(opts llamacpp.Options) EstimateFunc {
	return func(spec Spec) (int64, error) {
		o := llamaOptions(opts, spec)
		eo := EstimateOptions{ContextSize: o.ContextSize, Parallel: o.Parallel}
		if o.BatchSize > 0 {
			eo.BatchSize = min(o.BatchSize, maxPhysicalBatch)
		}
		if o.GPULayers != 0 {
			// Offloaded weights are not repacked on the CPU.
			eo.Repack = RepackNever
		}
		est, err := EstimateFile(spec.Path, eo)
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

// FileEstimator returns an EstimateFunc that reads the GGUF header of
// Spec.Path and estimates with opts, overridden by the spec's ContextSize
// and Parallel when set.
func FileEstimator(opts EstimateOptions) EstimateFunc {
	return func(spec Spec) (int64, error) {
		o := opts
		if spec.ContextSize > 0 {
			o.ContextSize = spec.ContextSize
		}
		if spec.Parallel > 0 {
			o.Parallel = spec.Parallel
		}
		est, err := EstimateFile(spec.Path, o)
		if err != nil {
			return 0, err
		}
		return est.Total, nil
	}
}
