package engineconf

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/models"
)

// Specs turns the [models.NAME] catalog of cfg into specs, one per
// model: the variant named by engine.quant for the engine's own model (and
// for every other model that has a variant of that name), else the model's
// first variant by name. Paths are resolved like Config.ModelPath: the
// variant's path, else its file name, relative to host.models_dir. Every
// spec gets the engine's context size (capped at the model's
// context_length when that is set) and parallelism. The engine's model
// comes first, the others follow by name, so that Pick's fallback is the
// configured model.
func Specs(cfg config.Config) ([]models.Spec, error) {
	names := make([]string, 0, len(cfg.Models))
	for n := range cfg.Models {
		names = append(names, n)
	}
	sort.Strings(names)
	if i := slices.Index(names, cfg.Engine.Model); i > 0 {
		names = slices.Insert(slices.Delete(names, i, i+1), 0, cfg.Engine.Model)
	}
	modelsDir := cfg.Resolve(cfg.Host.ModelsDir)
	specs := make([]models.Spec, 0, len(names))
	for _, n := range names {
		m := cfg.Models[n]
		tier := m.Tier
		if tier == "" {
			tier = models.TierDomain
		}
		if m.Backend != "" {
			// Remote servers: no file, and (about) no local memory.
			specs = append(specs, models.Spec{Name: n, Tier: tier, Backend: m.Backend, ContextSize: m.ContextLength, MemoryBytes: 1})
			continue
		}
		want := ""
		if _, ok := m.Variants[cfg.Engine.Quant]; ok && cfg.Engine.Quant != "" {
			want = cfg.Engine.Quant
		}
		quant, v, err := m.Variant(want)
		if err != nil {
			return nil, fmt.Errorf("models: catalog entry models.%s in %s: %w", n, cfg.File, err)
		}
		p := v.Path
		if p == "" {
			p = v.File
		}
		if p == "" {
			return nil, fmt.Errorf("models: catalog entry models.%s.variants.%s in %s has neither path nor file", n, quant, cfg.File)
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(modelsDir, p)
		}
		ctx := cfg.Engine.ContextSize
		if m.ContextLength > 0 && (ctx <= 0 || ctx > m.ContextLength) {
			ctx = m.ContextLength
		}
		specs = append(specs, models.Spec{
			Name:        n,
			Tier:        tier,
			Path:        p,
			Quant:       quant,
			ContextSize: ctx,
			Parallel:    cfg.Engine.Parallel,
		})
	}
	return specs, nil
}
