package models

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	parser "github.com/gpustack/gguf-parser-go"
)

// ErrCorrupt is wrapped by ReadMetadata's error when a file is not a
// readable GGUF model: not GGUF at all, truncated, or with metadata that
// contradicts itself (for example tensor data that runs past the end of the
// file, or a layer count of zero).
var ErrCorrupt = errors.New("models: corrupt or truncated GGUF file")

// ErrUnsupportedArchitecture is wrapped by ReadMetadata's error when a
// well-formed GGUF file declares an architecture outside
// SupportedArchitectures. The Metadata is still returned, as far as it could
// be read, so that tools can show what the file is.
var ErrUnsupportedArchitecture = errors.New("models: unsupported model architecture")

// supportedArchitectures are the general.architecture values the host
// accepts: transformer architectures that the bundled llama.cpp build
// (@node-llama-cpp 3.22.1 libraries, matched to yzma v1.28.0) runs and whose
// memory follows the formula in Estimate (one KV cache entry per layer and
// token, no recurrent state, no latent-attention compression). The list is
// deliberately narrower than llama.cpp's: it covers the small instruct and
// embedding models the host is meant for. Mistral and Mixtral GGUF files
// usually declare "llama"; SmolLM2 and TinyLlama are "llama" too.
var supportedArchitectures = []string{
	// decoders (text generation)
	"llama", "mistral", "mistral3",
	"qwen2", "qwen2moe", "qwen3", "qwen3moe",
	"phi2", "phi3", "phimoe",
	"gemma", "gemma2", "gemma3",
	"granite", "granitemoe",
	"olmo", "olmo2",
	"stablelm", "starcoder2", "smollm3", "exaone",
	// encoders (embeddings)
	"bert", "nomic-bert", "jina-bert-v2",
}

// encoderArchitectures are the supported architectures without a decoder:
// they produce embeddings but cannot generate text.
var encoderArchitectures = []string{"bert", "nomic-bert", "jina-bert-v2"}

// SupportedArchitectures returns the general.architecture values ReadMetadata
// accepts, in a fixed order. The caller may modify the returned slice.
func SupportedArchitectures() []string { return slices.Clone(supportedArchitectures) }

// Bounds on metadata values. Real models are far inside them; values beyond
// are treated as corruption, which also keeps the arithmetic of Estimate
// from overflowing.
const (
	maxLayers     = 4096    // llama.cpp's largest models have about 200
	maxEmbedding  = 1 << 20 // n_embd, n_ff, head dimensions
	maxHeads      = 1 << 14 // attention heads
	maxContext    = 1 << 26 // trained context length, in tokens
	maxVocab      = 1 << 24 // tokens in the vocabulary
	maxExperts    = 1 << 12 // mixture-of-experts experts
	maxTensorSize = 1 << 50 // bytes of tensor data (1 PiB)
)

// Metadata describes a GGUF model file: what ReadMetadata found in its
// header. Counts are 0 when the file does not say.
type Metadata struct {
	// Path is the file that was read (the first shard of a split model).
	Path string `json:"path"`
	// FileSize is the size in bytes of the file, or of all shards together.
	FileSize int64 `json:"file_size"`
	// GGUFVersion is the container version (2 or 3 in practice).
	GGUFVersion int `json:"gguf_version"`
	// Architecture is general.architecture, e.g. "llama" or "qwen2".
	Architecture string `json:"architecture"`
	// Name is general.name, a human-readable model name ("" when absent).
	Name string `json:"name,omitempty"`
	// FileType is the quantization of most weight matrices, as llama.cpp
	// names it: "Q4_0", "Q4_K_M", "Q8_0", "F16", ... From general.file_type
	// when present, else guessed from the tensor types.
	FileType string `json:"file_type"`
	// Params is the number of weights in all tensors.
	Params uint64 `json:"params"`
	// Tensors is the number of tensors.
	Tensors int `json:"tensors"`
	// TensorBytes is the size of the tensor data: the weights as loaded.
	TensorBytes int64 `json:"tensor_bytes"`
	// RepackBytes is the part of TensorBytes in tensors that llama.cpp's CPU
	// back-end copies into an interleaved layout at load time on CPUs with
	// the instructions for it (see Estimate).
	RepackBytes int64 `json:"repack_bytes"`
	// ContextLength is the context the model was trained with, in tokens.
	ContextLength int `json:"context_length"`
	// Layers is the number of blocks (n_layer).
	Layers int `json:"layers"`
	// EmbeddingLength is the width of the residual stream (n_embd).
	EmbeddingLength int `json:"embedding_length"`
	// FeedForwardLength is the width of the feed-forward layers (n_ff), the
	// largest one when it varies per layer.
	FeedForwardLength int `json:"feed_forward_length"`
	// HeadCount is the number of attention (query) heads.
	HeadCount int `json:"head_count"`
	// HeadCountKV is the number of key/value heads; smaller than HeadCount
	// with grouped-query attention.
	HeadCountKV int `json:"head_count_kv"`
	// KeyLength and ValueLength are the sizes of one key and one value head.
	KeyLength   int `json:"key_length"`
	ValueLength int `json:"value_length"`
	// VocabSize is the number of tokens in the vocabulary.
	VocabSize int `json:"vocab_size"`
	// Experts and ExpertsUsed describe mixture-of-experts models.
	Experts     int `json:"experts,omitempty"`
	ExpertsUsed int `json:"experts_used,omitempty"`
	// SlidingWindow is the attention window of sliding-window layers (0: none).
	SlidingWindow int `json:"sliding_window,omitempty"`
	// ChatTemplate reports whether the file carries tokenizer.chat_template.
	ChatTemplate bool `json:"chat_template"`
	// Encoder reports an encoder-only (embedding) model that cannot generate.
	Encoder bool `json:"encoder"`
}

// KVWidth returns the number of values one token stores per layer in the KV
// cache: keys (HeadCountKV × KeyLength) plus values (HeadCountKV ×
// ValueLength).
func (m Metadata) KVWidth() (k, v int) {
	return m.HeadCountKV * m.KeyLength, m.HeadCountKV * m.ValueLength
}

// ReadMetadata reads the header of the GGUF model file at path (with
// github.com/gpustack/gguf-parser-go) and describes the model. Only the
// header and tensor index are read, not the weights. A split model is read
// through its first shard ("name-00001-of-00003.gguf"), which names the
// others.
//
// Errors name the file. A file that is not GGUF, is truncated, or has
// inconsistent metadata gives an error wrapping ErrCorrupt; a valid file of
// an architecture outside SupportedArchitectures gives the Metadata read so
// far and an error wrapping ErrUnsupportedArchitecture. Missing files give
// an error wrapping the os error (errors.Is(err, fs.ErrNotExist) works).
func ReadMetadata(path string) (Metadata, error) {
	meta := Metadata{Path: path}
	st, err := os.Stat(path)
	if err != nil {
		return meta, fmt.Errorf("models: model file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return meta, fmt.Errorf("models: model path %s is not a regular file", path)
	}
	gf, err := parseGGUF(path)
	if err != nil {
		return meta, fmt.Errorf("%w: %s: %s", ErrCorrupt, path, err)
	}
	if err := fillMetadata(&meta, gf); err != nil {
		if errors.Is(err, ErrUnsupportedArchitecture) {
			return meta, fmt.Errorf("models: model file %s: %w", path, err)
		}
		return meta, fmt.Errorf("%w: %s: %s", ErrCorrupt, path, err)
	}
	return meta, nil
}

// parseGGUF runs the parser. gguf-parser-go reports most malformed input as
// errors but panics on a few (integer overflow in tensor sizes, value-type
// mismatches); those panics stay inside this function and become errors, so
// that no input file can crash the host.
func parseGGUF(path string) (gf *parser.GGUFFile, err error) {
	defer func() {
		if p := recover(); p != nil {
			gf, err = nil, fmt.Errorf("malformed GGUF: %v", p)
		}
	}()
	gf, err = parser.ParseGGUFFile(path, parser.SkipLargeMetadata())
	if err != nil {
		return nil, err
	}
	return gf, nil
}

// fillMetadata extracts the fields of m from the parsed file. It reads the
// metadata key/values itself, checking every type and bound, rather than
// calling the parser's Architecture(), which allocates per-layer slices
// sized by untrusted counts.
func fillMetadata(m *Metadata, gf *parser.GGUFFile) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed GGUF tensor index: %v", p)
		}
	}()
	m.GGUFVersion = int(gf.Header.Version)
	m.FileSize = int64(gf.Size)
	m.Tensors = len(gf.TensorInfos)

	var total uint64
	var repack uint64
	for _, ti := range gf.TensorInfos {
		n := ti.Bytes() // may panic on overflow; recovered above
		total += n
		if total > maxTensorSize {
			return fmt.Errorf("tensor data of %d bytes and more is beyond any model", total)
		}
		if repackable(ti) {
			repack += n
		}
	}
	m.TensorBytes = int64(total)
	m.RepackBytes = int64(repack)
	m.Params = uint64(gf.ModelParameters)

	kv := newMetaKV(gf.Header.MetadataKV)
	arch, ok, err := kv.str("general.architecture")
	if err != nil {
		return err
	}
	if !ok || arch == "" {
		return errors.New("no general.architecture key: not a model file")
	}
	m.Architecture = arch
	if m.Name, _, err = kv.str("general.name"); err != nil {
		return err
	}
	if ft, ok, err := kv.uint("general.file_type", 1<<16); err != nil {
		return err
	} else if ok {
		m.FileType = fileTypeName(parser.GGUFFileType(ft))
	} else if len(gf.TensorInfos) > 0 {
		m.FileType = fileTypeName(gf.TensorInfos.GetFileType())
	}
	if _, ok := kv["tokenizer.chat_template"]; ok {
		m.ChatTemplate = true
	}
	m.Encoder = slices.Contains(encoderArchitectures, arch)

	if !slices.Contains(supportedArchitectures, arch) {
		return fmt.Errorf("%w: %q (supported: %s)", ErrUnsupportedArchitecture, arch,
			strings.Join(supportedArchitectures, ", "))
	}

	p := arch + "."
	fields := []struct {
		dst      *int
		key      string
		max      uint64
		required bool
	}{
		{&m.ContextLength, p + "context_length", maxContext, false},
		{&m.EmbeddingLength, p + "embedding_length", maxEmbedding, true},
		{&m.Layers, p + "block_count", maxLayers, true},
		{&m.FeedForwardLength, p + "feed_forward_length", maxEmbedding, false},
		{&m.HeadCount, p + "attention.head_count", maxHeads, true},
		{&m.HeadCountKV, p + "attention.head_count_kv", maxHeads, false},
		{&m.KeyLength, p + "attention.key_length", maxEmbedding, false},
		{&m.ValueLength, p + "attention.value_length", maxEmbedding, false},
		{&m.VocabSize, p + "vocab_size", maxVocab, false},
		{&m.Experts, p + "expert_count", maxExperts, false},
		{&m.ExpertsUsed, p + "expert_used_count", maxExperts, false},
		{&m.SlidingWindow, p + "attention.sliding_window", maxContext, false},
	}
	for _, f := range fields {
		v, ok, err := kv.uintOrMax(f.key, f.max)
		if err != nil {
			return err
		}
		if f.required && (!ok || v == 0) {
			return fmt.Errorf("architecture %s needs metadata key %s (> 0)", arch, f.key)
		}
		*f.dst = int(v)
	}
	if m.HeadCountKV == 0 {
		m.HeadCountKV = m.HeadCount
	}
	if m.HeadCountKV > m.HeadCount {
		return fmt.Errorf("%shead_count_kv %d exceeds head_count %d", p+"attention.", m.HeadCountKV, m.HeadCount)
	}
	if m.KeyLength == 0 {
		m.KeyLength = m.EmbeddingLength / m.HeadCount
	}
	if m.ValueLength == 0 {
		m.ValueLength = m.EmbeddingLength / m.HeadCount
	}
	if m.VocabSize == 0 {
		if a, ok := kv["tokenizer.ggml.tokens"]; ok && a.ValueType == parser.GGUFMetadataValueTypeArray {
			if av, ok := a.Value.(parser.GGUFMetadataKVArrayValue); ok && av.Len <= maxVocab {
				m.VocabSize = int(av.Len)
			}
		}
	}
	if m.VocabSize == 0 {
		if ti, ok := gf.TensorInfos.Get("token_embd.weight"); ok && len(ti.Dimensions) >= 2 && ti.Dimensions[1] <= maxVocab {
			m.VocabSize = int(ti.Dimensions[1])
		}
	}
	if m.Tensors == 0 {
		return errors.New("the file holds no tensors")
	}
	return nil
}

// fileTypeName turns the parser's "MOSTLY_Q4_K_M" into llama.cpp's short
// "Q4_K_M".
func fileTypeName(t parser.GGUFFileType) string {
	s := t.String()
	if strings.HasPrefix(s, "GGUFFileType(") {
		return "unknown"
	}
	return strings.TrimPrefix(s, "MOSTLY_")
}

// repackable reports whether llama.cpp's CPU back-end (x86-64 with AVX2, or
// ARM with dot-product instructions) keeps an interleaved copy of the tensor
// in an extra buffer ("CPU_REPACK" in its log): 2-D weight matrices of the
// types it has kernels for, with a row count that is a multiple of the
// interleave width (8), except the token embedding, which is only looked up
// row by row. Measured with the bundled libraries: every Q4_0 matrix but
// token_embd.weight is repacked; Q8_0, F16 and F32 are not.
func repackable(ti parser.GGUFTensorInfo) bool {
	switch ti.Type {
	case parser.GGMLTypeQ4_0, parser.GGMLTypeQ4_K, parser.GGMLTypeIQ4_NL:
	default:
		return false
	}
	if ti.NDimensions != 2 || len(ti.Dimensions) < 2 || ti.Dimensions[1]%8 != 0 {
		return false
	}
	return ti.Name != "token_embd.weight"
}

// metaKV indexes metadata key/values by key, keeping the first of
// duplicates (as llama.cpp does).
type metaKV map[string]parser.GGUFMetadataKV

func newMetaKV(kvs parser.GGUFMetadataKVs) metaKV {
	m := make(metaKV, len(kvs))
	for _, kv := range kvs {
		if _, dup := m[kv.Key]; !dup {
			m[kv.Key] = kv
		}
	}
	return m
}

// str returns a string value; a value of another type is an error.
func (m metaKV) str(key string) (string, bool, error) {
	kv, ok := m[key]
	if !ok {
		return "", false, nil
	}
	s, isStr := kv.Value.(string)
	if kv.ValueType != parser.GGUFMetadataValueTypeString || !isStr {
		return "", false, fmt.Errorf("metadata key %s holds a %v, want a string", key, kv.ValueType)
	}
	return s, true, nil
}

// uint returns a non-negative integer value no larger than limit.
func (m metaKV) uint(key string, limit uint64) (uint64, bool, error) {
	kv, ok := m[key]
	if !ok {
		return 0, false, nil
	}
	v, err := intValue(key, kv.Value, limit)
	return v, err == nil, err
}

// uintOrMax is uint, but also accepts an array of integers (per-layer
// values, as some architectures store head counts and n_ff) and returns its
// largest element.
func (m metaKV) uintOrMax(key string, limit uint64) (uint64, bool, error) {
	kv, ok := m[key]
	if !ok {
		return 0, false, nil
	}
	av, isArr := kv.Value.(parser.GGUFMetadataKVArrayValue)
	if !isArr {
		v, err := intValue(key, kv.Value, limit)
		return v, err == nil, err
	}
	if uint64(len(av.Array)) != av.Len {
		return 0, false, fmt.Errorf("metadata key %s: array of %d values was not read", key, av.Len)
	}
	var best uint64
	for i, e := range av.Array {
		v, err := intValue(fmt.Sprintf("%s[%d]", key, i), e, limit)
		if err != nil {
			return 0, false, err
		}
		best = max(best, v)
	}
	return best, len(av.Array) > 0, nil
}

// intValue converts a decoded integer metadata value, refusing other types,
// negative values and values above limit.
func intValue(key string, v any, limit uint64) (uint64, error) {
	var u uint64
	var s int64
	signed := false
	switch x := v.(type) {
	case uint8:
		u = uint64(x)
	case uint16:
		u = uint64(x)
	case uint32:
		u = uint64(x)
	case uint64:
		u = x
	case int8:
		s, signed = int64(x), true
	case int16:
		s, signed = int64(x), true
	case int32:
		s, signed = int64(x), true
	case int64:
		s, signed = x, true
	default:
		return 0, fmt.Errorf("metadata key %s holds %T, want an integer", key, v)
	}
	if signed {
		if s < 0 {
			return 0, fmt.Errorf("metadata key %s is negative (%d)", key, s)
		}
		u = uint64(s)
	}
	if u > limit {
		return 0, fmt.Errorf("metadata key %s = %d is out of range (at most %d)", key, u, limit)
	}
	return u, nil
}
