package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"
	"github.com/openai/openai-go/shared"

	"github.com/mdsa-go/mdsa/internal/gguf"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// These tests drive the server with the official OpenAI Go client, the way
// users' programs will.

func openaiClient(baseURL, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(baseURL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// mdsaOf decodes the "mdsa" member MDSA adds to completions and chunks.
func mdsaOf(t *testing.T, raw string) mdsaInfo {
	t.Helper()
	var mi mdsaInfo
	if err := json.Unmarshal([]byte(raw), &mi); err != nil || mi.RequestID == "" {
		t.Fatalf("mdsa member missing or malformed (%v): %s", err, raw)
	}
	return mi
}

func TestOpenAIChatCompletion(t *testing.T) {
	h := openHost(t)
	ts := startServer(t, newServer(t, h, openConfig(t)))
	client := openaiClient(ts.URL, "any-key-on-an-open-server")
	ctx := context.Background()

	for _, tc := range []struct {
		query, domain string
		disclaimer    bool
	}{
		{qSupport, "support", false},
		{qMedical, "medical", true},
	} {
		c, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "mdsa",
			Messages: []openai.ChatCompletionMessageParamUnion{
				openai.SystemMessage("Answer briefly."),
				openai.UserMessage(tc.query),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.Object != "chat.completion" || !strings.HasPrefix(c.ID, "chatcmpl-") || c.Created == 0 {
			t.Fatalf("envelope: %+v", c)
		}
		if c.Model != "mdsa/"+tc.domain || len(c.Choices) != 1 {
			t.Fatalf("model %q, %d choices", c.Model, len(c.Choices))
		}
		ch := c.Choices[0]
		content := ch.Message.Content
		if !strings.HasPrefix(content, gguf.SynthReply) || (content != gguf.SynthReply) != tc.disclaimer {
			t.Fatalf("%s: content %q (disclaimer expected: %v)", tc.domain, content, tc.disclaimer)
		}
		if ch.FinishReason != "stop" || ch.Message.Role != "assistant" {
			t.Fatalf("choice: %+v", ch)
		}
		u := c.Usage
		if u.PromptTokens <= 0 || u.CompletionTokens <= 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
			t.Fatalf("usage: %+v", u)
		}
		mi := mdsaOf(t, c.JSON.ExtraFields["mdsa"].Raw())
		if mi.Domain != tc.domain || mi.Status != "ok" || mi.Confidence <= 0 || mi.TimingsMS.Generate <= 0 ||
			"chatcmpl-"+mi.RequestID != c.ID {
			t.Fatalf("mdsa member: %+v", mi)
		}
		if tc.disclaimer && !slices.ContainsFunc(mi.Validation.Issues, func(is abi.Issue) bool { return is.Code == "disclaimer_added" }) {
			t.Fatalf("medical validation does not say the disclaimer was added: %+v", mi.Validation)
		}
	}

	// The same question again: the engine reuses the prompt it evaluated,
	// and the usage says so in OpenAI's field.
	for i := range 2 {
		c, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "mdsa",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(qSupport)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if cached := c.Usage.PromptTokensDetails.CachedTokens; i == 1 && (cached <= 0 || cached >= c.Usage.PromptTokens) {
			t.Fatalf("repeated question: %d of %d prompt tokens cached, want all but the last", cached, c.Usage.PromptTokens)
		}
	}

	// A forced domain, max_tokens and the out-of-scope answer.
	c, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:     "mdsa/technical",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(qSupport)},
		MaxTokens: openai.Int(3),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Model != "mdsa/technical" || c.Choices[0].FinishReason != "length" || c.Usage.CompletionTokens != 3 {
		t.Fatalf("forced domain with max_tokens 3: model %s, finish %s, usage %+v", c.Model, c.Choices[0].FinishReason, c.Usage)
	}
	c, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "mdsa",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Write me a poem about the sea")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if mi := mdsaOf(t, c.JSON.ExtraFields["mdsa"].Raw()); mi.Status != "out_of_scope" || c.Model != "mdsa" ||
		c.Choices[0].Message.Content != openConfig(t).Router.OutOfScopeMessage || c.Choices[0].FinishReason != "stop" {
		t.Fatalf("out of scope: model %s, %+v, mdsa %+v", c.Model, c.Choices[0], mi)
	}

	// An unknown model is an API error the client understands.
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" ||
		!strings.Contains(apiErr.Message, "mdsa/finance") {
		t.Fatalf("unknown model: %v", err)
	}
}

func TestOpenAIChatStream(t *testing.T) {
	h := openHost(t)
	ts := startServer(t, newServer(t, h, openConfig(t)))
	client := openaiClient(ts.URL, "")
	for _, tc := range []struct{ query, domain string }{{qSupport, "support"}, {qMedical, "medical"}} {
		stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model:         "mdsa",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(tc.query)},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var acc openai.ChatCompletionAccumulator
		var deltas strings.Builder
		var chunks int
		var last, finish openai.ChatCompletionChunk
		for stream.Next() {
			ch := stream.Current()
			acc.AddChunk(ch)
			chunks++
			if ch.Model != "mdsa/"+tc.domain {
				t.Fatalf("chunk %d names model %q", chunks, ch.Model)
			}
			if len(ch.Choices) > 0 {
				deltas.WriteString(ch.Choices[0].Delta.Content)
				if ch.Choices[0].FinishReason != "" {
					finish = ch
				}
			}
			last = ch
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if err := stream.Close(); err != nil {
			t.Fatal(err)
		}
		final := acc.Choices[0].Message.Content
		mi := mdsaOf(t, finish.JSON.ExtraFields["mdsa"].Raw())
		if mi.Response == nil {
			t.Fatal("the finishing chunk's mdsa member has no response")
		}
		// include_usage: usage comes in a last chunk of its own with no
		// choices, as OpenAI sends it.
		if len(last.Choices) != 0 || finish.Usage.TotalTokens != 0 {
			t.Fatalf("usage chunk: %d choices; finishing chunk usage %+v", len(last.Choices), finish.Usage)
		}
		if deltas.String() != *mi.Response || final != *mi.Response || !strings.HasPrefix(final, gguf.SynthReply) {
			t.Fatalf("%s: deltas %q, accumulated %q, final mdsa.response %q", tc.domain, deltas.String(), final, *mi.Response)
		}
		// One chunk per token of the synthetic reply at least, plus the
		// role chunk and the final one.
		if chunks < len(strings.Fields(gguf.SynthReply))+2 {
			t.Fatalf("%d chunks: the answer was not streamed piece by piece", chunks)
		}
		if acc.Choices[0].FinishReason != "stop" || last.Usage.CompletionTokens <= 0 || last.Usage.PromptTokens <= 0 {
			t.Fatalf("end of stream: finish %q, usage %+v", acc.Choices[0].FinishReason, last.Usage)
		}
		if tc.domain == "medical" && final == gguf.SynthReply {
			t.Fatalf("the medical disclaimer added by validation was not streamed")
		}
	}
}

func TestOpenAIModelsAndEmbeddings(t *testing.T) {
	h := openHost(t)
	ts := startServer(t, newServer(t, h, openConfig(t)))
	client := openaiClient(ts.URL, "")
	ctx := context.Background()
	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.OwnedBy == "" {
			t.Fatalf("model object: %+v", m)
		}
		if strings.HasPrefix(m.ID, "mdsa/") && m.JSON.ExtraFields["version"].Raw() == "" {
			t.Fatalf("%s has no version", m.ID)
		}
	}
	for _, want := range []string{"mdsa", "mdsa/finance", "mdsa/medical", "mdsa/support", "mdsa/technical"} {
		if !slices.Contains(ids, want) {
			t.Fatalf("models %v lack %s", ids, want)
		}
	}
	m, err := client.Models.Get(ctx, "mdsa/finance")
	if err != nil || m.ID != "mdsa/finance" {
		t.Fatalf("get model: %+v %v", m, err)
	}

	inputs := []string{"refund for a double charge", "segmentation fault in C", "refund for a double charge"}
	e, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "mdsa", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs}})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Data) != len(inputs) || e.Model == "" {
		t.Fatalf("embeddings: %d vectors, model %q", len(e.Data), e.Model)
	}
	if e.Usage.PromptTokens < int64(len(inputs)) || e.Usage.TotalTokens != e.Usage.PromptTokens {
		t.Fatalf("embeddings usage %+v", e.Usage)
	}
	dim := len(e.Data[0].Embedding)
	for i, d := range e.Data {
		if d.Index != int64(i) || len(d.Embedding) != dim || dim == 0 {
			t.Fatalf("vector %d: index %d, %d dims (first has %d)", i, d.Index, len(d.Embedding), dim)
		}
	}
	if !slices.Equal(e.Data[0].Embedding, e.Data[2].Embedding) {
		t.Fatal("the same input gave different vectors")
	}
	// base64 (what some clients ask for) carries the same floats.
	r := do(t, http.MethodPost, ts.URL+"/v1/embeddings", "", map[string]any{"input": inputs[0], "encoding_format": "base64"})
	var doc struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || len(doc.Data) != 1 || doc.Data[0].Embedding != floatsBase64(toF32(e.Data[0].Embedding)) {
		t.Fatalf("base64 embedding: %v %.200s", err, r.body)
	}
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, f := range v {
		out[i] = float32(f)
	}
	return out
}

// Structured outputs and tools through the official client: a strict
// schema answer, tool calls (plain and streamed) and the round trip of
// their results, with real llama.cpp and the synthetic model.
func TestOpenAIStructuredOutputsAndTools(t *testing.T) {
	h := openHost(t)
	ts := startServer(t, newServer(t, h, openConfig(t)))
	client := openaiClient(ts.URL, "any-key-on-an-open-server")
	ctx := context.Background()
	temp := openai.Float(1)

	schema := map[string]any{"type": "object", "properties": map[string]any{
		"summary": map[string]any{"type": "string", "maxLength": 40},
		"urgent":  map[string]any{"type": "boolean"},
	}, "required": []string{"summary", "urgent"}, "additionalProperties": false}
	c, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "mdsa/support", Temperature: temp, MaxTokens: openai.Int(400), Seed: openai.Int(2),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(qSupport)},
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "ticket", Schema: schema, Strict: openai.Bool(true)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ticket struct {
		Summary *string `json:"summary"`
		Urgent  *bool   `json:"urgent"`
	}
	dec := json.NewDecoder(strings.NewReader(c.Choices[0].Message.Content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ticket); err != nil || ticket.Summary == nil || ticket.Urgent == nil || len([]rune(*ticket.Summary)) > 40 {
		t.Fatalf("not the schema's JSON (%v): %q", err, c.Choices[0].Message.Content)
	}

	// /v1/query takes the same response_format.
	qr := do(t, http.MethodPost, ts.URL+"/v1/query", "", map[string]any{"query": qSupport, "domain": "support",
		"generation":      map[string]any{"max_tokens": 400, "temperature": 1, "seed": 2},
		"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "ticket", "strict": true, "schema": schema}}})
	var qres struct{ Response string }
	if qr.code != http.StatusOK || json.Unmarshal(qr.body, &qres) != nil || json.Unmarshal([]byte(qres.Response), &ticket) != nil || ticket.Urgent == nil {
		t.Fatalf("/v1/query with a format: %d %s", qr.code, qr.body)
	}

	weather := openai.ChatCompletionToolParam{Function: shared.FunctionDefinitionParam{
		Name: "get_weather", Description: openai.String("The weather in a city"), Strict: openai.Bool(true),
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{
			"city": map[string]any{"type": "string", "maxLength": 30}}, "required": []string{"city"}, "additionalProperties": false}}}
	params := openai.ChatCompletionNewParams{
		Model: "mdsa/support", Temperature: temp, MaxTokens: openai.Int(400), Seed: openai.Int(3),
		ParallelToolCalls: openai.Bool(false),
		Messages:          []openai.ChatCompletionMessageParamUnion{openai.UserMessage(qSupport)},
		Tools:             []openai.ChatCompletionToolParam{weather},
		ToolChoice:        openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")},
	}
	c, err = client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	ch := c.Choices[0]
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) == 0 {
		t.Fatalf("finish %q, calls %+v, content %q", ch.FinishReason, ch.Message.ToolCalls, ch.Message.Content)
	}
	for _, call := range ch.Message.ToolCalls {
		var args struct {
			City *string `json:"city"`
		}
		if call.Function.Name != "get_weather" || !strings.HasPrefix(call.ID, "call_") ||
			json.Unmarshal([]byte(call.Function.Arguments), &args) != nil || args.City == nil {
			t.Fatalf("call %+v", call)
		}
	}

	// The client runs the tool and sends the results back.
	follow := params
	follow.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")}
	follow.Messages = append(append([]openai.ChatCompletionMessageParamUnion{}, params.Messages...), ch.Message.ToParam())
	for _, call := range ch.Message.ToolCalls {
		follow.Messages = append(follow.Messages, openai.ToolMessage("sunny, 24 C", call.ID))
	}
	c, err = client.Chat.Completions.New(ctx, follow)
	if err != nil {
		t.Fatal(err)
	}
	if ch := c.Choices[0]; ch.FinishReason == "tool_calls" || len(ch.Message.ToolCalls) != 0 || ch.Message.Content == "" {
		t.Fatalf("after the results: %+v", ch)
	}

	// Streamed: the calls arrive as tool_calls deltas, no call markup as content.
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		chunk := stream.Current()
		acc.AddChunk(chunk)
		for _, d := range chunk.Choices {
			if strings.Contains(d.Delta.Content, "tool_call") {
				t.Fatalf("call markup streamed as content: %q", d.Delta.Content)
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" || len(acc.Choices[0].Message.ToolCalls) == 0 ||
		acc.Choices[0].Message.ToolCalls[0].Function.Name != "get_weather" {
		t.Fatalf("streamed: %+v", acc.Choices)
	}

	// A strict schema the grammar cannot express is the client's mistake,
	// named by its place.
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "mdsa", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(qSupport)},
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "x", Strict: openai.Bool(true),
				Schema: map[string]any{"type": "object", "properties": map[string]any{"n": map[string]any{"type": "string", "pattern": "^a"}}}}}},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != "response_format.json_schema.schema" ||
		!strings.Contains(apiErr.Message, "/properties/n/pattern") {
		t.Fatalf("an inexpressible strict schema: %v", err)
	}
	// A client tool named like one of the domain's is refused for it.
	clash := params
	clash.Model = "mdsa/finance"
	clash.Tools = []openai.ChatCompletionToolParam{{Function: shared.FunctionDefinitionParam{Name: "loan_payment"}}}
	clash.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{}
	_, err = client.Chat.Completions.New(ctx, clash)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != "tools" || !strings.Contains(apiErr.Message, "domain finance") {
		t.Fatalf("a clash with the domain's tool: %v", err)
	}
}
