package llamacpp

import (
	"context"
	"errors"
	"fmt"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/mdsa-go/mdsa/host/engine"
)

// penaltyLastN is how many recent tokens the repeat penalty looks at.
const penaltyLastN = 64

// seq0 is the only sequence id each pooled context uses.
var seq0 = []llama.SeqId{0}

// Generate runs req on a pooled context and streams the reply to onToken.
// See engine.Engine. On error the returned Result holds what was produced
// until then.
func (e *Engine) Generate(ctx context.Context, req engine.Request, onToken engine.TokenFunc) (engine.Result, error) {
	res := engine.Result{Model: e.info.Name}
	if err := e.begin(); err != nil {
		return res, err
	}
	defer e.inflight.Done()
	if !e.hasDecoder {
		return res, errNoDecoder
	}

	tokens, err := e.promptTokens(req)
	if err != nil {
		return res, err
	}
	res.TokensIn = len(tokens)
	if len(tokens) == 0 {
		return res, errors.New("llamacpp: the prompt is empty")
	}
	if len(tokens) >= e.info.ContextSize {
		return res, fmt.Errorf("llamacpp: prompt has %d tokens, the context holds %d (raise ContextSize or shorten the prompt)", len(tokens), e.info.ContextSize)
	}

	sc, err := e.acquire(ctx)
	if err != nil {
		return res, err
	}
	defer e.release(sc)
	return e.run(ctx, sc, tokens, req.Params, onToken, res)
}

// run decodes the prompt and samples the reply on sc, which the caller owns.
func (e *Engine) run(ctx context.Context, sc *seqContext, tokens []llama.Token, p engine.Params, onToken engine.TokenFunc, res engine.Result) (engine.Result, error) {
	if err := llama.MemoryClear(sc.mem, false); err != nil {
		return res, fmt.Errorf("llamacpp: clearing the KV cache: %w", err)
	}
	chain := newSampler(p)
	defer llama.SamplerFree(chain)

	// Prompt, in batches of the context's batch size; logits for the last
	// token only.
	nBatch := sc.nBatch
	for start := 0; start < len(tokens); start += nBatch {
		if err := e.stopped(ctx); err != nil {
			return res, fmt.Errorf("llamacpp: generation stopped while reading the prompt: %w", err)
		}
		end := min(start+nBatch, len(tokens))
		sc.batch.Clear()
		for i := start; i < end; i++ {
			if err := sc.batch.Add(tokens[i], llama.Pos(i), seq0, i == len(tokens)-1); err != nil {
				return res, fmt.Errorf("llamacpp: filling the prompt batch: %w", err)
			}
		}
		if ret, err := llama.Decode(sc.lctx, sc.batch); err != nil || ret != 0 {
			if err != nil {
				return res, fmt.Errorf("llamacpp: decoding the prompt: %w", err)
			}
			return res, decodeError("decoding the prompt", ret)
		}
	}

	var emit func(string) error
	if onToken != nil {
		emit = func(s string) error { return onToken(s) }
	}
	st := newStreamer(p.Stop, emit)
	pos := len(tokens)
	piece := make([]byte, 128)
	finish := func(reason string) (engine.Result, error) {
		res.FinishReason = reason
		var err error
		if reason != engine.FinishStop || !st.stopped {
			err = st.flush()
		}
		res.Text = st.Text()
		if err != nil {
			return res, fmt.Errorf("llamacpp: token callback: %w", err)
		}
		return res, nil
	}

	for {
		if err := e.stopped(ctx); err != nil {
			res.Text = st.Text()
			return res, fmt.Errorf("llamacpp: generation stopped after %d tokens: %w", res.TokensOut, err)
		}
		tok := llama.SamplerSample(chain, sc.lctx, -1)
		if tok < 0 {
			res.Text = st.Text()
			return res, fmt.Errorf("llamacpp: sampling failed after %d tokens", res.TokensOut)
		}
		if llama.VocabIsEOG(e.vocab, tok) {
			return finish(engine.FinishStop)
		}
		res.TokensOut++
		var b []byte
		b, piece = tokenPiece(e.vocab, tok, piece)
		stopped, err := st.push(b)
		if err != nil {
			res.Text = st.Text()
			return res, fmt.Errorf("llamacpp: token callback: %w", err)
		}
		if stopped {
			return finish(engine.FinishStop)
		}
		if p.MaxTokens > 0 && res.TokensOut >= p.MaxTokens {
			return finish(engine.FinishLength)
		}
		if pos >= sc.nCtx {
			return finish(engine.FinishLength)
		}
		sc.batch.Clear()
		if err := sc.batch.Add(tok, llama.Pos(pos), seq0, true); err != nil {
			res.Text = st.Text()
			return res, fmt.Errorf("llamacpp: filling the token batch: %w", err)
		}
		ret, err := llama.Decode(sc.lctx, sc.batch)
		if err != nil {
			res.Text = st.Text()
			return res, fmt.Errorf("llamacpp: decoding token %d: %w", res.TokensOut, err)
		}
		if ret == 1 { // no KV slot left: the context is full
			return finish(engine.FinishLength)
		}
		if ret != 0 {
			res.Text = st.Text()
			return res, decodeError("decoding a generated token", ret)
		}
		pos++
	}
}

// tokenPiece returns the bytes of tok (special tokens render as nothing),
// growing buf when the piece does not fit. It returns the piece and the
// buffer to reuse.
func tokenPiece(vocab llama.Vocab, tok llama.Token, buf []byte) ([]byte, []byte) {
	n := llama.TokenToPiece(vocab, tok, buf, 0, false)
	if n < 0 {
		buf = make([]byte, -n)
		n = llama.TokenToPiece(vocab, tok, buf, 0, false)
	}
	if n <= 0 || int(n) > len(buf) {
		return nil, buf
	}
	return buf[:n], buf
}

// newSampler builds the sampler chain for p. Temperature 0 (or below) is
// greedy decoding and ignores the other settings. Otherwise the chain is
// repeat penalty (when RepeatPenalty is set and not 1), top-k (when > 0),
// top-p (when in (0,1)), temperature, and a seeded draw; Seed 0 means a
// random seed.
func newSampler(p engine.Params) llama.Sampler {
	chain := llama.SamplerChainInit(llama.SamplerChainParams{NoPerf: 1})
	if p.Temperature <= 0 {
		llama.SamplerChainAdd(chain, llama.SamplerInitGreedy())
		return chain
	}
	if p.RepeatPenalty > 0 && p.RepeatPenalty != 1 {
		// yzma v1.28.0 declares a leading n_vocab argument that the
		// llama.cpp C function may no longer take; passing the window size
		// in both integer slots gives the same call either way.
		llama.SamplerChainAdd(chain, llama.SamplerInitPenalties(penaltyLastN, penaltyLastN, p.RepeatPenalty, 0, 0))
	}
	if p.TopK > 0 {
		llama.SamplerChainAdd(chain, llama.SamplerInitTopK(int32(p.TopK)))
	}
	if p.TopP > 0 && p.TopP < 1 {
		llama.SamplerChainAdd(chain, llama.SamplerInitTopP(p.TopP, 1))
	}
	llama.SamplerChainAdd(chain, llama.SamplerInitTemp(p.Temperature))
	seed := p.Seed
	if seed == 0 {
		seed = llama.DefaultSeed
	}
	llama.SamplerChainAdd(chain, llama.SamplerInitDist(seed))
	return chain
}
