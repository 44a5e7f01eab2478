package conformance

import (
	"context"
	"hash/fnv"
	"math"
	"strings"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// FakeText is the generation FakeServices returns when its Text is empty.
const FakeText = "Thanks for your question. Here is a short, general answer from the conformance kit's fake model: " +
	"check the details you have, follow the usual steps for this kind of request, and ask for more help if the problem persists."

// FakeModel is the model name FakeServices reports.
const FakeModel = "conformance-fake"

// FakeServices serves a plugin's host calls without a model: Generate
// returns a fixed text, Embed deterministic unit vectors derived from each
// input, CountTokens the number of whitespace-separated words. It is safe
// for concurrent use. Use it as plugin.Options.Services of the Runtime given
// to Check.
type FakeServices struct {
	// Text is what Generate returns; empty means FakeText.
	Text string
	// Dims is the dimension of Embed's vectors; 0 means 8.
	Dims int
}

var _ plugin.Services = FakeServices{}

// Generate returns the fixed text, cut to req.MaxTokens words.
func (f FakeServices) Generate(ctx context.Context, _ plugin.Call, req abi.GenerateRequest) (abi.GenerateResponse, error) {
	if err := ctx.Err(); err != nil {
		return abi.GenerateResponse{}, err
	}
	text := f.Text
	if text == "" {
		text = FakeText
	}
	words := strings.Fields(text)
	finish := "stop"
	if req.MaxTokens > 0 && len(words) > req.MaxTokens {
		words = words[:req.MaxTokens]
		text = strings.Join(words, " ")
		finish = "length"
	}
	in := len(strings.Fields(req.Prompt))
	for _, m := range req.Messages {
		in += len(strings.Fields(m.Content))
	}
	return abi.GenerateResponse{Text: text, Model: FakeModel, TokensIn: in, TokensOut: len(words), FinishReason: finish}, nil
}

// Embed returns one deterministic unit vector per input.
func (f FakeServices) Embed(ctx context.Context, _ plugin.Call, req abi.EmbedRequest) (abi.EmbedResponse, error) {
	if err := ctx.Err(); err != nil {
		return abi.EmbedResponse{}, err
	}
	dims := f.Dims
	if dims <= 0 {
		dims = 8
	}
	vecs := make([][]float32, len(req.Input))
	for i, s := range req.Input {
		v := make([]float32, dims)
		var norm float64
		for d := range v {
			h := fnv.New64a()
			h.Write([]byte{byte(d)})
			h.Write([]byte(s))
			x := float64(h.Sum64()%2001)/1000 - 1 // in [-1, 1]
			v[d] = float32(x)
			norm += x * x
		}
		if norm > 0 {
			n := float32(math.Sqrt(norm))
			for d := range v {
				v[d] /= n
			}
		}
		vecs[i] = v
	}
	return abi.EmbedResponse{Model: FakeModel + "-embed", Vectors: vecs}, nil
}

// CountTokens counts whitespace-separated words.
func (f FakeServices) CountTokens(ctx context.Context, _ plugin.Call, req abi.CountTokensRequest) (abi.CountTokensResponse, error) {
	if err := ctx.Err(); err != nil {
		return abi.CountTokensResponse{}, err
	}
	return abi.CountTokensResponse{Count: len(strings.Fields(req.Text))}, nil
}
