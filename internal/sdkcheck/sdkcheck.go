// Package sdkcheck holds the test harness the AssemblyScript and C SDK
// tests share: fake host services, loading through the host's runtime,
// raw Extism calls with inputs the host never sends, and the malformed-input
// cases both SDKs' JSON decoders must reject the same way.
package sdkcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	extism "github.com/extism/go-sdk"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// FakeServices answers mdsa_generate with "echo: <last message>" and
// records the requests; tenant "denied" is refused with model_denied.
// mdsa_embed is unavailable unless EmbedDim is set.
type FakeServices struct {
	// EmbedDim, when positive, makes Embed answer with FakeVector(input,
	// EmbedDim) for each input (model "fake-embed"); zero refuses every
	// embed call with unavailable.
	EmbedDim int

	mu     sync.Mutex
	reqs   []abi.GenerateRequest
	embeds []abi.EmbedRequest
}

// Generate answers "echo: " and the last message, or refuses tenant "denied".
func (f *FakeServices) Generate(ctx context.Context, c plugin.Call, req abi.GenerateRequest) (abi.GenerateResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if c.Tenant == "denied" {
		return abi.GenerateResponse{}, &plugin.CodedError{Code: abi.ErrModelDenied, Err: errors.New("tenant may not use the model")}
	}
	text := req.Prompt
	if n := len(req.Messages); n > 0 {
		text = req.Messages[n-1].Content
	}
	return abi.GenerateResponse{Text: "echo: " + text, Model: "fake", TokensIn: 3, TokensOut: 2, FinishReason: "stop"}, nil
}

// Embed records the request and answers FakeVector of each input when
// EmbedDim is positive; it refuses tenant "denied" with model_denied, and
// every call with unavailable when EmbedDim is zero.
func (f *FakeServices) Embed(ctx context.Context, c plugin.Call, req abi.EmbedRequest) (abi.EmbedResponse, error) {
	f.mu.Lock()
	f.embeds = append(f.embeds, req)
	f.mu.Unlock()
	if f.EmbedDim <= 0 {
		return abi.EmbedResponse{}, &plugin.CodedError{Code: abi.ErrUnavailable, Err: errors.New("no embedder")}
	}
	if c.Tenant == "denied" {
		return abi.EmbedResponse{}, &plugin.CodedError{Code: abi.ErrModelDenied, Err: errors.New("tenant may not use the embedding model")}
	}
	resp := abi.EmbedResponse{Model: "fake-embed", Vectors: make([][]float32, len(req.Input))}
	for i, in := range req.Input {
		resp.Vectors[i] = FakeVector(in, f.EmbedDim)
	}
	return resp, nil
}

// FakeVector is the vector FakeServices.Embed returns for text: dim values
// that depend on text's length and on the index, with both signs, zero and
// negative zero, a subnormal float32, and magnitudes that encoding/json
// writes with positive and negative exponents.
func FakeVector(text string, dim int) []float32 {
	scales := [...]float64{1, -0.001, 1.5e-7, -2.5e12, 1e30, -3e-20, 0.333, 0, math.Copysign(0, -1), 7e-42, -1.0 / 3}
	v := make([]float32, dim)
	for j := range v {
		v[j] = float32(float64(len(text)+j+1) * scales[j%len(scales)])
	}
	return v
}

// LastEmbed returns the last embed request and how many there were.
func (f *FakeServices) LastEmbed() (abi.EmbedRequest, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.embeds) == 0 {
		return abi.EmbedRequest{}, 0
	}
	return f.embeds[len(f.embeds)-1], len(f.embeds)
}

// CountTokens counts words.
func (f *FakeServices) CountTokens(ctx context.Context, c plugin.Call, req abi.CountTokensRequest) (abi.CountTokensResponse, error) {
	return abi.CountTokensResponse{Count: len(strings.Fields(req.Text))}, nil
}

// Last returns the last generate request and how many there were.
func (f *FakeServices) Last() (abi.GenerateRequest, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return abi.GenerateRequest{}, 0
	}
	return f.reqs[len(f.reqs)-1], len(f.reqs)
}

// Load loads wasm (labelled name) into a fresh runtime closed at the end of
// the test.
func Load(t testing.TB, name string, wasm []byte, svc plugin.Services) *plugin.Plugin {
	t.Helper()
	ctx := context.Background()
	rt, err := plugin.NewRuntime(ctx, plugin.Options{Services: svc, PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	p, err := rt.LoadBytes(ctx, name, wasm)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

// RawPlugin instantiates wasm with the Extism SDK alone, so that tests can
// pass inputs the host's runtime would never send.
func RawPlugin(t testing.TB, wasm []byte) *extism.Plugin {
	t.Helper()
	return rawPlugin(t, wasm, nil)
}

// HostReply answers one call of an MDSA host function made by a plugin
// loaded with RawPluginWithHost: the raw reply to the raw request, or nil
// to hand the plugin offset 0 (no reply block at all).
type HostReply func(function string, request []byte) []byte

// RawPluginWithHost is RawPlugin with the MDSA host functions
// (mdsa_generate, mdsa_embed, mdsa_count_tokens) defined and all answered
// by reply, so that tests can send replies the real host never sends:
// invalid JSON, wrong shapes, refusals of any code.
func RawPluginWithHost(t testing.TB, wasm []byte, reply HostReply) *extism.Plugin {
	t.Helper()
	var funcs []extism.HostFunction
	for _, name := range []string{abi.HostGenerate, abi.HostEmbed, abi.HostCountTokens} {
		f := extism.NewHostFunctionWithStack(name, func(ctx context.Context, cp *extism.CurrentPlugin, stack []uint64) {
			in, err := cp.ReadBytes(stack[0])
			if err != nil {
				panic(fmt.Sprintf("%s: reading the request: %v", name, err))
			}
			out := reply(name, in)
			if out == nil {
				stack[0] = 0
				return
			}
			off, err := cp.WriteBytes(out)
			if err != nil {
				panic(fmt.Sprintf("%s: writing the reply: %v", name, err))
			}
			stack[0] = off
		}, []extism.ValueType{extism.ValueTypePTR}, []extism.ValueType{extism.ValueTypePTR})
		f.SetNamespace(abi.HostModule)
		funcs = append(funcs, f)
	}
	return rawPlugin(t, wasm, funcs)
}

func rawPlugin(t testing.TB, wasm []byte, funcs []extism.HostFunction) *extism.Plugin {
	t.Helper()
	ctx := context.Background()
	// Built as the host builds it; a hang fails the test instead of
	// blocking it.
	cp, err := plugin.Sandbox{Timeout: 10 * time.Second, HostFunctions: funcs}.Compile(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Close(context.Background()) })
	p, err := cp.Instance(ctx, extism.PluginInstanceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// CallRaw calls export with input and classifies the outcome: output, an
// error the plugin reported (message), or a trap/timeout (fatal).
func CallRaw(t testing.TB, p *extism.Plugin, export string, input []byte) (out []byte, msg string) {
	t.Helper()
	start := time.Now()
	rc, out, err := p.Call(export, input)
	if time.Since(start) > 5*time.Second {
		t.Fatalf("%s(%q) took %v", export, Clip(input), time.Since(start))
	}
	if err != nil {
		m := err.Error()
		if strings.Contains(m, "wasm error") || strings.Contains(m, "wasm stack trace") || strings.Contains(m, "module closed") ||
			strings.Contains(m, "deadline") {
			t.Fatalf("%s(%q) trapped: %v", export, Clip(input), err)
		}
		if rc == 0 {
			t.Fatalf("%s(%q): error %q with status 0", export, Clip(input), m)
		}
		return nil, m
	}
	if rc != 0 {
		t.Fatalf("%s(%q): status %d without an error message", export, Clip(input), rc)
	}
	return out, ""
}

// Clip shortens b for messages.
func Clip(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// InvalidInput feeds malformed JSON to the exports of a plugin built with
// one of the non-Go SDKs, which share their decoder's error messages, and
// checks each fails with the expected message, that valid-but-odd JSON is
// served, and that the instance survives all of it.
func InvalidInput(t *testing.T, wasm []byte) {
	t.Helper()
	p := RawPlugin(t, wasm)
	cases := []struct{ export, input, want string }{
		{"prompt", ``, "prompt: decode input: unexpected end of JSON input at byte 0"},
		{"prompt", `{`, "prompt: decode input: unexpected end of JSON input at byte 1"},
		{"prompt", `hello`, "prompt: decode input: unexpected character 'h' at byte 0"},
		{"prompt", `nope`, "prompt: decode input: invalid literal at byte 1"},
		{"prompt", `[1,2]`, "prompt: decode input: want a JSON object"},
		{"prompt", `{"query":"a"} {}`, "prompt: decode input: unexpected data after the JSON value at byte 14"},
		{"prompt", `{"query":5}`, "prompt: decode input: query: want a string"},
		{"prompt", `{"query":"a","history":"x"}`, "prompt: decode input: history: want an array of messages"},
		{"prompt", `{"query":"a","history":[{"role":1}]}`, "prompt: decode input: history[0].role: want a string"},
		{"prompt", `{"query":"a","history":[{"role":"user"},7]}`, "prompt: decode input: history[1]: want an object"},
		{"prompt", `{"query":"a","context":{"k":2}}`, "prompt: decode input: context.k: want a string"},
		{"prompt", `{"query":"a\u00"}`, "prompt: decode input: invalid \\u escape in string at byte 11"},
		{"prompt", "{\"query\":\"a\nb\"}", "prompt: decode input: invalid control character in string at byte 11"},
		{"prompt", `{"query":"\x"}`, "prompt: decode input: invalid escape in string at byte 10"},
		{"prompt", `{"query":01}`, "prompt: decode input: expected ',' or '}' in object at byte 10"},
		{"prompt", `{"query":-}`, "prompt: decode input: invalid number at byte 10"},
		{"prompt", `{"query":tru}`, "prompt: decode input: invalid literal at byte 12"},
		{"prompt", `{"query" "a"}`, "prompt: decode input: expected ':' after object key at byte 9"},
		{"prompt", `{query:"a"}`, "prompt: decode input: expected a string as object key at byte 1"},
		{"prompt", `{"query":"a",}`, "prompt: decode input: expected a string as object key at byte 13"},
		{"prompt", `{"x":` + strings.Repeat("[", 100000), "prompt: decode input: JSON nested too deeply at byte"},
		{"validate", `{"query":"q","response":true}`, "validate: decode input: response: want a string"},
		{"validate", `{"response":"unterminated`, "validate: decode input: unexpected end of JSON input in string at byte 25"},
		{"prompt", `{"query":""}`, "prompt: the query is empty"},
	}
	for _, tc := range cases {
		_, msg := CallRaw(t, p, tc.export, []byte(tc.input))
		if !strings.HasPrefix(msg, tc.want) {
			t.Errorf("%s(%q): error %q, want %q", tc.export, Clip([]byte(tc.input)), msg, tc.want)
		}
	}
	// Inputs the host never sends but that are valid JSON are served:
	// unknown fields, nulls, duplicate keys (the last wins), escaped and
	// unpaired surrogates.
	out, msg := CallRaw(t, p, "prompt", []byte(`{"query":"first","extra":{"a":[1,2.5e3,null,true]},"history":null,"context":null,`+
		`"query":"x \ud83d\ude42 \ud800 \/ \u00e9"}`))
	if msg != "" {
		t.Fatal(msg)
	}
	r, err := abi.DecodePromptResponse(out)
	if err != nil {
		t.Fatal(err)
	}
	if q := r.Messages[len(r.Messages)-1].Content; q != "x 🙂 \uFFFD / é" {
		t.Fatalf("query decoded as %q", q)
	}
	// The instance survived all of it.
	if out, msg := CallRaw(t, p, "describe", nil); msg != "" || !json.Valid(out) {
		t.Fatalf("describe after bad inputs: %q %s", msg, out)
	}
}
