package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/mdsa-go/mdsa/host/engine"
)

// penaltyLastN is how many recent tokens the repeat penalty looks at.
const penaltyLastN = 64

// Generate runs req on the engine's scheduler and streams the reply to
// onToken, which is called on the caller's goroutine. See engine.Engine. On
// error the returned Result holds what was produced until then.
func (e *Engine) Generate(ctx context.Context, req engine.Request, onToken engine.TokenFunc) (engine.Result, error) {
	res := engine.Result{Model: e.info.Name}
	if err := e.begin(); err != nil {
		return res, err
	}
	defer e.inflight.Done()
	if !e.hasDecoder {
		return res, errNoDecoder
	}

	if g := req.Params.Grammar; g != "" {
		// Parsed here so that a bad grammar is the caller's error; the
		// scheduler builds each sequence's own sampler from it.
		if len(g) > maxGrammarBytes {
			return res, fmt.Errorf("llamacpp: the grammar has %d bytes, at most %d: %w", len(g), maxGrammarBytes, engine.ErrInvalidInput)
		}
		gs := llama.SamplerInitGrammar(e.vocab, g, "root")
		if gs == 0 {
			return res, fmt.Errorf("llamacpp: the grammar does not parse (GBNF, root rule \"root\"): %w", engine.ErrInvalidInput)
		}
		llama.SamplerFree(gs)
		e.utf8Once.Do(func() { e.utf8 = newUTF8Table(e.vocab, llama.VocabNTokens(e.vocab)) })
	}
	tokens, err := e.promptTokens(req)
	if err != nil {
		return res, err
	}
	res.TokensIn = len(tokens)
	if len(tokens) == 0 {
		return res, fmt.Errorf("llamacpp: the prompt is empty: %w", engine.ErrInvalidInput)
	}
	if n := req.Params.MaxPromptTokens; n > 0 && len(tokens) > n {
		return res, fmt.Errorf("llamacpp: the prompt has %d tokens, the budget allows %d: %w", len(tokens), n, engine.ErrOverBudget)
	}
	if len(tokens) >= e.info.ContextSize {
		// At least one token must fit after the prompt.
		return res, fmt.Errorf("llamacpp: %w (raise Options.ContextSize or shorten the prompt)",
			&engine.ContextLengthError{What: "prompt", Tokens: len(tokens), Context: e.info.ContextSize})
	}
	if req.Params.IgnoreEOS {
		// The sampler needs the end-of-generation tokens.
		select {
		case <-e.specialsReady:
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("llamacpp: waiting for a free sequence: %w", err)
	}

	r := &genRequest{ctx: ctx, tokens: tokens, params: req.Params, signal: make(chan struct{}, 1), quiet: onToken == nil}
	if err := e.sched.submit(r); err != nil {
		return res, err
	}
	var chunks []string
	var cbErr error
	var dropped error
	for waiting := ctx.Done(); ; {
		select {
		case <-r.signal:
		case <-waiting:
			// Still queued: leave at once. Admitted: the scheduler ends
			// the generation at its next step and says so.
			if e.sched.unqueue(r) {
				res.TokensIn = len(tokens)
				return res, fmt.Errorf("llamacpp: waiting for a free sequence: %w", ctx.Err())
			}
			waiting = nil
			continue
		}
		var done bool
		chunks, done, res, err = r.take(chunks)
		if onToken != nil && cbErr == nil && dropped == nil {
			for _, c := range chunks {
				if stop := e.stopped(ctx); stop != nil {
					// The caller has gone, or the engine is closing: the
					// rest of the text is not delivered, so the generation
					// did not succeed, however it ended.
					dropped = stop
					break
				}
				if cbErr = onToken(c); cbErr != nil {
					r.mu.Lock()
					r.callbackErr = cbErr
					r.mu.Unlock()
					e.sched.poke()
					break
				}
			}
		}
		if done {
			if cbErr != nil && (err == nil || !errors.Is(err, cbErr)) {
				return res, fmt.Errorf("llamacpp: token callback: %w", cbErr)
			}
			if dropped != nil && err == nil {
				return res, fmt.Errorf("llamacpp: generation stopped after %d tokens: %w", res.TokensOut, dropped)
			}
			return res, err
		}
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

// newSampler builds the sampler chain for p (a Grammar is not part of it:
// see sched.sample). With
// IgnoreEOS a bias bans the end-of-generation tokens eog. Temperature 0 (or below)
// is greedy decoding and ignores the other settings. Otherwise the chain is
// repeat penalty (when RepeatPenalty is set and not 1), top-k (when > 0),
// top-p (when in (0,1)), temperature, and a seeded draw; Seed 0 means a
// random seed.
// maxGrammarBytes bounds a grammar (llama.cpp expands repetitions into
// rules, so its cost grows with the text).
const maxGrammarBytes = 256 << 10

func newSampler(p engine.Params, vocab llama.Vocab, nVocab int32, eog []llama.Token) llama.Sampler {
	chain := llama.SamplerChainInit(llama.SamplerChainParams{NoPerf: 1})
	if p.IgnoreEOS && len(eog) > 0 {
		bias := make([]llama.LogitBias, len(eog))
		for i, t := range eog {
			bias[i] = llama.LogitBias{Token: t, Bias: float32(math.Inf(-1))}
		}
		llama.SamplerChainAdd(chain, llama.SamplerInitLogitBias(nVocab, int32(len(bias)), &bias[0]))
	}
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
