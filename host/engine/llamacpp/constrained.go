package llamacpp

import (
	"math"
	"unsafe"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// Constrained sampling. Applying a grammar to every candidate costs a walk
// of the whole vocabulary per token (tens of thousands of UTF-8 decodes and
// grammar steps), while the token the unconstrained chain picks is almost
// always one the grammar allows. So sample draws with the chain alone and
// asks the grammar (and the UTF-8 guard) about that one token; only when
// either refuses it does it draw again from the candidates the grammar and
// the guard allow, as llama.cpp's own server does. Greedy decoding picks
// the same token either way; a sampled draw differs from a grammar-first
// chain only in how the cut-offs (top-k, top-p) meet the grammar.

// sample returns the token drawn for sl from the logits of its last
// position; -1 when none can be drawn.
func (s *sched) sample(sl *slot) llama.Token {
	if sl.grammar == 0 {
		return llama.SamplerSample(sl.sampler, s.lctx, sl.outIdx)
	}
	logits, err := llama.GetLogitsIth(s.lctx, sl.outIdx, int(s.nVocab))
	if err != nil || logits == nil {
		return -1
	}
	cur := s.candidates(sl, logits)
	llama.SamplerApply(sl.sampler, &cur)
	tok := selected(&cur)
	if tok < 0 || !grammarAllows(sl.grammar, tok) || sl.guard && !s.e.utf8.allows(tok, sl.utf8) {
		if sl.guard {
			s.e.utf8.mask(logits, sl.utf8)
		}
		cur = s.candidates(sl, logits)
		llama.SamplerApply(sl.grammar, &cur)
		llama.SamplerApply(sl.sampler, &cur)
		tok = selected(&cur)
	}
	if tok >= 0 {
		llama.SamplerAccept(sl.grammar, tok)
		llama.SamplerAccept(sl.sampler, tok)
	}
	return tok
}

// candidates fills sl's candidate buffer from logits.
func (s *sched) candidates(sl *slot, logits []float32) llama.TokenDataArray {
	if cap(sl.cands) < len(logits) {
		sl.cands = make([]llama.TokenData, len(logits))
	}
	c := sl.cands[:len(logits)]
	for i, l := range logits {
		c[i] = llama.TokenData{Id: llama.Token(i), Logit: l}
	}
	return llama.TokenDataArray{Data: &c[0], Size: uint64(len(c)), Selected: -1}
}

// selected returns the token a chain selected in cur, or -1.
func selected(cur *llama.TokenDataArray) llama.Token {
	if cur.Selected < 0 || uint64(cur.Selected) >= cur.Size || cur.Data == nil {
		return -1
	}
	return unsafe.Slice(cur.Data, cur.Size)[cur.Selected].Id
}

// grammarAllows reports whether grammar g may take tok next.
func grammarAllows(g llama.Sampler, tok llama.Token) bool {
	one := [1]llama.TokenData{{Id: tok, Logit: 1}}
	arr := llama.TokenDataArray{Data: &one[0], Size: 1, Selected: -1}
	llama.SamplerApply(g, &arr)
	return !math.IsInf(float64(one[0].Logit), -1)
}
