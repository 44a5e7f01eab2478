package openai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fake is an OpenAI-compatible backend for the tests, answering in the
// shapes of the server kind it plays (the shapes are documented at the top
// of wire.go), with faults to inject.
type fake struct {
	kind string
	srv  *httptest.Server

	mu       sync.Mutex
	bodies   []map[string]any // requests received on the completion endpoints
	prefixes map[string]int   // system prompts seen, for affinity counts

	words        []string      // the answer, one stream event each
	status       atomic.Int32  // non-zero: answer every completion with it
	errBody      atomic.Value  // string: the body of that answer
	healthy      atomic.Bool   // the health endpoint's answer
	firstDelay   atomic.Int64  // nanoseconds before the first event
	cutAfter     atomic.Int32  // >0: drop the connection after this many events
	stall        atomic.Bool   // hang after the first event
	running      atomic.Int32  // requests in flight
	peak         atomic.Int32  // most requests in flight at once
	cancelled    atomic.Int32  // requests whose client went away
	served       atomic.Int32  // completions answered in full
	reportLoad   atomic.Int32  // the load /metrics reports
	ollamaLoaded atomic.Bool   // /api/ps lists the model
	release      chan struct{} // closed to let held requests go on (stall)
}

func newFake(t *testing.T, kind string) *fake {
	t.Helper()
	f := &fake{kind: kind, words: []string{"Hello", ",", " world"}, prefixes: map[string]int{}, release: make(chan struct{})}
	f.healthy.Store(true)
	f.errBody.Store("")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", f.complete)
	mux.HandleFunc("POST /v1/completions", f.complete)
	mux.HandleFunc("POST /v1/embeddings", f.embeddings)
	mux.HandleFunc("POST /tokenize", f.tokenize)
	health := func(w http.ResponseWriter, r *http.Request) {
		if !f.healthy.Load() {
			// llama-server while loading: 503 {"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}
			http.Error(w, `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`, http.StatusServiceUnavailable)
			return
		}
		switch kind {
		case KindOllama:
			fmt.Fprint(w, `{"version":"0.5.7"}`)
		case KindOpenAI:
			fmt.Fprint(w, `{"object":"list","data":[{"id":"m","object":"model"}]}`)
		case KindLlamaServer:
			fmt.Fprint(w, `{"status":"ok"}`)
		}
	}
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("GET /api/version", health)
	mux.HandleFunc("GET /v1/models", health)
	mux.HandleFunc("GET /api/ps", func(w http.ResponseWriter, r *http.Request) {
		// Ollama's shape (docs/api.md, "List Running Models").
		if f.ollamaLoaded.Load() {
			fmt.Fprint(w, `{"models":[{"name":"m:latest","model":"m:latest","size":1,"digest":"x","expires_at":"2026-12-07T00:00:00Z","size_vram":0}]}`)
			return
		}
		fmt.Fprint(w, `{"models":[]}`)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		n := f.reportLoad.Load()
		switch kind {
		case KindVLLM:
			fmt.Fprintf(w, "# HELP vllm:num_requests_waiting Number of requests waiting.\n# TYPE vllm:num_requests_waiting gauge\n"+
				"vllm:num_requests_waiting{model_name=\"m\"} %d.0\nvllm:num_requests_running{model_name=\"m\"} 0.0\n", n)
		case KindLlamaServer:
			fmt.Fprintf(w, "llamacpp:requests_processing %d\nllamacpp:requests_deferred 0\n", n)
		default:
			http.NotFound(w, r)
		}
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.unblock()
		f.srv.Close()
	})
	return f
}

// unblock lets stalled requests end.
func (f *fake) unblock() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.release:
	default:
		close(f.release)
	}
}

func (f *fake) complete(w http.ResponseWriter, r *http.Request) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":{"message":"bad json"}}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	if msgs, ok := body["messages"].([]any); ok && len(msgs) > 0 {
		if m, ok := msgs[0].(map[string]any); ok && m["role"] == "system" {
			f.prefixes[fmt.Sprint(m["content"])]++
		}
	}
	f.mu.Unlock()
	if s := f.status.Load(); s != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(s))
		fmt.Fprint(w, f.errBody.Load().(string))
		return
	}
	if d := time.Duration(f.firstDelay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			f.cancelled.Add(1)
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	chat := r.URL.Path == "/v1/chat/completions"
	for i, word := range f.words {
		if c := f.cutAfter.Load(); c > 0 && i >= int(c) {
			panic(http.ErrAbortHandler) // the connection drops mid-stream
		}
		var ev string
		if chat {
			ev = fmt.Sprintf(`{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`, word)
		} else {
			ev = fmt.Sprintf(`{"id":"x","object":"text_completion","choices":[{"index":0,"text":%q,"finish_reason":null}]}`, word)
		}
		fmt.Fprintf(w, "data: %s\n\n", ev)
		fl.Flush()
		if i == 0 && f.stall.Load() {
			select {
			case <-f.release:
			case <-r.Context().Done():
				f.cancelled.Add(1)
				return
			}
		}
	}
	finish := "stop"
	if mt, ok := body["max_tokens"].(float64); ok && int(mt) <= len(f.words) {
		finish = "length"
	}
	delta := `"delta":{}`
	if !chat {
		delta = `"text":""`
	}
	final := fmt.Sprintf(`{"id":"x","choices":[{"index":0,%s,"finish_reason":%q}]`, delta, finish)
	switch f.kind {
	case KindLlamaServer:
		// llama-server: timings on the last chunk, usage too.
		final += `,"timings":{"cache_n":30,"prompt_n":12,"predicted_n":3}`
	}
	final += "}"
	fmt.Fprintf(w, "data: %s\n\n", final)
	if f.kind != KindOllama { // usage chunk (stream_options.include_usage)
		cached := ""
		if f.kind == KindVLLM {
			cached = `,"prompt_tokens_details":{"cached_tokens":20}`
		}
		fmt.Fprintf(w, `data: {"id":"x","choices":[],"usage":{"prompt_tokens":42,"completion_tokens":%d,"total_tokens":%d%s}}`+"\n\n",
			len(f.words), 42+len(f.words), cached)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	f.served.Add(1)
}

func (f *fake) embeddings(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Input []string `json:"input"`
	}
	json.NewDecoder(r.Body).Decode(&body)
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	var data []item
	// Answered in reverse order: the index says which is which.
	for i := len(body.Input) - 1; i >= 0; i-- {
		data = append(data, item{"embedding", i, []float32{float32(len(body.Input[i])), 1}})
	}
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
}

func (f *fake) tokenize(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	text, _ := body["content"].(string) // llama-server
	if f.kind == KindVLLM {
		text, _ = body["prompt"].(string)
	}
	n := len(strings.Fields(text))
	toks := make([]int, n)
	switch f.kind {
	case KindVLLM:
		json.NewEncoder(w).Encode(map[string]any{"count": n, "max_model_len": 4096, "tokens": toks})
	default:
		json.NewEncoder(w).Encode(map[string]any{"tokens": toks})
	}
}

// lastBody is the last completion request the fake received.
func (f *fake) lastBody() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		return nil
	}
	return f.bodies[len(f.bodies)-1]
}
