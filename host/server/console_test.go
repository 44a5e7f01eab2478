package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/console"
)

// consoleConfig is the multi-tenant configuration with the console on and
// an admin key.
func consoleConfig(t testing.TB) config.Config {
	cfg := tenantConfig(t)
	cfg.Console.Enabled = true
	cfg.Server.AdminKeys = keyHash(adminKey)
	return cfg
}

// consoleClient is a browser-like client of one console: a cookie jar, the
// session's CSRF token, and the console's own Origin on every request.
type consoleClient struct {
	t    testing.TB
	base string
	c    *http.Client
	csrf string
}

func newConsoleClient(t testing.TB, base string) *consoleClient {
	jar, _ := cookiejar.New(nil)
	return &consoleClient{t: t, base: base, c: &http.Client{Jar: jar}}
}

func (cc *consoleClient) do(method, path string, body []byte, hdr map[string]string) response {
	cc.t.Helper()
	req, err := http.NewRequest(method, cc.base+path, bytes.NewReader(body))
	if err != nil {
		cc.t.Fatal(err)
	}
	req.Header.Set("Origin", cc.base)
	if cc.csrf != "" {
		req.Header.Set("X-CSRF-Token", cc.csrf)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := cc.c.Do(req)
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, header: resp.Header, body: data}
}

func (cc *consoleClient) login(key string) (sessionInfo, response) {
	cc.t.Helper()
	body, _ := json.Marshal(map[string]string{"key": key})
	r := cc.do(http.MethodPost, "/console/api/login", body, map[string]string{"Content-Type": "application/json"})
	var si sessionInfo
	if r.code == http.StatusOK {
		if err := json.Unmarshal(r.body, &si); err != nil {
			cc.t.Fatalf("login answer: %v: %s", err, r.body)
		}
		cc.csrf = si.CSRF
	}
	return si, r
}

// frame reads the first frame of the live view.
func (cc *consoleClient) frame() console.Frame {
	cc.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, cc.base+"/console/api/live", nil)
	resp, err := cc.c.Do(req)
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		cc.t.Fatalf("live: %d %s", resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	id, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(id, "id: ") {
		cc.t.Fatalf("live: %q %v", id, err)
	}
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		cc.t.Fatalf("live: %q %v", line, err)
	}
	var f console.Frame
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &f); err != nil {
		cc.t.Fatal(err)
	}
	return f
}

func TestConsoleOffByDefault(t *testing.T) {
	ts := startServer(t, newServer(t, openHost(t), openConfig(t)))
	r := do(t, http.MethodGet, ts.URL+"/console/", "", nil)
	if r.code != http.StatusNotFound || r.errorDoc(t).Error.Code != "console_disabled" {
		t.Fatalf("console off: %d %s", r.code, r.body)
	}
}

func TestConsoleLoginSessionsAndCSRF(t *testing.T) {
	ts := startServer(t, newServer(t, tenantHost(t), consoleConfig(t)))
	page := do(t, http.MethodGet, ts.URL+"/console/", "", nil)
	if page.code != http.StatusOK || !bytes.Contains(page.body, []byte("<title>MDSA console</title>")) ||
		!strings.Contains(page.header.Get("Content-Security-Policy"), "script-src 'self'") ||
		page.header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("page: %d %v", page.code, page.header)
	}

	anon := newConsoleClient(t, ts.URL)
	if r := anon.do(http.MethodGet, "/console/api/session", nil, nil); r.code != http.StatusUnauthorized || r.errorDoc(t).Error.Code != "login_required" {
		t.Fatalf("no session: %d %s", r.code, r.body)
	}
	for _, key := range []string{"", "wrong", strings.Repeat("k", 10)} {
		if _, r := anon.login(key); r.code != http.StatusUnauthorized {
			t.Fatalf("login %q: %d %s", key, r.code, r.body)
		}
	}
	if r := anon.do(http.MethodPost, "/console/api/login", bytes.Repeat([]byte("x"), maxLoginBody+1), nil); r.code != http.StatusBadRequest {
		t.Fatalf("huge login: %d %s", r.code, r.body)
	}
	// A login posted from another site is refused (login CSRF).
	body, _ := json.Marshal(map[string]string{"key": adminKey})
	if r := anon.do(http.MethodPost, "/console/api/login", body, map[string]string{"Origin": "https://evil.example"}); r.code != http.StatusForbidden {
		t.Fatalf("cross-site login: %d %s", r.code, r.body)
	}

	admin := newConsoleClient(t, ts.URL)
	si, r := admin.login(adminKey)
	if r.code != http.StatusOK || !si.Admin || len(si.Tenants) != 5 || si.CSRF == "" {
		t.Fatalf("admin login: %d %s", r.code, r.body)
	}
	ck := r.header.Get("Set-Cookie")
	for _, want := range []string{consoleCookie + "=", "HttpOnly", "SameSite=Strict", "Path=/console/"} {
		if !strings.Contains(ck, want) {
			t.Fatalf("cookie %q lacks %s", ck, want)
		}
	}

	acme := newConsoleClient(t, ts.URL)
	if si, r := acme.login(acmeKey); r.code != http.StatusOK || si.Admin || si.Tenant != "acme" ||
		len(si.Tenants) != 1 || si.Tenants[0] != "acme" {
		t.Fatalf("tenant login: %d %s", r.code, r.body)
	}

	// Changes need the CSRF token, a same-origin request and, for
	// plugins, an admin.
	csrf := admin.csrf
	admin.csrf = ""
	if r := admin.do(http.MethodPost, "/console/api/plugins/finance/rollback", nil, nil); r.code != http.StatusForbidden || r.errorDoc(t).Error.Code != "csrf_failed" {
		t.Fatalf("no CSRF token: %d %s", r.code, r.body)
	}
	admin.csrf = "wrong"
	if r := admin.do(http.MethodDelete, "/console/api/plugins/finance", nil, nil); r.code != http.StatusForbidden {
		t.Fatalf("wrong CSRF token: %d %s", r.code, r.body)
	}
	admin.csrf = csrf
	if r := admin.do(http.MethodDelete, "/console/api/plugins/finance", nil, map[string]string{"Origin": "https://evil.example"}); r.code != http.StatusForbidden {
		t.Fatalf("cross-site change: %d %s", r.code, r.body)
	}
	if r := admin.do(http.MethodDelete, "/console/api/plugins/finance", nil, map[string]string{"Sec-Fetch-Site": "cross-site"}); r.code != http.StatusForbidden {
		t.Fatalf("cross-site fetch: %d %s", r.code, r.body)
	}
	if r := acme.do(http.MethodDelete, "/console/api/plugins/finance", nil, nil); r.code != http.StatusForbidden || r.errorDoc(t).Error.Code != "admin_only" {
		t.Fatalf("tenant removing a plugin: %d %s", r.code, r.body)
	}
	if r := admin.do(http.MethodPost, "/console/api/plugins/finance/rollback", nil, nil); r.code != http.StatusConflict || r.errorDoc(t).Error.Code != "no_previous_version" {
		t.Fatalf("rollback with nothing kept: %d %s", r.code, r.body)
	}

	// Logging out ends the session.
	if r := acme.do(http.MethodPost, "/console/api/logout", nil, nil); r.code != http.StatusOK {
		t.Fatalf("logout: %d %s", r.code, r.body)
	}
	if r := acme.do(http.MethodGet, "/console/api/session", nil, nil); r.code != http.StatusUnauthorized {
		t.Fatalf("after logout: %d %s", r.code, r.body)
	}
}

func TestConsoleTrafficIsScopedByTenant(t *testing.T) {
	ts := startServer(t, newServer(t, tenantHost(t), consoleConfig(t)))
	a := do(t, http.MethodPost, ts.URL+"/v1/route", acmeKey, map[string]string{"query": qSupport})
	g := do(t, http.MethodPost, ts.URL+"/v1/route", globexKey, map[string]string{"query": qMedical})
	bad := do(t, http.MethodPost, ts.URL+"/v1/route", "nobody", map[string]string{"query": "x"})
	if a.code != 200 || g.code != 200 || bad.code != 401 {
		t.Fatalf("requests: %d %d %d", a.code, g.code, bad.code)
	}
	aID, gID := a.header.Get(headerRequestID), g.header.Get(headerRequestID)

	admin := newConsoleClient(t, ts.URL)
	admin.login(adminKey)
	acme := newConsoleClient(t, ts.URL)
	acme.login(acmeKey)

	ids := func(f console.Frame) map[string]console.Summary {
		m := map[string]console.Summary{}
		for _, s := range f.Requests {
			m[s.ID] = s
		}
		return m
	}
	all := ids(admin.frame())
	if all[aID].Tenant != "acme" || all[gID].Tenant != "globex" || len(all) != 3 {
		t.Fatalf("admin sees %v", all)
	}
	if s := all[aID]; s.Domain != "support" || s.Endpoint != epRoute || s.Confidence <= 0 || s.Snippet != qSupport {
		t.Fatalf("summary: %+v", s)
	}
	mine := ids(acme.frame())
	if len(mine) != 1 || mine[aID].Tenant != "acme" {
		t.Fatalf("acme sees %v", mine)
	}

	// A reconnecting view (Last-Event-ID) gets only what came after.
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/console/api/live", nil)
	req.Header.Set("Last-Event-ID", "2")
	resp, err := admin.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	br.ReadString('\n')
	line, _ := br.ReadString('\n')
	resp.Body.Close()
	var resumed console.Frame
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &resumed); err != nil || len(resumed.Requests) != 1 || resumed.Requests[0].Seq != 3 {
		t.Fatalf("resumed after 2: %v %s", err, line)
	}

	// The request explained: its routing terms, for its own tenant only.
	r := acme.do(http.MethodGet, "/console/api/requests/"+aID, nil, nil)
	var d requestDetail
	if r.code != 200 || json.Unmarshal(r.body, &d) != nil || d.Query != qSupport || d.Explanation == nil ||
		d.Explanation.Decision.Domain != "support" || len(d.Explanation.Alternatives) == 0 {
		t.Fatalf("detail: %d %s", r.code, r.body)
	}
	if r := acme.do(http.MethodGet, "/console/api/requests/"+gID, nil, nil); r.code != http.StatusNotFound {
		t.Fatalf("another tenant's request: %d %s", r.code, r.body)
	}

	// A follow-up's detail says how its conversation weighed in.
	q := map[string]any{"query": "and how long will that take?", "generation": map[string]int{"max_tokens": 2},
		"history": []map[string]string{{"role": "user", "content": qSupport}, {"role": "assistant", "content": "Sorry about that."}}}
	fr := do(t, http.MethodPost, ts.URL+"/v1/query", acmeKey, q)
	var fd requestDetail
	if r := acme.do(http.MethodGet, "/console/api/requests/"+fr.header.Get(headerRequestID), nil, nil); r.code != 200 ||
		json.Unmarshal(r.body, &fd) != nil || fd.Conversation == nil || fd.Conversation.Prior != "support" {
		t.Fatalf("follow-up detail: %d %s", r.code, r.body)
	}

	// Tenants, plugins and models: a tenant sees its own.
	var tl struct{ Tenants []consoleTenant }
	if r := acme.do(http.MethodGet, "/console/api/tenants", nil, nil); json.Unmarshal(r.body, &tl) != nil || len(tl.Tenants) != 1 ||
		tl.Tenants[0].Name != "acme" || tl.Tenants[0].MaxTokens != acmeMaxTokens || tl.Tenants[0].Admitted == 0 {
		t.Fatalf("acme's tenants: %s", r.body)
	}
	if r := admin.do(http.MethodGet, "/console/api/tenants", nil, nil); json.Unmarshal(r.body, &tl) != nil || len(tl.Tenants) != 5 {
		t.Fatalf("admin's tenants: %s", r.body)
	}
	var pl struct {
		Plugins []consolePlugin
		Admin   bool
	}
	if r := acme.do(http.MethodGet, "/console/api/plugins", nil, nil); json.Unmarshal(r.body, &pl) != nil || len(pl.Plugins) != 2 || pl.Admin {
		t.Fatalf("acme's plugins: %s", r.body)
	}
	if r := admin.do(http.MethodGet, "/console/api/plugins", nil, nil); json.Unmarshal(r.body, &pl) != nil || len(pl.Plugins) != 4 ||
		pl.Plugins[0].SHA256 == "" || pl.Plugins[0].Language != "Go" {
		t.Fatalf("admin's plugins: %s", r.body)
	}
	var ml map[string]json.RawMessage
	if r := acme.do(http.MethodGet, "/console/api/models", nil, nil); json.Unmarshal(r.body, &ml) != nil || ml["registry"] != nil || ml["hardware"] != nil {
		t.Fatalf("acme's models: %s", r.body)
	}
	if r := admin.do(http.MethodGet, "/console/api/models", nil, nil); json.Unmarshal(r.body, &ml) != nil || ml["registry"] == nil ||
		(ml["hardware"] == nil && ml["hardware_error"] == nil) {
		t.Fatalf("admin's models: %s", r.body)
	}
}

func TestConsolePlayground(t *testing.T) {
	ts := startServer(t, newServer(t, tenantHost(t), consoleConfig(t)))
	acme := newConsoleClient(t, ts.URL)
	acme.login(acmeKey)
	body, _ := json.Marshal(map[string]any{"query": qSupport, "generation": map[string]int{"max_tokens": 4}})
	// A tenant's session plays as that tenant whatever it asks for.
	r := acme.do(http.MethodPost, "/console/api/playground?tenant=globex", body, map[string]string{"Content-Type": "application/json"})
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("playground: %d %s", r.code, r.body)
	}
	var events []string
	for _, block := range strings.Split(string(r.body), "\n\n") {
		if ev, ok := strings.CutPrefix(block, "event: "); ok {
			name, _, _ := strings.Cut(ev, "\n")
			events = append(events, name)
		}
	}
	if len(events) < 2 || events[0] != "route" || events[len(events)-1] != "done" {
		t.Fatalf("events %v: %s", events, r.body)
	}
	// Through the tenant's limits (acme's max_tokens is 64) and accounted.
	body, _ = json.Marshal(map[string]any{"query": qSupport, "generation": map[string]int{"max_tokens": 1000}})
	if r := acme.do(http.MethodPost, "/console/api/playground", body, nil); r.code != http.StatusBadRequest {
		t.Fatalf("over max_tokens: %d %s", r.code, r.body)
	}
	f := acme.frame()
	if len(f.Requests) != 2 || f.Requests[0].Endpoint != epPlayground || f.Requests[0].Tenant != "acme" {
		t.Fatalf("playground requests: %+v", f.Requests)
	}
	admin := newConsoleClient(t, ts.URL)
	admin.login(adminKey)
	if r := admin.do(http.MethodPost, "/console/api/playground?tenant=nope", body, nil); r.code != http.StatusNotFound {
		t.Fatalf("unknown tenant: %d %s", r.code, r.body)
	}
}

func TestConsoleLiveStreamsAreBounded(t *testing.T) {
	cfg := consoleConfig(t)
	cfg.Console.MaxStreams = 1
	s := newServer(t, tenantHost(t), cfg)
	ts := startServer(t, s)
	admin := newConsoleClient(t, ts.URL)
	admin.login(adminKey)
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/console/api/live", nil)
	resp, err := admin.c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first stream: %v", err)
	}
	defer resp.Body.Close()
	if r := admin.do(http.MethodGet, "/console/api/live", nil, nil); r.code != http.StatusTooManyRequests {
		t.Fatalf("second stream: %d %s", r.code, r.body)
	}
	// Shutting down ends the streams rather than waiting on them.
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, resp.Body)
		close(done)
	}()
	s.console.shutdown()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the live stream outlived the shutdown")
	}
}
