package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/ociplugins"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// A catalog model as the chat model: the messages go to the model as they
// are (no routing, no plugin), streamed or not, with usage; a tenant may
// use only its own models.
func TestRawModelChat(t *testing.T) {
	url := startServer(t, newServer(t, tenantHost(t), tenantConfig(t))).URL
	body := chatBody("tiny", "Say something.")
	body["max_tokens"] = 8
	r := do(t, http.MethodPost, url+"/v1/chat/completions", acmeKey, body)
	var cc chatCompletion
	if r.code != http.StatusOK || json.Unmarshal(r.body, &cc) != nil || cc.Model != "tiny" || len(cc.Choices) != 1 ||
		cc.Usage.PromptTokens == 0 || cc.Usage.CompletionTokens == 0 || cc.Usage.CompletionTokens > 8 || cc.MDSA.Domain != "" {
		t.Fatalf("%d %s", r.code, r.body)
	}

	body["stream"] = true
	body["stream_options"] = map[string]bool{"include_usage": true}
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var chunks, usages int
	done := false
	readSSE(t, bufio.NewReader(resp.Body), func(d string) bool {
		if d == "[DONE]" {
			done = true
			return true
		}
		var ch chatChunk
		if err := json.Unmarshal([]byte(d), &ch); err != nil || ch.Model != "tiny" {
			t.Errorf("chunk %s: %v", d, err)
			return false
		}
		chunks++
		if ch.Usage != nil && ch.Usage.CompletionTokens > 0 {
			usages++
		}
		return true
	})
	if !done || chunks < 3 || usages != 1 {
		t.Errorf("stream: %d chunks, %d usage chunks, done %v", chunks, usages, done)
	}

	// The raw model under a response format answers a JSON object.
	jbody := chatBody("tiny", "Describe yourself.")
	jbody["max_tokens"] = 60
	jbody["response_format"] = map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "me", "strict": true,
		"schema": map[string]any{"type": "object", "properties": map[string]any{"n": map[string]string{"type": "integer"}}, "required": []string{"n"}}}}
	r = do(t, http.MethodPost, url+"/v1/chat/completions", acmeKey, jbody)
	var n struct{ N *int64 }
	if r.code != http.StatusOK || json.Unmarshal(r.body, &cc) != nil || json.Unmarshal([]byte(cc.Choices[0].Message.Content), &n) != nil || n.N == nil {
		t.Fatalf("raw model, json_schema: %d %s", r.code, r.body)
	}

	// acme may use tiny only.
	if r := do(t, http.MethodPost, url+"/v1/chat/completions", acmeKey, chatBody("tiny2", "hi")); r.code == http.StatusOK {
		t.Errorf("acme used tiny2: %s", r.body)
	}
	// The model ids a tenant may chat with include its catalog models.
	r = do(t, http.MethodPost, url+"/v1/chat/completions", acmeKey, chatBody("nope", "hi"))
	if r.code != http.StatusNotFound || !strings.Contains(string(r.body), "tiny") {
		t.Errorf("an unknown model: %d %s", r.code, r.body)
	}
}

// An MDSA gateway whose model runs on another MDSA server through
// [backends]: real llama.cpp behind real HTTP, the gateway's plugins and
// router in front. When the backend goes away, the gateway answers 503.
func TestRemoteBackendModel(t *testing.T) {
	node := startServer(t, newServer(t, tenantHost(t), tenantConfig(t)))
	gw := gatewayOver(t, config.Backend{URLs: []string{node.URL + "/v1"}})

	r := do(t, http.MethodPost, gw+"/v1/query", "", map[string]any{"query": qSupport, "generation": map[string]int{"max_tokens": 6}})
	var res struct {
		Domain string `json:"domain"`
		Tokens struct {
			Prompt     int `json:"prompt"`
			Completion int `json:"completion"`
		} `json:"tokens"`
		Model string `json:"model"`
	}
	if r.code != http.StatusOK || json.Unmarshal(r.body, &res) != nil || res.Domain != "support" ||
		res.Tokens.Prompt == 0 || res.Tokens.Completion == 0 {
		t.Fatalf("through the gateway: %d %s", r.code, r.body)
	}
	// The raw remote model through the gateway, streamed.
	body := chatBody("remote", "Say something.")
	body["max_tokens"], body["stream"] = 4, true
	r = do(t, http.MethodPost, gw+"/v1/chat/completions", "", body)
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"model":"remote"`) || !strings.HasSuffix(strings.TrimSpace(string(r.body)), "data: [DONE]") {
		t.Fatalf("streamed through the gateway: %d %s", r.code, r.body)
	}

	if m := do(t, http.MethodGet, gw+"/metrics", "", nil); !strings.Contains(string(m.body), `mdsa_backend_up{backend="`+node.URL+`",model="remote"} 1`) ||
		!strings.Contains(string(m.body), `mdsa_backend_requests_total{backend="`+node.URL+`",model="remote",result="served"} 2`) {
		t.Errorf("the gateway's metrics lack the backend: %s", m.body)
	}
	// A plain OpenAI-compatible backend takes no grammar: structured
	// requests are the client's 400, not a 500.
	body = chatBody("remote", "Say something.")
	body["response_format"] = map[string]string{"type": "json_object"}
	r = do(t, http.MethodPost, gw+"/v1/chat/completions", "", body)
	if r.code != http.StatusBadRequest || r.errorDoc(t).Error.Code != "model_not_supported" || !strings.Contains(string(r.body), "cannot enforce") {
		t.Fatalf("a format on a remote model: %d %s", r.code, r.body)
	}
	node.Close()
	r = do(t, http.MethodPost, gw+"/v1/query", "", map[string]any{"query": qSupport, "generation": map[string]int{"max_tokens": 6}})
	if r.code != http.StatusServiceUnavailable || r.errorDoc(t).Error.Code != "backend_unavailable" || r.header.Get("Retry-After") == "" {
		t.Fatalf("with the backend gone: %d %s", r.code, r.body)
	}
}

// Two replicas on one Redis share a tenant's limits: a request per second
// admitted by one is refused by the other at once. With Redis gone and
// limits_fail = "closed", requests get 503 limits_unavailable.
func TestSharedLimitsAcrossReplicas(t *testing.T) {
	r := testutil.StartRedis(t)
	h := tenantHost(t)
	cfg := tenantConfig(t)
	cfg.Server.Limits, cfg.Server.LimitsFail = "redis", "closed"
	cfg.Redis.URL, cfg.Redis.Timeout = r.URL, config.Duration{Duration: 2e9}
	cfg.Server.RefusalDelay = config.Duration{}
	cfg.Redis.KeyPrefix = "test-" + t.Name() + ":"
	a := startServer(t, newServer(t, h, cfg)).URL
	b := startServer(t, newServer(t, h, cfg)).URL
	route := map[string]string{"query": qSupport}
	if r := do(t, http.MethodPost, a+"/v1/route", rateKey, route); r.code != http.StatusOK {
		t.Fatalf("first request: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodPost, b+"/v1/route", rateKey, route); r.code != http.StatusTooManyRequests ||
		r.errorDoc(t).Error.Code != "rate_limit_exceeded" {
		t.Fatalf("the other replica, at once: %d %s", r.code, r.body)
	}
	r.Stop()
	if r := do(t, http.MethodPost, b+"/v1/route", singleKey, route); r.code != http.StatusServiceUnavailable ||
		r.errorDoc(t).Error.Code != "limits_unavailable" {
		t.Fatalf("with Redis gone: %d %s", r.code, r.body)
	}
	// A tenant without limits does not need Redis.
	if r := do(t, http.MethodPost, b+"/v1/route", globexKey, map[string]string{"query": qMedical}); r.code != http.StatusOK {
		t.Fatalf("a tenant without limits: %d %s", r.code, r.body)
	}
}

// A rollout through an OCI registry: two replicas watch a tag; a new
// version pushed to it serves on both, with no failed request meanwhile.
func TestRegistryRollout(t *testing.T) {
	reg := testutil.StartRegistry(t)
	oc := ociplugins.Client{PlainHTTP: true}
	ctx := context.Background()
	ref, err := ociplugins.ParseRef("oci://" + reg.Host + "/mdsa/support:stable")
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(filepath.Join(fixture.pluginsDir, "support.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oc.Push(ctx, ref, "support", wasm, nil); err != nil {
		t.Fatal(err)
	}
	type replica struct {
		h   *host.Host
		url string
	}
	var reps []replica
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	for range 2 {
		h, url, _ := adminHost(t)
		w := &ociplugins.Watcher{Client: oc, Refs: []ociplugins.Ref{ref}, Poll: 100 * time.Millisecond,
			Install: func(ctx context.Context, name string, wasm []byte) error {
				_, err := h.InstallPlugin(ctx, name, wasm)
				return err
			}}
		w.Sync(ctx)
		go w.Run(wctx)
		reps = append(reps, replica{h, url})
	}
	sha := func(h *host.Host) string {
		for _, p := range h.Plugins() {
			if p.Name == "support" {
				return p.SHA256
			}
		}
		return ""
	}
	old := sha(reps[0].h)
	var failed, sent atomic.Int64
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		for wctx.Err() == nil {
			for _, r := range reps {
				sent.Add(1)
				if res := do(t, http.MethodPost, r.url+"/v1/route", "", map[string]string{"query": qSupport}); res.code != http.StatusOK {
					failed.Add(1)
				}
			}
		}
	}()
	v2 := variant(wasm, "v2")
	t0 := time.Now()
	if _, err := oc.Push(ctx, ref, "support", v2, nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); sha(reps[0].h) == old || sha(reps[1].h) == old; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the new version did not reach both replicas within a minute")
		}
	}
	took := time.Since(t0)
	stop()
	<-trafficDone
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during the rollout", failed.Load(), sent.Load())
	}
	t.Logf("rollout to 2 replicas took %v (poll 100ms), %d requests, none failed", took, sent.Load())
}

// A model on an Ollama-kind backend takes a response format (the format's
// JSON Schema goes upstream as response_format; here the upstream is
// another MDSA server, whose real llama.cpp enforces it) but no tools.
func TestOllamaBackendResponseFormat(t *testing.T) {
	node := startServer(t, newServer(t, tenantHost(t), tenantConfig(t)))
	gw := gatewayOver(t, config.Backend{Kind: "ollama", URLs: []string{node.URL}})

	body := chatBody("remote", "Describe yourself.")
	body["max_tokens"] = 60
	body["response_format"] = map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "me", "strict": true,
		"schema": map[string]any{"type": "object", "properties": map[string]any{"n": map[string]string{"type": "integer"}}, "required": []string{"n"}}}}
	r := do(t, http.MethodPost, gw+"/v1/chat/completions", "", body)
	var cc struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	var n struct{ N *int64 }
	if r.code != http.StatusOK || json.Unmarshal(r.body, &cc) != nil || len(cc.Choices) != 1 ||
		json.Unmarshal([]byte(cc.Choices[0].Message.Content), &n) != nil || n.N == nil {
		t.Fatalf("json_schema on an Ollama-kind model: %d %s", r.code, r.body)
	}
	body = chatBody("remote", "Weather?")
	body["tools"] = []any{map[string]any{"type": "function", "function": map[string]any{"name": "get_weather",
		"parameters": map[string]any{"type": "object"}}}}
	r = do(t, http.MethodPost, gw+"/v1/chat/completions", "", body)
	if r.code != http.StatusBadRequest || r.errorDoc(t).Error.Code != "model_not_supported" || !strings.Contains(string(r.body), "Ollama") {
		t.Fatalf("tools on an Ollama-kind model: %d %s", r.code, r.body)
	}
}

// gatewayOver starts an MDSA gateway whose engine.model "remote" is the
// node's model "tiny" on backend b (the node's key in its environment, no
// health checks, short ejections) and returns its URL.
func gatewayOver(t *testing.T, b config.Backend) string {
	t.Helper()
	t.Setenv("MDSA_TEST_NODE_KEY", acmeKey)
	b.APIKeyEnv = "MDSA_TEST_NODE_KEY"
	b.HealthInterval = config.Duration{Duration: -1}
	b.EjectTime = config.Duration{Duration: 50e6}
	cfg := baseConfig(t, fixture.pluginsDir)
	cfg.Backends = map[string]config.Backend{"node": b}
	cfg.Models = map[string]config.Model{"remote": {Tier: "domain", Backend: "node", RemoteModel: "tiny"}}
	cfg.Engine.Model = "remote"
	h, err := host.New(context.Background(), cfg, host.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return startServer(t, newServer(t, h, cfg)).URL
}
