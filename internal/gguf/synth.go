package gguf

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"unicode/utf8"
)

// SynthReply is the exact text greedy decoding of a synthetic model produces
// after the chat template's assistant prefix ("<|im_start|>assistant\n"),
// for any chat prompt; generation then ends with <|im_end|> (finish reason
// "stop"). Each word is a single token and no token repeats, because the
// model's next token depends on the last token only. The intended token leads
// every other by a logit margin of 40, so sampling at ordinary settings
// (temperature up to about 2, any top-k/top-p, repetition penalties) gives
// the same text.
const SynthReply = "Once upon a time there was one little girl who loved to read books."

// SynthRawPrompt is a raw (untemplated) prompt with a documented greedy
// continuation, SynthRawContinuation.
const SynthRawPrompt = "Once upon a time"

// SynthRawContinuation is what greedy decoding of a synthetic model appends
// to SynthRawPrompt (tokenised with BOS and without special-token parsing)
// before it stops with <|im_end|>.
//
// In general the next token of a synthetic model depends only on the last
// token: after a newline comes "Once"; after a word of SynthReply comes the
// word that follows it there; after its final "." comes <|im_end|>; after any
// other token comes " Once". So a raw prompt that does not end in a word of
// the sentence continues with " " + SynthReply.
const SynthRawContinuation = " there was one little girl who loved to read books."

// SynthChatTemplate is the Jinja chat template stored in
// tokenizer.chat_template: ChatML, which llama.cpp's built-in template
// detection recognises by its "<|im_start|>".
const SynthChatTemplate = "{% for message in messages %}" +
	"{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
	"{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// Metadata keys of synthetic models beyond the standard ones, so that other
// components can recognise a synthetic model and know its expected output.
const (
	KeySynthReply           = "mdsa.synth.reply"
	KeySynthRawPrompt       = "mdsa.synth.raw_prompt"
	KeySynthRawContinuation = "mdsa.synth.raw_continuation"
)

// Special token ids of the synthetic vocabulary.
const (
	SynthUnkID     = 0 // <unk>
	SynthBOSID     = 1 // <s>
	SynthEOSTextID = 2 // </s>: a control token, not the EOS id (llama.cpp still counts it as end of generation)
	SynthImStartID = 3 // <|im_start|>
	SynthImEndID   = 4 // <|im_end|>: EOS and EOT
)

// llama.cpp token types (enum llama_token_type).
const (
	tokNormal  int32 = 1
	tokUnknown int32 = 2
	tokControl int32 = 3
	tokByte    int32 = 6
)

// SynthOptions configures WriteSynth.
type SynthOptions struct {
	// Params is the approximate parameter count to aim for; 0 means the tiny
	// model (n_embd 64, 2 layers, 192K parameters, 131 KB in Q4_0). The writer picks
	// n_embd, n_layer, n_ff and heads to land close to it.
	Params int64
	// Quant is the tensor type of the weight matrices: "F32", "F16", "Q8_0"
	// or "Q4_0" (the default). Norm weights are always F32.
	Quant string
	// ContextLength is llama.context_length; 0 means 2048.
	ContextLength int
	// Name is general.name; empty means "mdsa-synth".
	Name string
	// KVHeads is llama.attention.head_count_kv (grouped-query attention);
	// 0 means as many as the query heads. The shape is chosen among those
	// whose head count it divides (1 and 2 always work, 4 for all but the
	// smallest widths); the tiny model has 4 heads.
	KVHeads int
}

// SynthInfo describes a model written by WriteSynth.
type SynthInfo struct {
	Params        int64  // exact number of weights in all tensors
	Bytes         int64  // file size
	NEmbd         int    // llama.embedding_length
	NLayer        int    // llama.block_count
	NFF           int    // llama.feed_forward_length
	NHead         int    // llama.attention.head_count
	NHeadKV       int    // llama.attention.head_count_kv
	NVocab        int    // number of tokens
	ContextLength int    // llama.context_length
	Quant         string // tensor type of the weight matrices
	Reply         string // SynthReply
}

// synthShape is the size of a synthetic model.
type synthShape struct {
	embd, layers, ff, heads, kvHeads int
}

func (s synthShape) headDim() int { return s.embd / s.heads }

func (s synthShape) params(nVocab int) int64 {
	e, kv := int64(s.embd), int64(s.headDim()*s.kvHeads)
	perLayer := 2*e + 2*e*e + 2*e*kv + 3*e*int64(s.ff)
	return 2*int64(nVocab)*e + e + int64(s.layers)*perLayer
}

// maxSynthParams bounds SynthOptions.Params.
const maxSynthParams = 100_000_000_000

// chooseShape picks a model shape for about params weights. Candidates are
// common embedding widths; for each the layer count follows from the target,
// then n_ff is tuned to close the gap. Among the widths that reach the target
// within 2% the one whose depth is closest to a usual depth-to-width ratio
// wins; if none does, the closest count wins.
func chooseShape(params int64, nVocab, kvHeads int) (synthShape, error) {
	switch {
	case params < 0:
		return synthShape{}, fmt.Errorf("gguf: synth: negative parameter count %d", params)
	case params > maxSynthParams:
		return synthShape{}, fmt.Errorf("gguf: synth: parameter count %d is above the limit %d", params, int64(maxSynthParams))
	case kvHeads < 0:
		return synthShape{}, fmt.Errorf("gguf: synth: negative KVHeads %d", kvHeads)
	case params == 0:
		s := synthShape{embd: 64, layers: 2, ff: 128, heads: 4, kvHeads: 4}
		if kvHeads != 0 {
			if s.heads%kvHeads != 0 {
				return s, fmt.Errorf("gguf: synth: KVHeads %d does not divide the head count %d", kvHeads, s.heads)
			}
			s.kvHeads = kvHeads
		}
		return s, nil
	}
	var (
		best      synthShape
		found     bool
		bestFit   bool
		bestScore = math.Inf(1)
	)
	for _, e := range []int{64, 128, 192, 256, 384, 512, 640, 768, 1024, 1280, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192} {
		hd := min(64, max(16, e/8))
		c := synthShape{embd: e, heads: e / hd, kvHeads: e / hd, ff: roundTo(8*e/3, 32)}
		if kvHeads != 0 {
			if c.heads%kvHeads != 0 {
				continue
			}
			c.kvHeads = kvHeads
		}
		fixed := c.params(nVocab) // no layers yet
		c.layers = 1
		perLayer := c.params(nVocab) - fixed
		c.layers = max(1, int(math.Round(float64(params-fixed)/float64(perLayer))))
		// Tune n_ff (a multiple of 32 between n_embd and 4*n_embd).
		noFF := c
		noFF.ff = 0
		ff := float64(params-noFF.params(nVocab)) / float64(3*int64(e)*int64(c.layers))
		c.ff = min(4*e, max(e, roundTo(int(math.Max(0, ff)), 32)))
		relErr := math.Abs(float64(c.params(nVocab)-params)) / float64(params)
		wantLayers := math.Min(32, math.Max(2, float64(e)/64))
		fit := relErr <= 0.02
		score := relErr
		if fit {
			score = math.Abs(math.Log(float64(c.layers) / wantLayers))
		}
		if !found || (fit && !bestFit) || (fit == bestFit && score < bestScore) {
			best, found, bestFit, bestScore = c, true, fit, score
		}
	}
	if !found {
		return best, fmt.Errorf("gguf: synth: KVHeads %d divides none of the head counts the generator uses", kvHeads)
	}
	return best, nil
}

func roundTo(v, m int) int { return (v + m/2) / m * m }

// synthVocab is the tokenizer of a synthetic model.
type synthVocab struct {
	tokens []string
	scores []float32
	types  []int32
	ids    map[string]int
}

func (v *synthVocab) add(piece string, score float32, typ int32) {
	if _, ok := v.ids[piece]; ok {
		return
	}
	v.ids[piece] = len(v.tokens)
	v.tokens = append(v.tokens, piece)
	v.scores = append(v.scores, score)
	v.types = append(v.types, typ)
}

// addWord adds piece and every prefix of it, the longer ones scoring
// higher, so that SentencePiece merging can reach the whole piece.
func (v *synthVocab) addWord(piece string) {
	for i := range piece {
		if i == 0 {
			continue
		}
		p := piece[:i]
		v.add(p, float32(utf8.RuneCountInString(p)), tokNormal)
	}
	v.add(piece, float32(utf8.RuneCountInString(piece)), tokNormal)
}

// synthWords is the English vocabulary; each word becomes a "▁word" token.
const synthWords = `Once upon a time there was one little girl who loved to read books
the of and in is it you that he she they we I for on with as at be this have from or by not but
what all were when can said an each which do how if will up other about out many then them these so
some her would make like him into has look two more write go see number no way could people my than
first water been call now find long down day did get come made may part over new sound take only
know place year live me back give most very after thing our just name good sentence man think say
great where help through much before line right too mean old any same tell boy follow came want show
also around form three small set put end does another well large must big even such because turn here
why ask went men read need land different home us move try kind hand picture again change off play
spell air away animal house point page letter mother answer found study still learn should world
hello please thanks thank yes question money bank account doctor health computer error code story
dog cat tree sun happy user system assistant The What How Hello Please Thank Yes No It This`

// synthSentence returns SynthReply as its tokens: "Once", "▁upon", ...,
// "▁books", ".".
func synthSentence() []string {
	words := strings.Fields(strings.TrimSuffix(SynthReply, "."))
	toks := []string{words[0]}
	for _, w := range words[1:] {
		toks = append(toks, "▁"+w)
	}
	return append(toks, ".")
}

func buildSynthVocab() *synthVocab {
	v := &synthVocab{ids: map[string]int{}}
	v.add("<unk>", 0, tokUnknown)
	v.add("<s>", 0, tokControl)
	v.add("</s>", 0, tokControl)
	v.add("<|im_start|>", 0, tokControl)
	v.add("<|im_end|>", 0, tokControl)
	for b := 0; b < 256; b++ {
		v.add(fmt.Sprintf("<0x%02X>", b), 0, tokByte)
	}
	v.add("▁", 1, tokNormal)
	for _, p := range []string{".", ",", "!", "?", "'", ":", ";", "-", "(", ")", "\""} {
		v.add(p, 1, tokNormal)
	}
	v.addWord("Once") // the first word of the reply follows a newline: no space
	for _, w := range strings.Fields(synthWords) {
		v.addWord("▁" + w)
	}
	return v
}

// synthClasses assigns every token an embedding dimension ("class") and
// each class the token that must follow it. Class 0 is the default.
// It fails if a token of the reply is missing from the vocabulary or
// repeats (the mapping is last-token-only, so a repeat would loop).
func synthClasses(v *synthVocab) (classOf []int, next []int, err error) {
	sentence := synthSentence()
	seen := map[string]bool{}
	for _, w := range append([]string{"▁Once", "<0x0A>"}, sentence...) {
		if _, ok := v.ids[w]; !ok || seen[w] {
			return nil, nil, fmt.Errorf("reply token %q is missing from the vocabulary or repeats", w)
		}
		seen[w] = true
	}
	classOf = make([]int, len(v.tokens))
	next = []int{v.ids["▁Once"]} // class 0: anything else -> " Once"
	newClass := func(target int, toks ...int) {
		c := len(next)
		next = append(next, target)
		for _, t := range toks {
			classOf[t] = c
		}
	}
	newClass(v.ids["Once"], v.ids["<0x0A>"]) // newline -> "Once"
	for i, w := range sentence {
		target := SynthImEndID
		if i+1 < len(sentence) {
			target = v.ids[sentence[i+1]]
		}
		toks := []int{v.ids[w]}
		if w == "Once" {
			toks = append(toks, v.ids["▁Once"])
		}
		newClass(target, toks...)
	}
	return classOf, next, nil
}

// classDim is the embedding dimension of class c. Classes are spread over
// the row (stride 7, coprime with every n_embd chooseShape picks, which are
// multiples of 32 without a factor 7) so that they land in both nibble
// halves of several quantisation blocks: a wrong block layout breaks the
// output instead of going unnoticed.
func classDim(c, embd int) int { return c * 7 % embd }

// synthLogitGap is the logit margin of the intended next token over all
// others: large enough that sampling at ordinary temperatures picks it too.
const synthLogitGap = 40

// WriteSynth writes a synthetic llama model to path (atomically) and
// describes it. See SynthReply for its output. It is WriteSynthContext with
// a background context.
func WriteSynth(path string, opts SynthOptions) (SynthInfo, error) {
	return WriteSynthContext(context.Background(), path, opts)
}

// WriteSynthContext is WriteSynth with a context that can cancel a long
// write (a model of 1e9 parameters takes tens of seconds).
//
// The model's residual stream equals the token embedding: attention output
// and FFN down projections are zero and the layer norms are 1, while the other
// projections hold deterministic pseudo-random weights that cost the same
// compute as a trained model's. Each token's embedding is a one-hot vector of
// its class and the output matrix maps each class to its chosen next token
// with a logit margin of 40; the final norm is 1 on the class dimensions and
// 0 elsewhere.
func WriteSynthContext(ctx context.Context, path string, opts SynthOptions) (SynthInfo, error) {
	var info SynthInfo
	quant := opts.Quant
	if quant == "" {
		quant = "Q4_0"
	}
	typ, err := ParseTensorType(quant)
	if err != nil {
		return info, fmt.Errorf("gguf: synth %s: %w", path, err)
	}
	nctx := opts.ContextLength
	if nctx == 0 {
		nctx = 2048
	}
	if nctx < 1 || nctx > 1<<24 {
		return info, fmt.Errorf("gguf: synth %s: context length %d out of range 1..%d", path, nctx, 1<<24)
	}
	name := opts.Name
	if name == "" {
		name = "mdsa-synth"
	}
	voc := buildSynthVocab()
	shape, err := chooseShape(opts.Params, len(voc.tokens), opts.KVHeads)
	if err != nil {
		return info, err
	}
	w, err := synthWriter(voc, shape, typ, name, nctx)
	if err != nil {
		return info, fmt.Errorf("gguf: synth %s: %w", path, err)
	}
	if err := w.WriteFile(ctx, path); err != nil {
		return info, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return info, fmt.Errorf("gguf: synth: %w", err)
	}
	return SynthInfo{
		Params:        shape.params(len(voc.tokens)),
		Bytes:         st.Size(),
		NEmbd:         shape.embd,
		NLayer:        shape.layers,
		NFF:           shape.ff,
		NHead:         shape.heads,
		NHeadKV:       shape.kvHeads,
		NVocab:        len(voc.tokens),
		ContextLength: nctx,
		Quant:         typ.String(),
		Reply:         SynthReply,
	}, nil
}

// synthWriter assembles the metadata and tensor generators of a synthetic
// model.
func synthWriter(voc *synthVocab, s synthShape, typ TensorType, name string, nctx int) (*Writer, error) {
	w := NewWriter()
	w.SetString("general.architecture", "llama")
	w.SetString("general.name", name)
	w.SetString("general.description", "MDSA synthetic test model with predictable greedy output")
	w.SetUint32("general.file_type", typ.FileType())
	if typ == Q4_0 || typ == Q8_0 {
		w.SetUint32("general.quantization_version", 2)
	}
	w.SetUint32("llama.context_length", uint32(nctx))
	w.SetUint32("llama.embedding_length", uint32(s.embd))
	w.SetUint32("llama.block_count", uint32(s.layers))
	w.SetUint32("llama.feed_forward_length", uint32(s.ff))
	w.SetUint32("llama.attention.head_count", uint32(s.heads))
	w.SetUint32("llama.attention.head_count_kv", uint32(s.kvHeads))
	w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5)
	w.SetUint32("llama.rope.dimension_count", uint32(s.headDim()))
	w.SetFloat32("llama.rope.freq_base", 10000)
	w.SetUint32("llama.vocab_size", uint32(len(voc.tokens)))

	w.SetString("tokenizer.ggml.model", "llama")
	for _, a := range []struct {
		key string
		val any
	}{
		{"tokenizer.ggml.tokens", voc.tokens},
		{"tokenizer.ggml.scores", voc.scores},
		{"tokenizer.ggml.token_type", voc.types},
	} {
		if err := w.SetArray(a.key, a.val); err != nil {
			return nil, err
		}
	}
	w.SetUint32("tokenizer.ggml.bos_token_id", SynthBOSID)
	w.SetUint32("tokenizer.ggml.eos_token_id", SynthImEndID)
	w.SetUint32("tokenizer.ggml.eot_token_id", SynthImEndID)
	w.SetUint32("tokenizer.ggml.unknown_token_id", SynthUnkID)
	w.SetBool("tokenizer.ggml.add_bos_token", true)
	w.SetBool("tokenizer.ggml.add_eos_token", false)
	w.SetBool("tokenizer.ggml.add_space_prefix", true)
	w.SetString("tokenizer.chat_template", SynthChatTemplate)
	w.SetString(KeySynthReply, SynthReply)
	w.SetString(KeySynthRawPrompt, SynthRawPrompt)
	w.SetString(KeySynthRawContinuation, SynthRawContinuation)

	e, v, f := uint64(s.embd), uint64(len(voc.tokens)), uint64(s.ff)
	kv := uint64(s.headDim() * s.kvHeads)
	classOf, next, err := synthClasses(voc)
	if err != nil {
		return nil, err
	}
	if len(next) > s.embd || s.embd%7 == 0 {
		return nil, fmt.Errorf("%d token classes do not fit n_embd %d", len(next), s.embd)
	}
	// classesTo[t] lists the classes whose next token is t.
	classesTo := make(map[int][]int, len(next))
	for c, t := range next {
		classesTo[t] = append(classesTo[t], c)
	}
	outVal := float32(synthLogitGap / math.Sqrt(float64(s.embd))) // rms_norm scales a one-hot row to sqrt(n_embd)

	add := func(name string, shape []uint64, typ TensorType, fill RowFunc) error {
		return w.AddTensorFunc(name, shape, typ, fill)
	}
	ones := func(_ int, dst []float32) error {
		for i := range dst {
			dst[i] = 1
		}
		return nil
	}
	zeros := func(_ int, dst []float32) error {
		clear(dst)
		return nil
	}
	type spec struct {
		name  string
		shape []uint64
		typ   TensorType
		fill  RowFunc
	}
	specs := []spec{
		{"token_embd.weight", []uint64{e, v}, typ, func(row int, dst []float32) error {
			clear(dst)
			dst[classDim(classOf[row], s.embd)] = 1
			return nil
		}},
	}
	for l := 0; l < s.layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		specs = append(specs,
			spec{p + "attn_norm.weight", []uint64{e}, F32, ones},
			spec{p + "attn_q.weight", []uint64{e, e}, typ, randomRows(p+"attn_q", e)},
			spec{p + "attn_k.weight", []uint64{e, kv}, typ, randomRows(p+"attn_k", e)},
			spec{p + "attn_v.weight", []uint64{e, kv}, typ, randomRows(p+"attn_v", e)},
			spec{p + "attn_output.weight", []uint64{e, e}, typ, zeros},
			spec{p + "ffn_norm.weight", []uint64{e}, F32, ones},
			spec{p + "ffn_gate.weight", []uint64{e, f}, typ, randomRows(p+"ffn_gate", e)},
			spec{p + "ffn_up.weight", []uint64{e, f}, typ, randomRows(p+"ffn_up", e)},
			spec{p + "ffn_down.weight", []uint64{f, e}, typ, zeros},
		)
	}
	specs = append(specs,
		// The final norm keeps only the class dimensions. It is F32, so if a
		// quantised tensor were laid out wrongly, the embedding would land in
		// other dimensions, be zeroed here and the output would break.
		spec{"output_norm.weight", []uint64{e}, F32, func(_ int, dst []float32) error {
			clear(dst)
			for c := range next {
				dst[classDim(c, s.embd)] = 1
			}
			return nil
		}},
		spec{"output.weight", []uint64{e, v}, typ, func(row int, dst []float32) error {
			clear(dst)
			for _, c := range classesTo[row] {
				dst[classDim(c, s.embd)] = outVal
			}
			return nil
		}},
	)
	for _, sp := range specs {
		if err := add(sp.name, sp.shape, sp.typ, sp.fill); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// randomRows fills rows with deterministic pseudo-random values, uniform in
// ±1/sqrt(fanIn), seeded by the tensor name and the row number so that the
// file is the same every time.
func randomRows(name string, fanIn uint64) RowFunc {
	var seed uint64 = 0xcbf29ce484222325 // FNV-1a of the name
	for i := 0; i < len(name); i++ {
		seed ^= uint64(name[i])
		seed *= 0x100000001b3
	}
	scale := float32(1/math.Sqrt(float64(fanIn))) / (1 << 31)
	return func(row int, dst []float32) error {
		x := seed ^ (uint64(row)+1)*0x9e3779b97f4a7c15
		for i := 0; i+1 < len(dst); i += 2 {
			r := splitmix64(&x)
			dst[i] = float32(int32(uint32(r))) * scale
			dst[i+1] = float32(int32(uint32(r>>32))) * scale
		}
		if len(dst)%2 == 1 {
			dst[len(dst)-1] = float32(int32(uint32(splitmix64(&x)))) * scale
		}
		return nil
	}
}

func splitmix64(x *uint64) uint64 {
	*x += 0x9e3779b97f4a7c15
	z := *x
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
