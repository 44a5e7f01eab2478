package models

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/hardware"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

func TestHardwareModel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	si, err := gguf.WriteSynth(path, gguf.SynthOptions{Params: 5_000_000, Quant: "Q8_0", KVHeads: 2, ContextLength: 4096})
	if err != nil {
		t.Fatal(err)
	}
	m, err := HardwareModel("m", path)
	if err != nil {
		t.Fatal(err)
	}
	headDim := int64(si.NEmbd / si.NHead)
	if m.Name != "m" || m.Params != si.Params || m.Layers != si.NLayer || m.ContextLength != 4096 ||
		m.KVBytesPerToken != int64(si.NLayer)*2*int64(si.NHeadKV)*headDim*2 || m.Variants["Q8_0"] != si.Bytes || len(m.Variants) != 1 {
		t.Errorf("got %+v for %+v", m, si)
	}
	if _, err := HardwareModel("x", filepath.Join(t.TempDir(), "none.gguf")); err == nil || !strings.Contains(err.Error(), "none.gguf") {
		t.Errorf("missing file: %v", err)
	}
}

func TestLlamaGPUBackends(t *testing.T) {
	dir := t.TempDir()
	if got := LlamaGPUBackends(dir); len(got) != 0 {
		t.Errorf("CPU build: %v", got)
	}
	if got := LlamaGPUBackends(""); len(got) != 0 {
		t.Errorf("no directory: %v", got)
	}
	for _, f := range []string{"libggml-vulkan.so", "libggml-cuda.so"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := LlamaGPUBackends(dir); !slices.Equal(got, []string{hardware.BackendCUDA, hardware.BackendVulkan}) {
		t.Errorf("got %v", got)
	}
}

func TestAutoGPULayersOfAFile(t *testing.T) {
	const gib = int64(1) << 30
	path := filepath.Join(t.TempDir(), "m.gguf")
	if _, err := gguf.WriteSynth(path, gguf.SynthOptions{}); err != nil {
		t.Fatal(err)
	}
	cuda := t.TempDir()
	if err := os.WriteFile(filepath.Join(cuda, "libggml-cuda.so"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	info := hardware.Info{
		CPU:    hardware.CPU{Cores: 4, Threads: 8},
		Memory: hardware.Memory{TotalBytes: 16 * gib, AvailableBytes: 8 * gib},
		GPUs:   []hardware.GPU{{Vendor: hardware.VendorNVIDIA, Name: "t", VRAMTotalBytes: 24 * gib, VRAMFreeBytes: 23 * gib}},
	}
	opts := hardware.RecommendOptions{ContextSize: 512, Parallel: 1}
	if n, why := AutoGPULayers(info, cuda, "m", path, opts); n != hardware.GPULayersAll {
		t.Errorf("CUDA build: %d (%s)", n, why)
	}
	if n, why := AutoGPULayers(info, t.TempDir(), "m", path, opts); n != 0 || !strings.Contains(why, "CPU-only llama.cpp build") {
		t.Errorf("CPU build: %d (%s)", n, why)
	}
	if n, why := AutoGPULayers(hardware.Info{}, cuda, "m", path, opts); n != 0 || why != "no GPU detected" {
		t.Errorf("no GPU: %d (%s)", n, why)
	}
	if n, why := AutoGPULayers(info, cuda, "m", filepath.Join(t.TempDir(), "gone.gguf"), opts); n != 0 || !strings.Contains(why, "cannot size the model") {
		t.Errorf("missing file: %d (%s)", n, why)
	}
}
