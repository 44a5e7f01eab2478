package engineconf

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

// Loader gives each model the loader's options, with the spec's name,
// context size and parallelism where it sets them.
func TestLoader(t *testing.T) {
	o := llamaOptions(llamacpp.Options{ContextSize: 1024, Parallel: 2, Threads: 3},
		models.Spec{Name: "x", ContextSize: 512})
	if o.Name != "x" || o.ContextSize != 512 || o.Parallel != 2 || o.Threads != 3 {
		t.Errorf("options %+v", o)
	}
	lib, err := llamacpp.FindLibDir(".")
	if err != nil {
		t.Skipf("llama.cpp libraries not available (run `make setup` or set %s): %v", llamacpp.EnvLibDir, err)
	}
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if _, err := gguf.WriteSynth(path, gguf.SynthOptions{Name: "tiny", Quant: "Q4_0"}); err != nil {
		t.Fatal(err)
	}
	opts := llamacpp.Options{LibDir: lib, Logger: slog.New(slog.DiscardHandler), Threads: 1}
	load := Loader(opts)
	eng, err := load(context.Background(), models.Spec{Name: "tiny", Path: path, ContextSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	info := eng.(*llamacpp.Engine).Info()
	// llama.cpp rounds each sequence's context up to a multiple of 256, as
	// the estimate does.
	if info.Name != "tiny" || info.ContextSize != 256 {
		t.Errorf("engine info %+v", info)
	}
	if _, err := load(context.Background(), models.Spec{Name: "missing", Path: filepath.Join(t.TempDir(), "none.gguf")}); err == nil || errors.Is(err, models.ErrOutOfMemory) {
		t.Errorf("missing file: %v", err)
	}
	// The estimate covers the engine's prompt cache on top of the file's
	// own estimate.
	est, err := Estimator(opts)(models.Spec{Name: "tiny", Path: path, ContextSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := models.FileEstimator(models.EstimateOptions{ContextSize: 128})(models.Spec{Name: "tiny", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if est != bare+llamacpp.DefaultPromptCacheBytes {
		t.Errorf("estimate %d, want the file's %d + the prompt cache %d", est, bare, llamacpp.DefaultPromptCacheBytes)
	}
}
