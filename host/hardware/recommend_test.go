package hardware

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/internal/bytesize"
)

func cpuOnly(avail int64) Info {
	return Info{CPU: CPU{Cores: 8, Threads: 16}, Memory: Memory{TotalBytes: avail * 2, AvailableBytes: avail}}
}

func withGPUs(info Info, gpus ...GPU) Info {
	info.GPUs = gpus
	return info
}

func nvidia(index int, total, free int64) GPU {
	return GPU{Index: index, Vendor: VendorNVIDIA, Name: "test", VRAMTotalBytes: total, VRAMFreeBytes: free, Source: SourceNvidiaSMI}
}

func TestRecommendQuantWalkPicksLargestThatFits(t *testing.T) {
	m := CatalogModel{Name: "m", Params: 12e9, ContextLength: 8192, KVBytesPerToken: 128 * kib,
		Variants: map[string]int64{"Q8_0": 12 * gib, "Q6_K": 8 * gib, "q4_k_m": 6 * gib}}
	r := Recommend(cpuOnly(10*gib), []CatalogModel{m}, RecommendOptions{ReserveBytes: -1})
	if r.MemoryBudgetBytes != 10*gib {
		t.Fatalf("budget = %d", r.MemoryBudgetBytes)
	}
	f := r.Models[0]
	if f.Quant != "Q6_K" || !f.Fits || f.Offload != OffloadNone || f.GPULayers != 0 {
		t.Fatalf("fit = %+v", f)
	}
	// weights + KV (128 KiB × 4096 tokens) + overhead (256 MiB + 5%).
	wantKV := 128 * kib * DefaultContextSize
	if f.WeightsBytes != 8*gib || f.WeightsEstimated || f.KVCacheBytes != wantKV ||
		f.OverheadBytes != BaseOverheadBytes+8*gib/20 || f.NeededBytes != 8*gib+wantKV+BaseOverheadBytes+8*gib/20 {
		t.Errorf("sizes = %+v", f)
	}
	if got := candidateNames(f); !slices.Equal(got, []string{"Q8_0", "Q6_K", "Q4_K_M"}) {
		t.Errorf("candidates = %v, want walk order of the offered variants", got)
	}
	if !strings.Contains(f.Reason, "larger Q8_0 do not fit") {
		t.Errorf("reason = %q", f.Reason)
	}
	// A bigger machine takes Q8_0, a smaller one Q4_K_M.
	if q := Recommend(cpuOnly(20*gib), []CatalogModel{m}, RecommendOptions{ReserveBytes: -1}).Models[0].Quant; q != "Q8_0" {
		t.Errorf("20 GiB: %s", q)
	}
	if q := Recommend(cpuOnly(8*gib), []CatalogModel{m}, RecommendOptions{ReserveBytes: -1}).Models[0].Quant; q != "Q4_K_M" {
		t.Errorf("8 GiB: %s", q)
	}
}

func candidateNames(f ModelFit) []string {
	var out []string
	for _, c := range f.Candidates {
		out = append(out, c.Quant)
	}
	return out
}

func TestRecommendNothingFits(t *testing.T) {
	m := CatalogModel{Name: "big", Params: 7e9}
	r := Recommend(cpuOnly(2*gib), []CatalogModel{m}, RecommendOptions{})
	if r.MemoryBudgetBytes != gib {
		t.Fatalf("budget = %d, want 2 GiB minus the 1 GiB minimum reserve", r.MemoryBudgetBytes)
	}
	f := r.Models[0]
	if f.Fits || f.Quant != "" {
		t.Fatalf("fit = %+v", f)
	}
	if len(f.Candidates) != len(QuantWalk) {
		t.Errorf("params only: want every quant of the walk, got %v", candidateNames(f))
	}
	last := f.Candidates[len(f.Candidates)-1]
	if last.Quant != "Q2_K" || f.NeededBytes != last.NeededBytes || !f.WeightsEstimated {
		t.Errorf("should describe the smallest candidate: %+v", f)
	}
	for _, want := range []string{"nothing fits", "Q2_K", bytesize.Format(f.NeededBytes), "only " + bytesize.Format(gib), "RAM budget"} {
		if !strings.Contains(f.Reason, want) {
			t.Errorf("reason %q lacks %q", f.Reason, want)
		}
	}
}

func TestRecommendGPULayers(t *testing.T) {
	ram := cpuOnly(64 * gib)
	m7 := CatalogModel{Name: "7b", Params: 7e9, Layers: 32, Variants: map[string]int64{"Q4_K_M": 4370 * mib}}
	m70 := CatalogModel{Name: "70b", Params: 70e9, Layers: 80, Variants: map[string]int64{"Q4_K_M": 40 * gib}}

	t.Run("all", func(t *testing.T) {
		r := Recommend(withGPUs(ram, nvidia(0, 24*gib, 23*gib)), []CatalogModel{m7}, RecommendOptions{})
		f := r.Models[0]
		if f.Offload != OffloadAll || f.GPULayers != GPULayersAll || f.GPUFraction != 1 || f.AvailableBytes != r.VRAMBudgetBytes {
			t.Errorf("fit = %+v", f)
		}
		// 23 GiB free minus 512 MiB minus 2% of 24 GiB.
		if want := 23*gib - MinVRAMReserveBytes - 24*gib/50; r.VRAMBudgetBytes != want {
			t.Errorf("vram budget = %d, want %d", r.VRAMBudgetBytes, want)
		}
		if r.GPUVendor != VendorNVIDIA || !slices.Equal(r.GPUs, []int{0}) {
			t.Errorf("gpus = %s %v", r.GPUVendor, r.GPUs)
		}
	})
	t.Run("partial", func(t *testing.T) {
		r := Recommend(withGPUs(ram, nvidia(0, 24*gib, 23*gib)), []CatalogModel{m70}, RecommendOptions{})
		f := r.Models[0]
		want := int(math.Floor(float64(r.VRAMBudgetBytes) / float64(f.NeededBytes) * 80))
		if f.Offload != OffloadPartial || f.GPULayers != want || f.GPULayers <= 0 || f.GPULayers >= 80 {
			t.Errorf("gpu layers = %d (%s), want %d: %+v", f.GPULayers, f.Offload, want, f)
		}
		if f.LayersEstimated || f.Layers != 80 {
			t.Errorf("layers = %d estimated %v", f.Layers, f.LayersEstimated)
		}
		if !strings.Contains(f.Reason, "of 80 layers on the GPU") {
			t.Errorf("reason = %q", f.Reason)
		}
	})
	t.Run("none", func(t *testing.T) {
		for name, info := range map[string]Info{"no gpu": ram, "cpu only": withGPUs(ram, nvidia(0, 24*gib, 23*gib))} {
			r := Recommend(info, []CatalogModel{m7}, RecommendOptions{CPUOnly: name == "cpu only"})
			if f := r.Models[0]; f.Offload != OffloadNone || f.GPULayers != 0 || r.VRAMBudgetBytes != 0 || len(r.GPUs) != 0 {
				t.Errorf("%s: %+v", name, f)
			}
		}
	})
	t.Run("full GPU preferred to a larger partial", func(t *testing.T) {
		m := CatalogModel{Name: "30b", Params: 30e9}
		r := Recommend(withGPUs(ram, nvidia(0, 24*gib, 23*gib)), []CatalogModel{m}, RecommendOptions{})
		f := r.Models[0]
		if f.Candidates[0].Quant != "Q8_0" || !f.Candidates[0].Fits || f.Candidates[0].FitsVRAM {
			t.Fatalf("test premise: Q8_0 should fit in VRAM+RAM only: %+v", f.Candidates[0])
		}
		if f.Offload != OffloadAll || !strings.Contains(f.Reason, "entirely in VRAM") {
			t.Errorf("fit = %s %s: %s", f.Quant, f.Offload, f.Reason)
		}
		if !q4Floor(f.Quant) {
			t.Errorf("chose %s, below Q4_0", f.Quant)
		}
	})
	t.Run("two GPUs add up", func(t *testing.T) {
		info := detect(t, Options{NvidiaSMI: smiFile(t, "two-80gb.txt")}, "base")
		m := CatalogModel{Name: "70b", Params: 70e9, Layers: 80}
		r := Recommend(info, []CatalogModel{m}, RecommendOptions{})
		if !slices.Equal(r.GPUs, []int{0, 1}) || r.VRAMBudgetBytes <= 81004*mib {
			t.Fatalf("gpus %v budget %s", r.GPUs, bytesize.Format(r.VRAMBudgetBytes))
		}
		if f := r.Models[0]; f.Quant != "Q8_0" || f.Offload != OffloadAll {
			t.Errorf("70B on 2×80 GB: %s %s (%s)", f.Quant, f.Offload, f.Reason)
		}
		one := detect(t, Options{NvidiaSMI: smiFile(t, "one-24gb.txt")}, "base")
		if f := Recommend(one, []CatalogModel{m}, RecommendOptions{}).Models[0]; f.Offload != OffloadPartial {
			t.Errorf("70B on one 24 GB GPU + 48 GiB RAM: %s %s (%s)", f.Quant, f.Offload, f.Reason)
		}
	})
}

func TestRecommendCatalogEdges(t *testing.T) {
	info := cpuOnly(64 * gib)
	r := Recommend(info, []CatalogModel{
		{Name: "nothing"},
		{Name: "no-sizes", Variants: map[string]int64{"Q4_K_M": 0, "Q8_0": 0}},
		{Name: "extras", Variants: map[string]int64{"IQ4_XS": 2 * gib, "F16": 8 * gib, "Q4_0": 3 * gib}},
		{Name: "params-fill", Params: 1e9, Variants: map[string]int64{"Q4_K_M": 0}},
	}, RecommendOptions{})
	if f := r.Models[0]; f.Fits || !strings.Contains(f.Reason, "neither variants") {
		t.Errorf("nothing: %+v", f)
	}
	if f := r.Models[1]; f.Fits || !strings.Contains(f.Reason, "no size known") {
		t.Errorf("no-sizes: %+v", f)
	}
	f := r.Models[2]
	if got := candidateNames(f); !slices.Equal(got, []string{"Q4_0", "F16", "IQ4_XS"}) {
		t.Errorf("extras order = %v, want walk first then others by size", got)
	}
	if f.Quant != "Q4_0" {
		t.Errorf("extras: chose %s", f.Quant)
	}
	f = r.Models[3]
	if w, _ := EstimateWeightsBytes(1e9, "Q4_K_M"); f.Quant != "Q4_K_M" || !f.WeightsEstimated || f.WeightsBytes != w {
		t.Errorf("params-fill: %+v", f)
	}
}

func TestRecommendContextAndParallel(t *testing.T) {
	m := CatalogModel{Name: "m", Params: 1e9, ContextLength: 32768, KVBytesPerToken: 32 * kib}
	info := cpuOnly(64 * gib)
	if f := Recommend(info, []CatalogModel{m}, RecommendOptions{}).Models[0]; f.ContextSize != DefaultContextSize || f.KVCacheBytes != 32*kib*DefaultContextSize {
		t.Errorf("default context: %d, kv %d", f.ContextSize, f.KVCacheBytes)
	}
	f := Recommend(info, []CatalogModel{m}, RecommendOptions{ContextSize: 2048, Parallel: 3}).Models[0]
	if f.ContextSize != 2048 || f.Parallel != 3 || f.KVCacheBytes != 32*kib*2048*3 {
		t.Errorf("context 2048 × 3: %+v", f)
	}
	m.ContextLength = 1024
	if f := Recommend(info, []CatalogModel{m}, RecommendOptions{}).Models[0]; f.ContextSize != 1024 {
		t.Errorf("short model context: %d", f.ContextSize)
	}
}

func TestRecommendThreadsAndGPUChoice(t *testing.T) {
	info := Info{CPU: CPU{Cores: 8, Threads: 16}}
	if r := Recommend(info, nil, RecommendOptions{}); r.Threads != 8 {
		t.Errorf("threads = %d, want physical cores", r.Threads)
	}
	if r := Recommend(info, nil, RecommendOptions{MaxThreads: 4}); r.Threads != 4 {
		t.Errorf("threads = %d, want MaxThreads", r.Threads)
	}
	info.CPU.QuotaCPUs = 0.5
	if r := Recommend(info, nil, RecommendOptions{}); r.Threads != 1 {
		t.Errorf("threads = %d, want at least 1", r.Threads)
	}
	mixed := withGPUs(cpuOnly(8*gib), nvidia(0, 8*gib, 8*gib),
		GPU{Index: 0, Vendor: VendorAMD, VRAMTotalBytes: 24 * gib, VRAMFreeBytes: 24 * gib})
	r := Recommend(mixed, nil, RecommendOptions{VRAMReserveBytes: -1})
	if r.GPUVendor != VendorAMD || r.VRAMBudgetBytes != 24*gib {
		t.Errorf("chose %s %d, want the AMD GPU with more VRAM", r.GPUVendor, r.VRAMBudgetBytes)
	}
}

func TestEstimates(t *testing.T) {
	if w, ok := EstimateWeightsBytes(1e9, "q8_0"); !ok || w != 1062500000 {
		t.Errorf("1B Q8_0 = %d %v, want 1e9 × 8.5 / 8", w, ok)
	}
	if _, ok := EstimateWeightsBytes(1e9, "Q9_X"); ok {
		t.Error("unknown quant estimated")
	}
	for i := 1; i < len(QuantWalk); i++ {
		if _, ok := BitsPerWeight(QuantWalk[i]); !ok {
			t.Errorf("%s has no bits-per-weight", QuantWalk[i])
		}
	}
	// Llama 3 8B: 32 layers, 8 KV heads × 128 = 1024 → 2×32×2048×1024×2 bytes.
	real := int64(2 * 32 * 2048 * 1024 * 2)
	if kv := EstimateKVBytes(8e9, 32, 2048, 1); kv < real/2 || kv > real*2 {
		t.Errorf("8B KV estimate %s, real %s", bytesize.Format(kv), bytesize.Format(real))
	}
	if EstimateKVBytes(0, 32, 2048, 1) != 0 || EstimateKVBytes(8e9, 0, 2048, 1) != 0 {
		t.Error("KV of an unknown model must be 0")
	}
	if EstimateLayers(0) != 0 || EstimateLayers(494e6) != 24 || EstimateLayers(70e9) != 80 {
		t.Error("EstimateLayers table")
	}
}

func TestParamsFromName(t *testing.T) {
	tests := map[string]int64{
		"qwen2.5-0.5b-instruct":   500e6,
		"Qwen2.5-1.5B-Instruct":   1500e6,
		"llama-3.2-3b":            3e9,
		"mistral-7b-v0.3":         7e9,
		"smollm-135m":             135e6,
		"mixtral-8x7b":            56e9,
		"synthetic":               0,
		"phi-3-mini":              0,
		"gemma-2-9b-it":           9e9,
		"model_70B_q4":            70e9,
		"v1.5b":                   0,
		"999999999999999999999b":  0,
		"qwen2.5-coder-14b-gguf":  14e9,
		"deepseek-r1-distill-32b": 32e9,
	}
	for name, want := range tests {
		if got := ParamsFromName(name); got != want {
			t.Errorf("ParamsFromName(%q) = %d, want %d", name, got, want)
		}
	}
}

func BenchmarkRecommend(b *testing.B) {
	info := withGPUs(cpuOnly(64*gib), nvidia(0, 24*gib, 23*gib))
	var cat []CatalogModel
	for _, p := range []int64{500e6, 1500e6, 7e9, 14e9, 32e9, 70e9} {
		cat = append(cat, CatalogModel{Name: "m", Params: p})
	}
	b.ReportAllocs()
	for b.Loop() {
		Recommend(info, cat, RecommendOptions{})
	}
}
