package enginebench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// llamaServerChat is a non-streamed answer as llama-server writes it.
const llamaServerChat = `{"choices":[{"finish_reason":"stop","index":0,"message":{"role":"assistant","content":"Once upon a time."}}],
"created":1765000000,"model":"m.gguf","system_fingerprint":"b1-x","object":"chat.completion",
"usage":{"completion_tokens":15,"prompt_tokens":480,"total_tokens":495,"prompt_tokens_details":{"cached_tokens":470}},
"id":"chatcmpl-1","timings":{"cache_n":470,"prompt_n":10,"prompt_ms":3.2,"prompt_per_token_ms":0.32,"prompt_per_second":3125,"predicted_n":15,"predicted_ms":40,"predicted_per_token_ms":2.6,"predicted_per_second":375}}`

// llamaServerStream is a streamed answer as llama-server writes it, with a
// keep-alive comment and a data field split over two lines.
const llamaServerStream = `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}

: keep-alive

data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Once"}}],"object":"chat.completion.chunk"}

data: {"choices":[{"finish_reason":null,"index":0,
data: "delta":{"content":" upon"}}],"object":"chat.completion.chunk"}

data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":""}}],"object":"chat.completion.chunk"}

data: {"choices":[{"finish_reason":"length","index":0,"delta":{}}],"object":"chat.completion.chunk"}

data: {"choices":[],"object":"chat.completion.chunk","usage":{"completion_tokens":2,"prompt_tokens":480,"total_tokens":482,"prompt_tokens_details":{"cached_tokens":470}},"timings":{"cache_n":470,"prompt_n":10,"predicted_n":2}}

data: [DONE]

`

func TestParseChat(t *testing.T) {
	u, err := ParseChat([]byte(llamaServerChat))
	if err != nil || u != (Usage{PromptTokens: 480, CachedTokens: 470, CompletionTokens: 15}) {
		t.Fatalf("llama-server answer: %+v %v", u, err)
	}
	for _, c := range []struct {
		name, body string
		want       Usage
	}{
		{"usage without details", `{"choices":[{}],"usage":{"prompt_tokens":9,"completion_tokens":3}}`, Usage{9, 0, 3}},
		{"timings only", `{"choices":[{}],"timings":{"prompt_n":4,"cache_n":6,"predicted_n":2}}`, Usage{10, 6, 2}},
		{"details win over timings", `{"choices":[{}],"usage":{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":5}},"timings":{"cache_n":7}}`, Usage{9, 5, 3}},
		{"cache_n when details are missing", `{"choices":[{}],"usage":{"prompt_tokens":9,"completion_tokens":3},"timings":{"cache_n":7}}`, Usage{9, 7, 3}},
		{"error null", `{"choices":[{}],"usage":{"prompt_tokens":1,"completion_tokens":1},"error":null}`, Usage{1, 0, 1}},
	} {
		u, err := ParseChat([]byte(c.body))
		if err != nil || u != c.want {
			t.Errorf("%s: %+v %v, want %+v", c.name, u, err, c.want)
		}
	}
	for _, c := range []struct{ name, body, msg string }{
		{"not JSON", `<html>`, "not a chat completion"},
		{"OpenAI error", `{"error":{"message":"model not found","type":"invalid_request_error"}}`, "model not found"},
		{"string error", `{"error":"boom"}`, "boom"},
		{"no choices", `{"usage":{"prompt_tokens":1,"completion_tokens":1}}`, "no choices"},
		{"no usage", `{"choices":[{}]}`, "no usage"},
		{"no prompt tokens", `{"choices":[{}],"usage":{"completion_tokens":1}}`, "prompt_tokens"},
		{"no completion tokens", `{"choices":[{}],"usage":{"prompt_tokens":1}}`, "completion_tokens"},
		{"cached above prompt", `{"choices":[{}],"usage":{"prompt_tokens":1,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":2}}}`, "inconsistent"},
		{"negative", `{"choices":[{}],"usage":{"prompt_tokens":-1,"completion_tokens":1}}`, "inconsistent"},
		{"wrong type", `{"choices":[{}],"usage":{"prompt_tokens":"many","completion_tokens":1}}`, "not a chat completion"},
	} {
		if _, err := ParseChat([]byte(c.body)); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.msg)
		}
	}
}

func TestParseStream(t *testing.T) {
	texts := 0
	u, err := ParseStream(strings.NewReader(llamaServerStream), func() { texts++ })
	if err != nil || u != (Usage{PromptTokens: 480, CachedTokens: 470, CompletionTokens: 2}) {
		t.Fatalf("llama-server stream: %+v %v", u, err)
	}
	if texts != 2 { // the role chunk, the empty piece and the final chunks carry no text
		t.Errorf("%d text events, want 2", texts)
	}
	// CRLF line ends, no space after "data:", no final blank line, no [DONE].
	crlf := "data:{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\r\n\r\ndata:{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}"
	if u, err := ParseStream(strings.NewReader(strings.ReplaceAll(crlf, "\r", "")), nil); err != nil || u.PromptTokens != 3 {
		t.Errorf("without [DONE]: %+v %v", u, err)
	}
	// Events after [DONE] are not read.
	after := "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\ndata: garbage\n\n"
	if _, err := ParseStream(strings.NewReader(after), nil); err != nil {
		t.Errorf("after [DONE]: %v", err)
	}
	for _, c := range []struct{ name, body, msg string }{
		{"error event", "data: {\"error\":{\"code\":500,\"message\":\"context full\"}}\n\n", "context full"},
		{"error field", "error: {\"message\":\"overloaded\"}\n\n", "overloaded"},
		{"not JSON", "data: {oops\n\n", "not a chat completion chunk"},
		{"no usage", "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n", "no usage"},
		{"empty", "", "no usage"},
		{"line too long", "data: " + strings.Repeat("x", maxEventLine+1) + "\n\n", "reading the event stream"},
		{"event too long", strings.Repeat("data: "+strings.Repeat("x", 1000)+"\n", maxEventLine/1000+2), "longer than"},
	} {
		if _, err := ParseStream(strings.NewReader(c.body), nil); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.msg)
		}
	}
}

func TestOpenAITargetDo(t *testing.T) {
	srv := newFakeServer(t, 5)
	tgt, err := NewOpenAITarget(OpenAIOptions{URL: srv.URL + "/v1", Model: "m.gguf", Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.CloseIdle()
	ctx := context.Background()
	out, err := tgt.Do(ctx, Call{Messages: Messages(0), MaxTokens: 16})
	if err != nil || out.CompletionTokens != 5 || out.PromptTokens == 0 || out.CachedTokens != 0 || out.FirstToken != 0 || out.Latency <= 0 {
		t.Fatalf("first call: %+v %v", out, err)
	}
	out, err = tgt.Do(ctx, Call{Messages: Messages(1), MaxTokens: 16, Stream: true, IgnoreEOS: true})
	if err != nil || out.CompletionTokens != 16 || out.Evaluated() != 10 || out.FirstToken <= 0 || out.FirstToken > out.Latency {
		t.Fatalf("streamed call: %+v %v", out, err)
	}
	reqs := srv.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, r := range reqs {
		if r["model"] != "m.gguf" || r["cache_prompt"] != true || r["temperature"] != 0.0 || r["max_tokens"] != 16.0 {
			t.Errorf("request %d: %v", i, r)
		}
		msgs, _ := r["messages"].([]any)
		if len(msgs) != 2 || msgs[0].(map[string]any)["content"] != SystemPrompt {
			t.Errorf("request %d messages: %v", i, msgs)
		}
	}
	if _, ok := reqs[0]["ignore_eos"]; ok || reqs[0]["stream"] != false || reqs[0]["stream_options"] != nil {
		t.Errorf("plain request: %v", reqs[0])
	}
	if reqs[1]["ignore_eos"] != true || reqs[1]["stream"] != true ||
		fmt.Sprint(reqs[1]["stream_options"]) != "map[include_usage:true]" {
		t.Errorf("streamed request: %v", reqs[1])
	}

	// A non-2xx answer is an error that quotes it and names the URL.
	srv.setFail(func(int64) bool { return true })
	if _, err := tgt.Do(ctx, Call{Messages: Messages(0), MaxTokens: 1}); err == nil ||
		!strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "fake overload") || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("500: %v", err)
	}
}

func TestOpenAITargetBounds(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("x") {
		case "huge":
			w.Write([]byte(`{"choices":[{"message":{"content":"`))
			chunk := []byte(strings.Repeat("a", 1<<16))
			for range MaxResponseBytes/len(chunk) + 2 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(hang)

	tgt, err := NewOpenAITarget(OpenAIOptions{URL: srv.URL, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tgt.endpoint = srv.URL + "/v1/chat/completions?x=huge"
	if _, err := tgt.Do(context.Background(), Call{Messages: Messages(0), MaxTokens: 1}); err == nil || !strings.Contains(err.Error(), "not a chat completion") {
		t.Errorf("huge answer: %v", err)
	}

	// A cancelled context stops a request that hangs.
	tgt, _ = NewOpenAITarget(OpenAIOptions{URL: srv.URL, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := tgt.Do(ctx, Call{Messages: Messages(0), MaxTokens: 1, Stream: true})
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// So does the per-request timeout.
	tgt, _ = NewOpenAITarget(OpenAIOptions{URL: srv.URL, Timeout: 50 * time.Millisecond})
	if _, err := tgt.Do(context.Background(), Call{Messages: Messages(0), MaxTokens: 1}); err == nil {
		t.Error("timeout: no error")
	}
	// Connection refused.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	tgt, _ = NewOpenAITarget(OpenAIOptions{URL: dead.URL})
	if _, err := tgt.Do(context.Background(), Call{Messages: Messages(0), MaxTokens: 1}); err == nil || !strings.Contains(err.Error(), dead.URL) {
		t.Errorf("refused: %v", err)
	}

	for _, u := range []string{"", "ftp://x", "127.0.0.1:8089", "http://", "://"} {
		if _, err := NewOpenAITarget(OpenAIOptions{URL: u}); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}
