package enginebench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
)

// fakeEngine is an engine.Engine that answers at once: TokensIn is the
// prompt's length in words, TokensOut min(MaxTokens, stopAt), each token
// streamed as a piece.
type fakeEngine struct {
	stopAt int
	fail   func(n int64) bool // n counts calls from 1; nil never fails
	calls  atomic.Int64
}

func (f *fakeEngine) Model() string { return "fake" }

func (f *fakeEngine) Generate(ctx context.Context, req engine.Request, onToken engine.TokenFunc) (engine.Result, error) {
	n := f.calls.Add(1)
	if err := ctx.Err(); err != nil {
		return engine.Result{}, err
	}
	if f.fail != nil && f.fail(n) {
		return engine.Result{}, fmt.Errorf("fake failure %d", n)
	}
	in := 0
	for _, m := range req.Messages {
		in += len(strings.Fields(m.Content))
	}
	out := min(req.Params.MaxTokens, f.stopAt)
	for range out {
		time.Sleep(10 * time.Microsecond) // so that time passes even on a coarse clock
		if onToken != nil {
			if err := onToken(" tok"); err != nil {
				return engine.Result{}, err
			}
		}
	}
	return engine.Result{Model: "fake", TokensIn: in, TokensOut: out, FinishReason: engine.FinishLength}, nil
}

func (f *fakeEngine) Embed(context.Context, []string) ([][]float32, error) {
	return nil, engine.ErrNotSupported
}

func (f *fakeEngine) CountTokens(_ context.Context, text string) (int, error) {
	return len(strings.Fields(text)), nil
}

func (f *fakeEngine) Close() error { return nil }

// fakeServer speaks enough of the OpenAI chat API, as llama-server does:
// usage with prompt_tokens_details.cached_tokens and timings, JSON or SSE.
// Every prompt after the first has all but its last 10 tokens cached. It
// stops at stopAt tokens unless asked to ignore EOS.
type fakeServer struct {
	*httptest.Server
	stopAt int
	calls  atomic.Int64

	mu   sync.Mutex
	fail func(n int64) bool // n counts requests from 1; failing ones get a 500
	reqs []map[string]any   // the bodies received
}

// setFail makes the requests for which fail returns true get a 500.
func (f *fakeServer) setFail(fail func(n int64) bool) {
	f.mu.Lock()
	f.fail = fail
	f.mu.Unlock()
}

func newFakeServer(t *testing.T, stopAt int) *fakeServer {
	f := &fakeServer{stopAt: stopAt}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) requests() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.reqs...)
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	n := f.calls.Add(1)
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var req struct {
		Messages  []engine.Message `json:"messages"`
		MaxTokens int              `json:"max_tokens"`
		Stream    bool             `json:"stream"`
		IgnoreEOS bool             `json:"ignore_eos"`
	}
	var raw map[string]any
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, _ := json.Marshal(raw)
	json.Unmarshal(b, &req)
	f.mu.Lock()
	f.reqs = append(f.reqs, raw)
	fail := f.fail
	f.mu.Unlock()
	if fail != nil && fail(n) {
		http.Error(w, `{"error":{"code":500,"message":"fake overload","type":"server_error"}}`, http.StatusInternalServerError)
		return
	}
	prompt := 0
	for _, m := range req.Messages {
		prompt += len(strings.Fields(m.Content))
	}
	cached := 0
	if n > 1 {
		cached = max(prompt-10, 0)
	}
	out := req.MaxTokens
	if !req.IgnoreEOS {
		out = min(out, f.stopAt)
	}
	usage := fmt.Sprintf(`{"completion_tokens":%d,"prompt_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d}}`,
		out, prompt, out+prompt, cached)
	timings := fmt.Sprintf(`{"cache_n":%d,"prompt_n":%d,"prompt_ms":1.5,"predicted_n":%d,"predicted_ms":2.5}`, cached, prompt-cached, out)
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"choices":[{"finish_reason":"length","index":0,"message":{"role":"assistant","content":%q}}],"created":1,"model":"m","object":"chat.completion","usage":%s,"id":"x","timings":%s}`,
			strings.Repeat(" tok", out), usage, timings)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl, _ := w.(http.Flusher)
	fmt.Fprint(w, `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}`+"\n\n")
	for range out {
		time.Sleep(10 * time.Microsecond)
		fmt.Fprint(w, `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" tok"}}],"object":"chat.completion.chunk"}`+"\n\n")
		if fl != nil {
			fl.Flush()
		}
	}
	fmt.Fprint(w, `data: {"choices":[{"finish_reason":"length","index":0,"delta":{}}],"object":"chat.completion.chunk"}`+"\n\n")
	fmt.Fprintf(w, "data: {\"choices\":[],\"object\":\"chat.completion.chunk\",\"usage\":%s,\"timings\":%s}\n\n", usage, timings)
	fmt.Fprint(w, "data: [DONE]\n\n")
}
