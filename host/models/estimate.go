package models

import (
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"strings"

	"golang.org/x/sys/cpu"

	"github.com/mdsa-go/mdsa/internal/bytesize"
)

// Defaults Estimate applies to zero-valued EstimateOptions fields. They
// match the llamacpp engine's own defaults so that an estimate describes
// what llamacpp.Open will allocate.
const (
	// DefaultEstimateContext caps the context of a model whose trained
	// context is larger (llamacpp.DefaultContextSize).
	DefaultEstimateContext = 4096
	// MaxPhysicalBatch is the largest physical batch (n_ubatch) the engine
	// uses.
	MaxPhysicalBatch = 512
	// contextPad is the granularity llama.cpp rounds a context up to.
	contextPad = 256
	// modelOverhead is a fixed allowance per model for llama.cpp's own
	// structures (tensor metadata, graph, threads' buffers).
	modelOverhead = 1 << 20
	// vocabOverhead is an allowance per vocabulary entry for the tokenizer's
	// tables (token text, scores, lookup maps).
	vocabOverhead = 128
)

// RepackPolicy says whether Estimate counts the copy of the weights that
// llama.cpp's CPU back-end makes in an interleaved layout.
type RepackPolicy uint8

// Repack policies.
const (
	// RepackAuto counts the copy when this machine's CPU has the
	// instructions llama.cpp repacks for (AVX2 on x86-64, the dot-product
	// extension on ARM64).
	RepackAuto RepackPolicy = iota
	// RepackAlways always counts it.
	RepackAlways
	// RepackNever never counts it (for example when the weights live on a
	// GPU).
	RepackNever
)

// EstimateOptions describe how a model will be run.
type EstimateOptions struct {
	// ContextSize is the number of tokens of each context (sequence). 0 means
	// the model's trained context, at most DefaultEstimateContext.
	ContextSize int
	// Parallel is the number of sequences the engine's one context holds,
	// each with a KV buffer of ContextSize cells (llamacpp.Options.Parallel).
	// 0 means 1.
	Parallel int
	// KVType is the element type of the KV cache: "f16" (the default and
	// what the llamacpp engine uses), "bf16", "f32", "q8_0", "q4_0", "q4_1",
	// "q5_0", "q5_1" or "iq4_nl".
	KVType string
	// BatchSize is the physical batch (llama.cpp's n_ubatch): tokens
	// computed at once. 0 means min(512, context), as the engine does.
	BatchSize int
	// Repack selects whether the repacked weight copy is counted.
	Repack RepackPolicy
}

// MemoryEstimate is the memory, in bytes, a model needs when loaded by
// llama.cpp on the CPU.
type MemoryEstimate struct {
	// Weights is the tensor data. llama.cpp maps the file, so these pages
	// are shared with the page cache; they are resident while in use.
	Weights int64 `json:"weights"`
	// Repack is llama.cpp's interleaved copy of the repackable weight
	// matrices (anonymous memory), 0 when not counted.
	Repack int64 `json:"repack"`
	// KVCache is the key/value cache of all contexts.
	KVCache int64 `json:"kv_cache"`
	// Compute is the part of the compute (activation) buffers of all
	// contexts that becomes resident, with each context's logits output
	// buffer and scratch memory.
	Compute int64 `json:"compute"`
	// ComputeReserved is what llama.cpp allocates for the compute buffers
	// (its "compute buffer size"), sized for a batch whose every token's
	// logits are computed. Not part of Total: the engine never runs such a
	// batch, so the excess is never touched.
	ComputeReserved int64 `json:"compute_reserved"`
	// Overhead is a fixed allowance plus the tokenizer's tables.
	Overhead int64 `json:"overhead"`
	// Total is the sum of the above.
	Total int64 `json:"total"`

	// The settings the estimate was computed for, after defaults.
	ContextSize int    `json:"context_size"` // tokens per context, as llama.cpp rounds it
	Parallel    int    `json:"parallel"`
	BatchSize   int    `json:"batch_size"`
	KVType      string `json:"kv_type"`
}

// kvTypeSize gives bytes per element as a fraction num/den.
var kvTypeSize = map[string][2]int64{
	"f32":    {4, 1},
	"f16":    {2, 1},
	"bf16":   {2, 1},
	"q8_0":   {34, 32},
	"q4_0":   {18, 32},
	"q4_1":   {20, 32},
	"q5_0":   {22, 32},
	"q5_1":   {24, 32},
	"iq4_nl": {18, 32},
}

// Estimate returns the memory the model described by meta occupies when run
// by the llamacpp engine (on the CPU) with opts: what becomes resident, not
// merely reserved. The formula, fitted to what the bundled llama.cpp
// allocates (its log lines "KV buffer size", "compute buffer size",
// "CPU_REPACK model buffer size") and to the resident memory measured after
// a prompt longer than one batch, for llama models of 0.2M to 100M
// parameters, 860- to 152K-token vocabularies and contexts of 512 to 8192
// tokens, is:
//
//	ctx      = ContextSize rounded up to a multiple of 256 (as llama.cpp does)
//	ubatch   = BatchSize (default min(512, ctx))
//	n_ff'    = n_ff × max(1, experts_used)
//	Weights  = the tensor data (Metadata.TensorBytes)
//	Repack   = Metadata.RepackBytes when counted (see RepackPolicy)
//	KVCache  = Parallel × n_layer × ctx × n_head_kv × (key_len + value_len) × sizeof(KVType)
//	           (0 for encoder-only models, which keep no cache)
//	layer    = 4 × ubatch × max(3·n_ff' + 4·n_embd, 5·n_embd + n_head_kv·key_len)
//	           + 2 × ctx × ubatch                       (activations and attention mask)
//	Compute  = max(layer, 4 × ubatch × 2·n_embd)
//	           + 8 × Parallel × n_vocab                 (logits of one token per sequence, output buffer)
//	           + 2 × ubatch × max(n_ff', n_embd)        (CPU work buffer allowance)
//	Overhead = 1 MiB + 128 × n_vocab                     (llama.cpp structures, tokenizer tables)
//	Total    = Weights + Repack + KVCache + Compute + Overhead
//
// llama.cpp reserves more than that: its compute buffer is sized for the
// worst batch, in which every token's logits are computed,
//
//	ComputeReserved = max(layer, 4 × ubatch × (n_vocab + 2·n_embd))
//
// which is what it logs as "compute buffer size" (to within 1%, or 20% over
// for narrow grouped-query models). The engine asks for the logits of one
// token per sequence, so the logits part of that buffer is allocated but
// never touched and does not become resident: for a 152K-token vocabulary
// that is 297 MiB per context that Total leaves out. The estimate assumes
// flash attention, which llama.cpp's "auto" setting enables on the CPU;
// without it the attention scores (n_head × ctx × ubatch floats) would
// dominate. It does not count the extra context the engine creates on the
// first Embed call, nor GPU memory.
func Estimate(meta Metadata, opts EstimateOptions) MemoryEstimate {
	ctx := opts.ContextSize
	if ctx <= 0 {
		ctx = meta.ContextLength
		if ctx <= 0 || ctx > DefaultEstimateContext {
			ctx = DefaultEstimateContext
		}
	}
	ctx = min(ctx, maxContext)
	ctx = (ctx + contextPad - 1) / contextPad * contextPad
	par := max(1, opts.Parallel)
	ub := opts.BatchSize
	if ub <= 0 {
		ub = min(MaxPhysicalBatch, ctx)
	}
	ub = min(ub, ctx)
	kvType := strings.ToLower(opts.KVType)
	if kvType == "" {
		kvType = "f16"
	}
	size, ok := kvTypeSize[kvType]
	if !ok {
		size = kvTypeSize["f16"]
	}

	est := MemoryEstimate{
		Weights:     meta.TensorBytes,
		ContextSize: ctx,
		Parallel:    par,
		BatchSize:   ub,
		KVType:      kvType,
	}
	if countRepack(opts.Repack) {
		est.Repack = meta.RepackBytes
	}

	// The arithmetic saturates at MaxInt64 rather than overflow: metadata
	// values are bounded by ReadMetadata, but their products need not fit.
	kW, vW := meta.KVWidth()
	if !meta.Encoder {
		perTok := mul(int64(kW+vW), size[0]) / size[1]
		est.KVCache = mul(int64(par), int64(meta.Layers), int64(ctx), perTok)
	}

	embd, vocab := int64(meta.EmbeddingLength), int64(meta.VocabSize)
	ff := mul(int64(meta.FeedForwardLength), int64(max(1, meta.ExpertsUsed)))
	u := int64(ub)
	// One context holds every sequence, each in a KV buffer of its own, with
	// one compute buffer.
	layer := add(mul(4, u, max(add(mul(3, ff), mul(4, embd)), add(mul(5, embd), int64(kW)))), mul(2, int64(ctx), u))
	est.Compute = add(max(layer, mul(8, u, embd)), mul(8, int64(par), vocab), mul(2, u, max(ff, embd)))
	est.ComputeReserved = max(layer, mul(4, u, add(vocab, mul(2, embd))))

	est.Overhead = add(modelOverhead, mul(vocabOverhead, vocab))
	est.Total = add(est.Weights, est.Repack, est.KVCache, est.Compute, est.Overhead)
	return est
}

// mul multiplies non-negative numbers, saturating at math.MaxInt64.
func mul(xs ...int64) int64 {
	p := uint64(1)
	for _, x := range xs {
		if x <= 0 {
			return 0
		}
		hi, lo := bits.Mul64(p, uint64(x))
		if hi != 0 || lo > math.MaxInt64 {
			return math.MaxInt64
		}
		p = lo
	}
	return int64(p)
}

// add adds non-negative numbers, saturating at math.MaxInt64.
func add(xs ...int64) int64 {
	var s int64
	for _, x := range xs {
		if x > math.MaxInt64-s {
			return math.MaxInt64
		}
		s += max(x, 0)
	}
	return s
}

// countRepack resolves a RepackPolicy on this machine.
func countRepack(p RepackPolicy) bool {
	switch p {
	case RepackAlways:
		return true
	case RepackNever:
		return false
	}
	switch runtime.GOARCH {
	case "amd64":
		return cpu.X86.HasAVX2
	case "arm64":
		return cpu.ARM64.HasASIMDDP
	}
	return false
}

// EstimateFile reads the metadata of the GGUF file at path and estimates
// its memory with opts. Errors are ReadMetadata's.
func EstimateFile(path string, opts EstimateOptions) (MemoryEstimate, error) {
	meta, err := ReadMetadata(path)
	if err != nil {
		return MemoryEstimate{}, err
	}
	return Estimate(meta, opts), nil
}

// String formats the estimate for logs and error messages.
func (e MemoryEstimate) String() string {
	return fmt.Sprintf("%s (weights %s, repack %s, KV cache %s, compute %s, overhead %s; context %d × %d, batch %d, KV %s)",
		bytesize.Format(e.Total), bytesize.Format(e.Weights), bytesize.Format(e.Repack), bytesize.Format(e.KVCache),
		bytesize.Format(e.Compute), bytesize.Format(e.Overhead), e.ContextSize, e.Parallel, e.BatchSize, e.KVType)
}
