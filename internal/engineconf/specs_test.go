package engineconf

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/models"
)

func TestSpecs(t *testing.T) {
	cfg := config.Default()
	cfg.SetDir("/etc/mdsa")
	cfg.Host.ModelsDir = "models"
	cfg.Engine.Model = "qwen"
	cfg.Engine.Quant = "Q8_0"
	cfg.Engine.ContextSize = 4096
	cfg.Engine.Parallel = 2
	cfg.Models = map[string]config.Model{
		"qwen": {Tier: "domain", ContextLength: 32768, Variants: map[string]config.Variant{
			"Q4_K_M": {File: "qwen-q4.gguf"},
			"Q8_0":   {File: "qwen-q8.gguf"},
		}},
		"alpha": {Tier: "reasoner", ContextLength: 2048, Variants: map[string]config.Variant{
			"Q4_0": {Path: "/data/alpha.gguf"},
		}},
		"bge": {Tier: "router", Variants: map[string]config.Variant{
			"F16":  {File: "bge.gguf"},
			"Q8_0": {Path: "sub/bge-q8.gguf"},
		}},
		"zed": {Variants: map[string]config.Variant{"Q4_0": {File: "zed.gguf"}}},
	}
	specs, err := Specs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []models.Spec{
		{Name: "qwen", Tier: "domain", Path: filepath.Join("/etc/mdsa/models", "qwen-q8.gguf"), Quant: "Q8_0", ContextSize: 4096, Parallel: 2},
		{Name: "alpha", Tier: "reasoner", Path: "/data/alpha.gguf", Quant: "Q4_0", ContextSize: 2048, Parallel: 2},
		{Name: "bge", Tier: "router", Path: filepath.Join("/etc/mdsa/models", "sub/bge-q8.gguf"), Quant: "Q8_0", ContextSize: 4096, Parallel: 2},
		{Name: "zed", Tier: "domain", Path: filepath.Join("/etc/mdsa/models", "zed.gguf"), Quant: "Q4_0", ContextSize: 4096, Parallel: 2},
	}
	if len(specs) != len(want) {
		t.Fatalf("got %d specs: %+v", len(specs), specs)
	}
	for i := range want {
		g, w := specs[i], want[i]
		if g.Name != w.Name || g.Tier != w.Tier || g.Path != w.Path || g.Quant != w.Quant ||
			g.ContextSize != w.ContextSize || g.Parallel != w.Parallel {
			t.Errorf("spec %d\n got %+v\nwant %+v", i, g, w)
		}
	}

	cfg.Models["broken"] = config.Model{Variants: map[string]config.Variant{"Q4_0": {}}}
	if _, err := Specs(cfg); err == nil || !strings.Contains(err.Error(), "models.broken") {
		t.Errorf("variant without path: %v", err)
	}
	cfg.Models["broken"] = config.Model{}
	if _, err := Specs(cfg); err == nil || !strings.Contains(err.Error(), "models.broken") {
		t.Errorf("model without variants: %v", err)
	}
}
