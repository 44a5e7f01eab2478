package hardware

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/mdsa-go/mdsa/internal/bytesize"
)

// GPULayersAll is the GPULayers value that offloads every layer (the
// convention of engine.gpu_layers and llamacpp.Options.GPULayers).
const GPULayersAll = -1

// QuantWalk is the order in which Recommend tries quantizations, best
// quality first.
var QuantWalk = []string{"Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q4_0", "Q3_K_M", "Q3_K_S", "Q2_K"}

// bitsPerWeight is the approximate size of a GGUF file per parameter, in
// bits, for each llama.cpp quantization: the block format's bits (with its
// scales) plus, for the K-quant recipes (_S/_M/_L, Q2_K), the share of
// tensors that llama.cpp's quantize keeps at a higher precision. Real files
// vary by about ±10% with the architecture; small models with large
// vocabularies (whose embeddings stay at higher precision) can be larger
// still, which is why the catalog's real sizes take precedence. Values err
// on the large side, so that "fits" means fits.
var bitsPerWeight = map[string]float64{
	"F32":    32,
	"F16":    16,
	"BF16":   16,
	"Q8_0":   8.5,
	"Q6_K":   6.6,
	"Q5_1":   6.05,
	"Q5_K_M": 5.7,
	"Q5_K_S": 5.55,
	"Q5_0":   5.55,
	"Q4_1":   5.1,
	"Q4_K_M": 4.9,
	"Q4_K_S": 4.65,
	"Q4_0":   4.6,
	"IQ4_NL": 4.6,
	"IQ4_XS": 4.3,
	"Q3_K_L": 4.3,
	"Q3_K_M": 3.95,
	"Q3_K_S": 3.65,
	"Q2_K":   3.35,
}

// BitsPerWeight returns the approximate bits per parameter of a
// quantization (case-insensitive), and false when it is not in the table.
func BitsPerWeight(quant string) (float64, bool) {
	b, ok := bitsPerWeight[strings.ToUpper(quant)]
	return b, ok
}

// Defaults of RecommendOptions.
const (
	// DefaultContextSize is the context budgeted for when neither the
	// options nor the model give one, and the cap on a model's trained
	// context (llama.cpp allocates the KV cache for the whole context).
	DefaultContextSize = 4096
	// MinReserveBytes is the least RAM kept back for the OS, the host and
	// the plugins; the default reserve is the larger of this and 10% of
	// the available RAM.
	MinReserveBytes = 1 << 30
	// MinVRAMReserveBytes is the least VRAM kept back per GPU for the
	// driver context and compute buffers; the default is this plus 2% of
	// the GPU's total.
	MinVRAMReserveBytes = 512 << 20
	// BaseOverheadBytes is the runtime overhead counted for every model
	// (compute buffers, logits, the output layer's scratch), to which 5% of
	// the weights is added.
	BaseOverheadBytes = 256 << 20
)

// CatalogModel is the part of a catalog entry that Recommend needs.
type CatalogModel struct {
	// Name identifies the model.
	Name string
	// Params is the parameter count; 0 = unknown.
	Params int64
	// ContextLength is the trained context length in tokens; 0 = unknown.
	ContextLength int
	// Layers is the number of transformer blocks; 0 = estimated from the
	// parameter count.
	Layers int
	// KVBytesPerToken is the f16 KV cache per token of context
	// (2 × layers × kv_heads × head_dim × 2 bytes); 0 = estimated.
	KVBytesPerToken int64
	// Variants maps a quantization name (Q4_K_M ...) to its file size in
	// bytes, 0 when unknown. Empty means every quantization of QuantWalk,
	// sized from Params.
	Variants map[string]int64
}

// RecommendOptions tune Recommend. The zero value uses the defaults.
type RecommendOptions struct {
	// ContextSize is the context per sequence that the KV cache is
	// budgeted for; 0 = the model's ContextLength, at most
	// DefaultContextSize.
	ContextSize int
	// Parallel is the number of sequences served at once (one KV cache
	// each); 0 = 1.
	Parallel int
	// ReserveBytes is the RAM kept free; 0 = the larger of MinReserveBytes
	// and 10% of the available RAM; negative = none.
	ReserveBytes int64
	// VRAMReserveBytes is the VRAM kept free per GPU; 0 =
	// MinVRAMReserveBytes + 2% of the GPU's total; negative = none.
	VRAMReserveBytes int64
	// MaxThreads caps Threads; 0 = no cap besides cores and CPU quota.
	MaxThreads int
	// CPUOnly ignores the GPUs.
	CPUOnly bool
}

// Recommendation is what Recommend suggests for this machine.
type Recommendation struct {
	// MemoryBudgetBytes is the RAM models may use: available RAM minus the
	// reserve.
	MemoryBudgetBytes int64 `json:"memory_budget_bytes"`
	// VRAMBudgetBytes is the VRAM models may use on the chosen GPUs: free
	// VRAM minus the reserve, summed (llama.cpp splits layers across GPUs).
	VRAMBudgetBytes int64 `json:"vram_budget_bytes"`
	// GPUVendor is the vendor of the GPUs chosen, "" without GPU.
	GPUVendor string `json:"gpu_vendor,omitempty"`
	// GPUs lists the chosen GPUs' indices: those of the vendor with the
	// most usable VRAM (one back-end serves a model).
	GPUs []int `json:"gpus"`
	// Threads is the number of CPU threads for decoding: physical cores
	// (hyper-threads do not speed up the memory-bound decode), capped by
	// the cgroup CPU quota and MaxThreads.
	Threads int `json:"threads"`
	// Models has one entry per catalog model, in catalog order.
	Models []ModelFit `json:"models"`
}

// Offload values of ModelFit.
const (
	OffloadAll     = "all"
	OffloadPartial = "partial"
	OffloadNone    = "none"
)

// ModelFit is the recommendation for one catalog model.
type ModelFit struct {
	Model string `json:"model"`
	// Quant is the chosen quantization, "" when nothing fits.
	Quant string `json:"quant"`
	// Fits is true when Quant was chosen.
	Fits bool `json:"fits"`
	// WeightsBytes, KVCacheBytes, OverheadBytes and NeededBytes (their sum)
	// describe the chosen quantization, or the smallest one when nothing
	// fits.
	WeightsBytes int64 `json:"weights_bytes"`
	// WeightsEstimated is true when WeightsBytes was computed from the
	// parameter count rather than given by the catalog.
	WeightsEstimated bool  `json:"weights_estimated"`
	KVCacheBytes     int64 `json:"kv_cache_bytes"`
	OverheadBytes    int64 `json:"overhead_bytes"`
	NeededBytes      int64 `json:"needed_bytes"`
	// AvailableBytes is what NeededBytes was held against: VRAM budget for
	// a full offload, RAM budget plus VRAM budget otherwise.
	AvailableBytes int64 `json:"available_bytes"`
	// ContextSize and Parallel are what the KV cache was budgeted for.
	ContextSize int `json:"context_size"`
	Parallel    int `json:"parallel"`
	// Layers is the model's block count (LayersEstimated when guessed from
	// the parameter count).
	Layers          int  `json:"layers"`
	LayersEstimated bool `json:"layers_estimated"`
	// Offload is OffloadAll, OffloadPartial or OffloadNone; GPULayers is
	// the matching engine.gpu_layers (GPULayersAll, a count, or 0) and
	// GPUFraction the share of the model on the GPU.
	Offload     string  `json:"offload"`
	GPULayers   int     `json:"gpu_layers"`
	GPUFraction float64 `json:"gpu_fraction"`
	// Reason explains the choice, or why nothing fits.
	Reason string `json:"reason"`
	// Candidates lists every quantization considered, in walk order.
	Candidates []QuantFit `json:"candidates"`
}

// QuantFit is one quantization Recommend considered.
type QuantFit struct {
	Quant string `json:"quant"`
	// WeightsBytes is 0 when neither the catalog nor the parameter count
	// gives a size.
	WeightsBytes     int64 `json:"weights_bytes"`
	WeightsEstimated bool  `json:"weights_estimated"`
	NeededBytes      int64 `json:"needed_bytes"`
	// FitsVRAM: entirely on the GPUs; Fits: on GPUs and RAM together (or
	// RAM alone without GPU).
	FitsVRAM bool `json:"fits_vram"`
	Fits     bool `json:"fits"`
}

// EstimateLayers guesses a transformer's block count from its parameter
// count, after common open models (Qwen2.5, Llama 3.x, Phi-3, Mistral).
func EstimateLayers(params int64) int {
	b := float64(params) / 1e9
	switch {
	case b <= 0:
		return 0
	case b < 1:
		return 24
	case b < 2:
		return 28
	case b < 10:
		return 32
	case b < 20:
		return 48
	case b < 40:
		return 64
	case b < 90:
		return 80
	default:
		return 96
	}
}

// EstimateKVBytes is the f16 KV cache of a model with params parameters
// and layers blocks for ctx tokens × parallel sequences:
//
//	n_embd = sqrt(params / (12 × layers))   (a block holds about 12 × n_embd² weights)
//	kv_dim = n_embd / 4                     (grouped-query attention, ≥ 4 query heads per KV head)
//	KV     = 2 (K and V) × layers × ctx × parallel × kv_dim × 2 bytes
//
// Models without grouped-query attention (Llama 2, Phi-3 mini) need about
// four times more; give CatalogModel.KVBytesPerToken for those.
func EstimateKVBytes(params int64, layers, ctx, parallel int) int64 {
	if params <= 0 || layers <= 0 || ctx <= 0 {
		return 0
	}
	parallel = max(parallel, 1)
	nEmbd := math.Sqrt(float64(params) / (12 * float64(layers)))
	kv := 2 * float64(layers) * float64(ctx) * float64(parallel) * (nEmbd / 4) * 2
	return satInt64(kv)
}

// EstimateWeightsBytes is params × bits-per-weight(quant) / 8, and false
// when the quantization is not in the table.
func EstimateWeightsBytes(params int64, quant string) (int64, bool) {
	bpw, ok := BitsPerWeight(quant)
	if !ok || params <= 0 {
		return 0, false
	}
	return satInt64(float64(params) * bpw / 8), true
}

func satInt64(f float64) int64 {
	if f >= math.MaxInt64/2 || math.IsNaN(f) {
		return math.MaxInt64 / 2
	}
	if f < 0 {
		return 0
	}
	return int64(math.Ceil(f))
}

// Recommend turns detected hardware into settings for each catalog model.
//
// A quantization needs weights + KV cache + overhead bytes (weights from
// the catalog, else EstimateWeightsBytes; KV cache from KVBytesPerToken,
// else EstimateKVBytes; overhead BaseOverheadBytes + 5% of the weights).
// Candidates are the catalog's variants in QuantWalk order (then any
// others, largest first), or all of QuantWalk when the catalog gives only a
// parameter count. The choice is the first candidate of Q4_0 quality or
// better that fits entirely in the VRAM budget (all layers offloaded);
// failing that, the first that fits in VRAM and RAM together, with the
// share of layers that fits offloaded (none without GPU); failing that,
// nothing, and Reason says how much the smallest candidate needs and how
// much there is.
func Recommend(info Info, catalog []CatalogModel, opts RecommendOptions) Recommendation {
	rec := Recommendation{GPUs: []int{}, Models: []ModelFit{}}

	avail := info.Memory.AvailableBytes
	reserve := opts.ReserveBytes
	if reserve == 0 {
		reserve = max(MinReserveBytes, avail/10)
	}
	rec.MemoryBudgetBytes = max(avail-max(reserve, 0), 0)

	if !opts.CPUOnly {
		rec.GPUVendor, rec.GPUs, rec.VRAMBudgetBytes = chooseGPUs(info.GPUs, opts.VRAMReserveBytes)
	}

	rec.Threads = recommendThreads(info.CPU, opts.MaxThreads)

	for _, m := range catalog {
		rec.Models = append(rec.Models, fitModel(m, rec.MemoryBudgetBytes, rec.VRAMBudgetBytes, opts))
	}
	return rec
}

func recommendThreads(c CPU, maxThreads int) int {
	t := c.Cores
	if t <= 0 {
		t = c.Threads
	}
	if c.QuotaCPUs > 0 {
		t = min(t, max(int(c.QuotaCPUs), 1))
	}
	if maxThreads > 0 {
		t = min(t, maxThreads)
	}
	return max(t, 1)
}

// chooseGPUs picks the vendor whose GPUs have the most usable VRAM and
// returns its GPUs and their summed budget.
func chooseGPUs(gpus []GPU, reserve int64) (vendor string, idx []int, budget int64) {
	type group struct {
		idx    []int
		budget int64
	}
	groups := map[string]*group{}
	for _, g := range gpus {
		if g.VRAMTotalBytes <= 0 {
			continue
		}
		r := reserve
		if r == 0 {
			r = MinVRAMReserveBytes + g.VRAMTotalBytes/50
		}
		b := max(g.VRAMFreeBytes-max(r, 0), 0)
		if b == 0 {
			continue
		}
		gr := groups[g.Vendor]
		if gr == nil {
			gr = &group{}
			groups[g.Vendor] = gr
		}
		gr.idx = append(gr.idx, g.Index)
		gr.budget += b
	}
	vendors := make([]string, 0, len(groups))
	for v := range groups {
		vendors = append(vendors, v)
	}
	slices.Sort(vendors)
	idx = []int{}
	for _, v := range vendors {
		if groups[v].budget > budget {
			vendor, idx, budget = v, groups[v].idx, groups[v].budget
		}
	}
	return vendor, idx, budget
}

// candidateQuants orders the quantizations to try for m.
func candidateQuants(m CatalogModel) (quants []string, sizes map[string]int64) {
	sizes = map[string]int64{}
	for q, s := range m.Variants {
		sizes[strings.ToUpper(q)] = s
	}
	if len(sizes) == 0 {
		if m.Params <= 0 {
			return nil, sizes
		}
		return slices.Clone(QuantWalk), sizes
	}
	for _, q := range QuantWalk {
		if _, ok := sizes[q]; ok {
			quants = append(quants, q)
		}
	}
	var extra []string
	for q := range sizes {
		if !slices.Contains(QuantWalk, q) {
			extra = append(extra, q)
		}
	}
	// Others by size, largest first; unknown sizes by bits per weight.
	key := func(q string) float64 {
		if s := sizes[q]; s > 0 {
			return float64(s)
		}
		if b, ok := BitsPerWeight(q); ok && m.Params > 0 {
			return float64(m.Params) * b / 8
		}
		return 0
	}
	slices.SortFunc(extra, func(a, b string) int {
		ka, kb := key(a), key(b)
		switch {
		case ka > kb:
			return -1
		case ka < kb:
			return 1
		}
		return strings.Compare(a, b)
	})
	return append(quants, extra...), sizes
}

// q4Floor reports whether q is of Q4_0 quality or better, the floor for
// preferring a full offload over a larger partial one.
func q4Floor(q string) bool {
	if i := slices.Index(QuantWalk, q); i >= 0 {
		return i <= slices.Index(QuantWalk, "Q4_0")
	}
	b, ok := BitsPerWeight(q)
	return ok && b >= 4.5
}

func fitModel(m CatalogModel, ramBudget, vramBudget int64, opts RecommendOptions) ModelFit {
	fit := ModelFit{Model: m.Name, Offload: OffloadNone, Candidates: []QuantFit{}}
	ctx := opts.ContextSize
	if ctx <= 0 {
		ctx = m.ContextLength
		if ctx <= 0 || ctx > DefaultContextSize {
			ctx = DefaultContextSize
		}
	}
	fit.ContextSize = ctx
	fit.Parallel = max(opts.Parallel, 1)

	quants, sizes := candidateQuants(m)
	if len(quants) == 0 {
		fit.Reason = "the catalog gives neither variants with sizes nor a parameter count: cannot estimate its memory"
		return fit
	}

	type cand struct {
		QuantFit
		kv, overhead int64
		params       int64
	}
	var cands []cand
	for _, q := range quants {
		c := cand{QuantFit: QuantFit{Quant: q, WeightsBytes: sizes[q]}}
		if c.WeightsBytes <= 0 {
			if w, ok := EstimateWeightsBytes(m.Params, q); ok {
				c.WeightsBytes, c.WeightsEstimated = w, true
			}
		}
		if c.WeightsBytes > 0 {
			c.params = m.Params
			if c.params <= 0 {
				// Back out the parameter count from the file size.
				bpw, ok := BitsPerWeight(q)
				if !ok {
					bpw = 4.5
				}
				c.params = satInt64(float64(c.WeightsBytes) * 8 / bpw)
			}
			layers := m.Layers
			if layers <= 0 {
				layers = EstimateLayers(c.params)
			}
			if m.KVBytesPerToken > 0 {
				c.kv = satInt64(float64(m.KVBytesPerToken) * float64(ctx) * float64(fit.Parallel))
			} else {
				c.kv = EstimateKVBytes(c.params, layers, ctx, fit.Parallel)
			}
			c.overhead = BaseOverheadBytes + c.WeightsBytes/20
			c.NeededBytes = c.WeightsBytes + c.kv + c.overhead
			c.FitsVRAM = vramBudget > 0 && c.NeededBytes <= vramBudget
			c.Fits = c.NeededBytes <= ramBudget+vramBudget
		}
		cands = append(cands, c)
		fit.Candidates = append(fit.Candidates, c.QuantFit)
	}

	chosen := -1
	for i, c := range cands {
		if c.FitsVRAM && q4Floor(c.Quant) {
			chosen = i
			break
		}
	}
	if chosen < 0 {
		for i, c := range cands {
			if c.Fits {
				chosen = i
				break
			}
		}
	}

	describe := func(c cand) {
		fit.WeightsBytes, fit.WeightsEstimated = c.WeightsBytes, c.WeightsEstimated
		fit.KVCacheBytes, fit.OverheadBytes, fit.NeededBytes = c.kv, c.overhead, c.NeededBytes
		fit.Layers, fit.LayersEstimated = m.Layers, false
		if fit.Layers <= 0 {
			fit.Layers, fit.LayersEstimated = EstimateLayers(c.params), true
		}
	}

	if chosen < 0 {
		fit.AvailableBytes = ramBudget + vramBudget
		smallest := -1
		for i, c := range cands {
			if c.NeededBytes > 0 && (smallest < 0 || c.NeededBytes < cands[smallest].NeededBytes) {
				smallest = i
			}
		}
		if smallest < 0 {
			fit.Reason = fmt.Sprintf("no size known for its variants (%s) and no parameter count to estimate one", strings.Join(quants, ", "))
			return fit
		}
		c := cands[smallest]
		describe(c)
		where := fmt.Sprintf("RAM budget %s", bytesize.Format(ramBudget))
		if vramBudget > 0 {
			where += fmt.Sprintf(" + VRAM budget %s", bytesize.Format(vramBudget))
		}
		fit.Reason = fmt.Sprintf("nothing fits: the smallest, %s, needs %s (weights %s + KV cache %s for %d×%d tokens + overhead %s) but only %s is available (%s)",
			c.Quant, bytesize.Format(c.NeededBytes), bytesize.Format(c.WeightsBytes), bytesize.Format(c.kv), fit.Parallel, ctx,
			bytesize.Format(c.overhead), bytesize.Format(fit.AvailableBytes), where)
		return fit
	}

	c := cands[chosen]
	describe(c)
	fit.Quant, fit.Fits = c.Quant, true
	switch {
	case c.FitsVRAM:
		fit.Offload, fit.GPULayers, fit.GPUFraction = OffloadAll, GPULayersAll, 1
		fit.AvailableBytes = vramBudget
		fit.Reason = fmt.Sprintf("%s needs %s and fits in the VRAM budget %s: all layers on the GPU",
			c.Quant, bytesize.Format(c.NeededBytes), bytesize.Format(vramBudget))
	case vramBudget > 0:
		fit.AvailableBytes = ramBudget + vramBudget
		frac := float64(vramBudget) / float64(c.NeededBytes)
		fit.GPULayers = int(math.Floor(frac * float64(fit.Layers)))
		if fit.GPULayers >= fit.Layers {
			fit.GPULayers = fit.Layers - 1
		}
		fit.GPULayers = max(fit.GPULayers, 0)
		if fit.GPULayers > 0 {
			fit.Offload = OffloadPartial
			fit.GPUFraction = math.Round(float64(fit.GPULayers)/float64(fit.Layers)*1000) / 1000
		}
		fit.Reason = fmt.Sprintf("%s needs %s: more than the VRAM budget %s, within VRAM + RAM %s: %d of %d layers on the GPU",
			c.Quant, bytesize.Format(c.NeededBytes), bytesize.Format(vramBudget), bytesize.Format(fit.AvailableBytes), fit.GPULayers, fit.Layers)
	default:
		fit.AvailableBytes = ramBudget
		fit.Reason = fmt.Sprintf("%s needs %s and fits in the RAM budget %s (no GPU)",
			c.Quant, bytesize.Format(c.NeededBytes), bytesize.Format(ramBudget))
	}
	if chosen > 0 {
		var larger []string
		for _, p := range cands[:chosen] {
			larger = append(larger, p.Quant)
		}
		fit.Reason += fmt.Sprintf("; larger %s do not fit", strings.Join(larger, ", "))
		if c.FitsVRAM {
			fit.Reason += " entirely in VRAM"
		}
	}
	if fit.LayersEstimated && fit.Offload == OffloadPartial {
		fit.Reason += " (layer count estimated from the parameter count)"
	}
	return fit
}
