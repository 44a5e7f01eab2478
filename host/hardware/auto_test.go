package hardware

import (
	"math"
	"strings"
	"testing"
)

// fileModel describes one model file as AutoGPULayers expects it: a single
// variant with its size, the layer count and the KV cache per token.
func fileModel(name string, params int64, layers int, quant string, size int64) CatalogModel {
	return CatalogModel{Name: name, Params: params, Layers: layers, ContextLength: 32768,
		KVBytesPerToken: 2 * int64(layers) * 1024 * 2, Variants: map[string]int64{quant: size}}
}

func TestAutoGPULayers(t *testing.T) {
	ram := cpuOnly(64 * gib)
	m7 := fileModel("7b", 7e9, 32, "Q4_K_M", 4370*mib)
	opts := RecommendOptions{ContextSize: 2048, Parallel: 2}

	t.Run("no GPU", func(t *testing.T) {
		n, why := AutoGPULayers(ram, m7, opts)
		if n != 0 || why != "no GPU detected" {
			t.Errorf("got %d (%s), want 0", n, why)
		}
	})
	t.Run("GPU without free VRAM", func(t *testing.T) {
		n, why := AutoGPULayers(withGPUs(ram, nvidia(0, 8*gib, 256*mib)), m7, opts)
		if n != 0 || !strings.Contains(why, "no GPU with free VRAM") {
			t.Errorf("got %d (%s), want 0", n, why)
		}
	})
	t.Run("CPU only", func(t *testing.T) {
		o := opts
		o.CPUOnly = true
		if n, _ := AutoGPULayers(withGPUs(ram, nvidia(0, 80*gib, 79*gib)), m7, o); n != 0 {
			t.Errorf("got %d, want 0", n)
		}
	})
	t.Run("big GPU: all layers", func(t *testing.T) {
		n, why := AutoGPULayers(withGPUs(ram, nvidia(0, 80*gib, 79*gib)), m7, opts)
		if n != GPULayersAll || !strings.Contains(why, "all layers on the GPU") {
			t.Errorf("got %d (%s), want %d", n, why, GPULayersAll)
		}
	})
	t.Run("small GPU: the share that fits", func(t *testing.T) {
		info := withGPUs(ram, nvidia(0, 4*gib, 4*gib))
		n, why := AutoGPULayers(info, m7, opts)
		f := Recommend(info, []CatalogModel{m7}, opts).Models[0]
		budget := 4*gib - MinVRAMReserveBytes - 4*gib/50
		want := int(math.Floor(float64(budget) / float64(f.NeededBytes) * 32))
		if n != want || n <= 0 || n >= 32 || !strings.Contains(why, "of 32 layers on the GPU") {
			t.Errorf("got %d (%s), want %d of 32", n, why, want)
		}
	})
	t.Run("fits nowhere: offload what VRAM holds", func(t *testing.T) {
		info := withGPUs(cpuOnly(2*gib), nvidia(0, 4*gib, 4*gib))
		m70 := fileModel("70b", 70e9, 80, "Q4_K_M", 40*gib)
		n, why := AutoGPULayers(info, m70, opts)
		if n <= 0 || n >= 80 || !strings.Contains(why, "nothing fits") || !strings.Contains(why, "of 80 layers that the VRAM budget") {
			t.Errorf("got %d (%s), want a share of 80", n, why)
		}
	})
	t.Run("AMD GPU", func(t *testing.T) {
		amd := GPU{Index: 0, Vendor: VendorAMD, Name: "rx", VRAMTotalBytes: 24 * gib, VRAMFreeBytes: 23 * gib, Source: SourceAMDGPUSysf}
		if n, _ := AutoGPULayers(withGPUs(ram, amd), m7, opts); n != GPULayersAll {
			t.Errorf("got %d, want all", n)
		}
	})
}

func TestOffloadGPUs(t *testing.T) {
	amd := GPU{Index: 0, Vendor: VendorAMD, Name: "rx", VRAMTotalBytes: 24 * gib, VRAMFreeBytes: 23 * gib}
	nv := nvidia(0, 24*gib, 23*gib)
	gpus := []GPU{nv, amd}
	cases := []struct {
		backends []string
		vendors  string
		reason   string
	}{
		{nil, "", "CPU-only llama.cpp build"},
		{[]string{BackendCUDA}, "nvidia", "NVIDIA GPUs only"},
		{[]string{BackendVulkan}, "nvidia amd", ""},
		{[]string{BackendCUDA, BackendVulkan}, "nvidia amd", ""},
	}
	for _, c := range cases {
		got, why := OffloadGPUs(gpus, c.backends)
		var vendors []string
		for _, g := range got {
			vendors = append(vendors, g.Vendor)
		}
		if strings.Join(vendors, " ") != c.vendors || (c.reason == "") != (why == "") || !strings.Contains(why, c.reason) {
			t.Errorf("%v: got %v (%q), want %q (%q)", c.backends, vendors, why, c.vendors, c.reason)
		}
	}
	if got, why := OffloadGPUs(nil, nil); len(got) != 0 || why != "" {
		t.Errorf("no GPUs: %v %q", got, why)
	}
}

// TestRecommendFromCgroupFixture: engine.threads = 0 and gpu_layers =
// "auto" on a machine snapshot with 8 cores, a cgroup v2 quota of 4 CPUs
// and one 24 GB NVIDIA GPU.
func TestRecommendFromCgroupFixture(t *testing.T) {
	info := detect(t, Options{NvidiaSMI: smiFile(t, "one-24gb.txt")}, "base", "cgroup-v2")
	if info.CPU.Cores != 8 || info.CPU.QuotaCPUs != 4 {
		t.Fatalf("fixture: cores %d quota %v", info.CPU.Cores, info.CPU.QuotaCPUs)
	}
	if r := Recommend(info, nil, RecommendOptions{}); r.Threads != 4 {
		t.Errorf("threads = %d, want 4 (8 physical cores capped by the 4-CPU quota)", r.Threads)
	}
	m := fileModel("qwen2.5-0.5b-instruct", 494e6, 24, "Q4_K_M", 398*mib)
	if n, why := AutoGPULayers(info, m, RecommendOptions{ContextSize: 2048, Parallel: 2}); n != GPULayersAll {
		t.Errorf("gpu layers = %d (%s), want all", n, why)
	}
}
