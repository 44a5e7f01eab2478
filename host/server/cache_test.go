package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// The response cache: the same deterministic request asked again is
// answered from the cache (X-MDSA-Cache: hit, mdsa.cache, no tokens), a
// sampled one is not kept, a new plugin version starts afresh, a stream
// gets the kept text, and lookups are counted per tenant.
func TestResponseCache(t *testing.T) {
	_, url, _ := adminHost(t)
	zero := map[string]any{"query": qSupport + " (cache test)", "generation": map[string]any{"max_tokens": 6, "temperature": 0}}
	first := do(t, http.MethodPost, url+"/v1/query", "", zero)
	second := do(t, http.MethodPost, url+"/v1/query", "", zero)
	if first.code != 200 || second.code != 200 || first.header.Get("X-MDSA-Cache") != "miss" || second.header.Get("X-MDSA-Cache") != "hit" {
		t.Fatalf("first %d %q, second %d %q: %s", first.code, first.header.Get("X-MDSA-Cache"), second.code, second.header.Get("X-MDSA-Cache"), second.body)
	}
	var a, b struct {
		Response string `json:"response"`
		Cache    string `json:"cache"`
		Tokens   struct {
			Prompt, Completion int
		} `json:"tokens"`
	}
	if json.Unmarshal(first.body, &a) != nil || json.Unmarshal(second.body, &b) != nil {
		t.Fatalf("bodies: %s / %s", first.body, second.body)
	}
	if a.Response != b.Response || a.Cache != "miss" || b.Cache != "hit" || b.Tokens.Prompt != 0 || b.Tokens.Completion != 0 {
		t.Errorf("miss %+v, hit %+v", a, b)
	}

	sampled := map[string]any{"query": qSupport + " (cache test)", "generation": map[string]any{"max_tokens": 6, "temperature": 0.7}}
	if r := do(t, http.MethodPost, url+"/v1/query", "", sampled); r.code != 200 || r.header.Get("X-MDSA-Cache") != "" {
		t.Errorf("a sampled request: %d cache %q", r.code, r.header.Get("X-MDSA-Cache"))
	}

	// Streamed, the kept answer comes as the text of the stream (the same
	// request through the chat API: the same key).
	body := chatBody("mdsa/support", qSupport+" (cache test)")
	body["temperature"], body["max_tokens"], body["stream"] = 0, 6, true
	r := do(t, http.MethodPost, url+"/v1/chat/completions", "", body)
	if r.code != 200 || r.header.Get("X-MDSA-Cache") != "hit" || !strings.Contains(string(r.body), `"cache":"hit"`) ||
		!strings.HasSuffix(strings.TrimSpace(string(r.body)), "data: [DONE]") {
		t.Errorf("a streamed hit: %d %q %s", r.code, r.header.Get("X-MDSA-Cache"), r.body)
	}

	// A new version of the plugin: the kept answers no longer apply.
	wasm, err := os.ReadFile(filepath.Join(fixture.pluginsDir, "support.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if r := do(t, http.MethodPut, url+"/admin/plugins/support", adminKey, variant(wasm, "cache-v2")); r.code != 200 {
		t.Fatalf("swap: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodPost, url+"/v1/query", "", zero); r.header.Get("X-MDSA-Cache") != "miss" {
		t.Errorf("after a swap: %q", r.header.Get("X-MDSA-Cache"))
	}
	m := do(t, http.MethodGet, url+"/metrics", "", nil)
	if !strings.Contains(string(m.body), `mdsa_cache_requests_total{result="hit",tenant="default"} 2`) ||
		!strings.Contains(string(m.body), `mdsa_cache_requests_total{result="miss",tenant="default"} 2`) {
		t.Errorf("metrics lack the hits:\n%s", grepLines(string(m.body), "mdsa_cache"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// BenchmarkResponseCache is the server time of a /v1/query (the handler,
// no network) answered from the response cache and, beside it, computed
// (a new query each time, 6 tokens from the tiny synthetic model):
//
//	go test -run '^$' -bench ResponseCache ./host/server
func BenchmarkResponseCache(b *testing.B) {
	h := openHost(b)
	s := newServer(b, h, openConfig(b))
	handler := s.Handler()
	query := func(q string) int {
		body, _ := json.Marshal(map[string]any{"query": q, "generation": map[string]any{"max_tokens": 6, "temperature": 0}})
		req := httptest.NewRequest(http.MethodPost, "/v1/query", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		return w.Code
	}
	b.Run("hit", func(b *testing.B) {
		query(qSupport + " (bench)")
		for b.Loop() {
			if code := query(qSupport + " (bench)"); code != http.StatusOK {
				b.Fatal(code)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if code := query(fmt.Sprintf("%s (bench miss %d)", qSupport, i)); code != http.StatusOK {
				b.Fatal(code)
			}
		}
	})
}

// With cache.store = "redis", replicas share kept answers: asked on one,
// answered from the cache on the other.
func TestResponseCacheSharedByReplicas(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := openConfig(t)
	cfg.Cache.Store = "redis"
	cfg.Redis.URL, cfg.Redis.KeyPrefix = r.URL, "test-"+t.Name()+":"
	cfg.Redis.Timeout = config.Duration{Duration: 2 * time.Second}
	var urls []string
	for range 2 {
		h, err := host.New(context.Background(), cfg, host.WithLogger(quietLogger()), host.WithModelFile(fixture.modelPath))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		urls = append(urls, startServer(t, newServer(t, h, cfg)).URL)
	}
	q := map[string]any{"query": qFinance + " (shared cache)", "generation": map[string]any{"max_tokens": 6, "temperature": 0}}
	a := do(t, http.MethodPost, urls[0]+"/v1/query", "", q)
	b := do(t, http.MethodPost, urls[1]+"/v1/query", "", q)
	if a.header.Get("X-MDSA-Cache") != "miss" || b.header.Get("X-MDSA-Cache") != "hit" {
		t.Fatalf("replica A %d %q, replica B %d %q: %s", a.code, a.header.Get("X-MDSA-Cache"), b.code, b.header.Get("X-MDSA-Cache"), b.body)
	}
}

// The semantic cache: a query like a kept one (the same words and a
// question mark) is answered from the cache; one with other settings is
// not (its group differs).
func TestSemanticCache(t *testing.T) {
	cfg := openConfig(t)
	cfg.Models = map[string]config.Model{"tiny": {Tier: "domain", Variants: map[string]config.Variant{"Q4_0": {Path: fixture.modelPath}}}}
	cfg.Cache.SemanticThreshold, cfg.Cache.SemanticModel = 0.97, "tiny"
	h, err := host.New(context.Background(), cfg, host.WithLogger(quietLogger()), host.WithModelFile(fixture.modelPath))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	url := startServer(t, newServer(t, h, cfg)).URL
	ask := func(q string, maxTokens int) string {
		r := do(t, http.MethodPost, url+"/v1/query", "", map[string]any{"query": q, "domain": "support",
			"generation": map[string]any{"max_tokens": maxTokens, "temperature": 0}})
		if r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		return r.header.Get("X-MDSA-Cache")
	}
	q := "I was charged twice for my order and want my money back"
	if got := ask(q, 6); got != "miss" {
		t.Fatalf("first: %q", got)
	}
	if got := ask(q+"?", 6); got != "hit" {
		t.Errorf("a near-identical query: %q", got)
	}
	if got := ask(q+"?", 7); got != "miss" {
		t.Errorf("other settings: %q", got)
	}
}
