package hardware

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/mdsa-go/mdsa/internal/bytesize"
)

// GPU back-ends of a llama.cpp build, as OffloadGPUs takes them: the ggml
// back-end libraries libggml-cuda.so and libggml-vulkan.so.
const (
	BackendCUDA   = "cuda"
	BackendVulkan = "vulkan"
)

// OffloadGPUs returns the GPUs that a llama.cpp build with the given GPU
// back-ends can offload to: NVIDIA GPUs with BackendCUDA or BackendVulkan,
// any other GPU with BackendVulkan only; none for a CPU-only build (no
// back-ends). reason says which GPUs were left out and why, "" when none
// were.
func OffloadGPUs(gpus []GPU, backends []string) (usable []GPU, reason string) {
	cuda, vulkan := slices.Contains(backends, BackendCUDA), slices.Contains(backends, BackendVulkan)
	usable = []GPU{}
	var left []string
	for _, g := range gpus {
		if vulkan || (cuda && g.Vendor == VendorNVIDIA) {
			usable = append(usable, g)
			continue
		}
		left = append(left, fmt.Sprintf("%s GPU %d (%s)", g.Vendor, g.Index, g.Name))
	}
	if len(left) == 0 {
		return usable, ""
	}
	build := "a CPU-only llama.cpp build"
	if cuda {
		build = "a CUDA llama.cpp build, which drives NVIDIA GPUs only"
	}
	return usable, fmt.Sprintf("%s not used: %s is installed (scripts/setup-llama.sh picks the build; LLAMA_BACKEND overrides it)",
		strings.Join(left, ", "), build)
}

// AutoGPULayers resolves engine.gpu_layers = "auto" for one model: 0 when
// info has no GPU with usable VRAM (or opts.CPUOnly), else what Recommend
// fits for m: GPULayersAll when the model fits in the VRAM budget, the
// share of its layers that the budget holds when it needs VRAM and RAM
// together. When it fits nowhere, the share of layers the VRAM budget
// holds is offloaded anyway, which leaves the least to RAM. m should
// describe one model file: its size under its quantization, its layer
// count and KV cache per token. reason explains the choice.
func AutoGPULayers(info Info, m CatalogModel, opts RecommendOptions) (layers int, reason string) {
	rec := Recommend(info, []CatalogModel{m}, opts)
	switch {
	case opts.CPUOnly:
		return 0, "CPU only"
	case rec.VRAMBudgetBytes <= 0 && len(info.GPUs) == 0:
		return 0, "no GPU detected"
	case rec.VRAMBudgetBytes <= 0:
		return 0, "no GPU with free VRAM beyond the reserve"
	case len(rec.Models) == 0:
		return 0, "no model to fit"
	}
	f := rec.Models[0]
	if f.Fits {
		return f.GPULayers, f.Reason
	}
	if f.NeededBytes <= 0 || f.Layers <= 0 {
		return 0, "cannot size the model: " + f.Reason
	}
	n := int(math.Floor(float64(rec.VRAMBudgetBytes) / float64(f.NeededBytes) * float64(f.Layers)))
	n = max(min(n, f.Layers-1), 0)
	return n, fmt.Sprintf("%s; offloading the %d of %d layers that the VRAM budget %s holds",
		f.Reason, n, f.Layers, bytesize.Format(rec.VRAMBudgetBytes))
}
