package server

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

func TestDecodeChat(t *testing.T) {
	r, aerr := decodeChat([]byte(`{
		"model": "mdsa/finance",
		"messages": [
			{"role": "system", "content": "Be brief."},
			{"role": "user", "content": "Hi"},
			{"role": "assistant", "content": null},
			{"role": "developer", "content": [{"type": "text", "text": "Use EUR."}]},
			{"role": "user", "content": [{"type": "text", "text": "How do I"}, {"type": "text", "text": "budget?"}]}
		],
		"max_completion_tokens": 50, "temperature": 0.2, "top_p": 1, "stop": "END", "seed": 7,
		"stream": true, "stream_options": {"include_usage": true}, "n": 1, "user": "u1",
		"presence_penalty": 0, "frequency_penalty": 0, "response_format": {"type": "text"}
	}`))
	if aerr != nil {
		t.Fatal(aerr.Message)
	}
	want := chatRequest{
		Model: "mdsa/finance", Query: "How do I\nbudget?",
		History:   []abi.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: ""}},
		System:    "Be brief.\n\nUse EUR.",
		MaxTokens: 50, MaxTokensParam: "max_completion_tokens",
		Stop: []string{"END"}, Stream: true, IncludeUsage: true,
	}
	if r.Temperature == nil || *r.Temperature != 0.2 || r.TopP == nil || *r.TopP != 1 || r.Seed == nil || *r.Seed != 7 {
		t.Fatalf("sampling: %+v", r)
	}
	r.Temperature, r.TopP, r.Seed = nil, nil, nil
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
}

// Each bad request is a 400 whose message names the problem and whose
// param names the field.
func TestDecodeChatErrors(t *testing.T) {
	for _, tc := range []struct {
		body, param, msg string
	}{
		{``, "", "empty"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}`, "", "line 1, column 58"},
		{"{\n  \"model\": \"mdsa\",\n  \"messages\": [}\n", "", "line 3, column 16"},
		{`{"model":"mdsa","messages":[]} trailing`, "", "malformed JSON"},
		{`[]`, "", "want a JSON object, got an array"},
		{`{"model":"mdsa","messages":[{"role":"user","content":5}]}`, "messages[0].content", "messages[0].content: want a string or an array of content parts, got a number"},
		{`{"model":"mdsa","messages":[{"role":"user","contnet":"x"}]}`, "messages[0].contnet", `unknown field "contnet" in messages[0] (did you mean "content"?)`},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"max_token":5}`, "max_token", `did you mean "max_tokens"?`},
		{`{"model":"mdsa","messages":[]}`, "messages", "messages is empty"},
		{`{"model":"mdsa"}`, "messages", "messages is required"},
		{`{"messages":[{"role":"user","content":"x"}]}`, "model", "model is required"},
		{`{"model":"mdsa","messages":[{"role":"system","content":"x"}]}`, "messages", "no user message"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}`, "messages", "must end with a user message"},
		{`{"model":"mdsa","messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id", "is required for a tool message"},
		{`{"model":"mdsa","messages":[{"role":"function","content":"x"}]}`, "messages[0].role", `"function" is not supported`},
		{`{"model":"mdsa","messages":[{"role":"user","content":"   "}]}`, "messages", "empty"},
		{`{"model":"mdsa","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`, "messages[0].content[0].image_url", "only text content parts are supported"},
		{`{"model":"mdsa","messages":[{"role":"user","content":[{"type":"audio","text":"x"}]}]}`, "messages[0].content[0].type", `"audio" is not supported`},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"max_tokens":1.5}`, "max_tokens", "whole number"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"max_tokens":"5"}`, "max_tokens", "want a whole number, got a string"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"max_tokens":0}`, "max_tokens", "out of range"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"temperature":3}`, "temperature", "out of range [0, 2]"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}`, "stop", "at most 4"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"stop":[1]}`, "stop[0]", "want a string"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"seed":-1}`, "seed", "out of range"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"n":2}`, "n", "only one choice"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"functions":[]}`, "functions", "use tools"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"tools":{}}`, "tools", "want an array of tools"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"tools":[{"type":"retrieval"}]}`, "tools[0].type", `"retrieval" is not supported`},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}`, "tools[0].function", "is required"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"bad name"}}]}`, "tools[0].function.name", "letters, digits"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string","pattern":"x"}}},"strict":true}}]}`, "tools[0].function.parameters", "at /properties/a/pattern: unsupported keyword"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"array"}}}]}`, "tools[0].function.parameters", "must be an object"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]}`, "tools[1].name", "given twice"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`, "tool_choice", "not among the tools"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}`, "tool_choice", "needs tools"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}`, "tool_choice", "not supported"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}`, "response_format.type", `"xml" is not supported`},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}}`, "response_format.json_schema", "is required"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"r"}}}`, "response_format.json_schema.schema", "is required"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{}}}}`, "response_format.json_schema.name", "is required"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"r","strict":true,"schema":{"type":"object","properties":{"n":{"type":"number","minimum":0}}}}}}`, "response_format.json_schema.schema", "at /properties/n/minimum: unsupported keyword"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"$ref":"http://example.com/s.json"}}}}`, "response_format.json_schema.schema", "unsupported $ref"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, "messages[1].tool_calls[0]", "has no tool message"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c1","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c2","content":"r"}]}`, "messages[2].tool_call_id", "answers no tool call"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"c2","content":"r"}]}`, "messages", "tool message without tool calls"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"c2","content":"r"},{"role":"user","content":"y"}]}`, "messages[1].tool_call_id", "answers no tool call"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x","tool_calls":[{"id":"c","function":{"name":"f"}}]}]}`, "messages[0].tool_calls", "only assistant messages"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}]}`, "messages[1].tool_calls[0].id", "is required"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":1}}`, "stream_options.include_usage", "want true or false"},
		{`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"max_tokens":5,"max_completion_tokens":6}`, "max_completion_tokens", "disagree"},
	} {
		_, aerr := decodeChat([]byte(tc.body))
		if aerr == nil {
			t.Errorf("%s: accepted", tc.body)
			continue
		}
		if aerr.Status != http.StatusBadRequest || aerr.Param != tc.param || !strings.Contains(aerr.Message, tc.msg) {
			t.Errorf("%s:\n got %d param %q: %s\nwant param %q and %q", tc.body, aerr.Status, aerr.Param, aerr.Message, tc.param, tc.msg)
		}
	}
}

func TestDecodeEmbeddingsAndQuery(t *testing.T) {
	e, aerr := decodeEmbeddings([]byte(`{"model":"mdsa","input":["a","b"],"encoding_format":"base64"}`))
	if aerr != nil || len(e.Input) != 2 || !e.Base64 || e.Model != "mdsa" {
		t.Fatalf("%+v %v", e, aerr)
	}
	for body, msg := range map[string]string{
		`{"input":[1,2,3]}`:                   "token arrays are not supported",
		`{"input":[]}`:                        "empty array",
		`{"input":["a",""]}`:                  "input[1] is empty",
		`{"model":"mdsa"}`:                    "input is required",
		`{"input":"a","encoding_format":"x"}`: "not supported",
	} {
		if _, aerr := decodeEmbeddings([]byte(body)); aerr == nil || !strings.Contains(aerr.Message, msg) {
			t.Errorf("%s: %v, want %q", body, aerr, msg)
		}
	}

	q, aerr := decodeQuery([]byte(`{"query":"q","history":[{"role":"user","content":"a"}],"context":{"k":"v"},
		"domain":"finance","generation":{"max_tokens":9,"top_k":3,"stop":["x"]},"request_id":"abc-1"}`))
	if aerr != nil || q.Query != "q" || len(q.History) != 1 || q.Context["k"] != "v" || q.Domain != "finance" ||
		q.Generation.MaxTokens != 9 || q.Generation.TopK != 3 || q.RequestID != "abc-1" {
		t.Fatalf("%+v %v", q, aerr)
	}
	for body, param := range map[string]string{
		`{"query":""}`:                                              "query",
		`{"query":"q","tenant":"acme"}`:                             "tenant",
		`{"query":"q","request_id":"a b"}`:                          "request_id",
		`{"query":"q","context":{"k":1}}`:                           "context.k",
		`{"query":"q","history":[{"role":"system","content":"x"}]}`: "history[0].role",
		`{"query":"q","generation":{"max_tokens":-1}}`:              "generation.max_tokens",
	} {
		if _, aerr := decodeQuery([]byte(body)); aerr == nil || aerr.Param != param {
			t.Errorf("%s: %+v, want param %q", body, aerr, param)
		}
	}
}

// checkError is what every refusal of a decoder must be: a 400 with a
// short, valid message (never an echo of a huge input).
func checkError(t *testing.T, aerr *apiError) {
	t.Helper()
	if aerr.Status != http.StatusBadRequest || aerr.Type != typeInvalidRequest || aerr.Code == "" {
		t.Fatalf("error %+v", aerr)
	}
	if aerr.Message == "" || len(aerr.Message) > 600 || !utf8.ValidString(aerr.Message) || len(aerr.Param) > 200 {
		t.Fatalf("error message (%d bytes) %q, param %q", len(aerr.Message), aerr.Message, aerr.Param)
	}
}

func checkGeneration(t *testing.T, g abi.Generation) {
	t.Helper()
	if g.MaxTokens < 0 || g.MaxTokens > maxTokensCap || g.TopK < 0 || g.TopK > maxTopK || len(g.Stop) > maxStop {
		t.Fatalf("generation out of bounds: %+v", g)
	}
	if g.Temperature != nil && (*g.Temperature < 0 || *g.Temperature > 2) || g.TopP != nil && (*g.TopP < 0 || *g.TopP > 1) ||
		g.RepeatPenalty != nil && (*g.RepeatPenalty < 0 || *g.RepeatPenalty > maxRepeatPenalty) {
		t.Fatalf("sampling out of bounds: %+v", g)
	}
	for _, s := range g.Stop {
		if s == "" {
			t.Fatal("empty stop sequence accepted")
		}
	}
}

func checkHistory(t *testing.T, h []abi.Message) {
	t.Helper()
	for _, m := range h {
		if m.Role != abi.RoleUser && m.Role != abi.RoleAssistant {
			t.Fatalf("history role %q", m.Role)
		}
	}
}

var chatSeeds = []string{
	`{"model":"mdsa","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"mdsa/finance","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"}]}],"stream":true,"stop":["x","y"],"seed":4294967295,"temperature":2}`,
	`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"max_tokens":1e3}`,
	`{"model":"mdsa","messages":[{"role":"user","content":"\ud800"}]}`,
	`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"max_tokens":1e400}`,
	`{"model":"mdsa","messages":null}`,
	`{"model":"","messages":[{"role":"user","content":"x"}]}`,
	"{\"model\":\"mdsa\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}",
	`{"a":1,"a":2}`, `null`, `"x"`, `{`, ``,
	`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"r","strict":true,"schema":{"type":"object","properties":{"a":{"type":"array","items":{"enum":[1,"b",null]},"maxItems":2}},"required":["a"]}}}}`,
	`{"model":"mdsa","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"n":{"type":"number","minimum":1}}}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false}`,
	`{"model":"mdsa","messages":[{"role":"user","content":"a"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"n\":2}"}}]},{"role":"tool","tool_call_id":"c1","content":"4"},{"role":"assistant","content":"four"},{"role":"user","content":"b"},{"role":"assistant","tool_calls":[{"id":"c2","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c2","content":[{"type":"text","text":"5"}]}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}`,
}

func TestDecodeToolRounds(t *testing.T) {
	r, aerr := decodeChat([]byte(chatSeeds[len(chatSeeds)-1]))
	if aerr != nil {
		t.Fatal(aerr)
	}
	if r.Query != "b" || len(r.History) != 2 || r.History[1].Role != abi.RoleAssistant ||
		!strings.Contains(r.History[1].Content, "<tool_call>") || !strings.Contains(r.History[1].Content, "<tool_response>\n4\n</tool_response>") ||
		!strings.HasSuffix(r.History[1].Content, "four") {
		t.Fatalf("history %+v, query %q", r.History, r.Query)
	}
	if len(r.Turns) != 1 || r.Turns[0].Calls[0].ID != "c2" || r.Turns[0].Results[0].Content != "5" || r.Turns[0].Results[0].Name != "f" {
		t.Fatalf("turns %+v", r.Turns)
	}
	if r.Tools == nil || r.Tools.Choice.Mode != "required" || !r.Tools.Parallel {
		t.Fatalf("tools %+v", r.Tools)
	}
}

func FuzzDecodeChat(f *testing.F) {
	for _, s := range chatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, aerr := decodeChat(data)
		if aerr != nil {
			checkError(t, aerr)
			return
		}
		if r.Model == "" || strings.TrimSpace(r.Query) == "" || !utf8.ValidString(r.Query) || !utf8.ValidString(r.System) {
			t.Fatalf("accepted a request without model or query: %+v", r)
		}
		if (r.MaxTokens > 0) != (r.MaxTokensParam != "") {
			t.Fatalf("max_tokens %d from %q", r.MaxTokens, r.MaxTokensParam)
		}
		checkHistory(t, r.History)
		checkGeneration(t, r.generation(r.MaxTokens))
		// Whatever is accepted compiles to a grammar.
		g, err := structured.Grammar(r.Tools, r.Format)
		if err != nil || (r.Tools.Active() || r.Format != nil) && g == "" {
			t.Fatalf("accepted tools or format give no grammar: %v", err)
		}
		again, _ := decodeChat(data)
		g2, _ := structured.Grammar(again.Tools, again.Format)
		r.Tools, r.Format, again.Tools, again.Format = nil, nil, nil, nil
		if !reflect.DeepEqual(r, again) || g != g2 {
			t.Fatal("decoding is not deterministic")
		}
	})
}

func FuzzDecodeEmbeddings(f *testing.F) {
	for _, s := range []string{
		`{"model":"mdsa","input":"hello"}`, `{"input":["a","b"],"encoding_format":"float","dimensions":64}`,
		`{"input":[[1,2]]}`, `{"input":[]}`, `{"input":""}`, `{"input":{"x":1}}`, `{}`, `[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, aerr := decodeEmbeddings(data)
		if aerr != nil {
			checkError(t, aerr)
			return
		}
		if len(r.Input) == 0 || len(r.Input) > maxEmbedInputs || r.Dimensions < 0 {
			t.Fatalf("accepted %d inputs, dimensions %d", len(r.Input), r.Dimensions)
		}
		for _, s := range r.Input {
			if strings.TrimSpace(s) == "" || !utf8.ValidString(s) {
				t.Fatalf("accepted input %q", s)
			}
		}
	})
}

func FuzzDecodeQuery(f *testing.F) {
	for _, s := range []string{
		`{"query":"How do I budget?"}`,
		`{"query":"q","history":[{"role":"assistant","content":"a"}],"context":{"system":"s"},"domain":"medical","generation":{"max_tokens":5,"temperature":0.5,"top_p":0.9,"top_k":40,"repeat_penalty":1.1,"stop":"x","seed":1},"request_id":"r-1"}`,
		`{"query":"q","request_id":""}`, `{"query":1}`, `{"query":"q","generation":{"max_tokens":1048577}}`, `{"query":"q","context":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, aerr := decodeQuery(data)
		if aerr != nil {
			checkError(t, aerr)
			return
		}
		if strings.TrimSpace(r.Query) == "" || (r.RequestID != "" && !saneID(r.RequestID)) {
			t.Fatalf("accepted %+v", r.Request)
		}
		checkHistory(t, r.History)
		checkGeneration(t, r.Generation)
	})
}

func TestRetrySecondsAndLineCol(t *testing.T) {
	for d, want := range map[float64]int64{0: 1, 0.001: 1, 1: 1, 1.2: 2, 59.5: 60} {
		if got := retrySeconds(secs(d)); got != want {
			t.Errorf("retrySeconds(%vs) = %d, want %d", d, got, want)
		}
	}
	if l, c := lineCol([]byte("ab\ncdé"), 6); l != 2 || c != 3 {
		t.Errorf("lineCol = %d:%d", l, c)
	}
}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
