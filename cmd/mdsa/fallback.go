package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/engineconf"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

// synthFile is the synthetic test model's file in host.models_dir: the one
// `make run` writes.
const synthFile = "synthetic.gguf"

// modelFallback keeps the documented commands working right after `make
// setup`, before any model is downloaded: when the configured model's file
// (engine.model in the catalog) is not on disk, it returns the synthetic
// test model's file, writing it when absent, and a notice saying so and
// what to do for real answers. It returns "" when the configured model is
// there, or when the catalog cannot tell (the host then reports why).
func modelFallback(cfg config.Config) (file, notice string, err error) {
	specs, err := engineconf.Specs(cfg)
	if err != nil || len(specs) == 0 || specs[0].Name != cfg.Engine.Model {
		return "", "", nil
	}
	want := specs[0]
	if want.Backend != "" {
		return "", "", nil // served by remote servers
	}
	if _, err := os.Stat(want.Path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return "", "", nil
	}
	synth := filepath.Join(cfg.Resolve(cfg.Host.ModelsDir), synthFile)
	if _, err := os.Stat(synth); err != nil {
		err := os.MkdirAll(filepath.Dir(synth), 0o755)
		if err == nil {
			_, err = gguf.WriteSynth(synth, gguf.SynthOptions{})
		}
		if err != nil {
			return "", "", fmt.Errorf("the configured model %s is not downloaded (%s), and writing the synthetic test model failed: %w",
				want.Name, want.Path, err)
		}
	}
	notice = fmt.Sprintf("the configured model %s is not downloaded (%s is missing), so the SYNTHETIC test model %s answers: "+
		"its text is fixed and meaningless. For real answers: bin/mdsa models pull %s, or --model-file PATH, or another engine.model in %s",
		want.Name, want.Path, synth, want.Name, cfg.File)
	return synth, notice, nil
}
