// Package clusterbench measures MDSA as a gateway in front of inference
// servers (mdsa bench cluster): the latency it adds, how well prefix
// affinity keeps each domain's prompt warm, failover when a server dies,
// and how throughput scales with servers. The servers are Backends of this
// package: OpenAI-compatible HTTP servers of fixed latency and capacity,
// so that what is measured is the gateway, not a model.
package clusterbench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// BackendOptions shape a benchmark backend.
type BackendOptions struct {
	// Latency is the time before the first token.
	Latency time.Duration
	// Tokens is the answer's length, one stream event each, TokenGap
	// apart.
	Tokens   int
	TokenGap time.Duration
	// Capacity is how many requests are processed at once; more wait in
	// line (their wait counts in their latency).
	Capacity int
	// CacheSlots is how many system prompts the backend keeps warm (least
	// recently used go first), as a server's KV cache holds a few: a
	// request whose system prompt is among them counts as warm.
	CacheSlots int
}

// Backend is an OpenAI-compatible server for benchmarks: it answers every
// chat completion with a fixed text after fixed delays. It is not a model.
type Backend struct {
	opts BackendOptions
	addr string
	sem  chan struct{}

	mu       sync.Mutex
	srv      *http.Server
	cache    []string // system prompts, most recent last
	requests int
	warm     int
}

// StartBackend serves a backend on a loopback port.
func StartBackend(opts BackendOptions) (*Backend, error) {
	opts.Capacity = max(opts.Capacity, 1)
	opts.CacheSlots = max(opts.CacheSlots, 1)
	b := &Backend{opts: opts, sem: make(chan struct{}, opts.Capacity)}
	if err := b.listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Backend) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("clusterbench: backend: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", b.complete)
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"object":"list","data":[{"id":"bench","object":"model"}]}`)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	b.mu.Lock()
	b.addr, b.srv = ln.Addr().String(), srv
	b.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// URL is the backend's base address.
func (b *Backend) URL() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return "http://" + b.addr
}

// Kill stops the backend at once: the listener closes and every
// connection, streams in flight included, is cut.
func (b *Backend) Kill() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Restart serves again on the same address, its cache cold.
func (b *Backend) Restart() error {
	b.mu.Lock()
	addr := b.addr
	b.cache = nil
	b.mu.Unlock()
	return b.listen(addr)
}

// Close stops the backend.
func (b *Backend) Close() { b.Kill() }

// Counts returns the requests served since the last Reset and how many of
// them found their system prompt warm.
func (b *Backend) Counts() (requests, warm int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests, b.warm
}

// Reset clears the counts and the cache.
func (b *Backend) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests, b.warm, b.cache = 0, 0, nil
}

// touch records a request's system prompt in the cache.
func (b *Backend) touch(prefix string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests++
	if i := slices.Index(b.cache, prefix); i >= 0 {
		b.warm++
		b.cache = slices.Delete(b.cache, i, i+1)
	} else if len(b.cache) >= b.opts.CacheSlots {
		b.cache = b.cache[1:]
	}
	b.cache = append(b.cache, prefix)
}

type benchRequest struct {
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	Stream bool `json:"stream"`
}

func (b *Backend) complete(w http.ResponseWriter, r *http.Request) {
	var req benchRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, `{"error":{"message":"bad json","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	select {
	case b.sem <- struct{}{}:
		defer func() { <-b.sem }()
	case <-r.Context().Done():
		return
	}
	prefix := ""
	if len(req.Messages) > 0 && req.Messages[0].Role == "system" {
		prefix = req.Messages[0].Content
	}
	b.touch(prefix)
	if !sleep(r.Context(), b.opts.Latency) {
		return
	}
	if !req.Stream {
		if !sleep(r.Context(), time.Duration(b.opts.Tokens)*b.opts.TokenGap) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"b","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":32,"completion_tokens":%d,"total_tokens":%d}}`,
			answer(b.opts.Tokens), b.opts.Tokens, 32+b.opts.Tokens)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl, _ := w.(http.Flusher)
	for i := range b.opts.Tokens {
		if i > 0 && !sleep(r.Context(), b.opts.TokenGap) {
			return
		}
		fmt.Fprintf(w, "data: {\"id\":\"b\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w%d \"},\"finish_reason\":null}]}\n\n", i)
		if fl != nil {
			fl.Flush()
		}
	}
	fmt.Fprint(w, "data: {\"id\":\"b\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
	fmt.Fprintf(w, "data: {\"id\":\"b\",\"choices\":[],\"usage\":{\"prompt_tokens\":32,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n", b.opts.Tokens, 32+b.opts.Tokens)
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// answer is the text of n tokens.
func answer(n int) string {
	out := make([]byte, 0, n*4)
	for i := range n {
		out = fmt.Appendf(out, "w%d ", i)
	}
	return string(out)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
