package llamacpp

import (
	"context"
	"fmt"
	"math"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/mdsa-go/mdsa/host/engine"
)

// maxEmbedContext caps the tokens of one Embed input; the embedding context
// computes a whole input in one physical batch.
const maxEmbedContext = 2048

// Embed returns one L2-normalised vector of Info().EmbeddingSize floats per
// input: the mean of the model's final hidden states over the input's tokens
// (BOS/EOS added as the vocabulary asks, special-token text not parsed).
// It uses a separate embeddings-enabled llama.cpp context, created on first
// use and shared by Embed calls one at a time. It fails with
// engine.ErrNotSupported when llama.cpp cannot produce pooled embeddings for
// the model, and with an error when an input has more tokens than the
// embedding context holds (min(ContextSize, 2048)).
func (e *Engine) Embed(ctx context.Context, inputs []string) ([][]float32, error) {
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.inflight.Done()

	toks := make([][]llama.Token, len(inputs))
	for i, in := range inputs {
		if in == "" {
			return nil, fmt.Errorf("llamacpp: embedding input %d is empty: %w", i, engine.ErrInvalidInput)
		}
		t, err := e.tokenize(fmt.Sprintf("input %d", i), in, true, false)
		if err != nil {
			return nil, err
		}
		if len(t) == 0 {
			return nil, fmt.Errorf("llamacpp: embedding input %d is empty: %w", i, engine.ErrInvalidInput)
		}
		toks[i] = t
	}

	select {
	case e.embedSlot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("llamacpp: waiting for the embedding context: %w", ctx.Err())
	case <-e.done:
		return nil, engine.ErrClosed
	}
	defer func() { <-e.embedSlot }()

	lctx, nCtx, err := e.embedContext()
	if err != nil {
		return nil, err
	}
	mem, err := llama.GetMemory(lctx)
	if err != nil {
		return nil, fmt.Errorf("llamacpp: embedding context memory: %w", err)
	}
	dim := int32(e.info.EmbeddingSize)

	out := make([][]float32, len(inputs))
	for i, t := range toks {
		if err := e.stopped(ctx); err != nil {
			return nil, fmt.Errorf("llamacpp: embedding stopped at input %d: %w", i, err)
		}
		if len(t) > nCtx {
			return nil, fmt.Errorf("llamacpp: %w", &engine.ContextLengthError{What: fmt.Sprintf("embedding input %d", i), Tokens: len(t), Context: nCtx})
		}
		if err := llama.MemoryClear(mem, false); err != nil {
			return nil, fmt.Errorf("llamacpp: clearing the embedding context: %w", err)
		}
		batch := llama.BatchGetOne(t)
		var ret int32
		k := e.cores.acquire(int(e.cparam.NThreads), nil)
		if e.hasEncoder && !e.hasDecoder {
			ret, err = llama.Encode(lctx, batch)
		} else {
			ret, err = llama.Decode(lctx, batch)
		}
		e.cores.release(k)
		if err != nil {
			return nil, fmt.Errorf("llamacpp: embedding input %d: %w", i, err)
		}
		if ret != 0 {
			return nil, decodeError(fmt.Sprintf("embedding input %d", i), ret)
		}
		vec, err := llama.GetEmbeddingsSeq(lctx, 0, dim)
		if err != nil {
			return nil, fmt.Errorf("llamacpp: reading embedding %d: %w", i, err)
		}
		if vec == nil {
			return nil, fmt.Errorf("llamacpp: llama.cpp returned no pooled embedding for %s: %w", e.info.Name, engine.ErrNotSupported)
		}
		out[i] = normalize(vec)
	}
	return out, nil
}

// embedContext returns the embedding context, creating it on first use. The
// caller holds embedSlot.
func (e *Engine) embedContext() (llama.Context, int, error) {
	if e.embed != 0 {
		return e.embed, int(llama.NCtx(e.embed)), nil
	}
	if e.embedErr != nil {
		return 0, 0, e.embedErr
	}
	n := min(e.info.ContextSize, maxEmbedContext)
	cp := e.cparam
	cp.NCtx = uint32(n)
	cp.NBatch = uint32(n)
	cp.NUbatch = uint32(n)
	cp.NSeqMax = 1
	cp.Embeddings = 1
	cp.PoolingType = llama.PoolingTypeMean
	lctx, err := llama.InitFromModel(e.model, cp)
	if err != nil {
		msg := lastLlamaError()
		e.embedErr = fmt.Errorf("llamacpp: %s cannot create an embeddings context (%v %s): %w", e.info.Name, err, msg, engine.ErrNotSupported)
		return 0, 0, e.embedErr
	}
	if llama.GetPoolingType(lctx) == llama.PoolingTypeNone {
		llama.Free(lctx)
		e.embedErr = fmt.Errorf("llamacpp: %s has no pooled embeddings: %w", e.info.Name, engine.ErrNotSupported)
		return 0, 0, e.embedErr
	}
	e.embed = lctx
	return lctx, int(llama.NCtx(lctx)), nil
}

// normalize copies v (which may live in C memory) scaled to unit L2 norm; a
// zero vector stays zero.
func normalize(v []float32) []float32 {
	out := make([]float32, len(v))
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 || math.IsNaN(sum) || math.IsInf(sum, 0) {
		copy(out, v)
		return out
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}
