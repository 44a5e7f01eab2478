package models

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mdsa-go/mdsa/internal/gguf"
)

// synthFiles caches synthetic models per test process, keyed by size and
// quantisation.
var synthFiles sync.Map // string -> *synthFile

type synthFile struct {
	once sync.Once
	path string
	info gguf.SynthInfo
	err  error
}

// testModelDir holds files shared by tests; TestMain removes it.
var testModelDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "models-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "models tests:", err)
		os.Exit(1)
	}
	testModelDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// synth writes (once per process) a synthetic llama model.
func synth(tb testing.TB, params int64, quant string) (string, gguf.SynthInfo) {
	tb.Helper()
	key := fmt.Sprintf("%d-%s", params, quant)
	v, _ := synthFiles.LoadOrStore(key, &synthFile{})
	f := v.(*synthFile)
	f.once.Do(func() {
		f.path = filepath.Join(testModelDir, "synth-"+key+".gguf")
		f.info, f.err = gguf.WriteSynth(f.path, gguf.SynthOptions{Params: params, Quant: quant, Name: "synth-" + key})
	})
	if f.err != nil {
		tb.Fatalf("writing synthetic model: %v", f.err)
	}
	return f.path, f.info
}

// archModel describes a small hand-made GGUF model of any architecture.
type archModel struct {
	arch                         string
	embd, ff, layers, heads, kvH int
	vocab                        int
	typ                          gguf.TensorType
	edit                         func(w *gguf.Writer) // extra or overriding keys
}

// write encodes m to path with zero weights.
func (m archModel) write(tb testing.TB, path string) {
	tb.Helper()
	w := gguf.NewWriter()
	a := m.arch + "."
	w.SetString("general.architecture", m.arch)
	w.SetString("general.name", "test-"+m.arch)
	w.SetUint32(a+"context_length", 4096)
	w.SetUint32(a+"embedding_length", uint32(m.embd))
	w.SetUint32(a+"block_count", uint32(m.layers))
	w.SetUint32(a+"feed_forward_length", uint32(m.ff))
	w.SetUint32(a+"attention.head_count", uint32(m.heads))
	w.SetUint32(a+"attention.head_count_kv", uint32(m.kvH))
	w.SetFloat32(a+"attention.layer_norm_rms_epsilon", 1e-6)
	w.SetString("tokenizer.ggml.model", "gpt2")
	toks := make([]string, m.vocab)
	for i := range toks {
		toks[i] = fmt.Sprintf("t%d", i)
	}
	if err := w.SetArray("tokenizer.ggml.tokens", toks); err != nil {
		tb.Fatal(err)
	}
	if m.edit != nil {
		m.edit(w)
	}
	e, v, f := uint64(m.embd), uint64(m.vocab), uint64(m.ff)
	kv := uint64(m.embd / m.heads * m.kvH)
	zero := func(_ int, d []float32) error { clear(d); return nil }
	add := func(name string, shape []uint64, t gguf.TensorType) {
		if err := w.AddTensorFunc(name, shape, t, zero); err != nil {
			tb.Fatal(err)
		}
	}
	add("token_embd.weight", []uint64{e, v}, m.typ)
	for l := 0; l < m.layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		add(p+"attn_norm.weight", []uint64{e}, gguf.F32)
		add(p+"attn_q.weight", []uint64{e, e}, m.typ)
		add(p+"attn_k.weight", []uint64{e, kv}, m.typ)
		add(p+"attn_v.weight", []uint64{e, kv}, m.typ)
		add(p+"attn_output.weight", []uint64{e, e}, m.typ)
		add(p+"ffn_norm.weight", []uint64{e}, gguf.F32)
		add(p+"ffn_gate.weight", []uint64{e, f}, m.typ)
		add(p+"ffn_up.weight", []uint64{e, f}, m.typ)
		add(p+"ffn_down.weight", []uint64{f, e}, m.typ)
	}
	add("output_norm.weight", []uint64{e}, gguf.F32)
	add("output.weight", []uint64{e, v}, m.typ)
	if err := w.WriteFile(context.Background(), path); err != nil {
		tb.Fatal(err)
	}
}

func TestReadMetadataSynthetic(t *testing.T) {
	for _, tc := range []struct {
		params int64
		quant  string
		ftype  string
	}{
		{0, "Q4_0", "Q4_0"},
		{10_000_000, "Q4_0", "Q4_0"},
		{0, "Q8_0", "Q8_0"},
		{0, "F16", "F16"},
	} {
		t.Run(fmt.Sprintf("%d-%s", tc.params, tc.quant), func(t *testing.T) {
			path, info := synth(t, tc.params, tc.quant)
			m, err := ReadMetadata(path)
			if err != nil {
				t.Fatal(err)
			}
			want := Metadata{
				Path: path, FileSize: info.Bytes, GGUFVersion: 3, Architecture: "llama",
				Name: "synth-" + fmt.Sprintf("%d-%s", tc.params, tc.quant), FileType: tc.ftype,
				Params: uint64(info.Params), ContextLength: info.ContextLength, Layers: info.NLayer,
				EmbeddingLength: info.NEmbd, FeedForwardLength: info.NFF, HeadCount: info.NHead,
				HeadCountKV: info.NHeadKV, KeyLength: info.NEmbd / info.NHead, ValueLength: info.NEmbd / info.NHead,
				VocabSize: info.NVocab, ChatTemplate: true,
				// not compared:
				Tensors: m.Tensors, TensorBytes: m.TensorBytes, RepackBytes: m.RepackBytes,
			}
			if m != want {
				t.Errorf("metadata\n got %+v\nwant %+v", m, want)
			}
			if m.Tensors != 3+9*info.NLayer {
				t.Errorf("tensors = %d, want %d", m.Tensors, 3+9*info.NLayer)
			}
			// The tensor data is the file minus the header, up to alignment.
			if m.TensorBytes <= 0 || m.TensorBytes > info.Bytes || info.Bytes-m.TensorBytes > 64<<10 {
				t.Errorf("tensor bytes %d of a %d-byte file", m.TensorBytes, info.Bytes)
			}
			if tc.quant != "Q4_0" && m.RepackBytes != 0 {
				t.Errorf("%s weights are not repacked by llama.cpp, got RepackBytes %d", tc.quant, m.RepackBytes)
			}
			if tc.quant == "Q4_0" && (m.RepackBytes == 0 || m.RepackBytes >= m.TensorBytes) {
				t.Errorf("Q4_0 repack bytes %d of %d", m.RepackBytes, m.TensorBytes)
			}
		})
	}
}

func TestReadMetadataOtherArchitectures(t *testing.T) {
	dir := t.TempDir()
	// qwen2 with grouped-query attention and explicit head sizes.
	qwen := archModel{arch: "qwen2", embd: 128, ff: 256, layers: 3, heads: 4, kvH: 2, vocab: 300, typ: gguf.Q8_0,
		edit: func(w *gguf.Writer) {
			w.SetUint32("qwen2.attention.key_length", 32)
			w.SetUint32("qwen2.attention.value_length", 32)
			w.SetString("tokenizer.chat_template", "{{ x }}")
		}}
	p := filepath.Join(dir, "qwen2.gguf")
	qwen.write(t, p)
	m, err := ReadMetadata(p)
	if err != nil {
		t.Fatal(err)
	}
	if m.Architecture != "qwen2" || m.Layers != 3 || m.HeadCountKV != 2 || m.KeyLength != 32 ||
		m.VocabSize != 300 || m.FileType != "Q8_0" || !m.ChatTemplate || m.Encoder {
		t.Errorf("qwen2 metadata: %+v", m)
	}
	if k, v := m.KVWidth(); k != 64 || v != 64 {
		t.Errorf("KV width %d/%d, want 64/64", k, v)
	}

	// Per-layer head counts (an array) take the largest value.
	arr := archModel{arch: "gemma3", embd: 64, ff: 128, layers: 2, heads: 4, kvH: 4, vocab: 100, typ: gguf.F16,
		edit: func(w *gguf.Writer) {
			if err := w.SetArray("gemma3.attention.head_count_kv", []uint32{2, 4}); err != nil {
				t.Fatal(err)
			}
		}}
	p = filepath.Join(dir, "gemma3.gguf")
	arr.write(t, p)
	if m, err = ReadMetadata(p); err != nil {
		t.Fatal(err)
	}
	if m.HeadCountKV != 4 || m.FileType != "F16" {
		t.Errorf("gemma3 metadata: %+v", m)
	}

	// Embedding models are encoders.
	bert := archModel{arch: "bert", embd: 64, ff: 128, layers: 2, heads: 4, kvH: 4, vocab: 100, typ: gguf.F32}
	p = filepath.Join(dir, "bert.gguf")
	bert.write(t, p)
	if m, err = ReadMetadata(p); err != nil {
		t.Fatal(err)
	}
	if !m.Encoder {
		t.Errorf("bert not reported as an encoder: %+v", m)
	}
	if e := Estimate(m, EstimateOptions{}); e.KVCache != 0 {
		t.Errorf("encoder model estimated with a KV cache of %d bytes", e.KVCache)
	}
}

func TestReadMetadataUnsupportedArchitecture(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rwkv.gguf")
	archModel{arch: "rwkv7", embd: 64, ff: 128, layers: 2, heads: 4, kvH: 4, vocab: 50, typ: gguf.F32}.write(t, p)
	m, err := ReadMetadata(p)
	if !errors.Is(err, ErrUnsupportedArchitecture) {
		t.Fatalf("err = %v, want ErrUnsupportedArchitecture", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Errorf("unsupported architecture also reported as corrupt: %v", err)
	}
	for _, s := range []string{p, `"rwkv7"`, "llama", "qwen2"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %s", err, s)
		}
	}
	if m.Architecture != "rwkv7" || m.Params == 0 || m.FileSize == 0 {
		t.Errorf("metadata of an unsupported model not returned: %+v", m)
	}
	if _, err := EstimateFile(p, EstimateOptions{}); !errors.Is(err, ErrUnsupportedArchitecture) {
		t.Errorf("EstimateFile: %v", err)
	}
}

func TestReadMetadataCorrupt(t *testing.T) {
	dir := t.TempDir()
	src, _ := synth(t, 0, "Q4_0")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string][]byte{
		"empty.gguf":          {},
		"magic-only.gguf":     data[:4],
		"header-only.gguf":    data[:24],
		"mid-metadata.gguf":   data[:2000],
		"mid-tensors.gguf":    data[:len(data)/2],
		"tail-cut.gguf":       data[:len(data)-40], // past the final padding
		"not-gguf.gguf":       []byte("<!DOCTYPE html><html>rate limited</html>"),
		"bad-version.gguf":    append(append([]byte("GGUF"), 9, 0, 0, 0), data[8:]...),
		"huge-counts.gguf":    append(append([]byte("GGUF"), 3, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255), data[16:]...),
		"zero-tensors.gguf":   nil, // filled below
		"wrong-key-type.gguf": nil,
		"huge-layers.gguf":    nil,
	}
	zero := archModel{arch: "llama", embd: 64, ff: 128, layers: 0, heads: 4, kvH: 4, vocab: 50, typ: gguf.F32}
	zero.write(t, filepath.Join(dir, "zero-layers-src.gguf"))
	cases["zero-tensors.gguf"], _ = os.ReadFile(filepath.Join(dir, "zero-layers-src.gguf"))
	wrong := archModel{arch: "llama", embd: 64, ff: 128, layers: 1, heads: 4, kvH: 4, vocab: 50, typ: gguf.F32,
		edit: func(w *gguf.Writer) { w.SetString("llama.block_count", "many") }}
	wrong.write(t, filepath.Join(dir, "wrong-src.gguf"))
	cases["wrong-key-type.gguf"], _ = os.ReadFile(filepath.Join(dir, "wrong-src.gguf"))
	huge := archModel{arch: "llama", embd: 64, ff: 128, layers: 1, heads: 4, kvH: 4, vocab: 50, typ: gguf.F32,
		edit: func(w *gguf.Writer) { w.SetUint64("llama.block_count", 1<<40) }}
	huge.write(t, filepath.Join(dir, "huge-src.gguf"))
	cases["huge-layers.gguf"], _ = os.ReadFile(filepath.Join(dir, "huge-src.gguf"))

	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			p := write(name, b)
			_, err := ReadMetadata(p)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestReadMetadataNotAFile(t *testing.T) {
	dir := t.TempDir()
	_, err := ReadMetadata(filepath.Join(dir, "missing.gguf"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.gguf") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ReadMetadata(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

// llamaFigures are what the bundled llama.cpp logged ("KV buffer size",
// "compute buffer size") for models of these shapes, context 2048, batch
// 512, one sequence; see Estimate.
var llamaFigures = []struct {
	name                      string
	embd, ff, layers, heads   int
	kvH, vocab                int
	kvMiB, computeMiB, slackP float64 // slackP: allowed over-estimate of compute, percent
}{
	{"synth-10M", 384, 1120, 5, 8, 8, 860, 15.00, 11.58, 2},
	{"synth-100M", 768, 2048, 14, 12, 12, 860, 84.00, 20.01, 2},
	{"vocab-32K", 64, 128, 2, 4, 4, 32000, 1.00, 62.75, 2},
	{"vocab-152K", 64, 128, 2, 4, 4, 151936, 1.00, 297.00, 2},
	{"wide-ff", 512, 4096, 2, 8, 8, 1000, 8.00, 30.01, 2},
	{"gqa", 1024, 256, 2, 16, 2, 1000, 2.00, 12.01, 10},
	{"qwen2.5-0.5b-like", 896, 4864, 2, 14, 2, 151936, 2.00, 300.25, 2},
}

func TestEstimateMatchesLlamaCpp(t *testing.T) {
	const mib = 1 << 20
	for _, f := range llamaFigures {
		m := Metadata{Architecture: "llama", Layers: f.layers, EmbeddingLength: f.embd, FeedForwardLength: f.ff,
			HeadCount: f.heads, HeadCountKV: f.kvH, KeyLength: f.embd / f.heads, ValueLength: f.embd / f.heads,
			VocabSize: f.vocab, ContextLength: 8192}
		e := Estimate(m, EstimateOptions{ContextSize: 2048})
		if got := float64(e.KVCache) / mib; got != f.kvMiB {
			t.Errorf("%s: KV cache %.2f MiB, llama.cpp %.2f MiB", f.name, got, f.kvMiB)
		}
		got := float64(e.ComputeReserved) / mib
		if got < f.computeMiB*0.99 || got > f.computeMiB*(1+f.slackP/100) {
			t.Errorf("%s: compute %.2f MiB, llama.cpp %.2f MiB", f.name, got, f.computeMiB)
		}
	}
}

func TestEstimateOptions(t *testing.T) {
	m := Metadata{Architecture: "llama", Layers: 4, EmbeddingLength: 256, FeedForwardLength: 512, HeadCount: 4,
		HeadCountKV: 4, KeyLength: 64, ValueLength: 64, VocabSize: 1000, ContextLength: 32768,
		TensorBytes: 1 << 20, RepackBytes: 1 << 19}
	base := Estimate(m, EstimateOptions{ContextSize: 1000, Repack: RepackNever})
	if base.ContextSize != 1024 {
		t.Errorf("context 1000 rounds to %d, want 1024", base.ContextSize)
	}
	if want := int64(4 * 1024 * 512 * 2); base.KVCache != want {
		t.Errorf("KV %d, want %d", base.KVCache, want)
	}
	if base.Repack != 0 || base.Total != base.Weights+base.KVCache+base.Compute+base.Overhead {
		t.Errorf("total does not add up: %+v", base)
	}
	par := Estimate(m, EstimateOptions{ContextSize: 1000, Parallel: 3, Repack: RepackNever})
	// Three sequences share one context: three times the KV cells, one
	// compute buffer (a little more for three tokens' logits).
	if par.KVCache != 3*base.KVCache || par.Compute <= base.Compute || par.Compute >= 2*base.Compute || par.Weights != base.Weights {
		t.Errorf("parallel 3: %+v vs %+v", par, base)
	}
	q8 := Estimate(m, EstimateOptions{ContextSize: 1000, KVType: "Q8_0", Repack: RepackNever})
	if q8.KVCache != base.KVCache*34/64 || q8.KVType != "q8_0" {
		t.Errorf("q8_0 KV %d, want %d", q8.KVCache, base.KVCache*34/64)
	}
	def := Estimate(m, EstimateOptions{Repack: RepackAlways})
	if def.ContextSize != DefaultEstimateContext || def.BatchSize != 512 || def.Parallel != 1 || def.Repack != 1<<19 {
		t.Errorf("defaults: %+v", def)
	}
	small := Estimate(m, EstimateOptions{ContextSize: 256})
	if small.BatchSize != 256 {
		t.Errorf("batch for context 256 = %d", small.BatchSize)
	}
	if s := def.String(); !strings.Contains(s, "KV cache") || !strings.Contains(s, "MiB") {
		t.Errorf("String() = %q", s)
	}
}

func TestEstimateSaturates(t *testing.T) {
	m := Metadata{Architecture: "llama", Layers: maxLayers, EmbeddingLength: maxEmbedding, FeedForwardLength: maxEmbedding,
		HeadCount: maxHeads, HeadCountKV: maxHeads, KeyLength: maxEmbedding, ValueLength: maxEmbedding,
		VocabSize: maxVocab, ContextLength: maxContext, ExpertsUsed: maxExperts, TensorBytes: maxTensorSize}
	e := Estimate(m, EstimateOptions{ContextSize: maxContext, Parallel: 1 << 30, BatchSize: 1 << 30})
	if e.Total != math.MaxInt64 || e.KVCache != math.MaxInt64 || e.Compute <= 0 {
		t.Errorf("huge model: %+v", e)
	}
	if add(math.MaxInt64-1, 5) != math.MaxInt64 || mul(1<<40, 1<<40) != math.MaxInt64 || mul(3, 0, 5) != 0 || add(2, 3) != 5 {
		t.Error("saturating arithmetic")
	}
}

// FuzzReadMetadata feeds arbitrary bytes to ReadMetadata: it must return
// (an error or metadata) without panicking, hanging or allocating without
// bound, and a success must be self-consistent.
func FuzzReadMetadata(f *testing.F) {
	dir := f.TempDir()
	// Prefer memory-backed files: a busy disk stalls fuzzing for seconds.
	if d, err := os.MkdirTemp("/dev/shm", "models-fuzz-"); err == nil {
		dir = d
		f.Cleanup(func() { os.RemoveAll(d) })
	}
	small := filepath.Join(dir, "small.gguf")
	archModel{arch: "llama", embd: 32, ff: 32, layers: 1, heads: 2, kvH: 1, vocab: 8, typ: gguf.F32}.write(f, small)
	b, err := os.ReadFile(small)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add(b[:40])
	f.Add([]byte("GGUF"))
	f.Add([]byte{})
	f.Add([]byte("GGUF\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		// Inputs run one at a time per process, so one file will do.
		p := filepath.Join(dir, "fuzz.gguf")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := ReadMetadata(p)
		if err != nil {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		if m.Layers <= 0 || m.EmbeddingLength <= 0 || m.HeadCount <= 0 || m.HeadCountKV > m.HeadCount ||
			m.TensorBytes < 0 || m.FileSize != int64(len(data)) {
			t.Errorf("inconsistent metadata accepted: %+v", m)
		}
		if e := Estimate(m, EstimateOptions{}); e.Total < 0 {
			t.Errorf("negative estimate %+v for %+v", e, m)
		}
	})
}
