package gguf

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	parser "github.com/gpustack/gguf-parser-go"
)

// synthFile is a parsed synthetic model with its embedding and output
// matrices decoded.
type synthFile struct {
	gf      *parser.GGUFFile
	tokens  []string
	types   []int32
	scores  []float32
	embd    int
	embed   []float32 // n_vocab rows of n_embd
	out     []float32 // n_vocab rows of n_embd
	outNorm []float32
}

func readSynth(t *testing.T, path string) *synthFile {
	t.Helper()
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kv := func(k string) parser.GGUFMetadataKV {
		v, ok := gf.Header.MetadataKV.Get(k)
		if !ok {
			t.Fatalf("%s: key %s missing", path, k)
		}
		return v
	}
	sf := &synthFile{
		gf:     gf,
		tokens: kv("tokenizer.ggml.tokens").ValueArray().ValuesString(),
		types:  kv("tokenizer.ggml.token_type").ValueArray().ValuesInt32(),
		scores: kv("tokenizer.ggml.scores").ValueArray().ValuesFloat32(),
		embd:   int(kv("llama.embedding_length").ValueUint32()),
	}
	tensor := func(name string) []float32 {
		ti, ok := gf.TensorInfos.Get(name)
		if !ok {
			t.Fatalf("tensor %s missing", name)
		}
		start := uint64(gf.TensorDataStartOffset) + ti.Offset
		vals, err := Dequantize(nil, TensorType(ti.Type), file[start:start+ti.Bytes()])
		if err != nil {
			t.Fatal(err)
		}
		return vals
	}
	sf.embed = tensor("token_embd.weight")
	sf.out = tensor("output.weight")
	sf.outNorm = tensor("output_norm.weight")
	return sf
}

// next computes the model's greedy next token after tok the way llama.cpp
// does for this model (the residual stream is the embedding): RMS norm,
// output norm, output matrix, argmax. It also returns the logit margin.
func (sf *synthFile) next(tok int) (int, float64) {
	e := sf.embd
	x := sf.embed[tok*e : (tok+1)*e]
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	scale := 1 / math.Sqrt(ss/float64(e)+1e-5)
	best, bestLogit, second := -1, math.Inf(-1), math.Inf(-1)
	for j := 0; j < len(sf.tokens); j++ {
		var logit float64
		for i, v := range x {
			logit += float64(v) * scale * float64(sf.outNorm[i]) * float64(sf.out[j*e+i])
		}
		switch {
		case logit > bestLogit:
			best, bestLogit, second = j, logit, bestLogit
		case logit > second:
			second = logit
		}
	}
	return best, bestLogit - second
}

func (sf *synthFile) id(t *testing.T, piece string) int {
	t.Helper()
	for i, p := range sf.tokens {
		if p == piece {
			return i
		}
	}
	t.Fatalf("token %q missing", piece)
	return -1
}

// detok renders tokens the way llama.cpp does for SentencePiece: ▁ is a space.
func (sf *synthFile) detok(toks []int) string {
	var b strings.Builder
	for _, tk := range toks {
		b.WriteString(strings.ReplaceAll(sf.tokens[tk], "▁", " "))
	}
	return b.String()
}

// chain follows greedy decoding from tok until <|im_end|> (or 50 tokens).
func (sf *synthFile) chain(t *testing.T, tok int) (string, bool) {
	t.Helper()
	var out []int
	for len(out) < 50 {
		n, margin := sf.next(tok)
		if margin < 30 {
			t.Errorf("after %q the logit margin is only %.1f", sf.tokens[tok], margin)
		}
		if n == SynthImEndID {
			return sf.detok(out), true
		}
		out = append(out, n)
		tok = n
	}
	return sf.detok(out), false
}

func TestWriteSynthDefault(t *testing.T) {
	dir := t.TempDir()
	for _, q := range []string{"", "F32", "F16", "Q8_0"} {
		t.Run("quant="+q, func(t *testing.T) {
			path := filepath.Join(dir, "m"+q+".gguf")
			info, err := WriteSynth(path, SynthOptions{Quant: q})
			if err != nil {
				t.Fatal(err)
			}
			checkSynth(t, path, info)
			wantQuant := q
			if q == "" {
				wantQuant = "Q4_0"
			}
			if info.Quant != wantQuant {
				t.Errorf("Quant %s, want %s", info.Quant, wantQuant)
			}
			if info.NEmbd != 64 || info.NLayer != 2 || info.NHead != 4 || info.NHeadKV != 4 || info.ContextLength != 2048 {
				t.Errorf("tiny shape %+v", info)
			}
			if q == "" && (info.Bytes < 80_000 || info.Bytes > 160_000) {
				t.Errorf("tiny Q4_0 model is %d bytes, want about 100 KB", info.Bytes)
			}
		})
	}
}

func checkSynth(t *testing.T, path string, info SynthInfo) {
	t.Helper()
	sf := readSynth(t, path)
	gf := sf.gf
	st, _ := os.Stat(path)
	if info.Bytes != st.Size() || info.Params != int64(gf.ModelParameters) || info.NVocab != len(sf.tokens) {
		t.Errorf("info %+v vs file: %d bytes, %d params, %d tokens", info, st.Size(), gf.ModelParameters, len(sf.tokens))
	}
	if info.Reply != SynthReply {
		t.Errorf("Reply %q", info.Reply)
	}
	// What the rest of the host reads through gguf-parser-go.
	tk := gf.Tokenizer()
	if tk.Model != "llama" || tk.TokensLength != uint64(info.NVocab) || tk.BOSTokenID != SynthBOSID ||
		tk.EOSTokenID != SynthImEndID || tk.EOTTokenID != SynthImEndID {
		t.Errorf("parser tokenizer %+v", tk)
	}
	arch := gf.Architecture()
	if arch.Architecture != "llama" || arch.BlockCount != uint64(info.NLayer) || arch.EmbeddingLength != uint64(info.NEmbd) ||
		arch.AttentionHeadCountKV != uint64(info.NHeadKV) || arch.MaximumContextLength != uint64(info.ContextLength) {
		t.Errorf("parser architecture %+v", arch)
	}
	if est := gf.EstimateLLaMACppRun(); est.Architecture != "llama" {
		t.Errorf("parser estimate for architecture %q", est.Architecture)
	}
	md := gf.Header.MetadataKV
	str := func(k string) string {
		v, ok := md.Get(k)
		if !ok {
			t.Fatalf("key %s missing", k)
		}
		return v.ValueString()
	}
	u32 := func(k string) uint32 {
		v, ok := md.Get(k)
		if !ok {
			t.Fatalf("key %s missing", k)
		}
		return v.ValueUint32()
	}
	if str("general.architecture") != "llama" || str("tokenizer.ggml.model") != "llama" || str("general.name") == "" {
		t.Error("architecture, tokenizer model or name wrong")
	}
	if !strings.Contains(str("tokenizer.chat_template"), "<|im_start|>") {
		t.Error("chat template is not ChatML")
	}
	if u32("tokenizer.ggml.eos_token_id") != SynthImEndID || u32("tokenizer.ggml.eot_token_id") != SynthImEndID ||
		u32("tokenizer.ggml.bos_token_id") != SynthBOSID {
		t.Error("special token ids")
	}
	typ, _ := ParseTensorType(info.Quant)
	if u32("general.file_type") != typ.FileType() {
		t.Errorf("file type %d for %s", u32("general.file_type"), info.Quant)
	}
	for k, want := range map[string]int{
		"llama.embedding_length":        info.NEmbd,
		"llama.block_count":             info.NLayer,
		"llama.feed_forward_length":     info.NFF,
		"llama.attention.head_count":    info.NHead,
		"llama.attention.head_count_kv": info.NHeadKV,
		"llama.context_length":          info.ContextLength,
		"llama.rope.dimension_count":    info.NEmbd / info.NHead,
	} {
		if got := u32(k); int(got) != want {
			t.Errorf("%s = %d, want %d", k, got, want)
		}
	}
	if len(sf.types) != len(sf.tokens) || len(sf.scores) != len(sf.tokens) {
		t.Fatal("tokenizer arrays differ in length")
	}
	// Special and byte tokens.
	for id, want := range map[int]struct {
		piece string
		typ   int32
	}{0: {"<unk>", 2}, 1: {"<s>", 3}, 2: {"</s>", 3}, 3: {"<|im_start|>", 3}, 4: {"<|im_end|>", 3}} {
		if sf.tokens[id] != want.piece || sf.types[id] != want.typ {
			t.Errorf("token %d = %q type %d", id, sf.tokens[id], sf.types[id])
		}
	}
	bytesSeen := 0
	seen := map[string]bool{}
	for i, p := range sf.tokens {
		if seen[p] {
			t.Errorf("duplicate token %q", p)
		}
		seen[p] = true
		if sf.types[i] == 6 {
			bytesSeen++
		}
	}
	if bytesSeen != 256 || !seen["<0x00>"] || !seen["<0xFF>"] || !seen["<0x0A>"] {
		t.Errorf("%d byte tokens", bytesSeen)
	}
	// Every prefix of a normal token is a token, scoring lower.
	for i, p := range sf.tokens {
		if sf.types[i] != 1 {
			continue
		}
		for j := range p {
			if j == 0 {
				continue
			}
			k := sf.id(t, p[:j])
			if sf.scores[k] >= sf.scores[i] {
				t.Errorf("prefix %q of %q scores %v >= %v", p[:j], p, sf.scores[k], sf.scores[i])
			}
		}
	}
	// Each sentence word is one token and none repeats.
	for _, w := range strings.Fields(SynthReply) {
		w = strings.TrimSuffix(w, ".")
		if w != "Once" {
			w = "▁" + w
		}
		sf.id(t, w)
	}

	// The decoded weights produce the documented greedy outputs.
	if got, eog := sf.chain(t, sf.id(t, "<0x0A>")); got != SynthReply || !eog {
		t.Errorf("after a newline the model says %q (EOG %v), want %q", got, eog, SynthReply)
	}
	if got, eog := sf.chain(t, sf.id(t, "▁time")); got != SynthRawContinuation || !eog {
		t.Errorf("after %q the model says %q (EOG %v), want %q", SynthRawPrompt, got, eog, SynthRawContinuation)
	}
	for _, p := range []string{"▁hello", "<s>", "?", "<0x41>", "<|im_end|>", "▁re"} {
		if got, _ := sf.chain(t, sf.id(t, p)); got != " "+SynthReply {
			t.Errorf("after %q the model says %q", p, got)
		}
	}
}

func TestWriteSynthParams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	start := time.Now()
	info, err := WriteSynth(path, SynthOptions{Params: 10_000_000, Quant: "Q4_0", ContextLength: 4096, Name: "ten", KVHeads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v written in %v", info, time.Since(start))
	if rel := math.Abs(float64(info.Params)-1e7) / 1e7; rel > 0.15 {
		t.Errorf("params %d, more than 15%% from 10M", info.Params)
	}
	if info.NHeadKV != 2 || info.ContextLength != 4096 {
		t.Errorf("info %+v", info)
	}
	checkSynth(t, path, info)
	gf := readSynth(t, path).gf
	if v, _ := gf.Header.MetadataKV.Get("general.name"); v.ValueString() != "ten" {
		t.Errorf("general.name %v", v.Value)
	}
	ti, _ := gf.TensorInfos.Get("blk.0.attn_k.weight")
	if ti.Dimensions[1] != uint64(info.NEmbd/info.NHead*2) {
		t.Errorf("attn_k shape %v with 2 KV heads", ti.Dimensions)
	}
}

func TestChooseShape(t *testing.T) {
	nv := len(buildSynthVocab().tokens)
	for _, p := range []int64{300_000, 1e6, 5e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 7e9, 3e10} {
		s, err := chooseShape(p, nv, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := s.params(nv)
		if rel := math.Abs(float64(got-p)) / float64(p); rel > 0.15 {
			t.Errorf("%d: shape %+v has %d params", p, s, got)
		}
		if s.embd%s.heads != 0 || s.headDim()%2 != 0 || s.embd%32 != 0 || s.ff%32 != 0 || s.layers < 1 || s.embd%7 == 0 {
			t.Errorf("%d: bad shape %+v", p, s)
		}
	}
	s, _ := chooseShape(1e8, nv, 0)
	if s.embd != 768 || s.heads != 12 {
		t.Errorf("100M: %+v, want n_embd 768 with 12 heads", s)
	}
}

func TestWriteSynthErrors(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []SynthOptions{
		{Quant: "Q4_K"},
		{Params: -1},
		{Params: 1e12},
		{KVHeads: 3},
		{KVHeads: -1},
		{ContextLength: -5},
	} {
		if _, err := WriteSynth(filepath.Join(dir, "x.gguf"), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := WriteSynth(filepath.Join(dir, "no", "x.gguf"), SynthOptions{}); err == nil {
		t.Error("write into a missing directory succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WriteSynthContext(ctx, filepath.Join(dir, "x.gguf"), SynthOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed writes left %d files", len(entries))
	}
}

func TestWriteSynthDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	for _, p := range []string{a, b} {
		if _, err := WriteSynth(p, SynthOptions{Params: 1e6}); err != nil {
			t.Fatal(err)
		}
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ba, bb) {
		t.Error("two writes with the same options differ")
	}
}

// BenchmarkWriteSynth100M measures writing a ~100M-parameter Q4_0 model.
func BenchmarkWriteSynth100M(b *testing.B) {
	path := filepath.Join(b.TempDir(), "m.gguf")
	var info SynthInfo
	var err error
	for i := 0; i < b.N; i++ {
		if info, err = WriteSynth(path, SynthOptions{Params: 100_000_000}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(info.Params)/1e6, "Mparams")
	b.ReportMetric(float64(info.Bytes)/1e6, "file-MB")
}
