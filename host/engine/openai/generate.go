package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
)

// body is the upstream request for req.
func (e *Engine) body(req engine.Request) chatRequest {
	p := req.Params
	body := chatRequest{
		Model: e.model, Messages: req.Messages, Prompt: req.Prompt,
		MaxTokens: p.MaxTokens, Temperature: p.Temperature, TopP: p.TopP, Stop: p.Stop,
		Stream: true, StreamOptions: &streamOptions{IncludeUsage: true},
	}
	if p.Seed != 0 {
		seed := p.Seed
		body.Seed = &seed
	}
	switch e.opts.Kind {
	case KindLlamaServer:
		yes := true
		body.CachePrompt = &yes
		body.TopK, body.IgnoreEOS = p.TopK, p.IgnoreEOS
		body.Grammar = p.Grammar
		if p.RepeatPenalty > 0 {
			body.RepeatPenalty = p.RepeatPenalty
		}
	case KindVLLM:
		body.TopK, body.IgnoreEOS = p.TopK, p.IgnoreEOS
		if p.Grammar != "" {
			body.StructuredOutputs = &structuredOutputs{Grammar: p.Grammar}
		}
		if p.RepeatPenalty > 0 {
			body.RepetitionPenalty = p.RepeatPenalty
		}
	case KindOllama:
		if p.Grammar != "" && p.Schema != nil {
			body.ResponseFormat = &responseFormat{Type: "json_schema",
				JSONSchema: responseSchema{Name: "answer", Schema: p.Schema, Strict: true}}
		}
	}
	return body
}

// TakesGrammar reports whether servers of kind constrain a generation to
// a GBNF grammar (engine.Params.Grammar): llama-server and vLLM do; Ollama
// takes only JSON schemas (see Constrains) and plain OpenAI-compatible
// servers nothing.
func TakesGrammar(kind string) bool {
	return kind == KindLlamaServer || kind == KindVLLM
}

// Constrains reports whether servers of kind can enforce p's constraint:
// its grammar (TakesGrammar), or, on Ollama, the JSON Schema of a response
// format (p.Schema; a toolset's grammar has none).
func Constrains(kind string, p engine.Params) bool {
	return p.Grammar == "" || TakesGrammar(kind) || (kind == KindOllama && p.Schema != nil)
}

// Generate implements engine.Engine: the request is streamed from one
// backend, retried on another if that one fails before its first token.
// Token counts come from the backend's usage (requested with
// stream_options.include_usage); a backend that sends none is counted by
// its stream events.
func (e *Engine) Generate(ctx context.Context, req engine.Request, onToken engine.TokenFunc) (engine.Result, error) {
	switch {
	case len(req.Messages) > 0 && req.Prompt != "":
		return engine.Result{}, fmt.Errorf("openai: request sets both Messages and Prompt; set one: %w", engine.ErrInvalidInput)
	case len(req.Messages) == 0 && req.Prompt == "":
		return engine.Result{}, fmt.Errorf("openai: request has neither Messages nor Prompt: %w", engine.ErrInvalidInput)
	case !Constrains(e.opts.Kind, req.Params):
		what := "take no grammar (llama-server and vLLM do)"
		if e.opts.Kind == KindOllama {
			what = "take response formats but no grammar, so no tools (llama-server and vLLM do)"
		}
		return engine.Result{}, fmt.Errorf("openai: model %q: %s servers %s: %w", e.opts.Name, e.opts.Kind, what, engine.ErrNotSupported)
	}
	if n := req.Params.MaxPromptTokens; n > 0 {
		if err := e.checkPromptBudget(ctx, req, n); err != nil {
			return engine.Result{}, err
		}
	}
	body := e.body(req)
	path := "/v1/chat/completions"
	if req.Prompt != "" {
		path = "/v1/completions"
	}
	var res engine.Result
	err := e.attempt(ctx, prefixKey(req), func(ctx context.Context, b *backend) (bool, error) {
		var started bool
		var err error
		res, started, err = e.stream(ctx, b, path, body, onToken)
		return started, err
	})
	res.Model = e.opts.Name
	return res, err
}

// stream runs one streamed completion on b.
func (e *Engine) stream(ctx context.Context, b *backend, path string, body chatRequest, onToken engine.TokenFunc) (res engine.Result, started bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	first := time.AfterFunc(e.opts.FirstTokenTimeout, func() { cancel(errFirstToken) })
	defer first.Stop()
	resp, err := e.post(ctx, b, path, body)
	if err != nil {
		return res, false, timeoutCause(ctx, err)
	}
	defer resp.Body.Close()

	var idle *time.Timer
	defer func() {
		if idle != nil {
			idle.Stop()
		}
	}()
	sse := newSSEReader(resp.Body)
	var text []byte
	events, finished := 0, false
	var u *usage
	var tm *timings
	for {
		data, err := sse.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if finished {
					break
				}
				err = errStreamEnded
			}
			return res, started, timeoutCause(ctx, err)
		}
		if idle == nil {
			first.Stop()
			idle = time.AfterFunc(e.opts.IdleTimeout, func() { cancel(errIdle) })
		} else {
			idle.Reset(e.opts.IdleTimeout)
		}
		if string(data) == "[DONE]" {
			finished = true
			break
		}
		var c chunk
		if err := json.Unmarshal(data, &c); err != nil {
			return res, started, fmt.Errorf("openai: backend %s sent a stream event that is not JSON: %w", b.url, err)
		}
		if c.Error != nil {
			return res, started, &upstreamError{Backend: b.url, Status: 500, Err: *c.Error}
		}
		if c.Usage != nil {
			u = c.Usage
		}
		if c.Timings != nil {
			tm = c.Timings
		}
		for _, ch := range c.Choices {
			piece := ch.Delta.Content + ch.Text
			if len(text)+len(piece) > maxAnswerBytes {
				return res, started, fmt.Errorf("openai: backend %s sent more than %d bytes of answer", b.url, maxAnswerBytes)
			}
			if piece != "" {
				events++
				text = append(text, piece...)
				started = true
				if onToken != nil {
					if err := onToken(piece); err != nil {
						return res, started, fmt.Errorf("%w: %w", errCallback, err)
					}
				}
			}
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				finished = true
				res.FinishReason = engine.FinishStop
				if *ch.FinishReason == "length" {
					res.FinishReason = engine.FinishLength
				}
			}
		}
	}
	if res.FinishReason == "" {
		res.FinishReason = engine.FinishStop
	}
	res.Text = string(text)
	res.TokensOut = events
	if u != nil {
		res.TokensIn, res.TokensOut = u.PromptTokens, u.CompletionTokens
		if u.PromptTokensDetails != nil {
			res.TokensCached = u.PromptTokensDetails.CachedTokens
		}
	}
	if tm != nil {
		if res.TokensIn == 0 {
			res.TokensIn = tm.CacheN + tm.PromptN
		}
		res.TokensCached = tm.CacheN
	}
	return res, started, nil
}

// timeoutCause replaces err by the timeout that cancelled ctx, if one did.
func timeoutCause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); errors.Is(c, errFirstToken) || errors.Is(c, errIdle) {
		return c
	}
	return err
}

// checkPromptBudget refuses a prompt over budget tokens before any backend
// evaluates it (a plugin's host-work budget), counted as CountTokens does.
func (e *Engine) checkPromptBudget(ctx context.Context, req engine.Request, budget int) error {
	text := req.Prompt
	for _, m := range req.Messages {
		text += m.Content + "\n"
	}
	n, err := e.CountTokens(ctx, text)
	if err != nil {
		return err
	}
	if n > budget {
		return fmt.Errorf("openai: the prompt has %d tokens, the budget allows %d: %w", n, budget, engine.ErrOverBudget)
	}
	return nil
}

// maxAnswerBytes bounds the text of one answer a backend streams: one
// that never stops cannot make the gateway hold more.
const maxAnswerBytes = 16 << 20

// maxEmbedBatch is how many inputs one embeddings request carries.
const maxEmbedBatch = 64

// maxEmbeddingsBytes bounds one embeddings answer (64 vectors of 4,096
// floats as JSON are about 6 MB).
const maxEmbeddingsBytes = 64 << 20

// Embed implements engine.Engine, in requests of up to 64 inputs.
func (e *Engine) Embed(ctx context.Context, inputs []string) ([][]float32, error) {
	out := make([][]float32, 0, len(inputs))
	for start := 0; start < len(inputs); start += maxEmbedBatch {
		batch := inputs[start:min(start+maxEmbedBatch, len(inputs))]
		var vecs [][]float32
		err := e.attempt(ctx, 0, func(ctx context.Context, b *backend) (bool, error) {
			var err error
			vecs, err = e.embed(ctx, b, batch)
			return false, err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, vecs...)
	}
	return out, nil
}

func (e *Engine) embed(ctx context.Context, b *backend, inputs []string) ([][]float32, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, e.opts.FirstTokenTimeout, errFirstToken)
	defer cancel()
	resp, err := e.post(ctx, b, "/v1/embeddings", embeddingRequest{Model: e.model, Input: inputs})
	if err != nil {
		return nil, timeoutCause(ctx, err)
	}
	defer resp.Body.Close()
	var er embeddingResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxEmbeddingsBytes)).Decode(&er); err != nil {
		return nil, fmt.Errorf("openai: backend %s: reading embeddings: %w", b.url, timeoutCause(ctx, err))
	}
	vecs := make([][]float32, len(inputs))
	for _, d := range er.Data {
		if d.Index < 0 || d.Index >= len(inputs) || vecs[d.Index] != nil {
			return nil, fmt.Errorf("openai: backend %s answered embedding index %d for %d inputs", b.url, d.Index, len(inputs))
		}
		vecs[d.Index] = d.Embedding
	}
	for i, v := range vecs {
		if v == nil {
			return nil, fmt.Errorf("openai: backend %s answered no embedding for input %d", b.url, i)
		}
	}
	return vecs, nil
}

// CountTokens implements engine.Engine. llama-server and vLLM count with
// the model's tokenizer (POST /tokenize); other servers have no such
// endpoint, and the count is an estimate: one token per 4 bytes, rounded
// up, which is what OpenAI documents for English text.
func (e *Engine) CountTokens(ctx context.Context, text string) (int, error) {
	var body any
	switch e.opts.Kind {
	case KindLlamaServer:
		body = map[string]any{"content": text, "add_special": false}
	case KindVLLM:
		body = map[string]any{"model": e.model, "prompt": text, "add_special_tokens": false}
	default:
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		return (len(text) + 3) / 4, nil
	}
	var n int
	err := e.attempt(ctx, 0, func(ctx context.Context, b *backend) (bool, error) {
		ctx, cancel := context.WithTimeoutCause(ctx, e.opts.FirstTokenTimeout, errFirstToken)
		defer cancel()
		resp, err := e.post(ctx, b, "/tokenize", body)
		if err != nil {
			return false, timeoutCause(ctx, err)
		}
		defer resp.Body.Close()
		var tr struct {
			Count  *int              `json:"count"`
			Tokens []json.RawMessage `json:"tokens"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&tr); err != nil {
			return false, fmt.Errorf("openai: backend %s: reading /tokenize: %w", b.url, err)
		}
		n = len(tr.Tokens)
		if tr.Count != nil {
			n = *tr.Count
		}
		return false, nil
	})
	return n, err
}
