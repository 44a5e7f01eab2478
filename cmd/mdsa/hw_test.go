package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/hardware"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

func TestHWEngineSettings(t *testing.T) {
	const gib = int64(1) << 30
	dir := t.TempDir()
	model := filepath.Join(dir, "models", "m.gguf")
	if err := os.MkdirAll(filepath.Dir(model), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := gguf.WriteSynth(model, gguf.SynthOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(filepath.Join(dir, "mdsa.toml"), []byte(`
[engine]
model = "m"
lib_dir = "lib"
[models.m]
tier = "domain"
[models.m.variants.Q4_0]
file = "m.gguf"
`))
	if err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, "lib")
	if err := os.MkdirAll(lib, 0o755); err != nil {
		t.Fatal(err)
	}
	info := hardware.Info{
		CPU:    hardware.CPU{Cores: 8, Threads: 16, QuotaCPUs: 3},
		Memory: hardware.Memory{TotalBytes: 32 * gib, AvailableBytes: 16 * gib},
		GPUs:   []hardware.GPU{{Vendor: hardware.VendorNVIDIA, Name: "test", VRAMTotalBytes: 80 * gib, VRAMFreeBytes: 79 * gib}},
	}
	rec := hardware.Recommend(info, nil, hardware.RecommendOptions{})

	settings := func() *hwEngine {
		t.Helper()
		return hwEngineSettings(cfg, info, rec, hwLlamaBuild(cfg, slog.New(slog.DiscardHandler)), hardware.RecommendOptions{})
	}
	e := settings()
	if e.Threads != 3 || e.ThreadsFrom != "recommendation" {
		t.Errorf("threads = %d from %s, want 3 from the recommendation (8 cores, quota 3)", e.Threads, e.ThreadsFrom)
	}
	if e.GPULayers != "auto" || e.GPULayersResolved != 0 || !strings.Contains(e.GPULayersWhy, "CPU-only llama.cpp build") {
		t.Errorf("no llama.cpp GPU build: %+v", e)
	}
	if l := hwLlamaBuild(cfg, slog.New(slog.DiscardHandler)); l.Installed || describeLlama(l) != "not installed in "+lib+" (run `make setup`)" {
		t.Errorf("llama = %+v: %s", l, describeLlama(l))
	}

	for _, f := range []string{"libllama.so", "libggml-cuda.so"} {
		if err := os.WriteFile(filepath.Join(lib, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if e := settings(); e.GPULayersResolved != hardware.GPULayersAll || !strings.Contains(e.GPULayersWhy, "all layers") {
		t.Errorf("CUDA build, 80 GB GPU: %+v", e)
	}
	if d := describeLlama(hwLlamaBuild(cfg, slog.New(slog.DiscardHandler))); d != "CUDA build in "+lib {
		t.Errorf("llama = %s", d)
	}

	cfg.Engine.Threads, cfg.Engine.GPULayers = 5, config.FixedGPULayers(12)
	if e := settings(); e.Threads != 5 || e.ThreadsFrom != "engine.threads" || e.GPULayers != "12" || e.GPULayersResolved != 12 || e.GPULayersWhy != "" {
		t.Errorf("fixed settings: %+v", e)
	}
}

func TestNoteNoGPUDevice(t *testing.T) {
	cpu := llamacpp.Device{Name: "CPU", Description: "EPYC", Kind: "cpu", Backend: "CPU"}
	gpu := llamacpp.Device{Name: "CUDA0", Description: "NVIDIA H100 80GB HBM3", Kind: "gpu", Backend: "CUDA", FreeBytes: 79 << 30, TotalBytes: 80 << 30}
	failed := &hwLlama{Devices: []llamacpp.Device{cpu}, Failures: []llamacpp.BackendFailure{{Library: "libggml-cuda.so", Reason: "cannot be loaded: libcudart.so.13: cannot open shared object file"}}}

	e := &hwEngine{GPULayersResolved: hardware.GPULayersAll, GPULayersWhy: "fits in VRAM: all layers"}
	noteNoGPUDevice(e, failed)
	if !strings.HasPrefix(e.GPULayersWhy, "fits in VRAM: all layers; but llama.cpp has no GPU device") || !strings.Contains(e.GPULayersWhy, "libcudart.so.13") {
		t.Errorf("CUDA back-end down: why = %q", e.GPULayersWhy)
	}
	for name, l := range map[string]*hwLlama{
		"GPU there":    {Devices: []llamacpp.Device{cpu, gpu}},
		"not loaded":   {LoadError: "no libllama.so"},
		"no libraries": nil,
	} {
		e := &hwEngine{GPULayersResolved: 12, GPULayersWhy: "fixed"}
		noteNoGPUDevice(e, l)
		if e.GPULayersWhy != "fixed" {
			t.Errorf("%s: why = %q, want it unchanged", name, e.GPULayersWhy)
		}
	}
	e = &hwEngine{GPULayersWhy: "no GPU detected"}
	noteNoGPUDevice(e, failed)
	if e.GPULayersWhy != "no GPU detected" {
		t.Errorf("nothing offloaded: why = %q, want it unchanged", e.GPULayersWhy)
	}

	want := "CPU (EPYC), CUDA0 (NVIDIA H100 80GB HBM3, 79.0 GiB free of 80.0 GiB)"
	if got := describeDevices([]llamacpp.Device{cpu, gpu}); got != want {
		t.Errorf("describeDevices = %q, want %q", got, want)
	}
}
