package models

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/mdsa-go/mdsa/host/hardware"
)

// HardwareModel describes the GGUF model file at path the way
// hardware.Recommend and hardware.AutoGPULayers size models: its file size
// under its quantization, parameter count, trained context, layer count
// and f16 KV cache per token, all read from the file's header. name labels
// the result. Errors are ReadMetadata's and name the file.
func HardwareModel(name, path string) (hardware.CatalogModel, error) {
	meta, err := ReadMetadata(path)
	if err != nil {
		return hardware.CatalogModel{}, err
	}
	quant := meta.FileType
	if quant == "" {
		quant = "unknown"
	}
	k, v := meta.KVWidth()
	params := int64(math.MaxInt64 / 2)
	if meta.Params < uint64(params) {
		params = int64(meta.Params)
	}
	return hardware.CatalogModel{
		Name:            name,
		Params:          params,
		ContextLength:   meta.ContextLength,
		Layers:          meta.Layers,
		KVBytesPerToken: int64(meta.Layers) * int64(k+v) * 2,
		Variants:        map[string]int64{quant: meta.FileSize},
	}, nil
}

// LlamaGPUBackends lists the GPU back-ends of the llama.cpp build in libDir,
// as hardware.OffloadGPUs takes them: hardware.BackendCUDA when it holds
// libggml-cuda.so, hardware.BackendVulkan when it holds libggml-vulkan.so.
// ggml loads these back-end libraries from that directory when the engine
// initialises llama.cpp; a CPU-only build (or a missing directory) has
// none. Whether a back-end then finds its runtime (libcudart and libcublas
// for CUDA, libvulkan for Vulkan) and a device is only known once it loads.
func LlamaGPUBackends(libDir string) []string {
	backends := []string{}
	if libDir == "" {
		return backends
	}
	for _, b := range []struct{ file, name string }{
		{"libggml-cuda.so", hardware.BackendCUDA},
		{"libggml-vulkan.so", hardware.BackendVulkan},
	} {
		if st, err := os.Stat(filepath.Join(libDir, b.file)); err == nil && !st.IsDir() {
			backends = append(backends, b.name)
		}
	}
	return backends
}

// AutoGPULayers resolves engine.gpu_layers = "auto" for the GGUF file at
// path, run with the llama.cpp build in libDir on the machine info
// describes: hardware.OffloadGPUs keeps the GPUs that build can drive
// (none for a CPU-only build), HardwareModel sizes the file and
// hardware.AutoGPULayers fits it to their free VRAM with opts' context
// size and parallelism. The result follows llamacpp.Options.GPULayers: 0
// CPU only, hardware.GPULayersAll every layer, N that many. reason says
// why; a file that cannot be read gives 0 (loading it reports the
// problem).
func AutoGPULayers(info hardware.Info, libDir, name, path string, opts hardware.RecommendOptions) (layers int, reason string) {
	gpus, note := hardware.OffloadGPUs(info.GPUs, LlamaGPUBackends(libDir))
	if note != "" {
		note += " (llama.cpp libraries in " + libDir + ")"
	}
	if len(gpus) == 0 {
		if note != "" {
			return 0, note
		}
		return 0, "no GPU detected"
	}
	m, err := HardwareModel(name, path)
	if err != nil {
		return 0, fmt.Sprintf("cannot size the model: %v", err)
	}
	info.GPUs = gpus
	layers, reason = hardware.AutoGPULayers(info, m, opts)
	if note != "" {
		reason += "; " + note
	}
	return layers, reason
}
