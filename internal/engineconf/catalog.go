package engineconf

import (
	"os"
	"path/filepath"
	"slices"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/hardware"
)

// HardwareCatalog turns the configuration's [models] into Recommend's input, in
// name order. A variant's size is the catalog's, else its local file's.
func HardwareCatalog(cfg config.Config) []hardware.CatalogModel {
	names := make([]string, 0, len(cfg.Models))
	for n := range cfg.Models {
		names = append(names, n)
	}
	slices.Sort(names)
	modelsDir := cfg.Resolve(cfg.Host.ModelsDir)
	var out []hardware.CatalogModel
	for _, n := range names {
		m := cfg.Models[n]
		if m.Backend != "" {
			continue // served by remote servers: nothing to fit here
		}
		cm := hardware.CatalogModel{Name: n, Params: hardware.ParamsFromName(n), ContextLength: m.ContextLength,
			Variants: map[string]int64{}}
		for q, v := range m.Variants {
			size := v.Size
			if size <= 0 {
				p := v.Path
				if p == "" {
					p = v.File
				}
				if p != "" {
					if !filepath.IsAbs(p) {
						p = filepath.Join(modelsDir, p)
					}
					if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
						size = st.Size()
					}
				}
			}
			cm.Variants[q] = size
		}
		out = append(out, cm)
	}
	return out
}
