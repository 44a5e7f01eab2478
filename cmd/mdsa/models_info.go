package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/internal/bytesize"
)

// modelsInfoCmd is `mdsa models info NAME[:QUANT]|FILE.gguf`: the GGUF
// metadata of a local model file and the memory it needs to run with the
// configured context and parallelism.
func (a *app) modelsInfoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info NAME[:QUANT] | FILE.gguf",
		Short: "Show a model's GGUF metadata and memory estimate",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			path := args[0]
			if _, statErr := os.Stat(path); statErr != nil {
				ref, err := resolveModelRef(cfg, args[0], "")
				if err != nil {
					return err
				}
				path = ref.Path
			}
			meta, err := models.ReadMetadata(path)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w (download it with `mdsa models pull %s`)", err, args[0])
			}
			if err != nil {
				return err
			}
			est := models.Estimate(meta, models.EstimateOptions{ContextSize: cfg.Engine.ContextSize, Parallel: cfg.Engine.Parallel})
			// The registry (and mdsa hw) also count the engine's prompt
			// cache, which fills up to its budget as prompts come and go.
			cache := int64(max(cfg.Engine.PromptCacheMB, 0)) << 20
			if asJSON {
				return writeJSON(a.out, map[string]any{"path": path, "metadata": meta, "estimate": est,
					"context_size": cfg.Engine.ContextSize, "parallel": cfg.Engine.Parallel,
					"prompt_cache_bytes": cache, "reserved_bytes": est.Total + cache})
			}
			w := a.out
			fmt.Fprintf(w, "file:          %s (%s)\n", path, bytesize.Format(meta.FileSize))
			fmt.Fprintf(w, "name:          %s\narchitecture:  %s\nquantization:  %s\n", meta.Name, meta.Architecture, meta.FileType)
			fmt.Fprintf(w, "parameters:    %d\ncontext:       %d (trained)\nlayers:        %d, n_embd %d, heads %d/%d kv\n",
				meta.Params, meta.ContextLength, meta.Layers, meta.EmbeddingLength, meta.HeadCount, meta.HeadCountKV)
			fmt.Fprintf(w, "memory:        %s total at context %d x %d (weights %s, repack %s, KV cache %s, compute %s, overhead %s)\n",
				bytesize.Format(est.Total), cfg.Engine.ContextSize, cfg.Engine.Parallel, bytesize.Format(est.Weights),
				bytesize.Format(est.Repack), bytesize.Format(est.KVCache), bytesize.Format(est.Compute),
				bytesize.Format(est.Overhead))
			fmt.Fprintf(w, "reserved:      %s with the prompt cache (engine.prompt_cache_mb = %d): what the model registry counts against its budget, as mdsa hw does\n",
				bytesize.Format(est.Total+cache), cfg.Engine.PromptCacheMB)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
