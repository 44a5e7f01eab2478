package server

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/internal/tenant"
)

// frozenClock is a tenant clock that moves only when told.
type frozenClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *frozenClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// tenantServer serves the multi-tenant host with a 64 KiB body limit and a
// frozen clock for the limits (so that rate limits are deterministic).
func tenantServer(t *testing.T) (string, *tenant.Set, config.Config) {
	t.Helper()
	h := tenantHost(t)
	cfg := tenantConfig(t)
	cfg.Server.MaxBodyBytes = 64 << 10
	clock := &frozenClock{now: time.Unix(1_700_000_000, 0)}
	set, err := tenant.New(cfg.Tenants, tenant.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, newServer(t, h, cfg, withTenants(set)))
	return ts.URL, set, cfg
}

func TestTenantIsolation(t *testing.T) {
	url, _, _ := tenantServer(t)

	// Routing: acme's medical query never reaches medical.
	var d routeResponse
	r := do(t, http.MethodPost, url+"/v1/route", acmeKey, map[string]string{"query": qMedical})
	if r.code != http.StatusOK || json.Unmarshal(r.body, &d) != nil {
		t.Fatalf("route: %d %s", r.code, r.body)
	}
	if d.Domain == "medical" || slices.ContainsFunc(d.Alternatives, func(s router.Scored) bool { return s.Domain == "medical" }) || d.LatencyUS <= 0 {
		t.Fatalf("acme's medical query routed to medical: %s", r.body)
	}
	r = do(t, http.MethodPost, url+"/v1/route", globexKey, map[string]string{"query": qMedical})
	if json.Unmarshal(r.body, &d) != nil || d.Domain != "medical" {
		t.Fatalf("globex: %s", r.body)
	}
	var c chatCompletion
	r = do(t, http.MethodPost, url+"/v1/chat/completions", acmeKey, chatBody("mdsa", qMedical))
	if r.code != http.StatusOK || json.Unmarshal(r.body, &c) != nil || c.Model == "mdsa/medical" || c.MDSA.Domain == "medical" {
		t.Fatalf("acme chat with a medical query: %d %s", r.code, r.body)
	}
	r = do(t, http.MethodPost, url+"/v1/chat/completions", globexKey, chatBody("mdsa/medical", qMedical))
	if r.code != http.StatusOK || json.Unmarshal(r.body, &c) != nil || c.Model != "mdsa/medical" {
		t.Fatalf("globex forcing medical: %d %s", r.code, r.body)
	}

	// Forcing a domain the tenant may not use: 403, for chat and query.
	r = do(t, http.MethodPost, url+"/v1/chat/completions", acmeKey, chatBody("mdsa/medical", qMedical))
	if e := r.errorDoc(t); r.code != http.StatusForbidden || e.Error.Code != "permission_denied" || !strings.Contains(e.Error.Message, "medical") {
		t.Fatalf("acme forcing medical: %d %s", r.code, r.body)
	}
	r = do(t, http.MethodPost, url+"/v1/query", acmeKey, map[string]any{"query": qMedical, "domain": "medical"})
	if r.errorDoc(t); r.code != http.StatusForbidden {
		t.Fatalf("acme query forcing medical: %d %s", r.code, r.body)
	}
	r = do(t, http.MethodPost, url+"/v1/query", acmeKey, map[string]any{"query": qMedical, "domain": "astrology"})
	if e := r.errorDoc(t); r.code != http.StatusNotFound || !strings.Contains(e.Error.Message, "finance, support") {
		t.Fatalf("acme query forcing an unknown domain: %d %s", r.code, r.body)
	}

	// What each tenant sees in /v1/models.
	ids := func(key string) []string {
		var l modelList
		r := do(t, http.MethodGet, url+"/v1/models", key, nil)
		if r.code != http.StatusOK || json.Unmarshal(r.body, &l) != nil {
			t.Fatalf("models: %d %s", r.code, r.body)
		}
		var out []string
		for _, m := range l.Data {
			out = append(out, m.ID)
		}
		return out
	}
	if got := ids(acmeKey); !slices.Equal(got, []string{"mdsa", "mdsa/finance", "mdsa/support", "tiny"}) {
		t.Fatalf("acme's models: %v", got)
	}
	if got := ids(globexKey); !slices.Equal(got, []string{"mdsa", "mdsa/medical", "mdsa/technical", "tiny", "tiny2"}) {
		t.Fatalf("globex's models: %v", got)
	}
	if r := do(t, http.MethodGet, url+"/v1/models/mdsa/medical", acmeKey, nil); r.code != http.StatusNotFound {
		t.Fatalf("acme getting mdsa/medical: %d %s", r.code, r.body)
	}

	// Catalog models: allowed, not allowed, unknown.
	emb := func(key, model string) response {
		return do(t, http.MethodPost, url+"/v1/embeddings", key, map[string]any{"model": model, "input": "hello"})
	}
	if r := emb(acmeKey, "tiny"); r.code != http.StatusOK {
		t.Fatalf("acme embedding with tiny: %d %s", r.code, r.body)
	}
	if r := emb(acmeKey, "tiny2"); r.code != http.StatusForbidden || r.errorDoc(t).Error.Code != "permission_denied" {
		t.Fatalf("acme embedding with tiny2: %d %s", r.code, r.body)
	}
	if r := emb(globexKey, "tiny2"); r.code != http.StatusOK {
		t.Fatalf("globex embedding with tiny2: %d %s", r.code, r.body)
	}
	if r := emb(globexKey, "nosuch"); r.code != http.StatusNotFound || r.errorDoc(t).Error.Code != "model_not_found" {
		t.Fatalf("unknown embedding model: %d %s", r.code, r.body)
	}
}

func TestErrorCodes(t *testing.T) {
	url, set, cfg := tenantServer(t)
	chat := url + "/v1/chat/completions"

	check := func(name string, r response, code int, errCode, msg string) errorBody {
		t.Helper()
		e := r.errorDoc(t)
		if r.code != code || e.Error.Code != errCode || !strings.Contains(e.Error.Message, msg) {
			t.Fatalf("%s: got %d %s, want %d %s with %q", name, r.code, r.body, code, errCode, msg)
		}
		if r.header.Get("X-Request-Id") == "" {
			t.Fatalf("%s: no X-Request-Id", name)
		}
		return e
	}

	// 401: no key, a wrong key; the api-key header is accepted too.
	check("no key", do(t, http.MethodPost, chat, "", chatBody("mdsa", qSupport)), 401, "invalid_api_key", "missing API key")
	check("wrong key", do(t, http.MethodPost, chat, "acme-wrong-key", chatBody("mdsa", qSupport)), 401, "invalid_api_key", "invalid API key")
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/models", nil)
	req.Header.Set("api-key", acmeKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("api-key header: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// 403 and 404.
	check("forbidden domain", do(t, http.MethodPost, chat, acmeKey, chatBody("mdsa/medical", "x")), 403, "permission_denied", "medical")
	e := check("unknown model", do(t, http.MethodPost, chat, acmeKey, chatBody("gpt-4o", "x")), 404, "model_not_found", "mdsa, mdsa/finance, mdsa/support")
	if e.Error.Param == nil || *e.Error.Param != "model" {
		t.Fatalf("unknown model: param %v", e.Error.Param)
	}
	check("unknown domain", do(t, http.MethodPost, chat, acmeKey, chatBody("mdsa/astrology", "x")), 404, "model_not_found", "astrology")
	check("unknown URL", do(t, http.MethodGet, url+"/v1/nothing", acmeKey, nil), 404, "unknown_url", "/v1/nothing")

	// 413, with and without a Content-Length.
	big := `{"model":"mdsa","messages":[{"role":"user","content":"` + strings.Repeat("a", int(cfg.Server.MaxBodyBytes)) + `"}]}`
	check("too large", do(t, http.MethodPost, chat, acmeKey, big), 413, "request_too_large", "65536 bytes")
	req, _ = http.NewRequest(http.MethodPost, chat, io.MultiReader(strings.NewReader(big))) // no length: chunked
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check("too large, chunked", response{resp.StatusCode, resp.Header, body}, 413, "request_too_large", "max_body_bytes")

	// 400: malformed JSON, a mistyped field, no messages, max_tokens over
	// the tenant's limit (no Retry-After: retrying cannot help).
	check("malformed", do(t, http.MethodPost, chat, acmeKey, `{"model":"mdsa","messages":[{"role":"user","content":"x"},]}`),
		400, "invalid_json", "malformed JSON at line 1, column 59")
	e = check("mistyped", do(t, http.MethodPost, chat, acmeKey, `{"model":"mdsa","messages":[{"role":"user","content":{"text":"x"}}]}`),
		400, "invalid_type", "messages[0].content: want a string or an array of content parts, got an object")
	if *e.Error.Param != "messages[0].content" {
		t.Fatalf("mistyped: param %q", *e.Error.Param)
	}
	check("empty messages", do(t, http.MethodPost, chat, acmeKey, `{"model":"mdsa","messages":[]}`), 400, "empty_messages", "messages is empty")
	over := chatBody("mdsa", qSupport)
	over["max_tokens"] = acmeMaxTokens + 1
	r := do(t, http.MethodPost, chat, acmeKey, over)
	e = check("max_tokens", r, 400, "max_tokens_exceeded", "limit of 64 tokens")
	if e.Error.Type != typeInvalidRequest || *e.Error.Param != "max_tokens" || r.header.Get("Retry-After") != "" {
		t.Fatalf("max_tokens over the limit: %s, Retry-After %q", r.body, r.header.Get("Retry-After"))
	}

	// 400 for prompts the model cannot take, which OpenAI clients do not
	// retry: longer than the context (2048 tokens here), a NUL byte.
	long := chatBody("mdsa/support", strings.Repeat("where is my order? ", 700))
	e = check("context length", do(t, http.MethodPost, chat, acmeKey, long), 400, "context_length_exceeded", "raise engine.context_size")
	if e.Error.Param == nil || *e.Error.Param != "messages" || !strings.Contains(e.Error.Message, "holds 2048 tokens") {
		t.Fatalf("context length: %+v", e.Error)
	}
	check("NUL byte", do(t, http.MethodPost, chat, acmeKey, chatBody("mdsa/support", "where is\x00 my order")), 400, "invalid_input", "NUL byte")
	long["stream"] = true
	check("context length, streamed", do(t, http.MethodPost, chat, acmeKey, long), 400, "context_length_exceeded", "raise engine.context_size")

	// 405 in OpenAI's format, with Allow.
	r = do(t, http.MethodGet, chat, acmeKey, nil)
	if check("GET chat", r, 405, "method_not_allowed", "use POST"); r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow: %q", r.header.Get("Allow"))
	}
	check("DELETE models", do(t, http.MethodDelete, url+"/v1/models", acmeKey, nil), 405, "method_not_allowed", "use GET")

	// 429 requests_per_second (burst 1, clock frozen).
	retryAfter := func(r response) int {
		t.Helper()
		n, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || n < 1 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		return n
	}
	if r := do(t, http.MethodGet, url+"/v1/models", rateKey, nil); r.code != 200 {
		t.Fatalf("first request of rate: %d", r.code)
	}
	r = do(t, http.MethodGet, url+"/v1/models", rateKey, nil)
	check("rate", r, 429, "rate_limit_exceeded", "requests_per_second")
	if n := retryAfter(r); n != 1 {
		t.Fatalf("rate: Retry-After %d, want 1", n)
	}

	// 429 concurrent: the first request holds the only slot while its body
	// is still arriving (admission comes before reading the body).
	pr, pw := io.Pipe()
	first := make(chan response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/route", pr)
		req.Header.Set("Authorization", "Bearer "+singleKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- response{code: -1, body: []byte(err.Error())}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		first <- response{code: resp.StatusCode, body: b}
	}()
	pw.Write([]byte(`{"query":`))
	single, _ := set.Get("single")
	for deadline := time.Now().Add(10 * time.Second); single.Usage().InFlight != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first request was never admitted")
		}
	}
	r = do(t, http.MethodPost, url+"/v1/route", singleKey, map[string]string{"query": qSupport})
	check("concurrent", r, 429, "rate_limit_exceeded", "concurrent")
	retryAfter(r)
	pw.Write([]byte(`"` + qSupport + `"}`))
	pw.Close()
	if r := <-first; r.code != http.StatusOK {
		t.Fatalf("the request holding the slot: %d %s", r.code, r.body)
	}

	// 429 tokens_per_minute: one answer (about 400 prompt tokens) uses the
	// whole minute's 100.
	if r := do(t, http.MethodPost, chat, tokensKey, chatBody("mdsa", qSupport)); r.code != 200 {
		t.Fatalf("first request of tokens: %d %s", r.code, r.body)
	}
	r = do(t, http.MethodPost, chat, tokensKey, chatBody("mdsa", qSupport))
	check("tokens", r, 429, "rate_limit_exceeded", "tokens_per_minute")
	if n := retryAfter(r); n > 60 {
		t.Fatalf("tokens: Retry-After %d", n)
	}

	// The refusals are counted, per tenant and reason.
	m := do(t, http.MethodGet, url+"/metrics", "", nil)
	for _, want := range []string{
		`mdsa_refused_total{reason="rate_limited",tenant="rate"} 1`,
		`mdsa_refused_total{reason="rate_limited",tenant="tokens"} 1`,
		`mdsa_refused_total{reason="unauthorized",tenant="unknown"} 2`,
		`mdsa_refused_total{reason="too_large",tenant="acme"} 2`,
		`mdsa_refused_total{reason="forbidden",tenant="acme"} 1`,
		`mdsa_requests_total{code="200",domain="support",endpoint="chat.completions",status="ok",tenant="tokens"} 1`,
	} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestRequestID(t *testing.T) {
	url, _, _ := tenantServer(t)
	send := func(id string) string {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/route", strings.NewReader(`{"query":"refund"}`))
		req.Header.Set("Authorization", "Bearer "+acmeKey)
		if id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("X-Request-Id")
	}
	if got := send("client-req_42:a.b"); got != "client-req_42:a.b" {
		t.Fatalf("incoming id not honoured: %q", got)
	}
	for _, bad := range []string{"", "has space", strings.Repeat("x", 129), "quote\"d"} {
		if got := send(bad); !saneID(got) || got == bad {
			t.Fatalf("id %q answered with %q", bad, got)
		}
	}
	// The native query's body may name the request; the answer says it.
	r := do(t, http.MethodPost, url+"/v1/query", acmeKey, map[string]any{"query": qSupport, "request_id": "body-id-1",
		"generation": map[string]any{"max_tokens": 4}})
	var res struct {
		RequestID string `json:"request_id"`
		Tokens    struct{ Completion int }
	}
	if r.code != 200 || json.Unmarshal(r.body, &res) != nil || res.RequestID != "body-id-1" ||
		r.header.Get("X-Request-Id") != "body-id-1" || res.Tokens.Completion != 4 {
		t.Fatalf("query with request_id: %d %s %q", r.code, r.body, r.header.Get("X-Request-Id"))
	}
	// Health and readiness need no key.
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := do(t, http.MethodGet, url+p, "", nil); r.code != 200 || r.header.Get("X-Request-Id") == "" {
			t.Fatalf("%s: %d", p, r.code)
		}
	}
}

// readSSE reads "data:" events from a stream until [DONE] or EOF.
func readSSE(t *testing.T, rd *bufio.Reader, each func(data string) bool) {
	t.Helper()
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return
		}
		data, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "data: ")
		if !ok {
			continue
		}
		if !each(data) || data == "[DONE]" {
			return
		}
	}
}
