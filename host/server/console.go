package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/hardware"
	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/internal/console"
	"github.com/mdsa-go/mdsa/internal/engineconf"
	"github.com/mdsa-go/mdsa/internal/tenant"
	"github.com/mdsa-go/mdsa/internal/wire"
)

// The operator console ([console] enabled = true):
//
//	GET    /console/                          the page (one HTML file, its script, style and uPlot)
//	POST   /console/api/login                 {"key": ADMIN_OR_TENANT_KEY} -> session cookie
//	POST   /console/api/logout
//	GET    /console/api/session               who is logged in, the CSRF token
//	GET    /console/api/live                  server-sent events: a frame every liveInterval
//	GET    /console/api/requests/{id}         one recent request, with its routing explained
//	GET    /console/api/plugins               plugins with their counters and the kept previous version
//	PUT    /console/api/plugins/{name}        upload (admin): the checked swap path of /admin/plugins
//	DELETE /console/api/plugins/{name}        remove (admin)
//	POST   /console/api/plugins/{name}/rollback  back to the kept previous version (admin)
//	GET    /console/api/models                resident models, the memory budget, the hardware
//	GET    /console/api/tenants               usage against each limit
//	POST   /console/api/playground?tenant=T   a query as tenant T, streamed stage by stage
//
// A session is a random token in an HttpOnly, SameSite=Strict cookie,
// kept by its sha256 only; every change also needs the session's CSRF
// token in X-CSRF-Token and a same-origin request. An admin key's session
// sees every tenant; a tenant key's sees that tenant only.

const (
	consoleCookie = "mdsa_console"
	// liveInterval is how often a live view gets a frame; liveMaxRequests
	// caps the requests one frame lists (the rest are counted as skipped).
	liveInterval    = 500 * time.Millisecond
	liveMaxRequests = 200
	// consoleHolder is the pacer's name for failed console logins.
	consoleHolder = " console"
	epPlayground  = "playground"
	maxLoginBody  = 4 << 10
)

// consoleState is the console of one server.
type consoleState struct {
	rec      *console.Recorder
	sessions *console.Sessions
	assets   console.Assets
	streams  atomic.Int64
	max      int64
	stop     chan struct{} // closed when the server shuts down
	stopOnce sync.Once
	// hw is the hardware detected for the models page, once.
	hwOnce sync.Once
	hw     hardware.Info
	hwErr  error
}

func newConsoleState(recent, maxSessions, maxStreams int, ttl time.Duration) *consoleState {
	return &consoleState{rec: console.NewRecorder(recent), sessions: console.NewSessions(maxSessions, ttl),
		max: int64(maxStreams), stop: make(chan struct{})}
}

func (cs *consoleState) shutdown() { cs.stopOnce.Do(func() { close(cs.stop) }) }

// record adds a finished API request to the console's recorder.
func (cs *consoleState) record(c *call, status string, code int, total time.Duration) {
	ev := console.Event{
		ID: c.id, Tenant: c.label, Endpoint: c.endpoint, Domain: c.domain, Status: status, Code: code,
		Confidence: c.res.Confidence, Cache: c.res.Cache,
		PromptTokens: c.tokens.Prompt, CompletionTokens: c.tokens.Completion, CachedTokens: c.tokens.Cached,
		Query: c.query, Forced: c.forced, Alternatives: c.res.Alternatives, Validation: c.res.Validation,
		Response: c.res.Response, Model: c.res.Model, FinishReason: c.res.FinishReason,
		Conversation: c.res.Conversation, HistoryDropped: c.res.HistoryDropped,
	}
	for _, st := range c.res.ToolSteps {
		ev.ToolSteps = append(ev.ToolSteps, console.ToolStep{Round: st.Round, Name: st.Name, Arguments: st.Arguments,
			Content: st.Content, IsError: st.IsError})
	}
	for _, tc := range c.res.ToolCalls {
		ev.ToolCalls = append(ev.ToolCalls, tc.Name)
	}
	for _, ct := range c.res.Citations {
		ev.Citations = append(ev.Citations, console.Citation{KB: ct.KB, Document: ct.Document, Title: ct.Title, Chunk: ct.Chunk, Score: ct.Score})
	}
	ev.Stages[console.StageRoute] = c.timings.Route
	ev.Stages[console.StagePrompt] = c.timings.Prompt
	ev.Stages[console.StageGenerate] = c.timings.Generate
	ev.Stages[console.StageValidate] = c.timings.Validate
	ev.Stages[console.StageTotal] = total
	if c.err != nil {
		ev.Error = c.err.Message
		if c.err.Refused != "" {
			ev.Refused = c.err.Code
		}
	}
	cs.rec.Record(ev)
}

func (s *Server) consoleRoutes(mux *http.ServeMux) {
	if s.console == nil {
		mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
			s.refuse(w, r, &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "console_disabled",
				Message: "the operator console is off: set [console] enabled = true in the configuration", Refused: refusedBadRequest})
		})
		return
	}
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) {
		consoleHeaders(w)
		s.console.assets.Serve(w, r, "index.html")
	})
	mux.HandleFunc("GET /console/assets/{file...}", func(w http.ResponseWriter, r *http.Request) {
		consoleHeaders(w)
		if !s.console.assets.Serve(w, r, r.PathValue("file")) {
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("POST /console/api/login", s.consoleLogin)
	type route struct {
		pattern     string
		admin, edit bool
		h           func(http.ResponseWriter, *http.Request, *console.Session) *apiError
	}
	for _, rt := range []route{
		{"POST /console/api/logout", false, true, s.consoleLogout},
		{"GET /console/api/session", false, false, s.consoleSession},
		{"GET /console/api/live", false, false, s.consoleLive},
		{"GET /console/api/requests/{id}", false, false, s.consoleRequest},
		{"GET /console/api/plugins", false, false, s.consolePlugins},
		{"PUT /console/api/plugins/{name}", true, true, func(w http.ResponseWriter, r *http.Request, _ *console.Session) *apiError { return s.adminPut(w, r) }},
		{"DELETE /console/api/plugins/{name}", true, true, func(w http.ResponseWriter, r *http.Request, _ *console.Session) *apiError { return s.adminDelete(w, r) }},
		{"POST /console/api/plugins/{name}/rollback", true, true, s.consoleRollback},
		{"GET /console/api/models", false, false, s.consoleModels},
		{"GET /console/api/tenants", false, false, s.consoleTenants},
		{"POST /console/api/playground", false, true, s.consolePlayground},
	} {
		mux.HandleFunc(rt.pattern, s.consoleAPI(rt.admin, rt.edit, rt.h))
	}
	mux.HandleFunc("/console/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "unknown_url",
			Message: "no such console endpoint: " + r.Method + " " + clip(r.URL.Path, 200)})
	})
}

// consoleHeaders are the security headers of the console's page: nothing
// but its own files runs, loads or frames it.
func consoleHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

// sameOrigin reports whether a browser sent r from the console's own
// origin (or no browser sent it at all: no Origin, no Sec-Fetch-Site).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// consoleAPI authenticates a console API request by its session cookie;
// admin: only an admin's session; edit: a change, which needs the CSRF
// token and a same-origin request.
func (s *Server) consoleAPI(admin, edit bool, h func(http.ResponseWriter, *http.Request, *console.Session) *apiError) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		var sess *console.Session
		if ck, err := r.Cookie(consoleCookie); err == nil {
			sess, _ = s.console.sessions.Get(ck.Value)
		}
		var e *apiError
		switch {
		case sess == nil:
			e = &apiError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: "login_required",
				Message: "log in to the console first (POST /console/api/login)", Refused: refusedUnauthorized}
		case edit && (!sameOrigin(r) || !sess.CheckCSRF(r.Header.Get("X-CSRF-Token"))):
			e = &apiError{Status: http.StatusForbidden, Type: typePermission, Code: "csrf_failed",
				Message: "a change needs the session's X-CSRF-Token header and a same-origin request", Refused: refusedForbidden}
		case admin && !sess.Admin:
			e = &apiError{Status: http.StatusForbidden, Type: typePermission, Code: "admin_only",
				Message: "only an admin's session may change plugins", Refused: refusedForbidden}
		default:
			e = h(w, r, sess)
		}
		if e != nil {
			writeError(w, e)
		}
		if edit || e != nil {
			who := "admin"
			if sess != nil && !sess.Admin {
				who = "tenant " + sess.Tenant
			}
			code := http.StatusOK
			if e != nil {
				code = e.Status
			}
			s.log.Info("console request", "request_id", w.Header().Get(headerRequestID), "method", r.Method,
				"path", clip(r.URL.Path, 200), "who", who, "code", code, "err", errText(e))
		}
	}
}

// consoleLogin checks a key: an admin key opens an admin session, a
// tenant's key that tenant's. A wrong key is held like a 429, so guessing
// keys is slow.
func (s *Server) consoleLogin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	fail := func(e *apiError) {
		writeError(w, e)
		s.log.Info("console login refused", "request_id", w.Header().Get(headerRequestID), "code", e.Status, "err", e.Message)
	}
	if !sameOrigin(r) {
		fail(&apiError{Status: http.StatusForbidden, Type: typePermission, Code: "csrf_failed",
			Message: "log in from the console's own page"})
		return
	}
	data, err := readBody(w, r, maxLoginBody, s.bodyTimeout)
	if err != nil {
		fail(badRequest("", "invalid_body", "reading the login: %v (at most %d bytes)", err, maxLoginBody))
		return
	}
	var body struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		fail(badRequest("", "invalid_json", "the login must be JSON {\"key\": \"...\"}: %v", err))
		return
	}
	key := strings.TrimSpace(body.Key)
	var sess *console.Session
	if s.adminKeys.allows(key) {
		sess = s.console.sessions.Create(true, "")
	} else if !s.tenants.Open() && key != "" {
		if t, err := s.tenants.Authenticate(key); err == nil {
			sess = s.console.sessions.Create(false, t.Name)
		}
	}
	if sess == nil {
		s.pace.hold(r.Context(), consoleHolder, s.pace.delay)
		fail(unauthorized("wrong key: log in with an admin key or a tenant's API key"))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: sess.Token, Path: "/console/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, Expires: sess.Expires})
	who := "admin"
	if !sess.Admin {
		who = "tenant " + sess.Tenant
	}
	s.log.Info("console login", "request_id", w.Header().Get(headerRequestID), "who", who)
	writeJSON(w, http.StatusOK, s.sessionInfo(sess))
}

func (s *Server) consoleLogout(w http.ResponseWriter, r *http.Request, sess *console.Session) *apiError {
	s.console.sessions.Delete(sess.Token)
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: "", Path: "/console/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: -1})
	writeJSON(w, http.StatusOK, map[string]string{"status": "logged_out"})
	return nil
}

type sessionInfo struct {
	Admin   bool      `json:"admin"`
	Tenant  string    `json:"tenant,omitempty"`
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
	// Tenants are those the session may see and use in the playground.
	Tenants []string `json:"tenants"`
	Open    bool     `json:"open"`
	Charts  bool     `json:"charts"`
}

func (s *Server) sessionInfo(sess *console.Session) sessionInfo {
	si := sessionInfo{Admin: sess.Admin, Tenant: sess.Tenant, CSRF: sess.CSRF, Expires: sess.Expires,
		Open: s.tenants.Open(), Charts: s.console.assets.Has("vendor/uplot/uPlot.iife.min.js"), Tenants: []string{}}
	for _, t := range s.tenants.All() {
		if sess.Admin || t.Name == sess.Tenant {
			si.Tenants = append(si.Tenants, t.Name)
		}
	}
	return si
}

func (s *Server) consoleSession(w http.ResponseWriter, r *http.Request, sess *console.Session) *apiError {
	writeJSON(w, http.StatusOK, s.sessionInfo(sess))
	return nil
}

// consoleLive streams a frame of the session's traffic every liveInterval
// until the client leaves, the session expires or the server shuts down.
func (s *Server) consoleLive(w http.ResponseWriter, r *http.Request, sess *console.Session) *apiError {
	cs := s.console
	if cs.streams.Add(1) > cs.max {
		cs.streams.Add(-1)
		return &apiError{Status: http.StatusTooManyRequests, Type: typeRateLimit, Code: "too_many_streams",
			Message: fmt.Sprintf("%d live views are open already (console.max_streams)", cs.max), RetryAfter: 5 * time.Second}
	}
	defer cs.streams.Add(-1)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	sc := sess.Scope()
	// A reconnecting EventSource sends the id of the last frame it got:
	// carry on from there, so nothing is listed twice or lost.
	seq, _ := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64)
	tick := time.NewTicker(liveInterval)
	defer tick.Stop()
	expire := time.NewTimer(time.Until(sess.Expires))
	defer expire.Stop()
	var buf []byte
	for {
		f := cs.rec.Snapshot(sc, seq, liveMaxRequests)
		seq = f.Seq
		data, err := json.Marshal(f)
		if err != nil {
			return nil
		}
		buf = append(append(buf[:0], "id: "...), strconv.FormatUint(f.Seq, 10)...)
		buf = append(append(append(buf, "\ndata: "...), data...), "\n\n"...)
		if _, err := w.Write(buf); err != nil {
			return nil
		}
		if rc.Flush() != nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return nil
		case <-cs.stop:
			return nil
		case <-expire.C:
			return nil
		}
	}
}

// requestDetail is a recorded request and why it was routed where it was.
type requestDetail struct {
	console.Detail
	// Explanation is the routing decision made again by the tenant's
	// current router (the same unless its plugins changed since);
	// absent for requests that were not routed.
	Explanation *router.Explanation `json:"explanation,omitempty"`
}

func (s *Server) consoleRequest(w http.ResponseWriter, r *http.Request, sess *console.Session) *apiError {
	id := r.PathValue("id")
	d, ok := s.console.rec.Get(sess.Scope(), id)
	if !ok {
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "request_not_found",
			Message: fmt.Sprintf("request %q is not among the console's recent requests (console.recent) that this login may see", clip(id, 40))}
	}
	out := requestDetail{Detail: d}
	routed := d.Endpoint == epQuery || d.Endpoint == epChat || d.Endpoint == epRoute || d.Endpoint == epPlayground
	if routed && d.Query != "" && !d.Forced && d.Tenant != unknownTenant {
		name := d.Tenant
		if s.tenants.Open() {
			name = ""
		}
		if ht, err := s.h.Tenant(name); err == nil {
			if ex, err := ht.Explain(r.Context(), d.Query); err == nil {
				out.Explanation = &ex
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// consolePlugin is a plugin as the console lists it.
type consolePlugin struct {
	Name         string   `json:"name"`
	Version      string   `json:"version"`
	Description  string   `json:"description"`
	SHA256       string   `json:"sha256"`
	Language     string   `json:"language,omitempty"`
	Capabilities []string `json:"capabilities"`
	HasHandle    bool     `json:"has_handle"`
	Keywords     int      `json:"keywords"`
	Examples     int      `json:"examples"`
	Stats        struct {
		Calls       uint64  `json:"calls"`
		Errors      uint64  `json:"errors"`
		Traps       uint64  `json:"traps"`
		Timeouts    uint64  `json:"timeouts"`
		BackedOff   uint64  `json:"backed_off"`
		Throttled   uint64  `json:"throttled"`
		ThrottledMS float64 `json:"throttled_ms"`
		GuestMS     float64 `json:"guest_ms"`
		HostCalls   uint64  `json:"host_calls"`
		HostRefused uint64  `json:"host_refused"`
		Instances   int     `json:"instances"`
	} `json:"stats"`
	// Previous is the version a rollback would bring back (admins only).
	Previous *struct {
		Version string `json:"version,omitempty"`
		SHA256  string `json:"sha256"`
	} `json:"previous,omitempty"`
}

func (s *Server) consolePlugins(w http.ResponseWriter, r *http.Request, sess *console.Session) *apiError {
	ht, aerr := s.sessionTenant(w, sess)
	if aerr != nil {
		return aerr
	}
	stats := ht.PluginStats()
	out := []consolePlugin{}
	for _, p := range ht.Plugins() {
		cp := consolePlugin{Name: p.Name, Version: p.Version, Description: p.Description, SHA256: p.SHA256,
			Language: p.Language, Capabilities: p.Capabilities, HasHandle: p.HasHandle,
			Keywords: len(p.Keywords), Examples: len(p.Examples)}
		if st, ok := stats[p.Name]; ok {
			cs := &cp.Stats
			cs.Calls, cs.Errors, cs.Traps, cs.Timeouts, cs.BackedOff = st.Calls, st.Errors, st.Traps, st.Timeouts, st.BackedOff
			cs.Throttled, cs.ThrottledMS, cs.GuestMS = st.Throttled, ms(st.ThrottledTime), ms(st.GuestTime)
			cs.HostCalls, cs.HostRefused, cs.Instances = st.HostCalls, st.HostRefused, st.Instances
		}
		if sess.Admin {
			if v, sum, ok := s.h.PreviousVersion(p.Name); ok {
				cp.Previous = &struct {
					Version string `json:"version,omitempty"`
					SHA256  string `json:"sha256"`
				}{v, sum}
			}
		}
		out = append(out, cp)
	}
	writeJSON(w, http.StatusOK, map[string]any{"plugins": out, "admin": sess.Admin})
	return nil
}

// sessionTenant is the host's view a session sees: the default space's
// (every plugin) for an admin, the tenant's own for a tenant.
func (s *Server) sessionTenant(w http.ResponseWriter, sess *console.Session) (*host.Tenant, *apiError) {
	name := ""
	if !sess.Admin {
		name = sess.Tenant
	}
	ht, err := s.h.Tenant(name)
	if err != nil {
		return nil, internalError(w.Header().Get(headerRequestID), err)
	}
	return ht, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

func (s *Server) consoleRollback(w http.ResponseWriter, r *http.Request, _ *console.Session) *apiError {
	name := r.PathValue("name")
	ch, err := s.h.RollbackPlugin(r.Context(), name)
	switch {
	case errors.Is(err, host.ErrNoPrevious):
		return &apiError{Status: http.StatusConflict, Type: typeInvalidRequest, Code: "no_previous_version",
			Message: fmt.Sprintf("no previous version of %q is kept to roll back to", clip(name, 100)), Refused: refusedBadRequest}
	case errors.Is(err, host.ErrRefused):
		s.pace.hold(r.Context(), adminHolder, s.pace.delay)
		return &apiError{Status: http.StatusUnprocessableEntity, Type: typeInvalidRequest, Code: "plugin_refused",
			Message: err.Error() + " (the running version keeps serving)", Refused: refusedBadRequest}
	case err != nil:
		return &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "internal_error",
			Message: "rolling the plugin back failed", Cause: err}
	}
	writeJSON(w, http.StatusOK, wire.FromChange(ch))
	return nil
}

func (s *Server) consoleModels(w http.ResponseWriter, r *http.Request, sess *console.Session) *apiError {
	ht, aerr := s.sessionTenant(w, sess)
	if aerr != nil {
		return aerr
	}
	out := map[string]any{"models": ht.Models()}
	if sess.Admin {
		cs := s.console
		cs.hwOnce.Do(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
			defer cancel()
			cs.hw, cs.hwErr = hardware.Detect(ctx, hardware.Options{Logger: s.log})
		})
		out["registry"] = s.h.ModelStats()
		out["plugin_memory"] = s.h.PluginMemory()
		if cs.hwErr != nil {
			out["hardware_error"] = cs.hwErr.Error()
		} else {
			out["hardware"] = cs.hw
			out["recommendation"] = hardware.Recommend(cs.hw, engineconf.HardwareCatalog(s.cfg),
				hardware.RecommendOptions{ContextSize: s.cfg.Engine.ContextSize, Parallel: s.cfg.Engine.Parallel})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// consoleTenant is a tenant's usage against its limits (0: no limit).
type consoleTenant struct {
	Name              string   `json:"name"`
	RequestsPerSecond float64  `json:"requests_per_second"`
	Burst             int      `json:"burst"`
	Concurrent        int      `json:"concurrent"`
	TokensPerMinute   int      `json:"tokens_per_minute"`
	MaxTokens         int      `json:"max_tokens"`
	InFlight          int      `json:"in_flight"`
	TokensLastMinute  int64    `json:"tokens_last_minute"`
	Admitted          uint64   `json:"admitted"`
	RefusedRate       uint64   `json:"refused_rate"`
	RefusedConcurrent uint64   `json:"refused_concurrent"`
	RefusedTokens     uint64   `json:"refused_tokens"`
	RefusedMaxTokens  uint64   `json:"refused_max_tokens"`
	Plugins           []string `json:"plugins"`
	Models            []string `json:"models"`
}

func (s *Server) consoleTenants(w http.ResponseWriter, r *http.Request, sess *console.Session) *apiError {
	out := []consoleTenant{}
	for _, t := range s.tenants.All() {
		if !sess.Admin && t.Name != sess.Tenant {
			continue
		}
		l, u := t.Limits(), t.Usage()
		out = append(out, consoleTenant{Name: t.Name, RequestsPerSecond: l.RequestsPerSecond, Burst: l.Burst,
			Concurrent: l.Concurrent, TokensPerMinute: l.TokensPerMinute, MaxTokens: l.MaxTokens,
			InFlight: u.InFlight, TokensLastMinute: u.TokensLastMinute, Admitted: u.Admitted,
			RefusedRate: u.RefusedRate, RefusedConcurrent: u.RefusedConcurrent, RefusedTokens: u.RefusedTokens,
			RefusedMaxTokens: u.RefusedMaxTokens, Plugins: t.Plugins(), Models: t.Models()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": out})
	return nil
}

// consolePlayground answers a query as a tenant (an admin picks any, a
// tenant's session is that tenant) through the same admission, limits
// and accounting as the API, streaming server-sent events as the request
// goes through its stages: "route" (the decision), "token" (text as it is
// generated), then "done" (the whole result) or "error".
func (s *Server) consolePlayground(w http.ResponseWriter, r *http.Request, sess *console.Session) *apiError {
	var t *tenant.Tenant
	switch {
	case s.tenants.Open():
		t = s.tenants.All()[0]
	case sess.Admin:
		name := r.URL.Query().Get("tenant")
		var ok bool
		if t, ok = s.tenants.Get(name); !ok {
			return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "tenant_not_found", Param: "tenant",
				Message: fmt.Sprintf("no tenant %q; pick one of the configured tenants", clip(name, 80)), Refused: refusedBadRequest}
		}
	default:
		t, _ = s.tenants.Get(sess.Tenant)
	}
	if t == nil {
		return internalError(w.Header().Get(headerRequestID), errors.New("console: the session's tenant is gone"))
	}
	c := s.newCall(w, r, epPlayground)
	defer c.finish()
	defer c.recoverPanic()
	c.serve(t, s.playground)
	return nil
}

// playground serves one playground query (see consolePlayground).
func (s *Server) playground(c *call) *apiError {
	data, aerr := c.body()
	if aerr != nil {
		return aerr
	}
	hreq, aerr := c.hostRequest(data, false)
	if aerr != nil {
		return aerr
	}
	started := false
	send := func(event string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if !started {
			started = true
			c.w.Header().Set("Content-Type", "text/event-stream")
			c.w.Header().Set("Cache-Control", "no-store")
			c.w.WriteHeader(http.StatusOK)
		}
		if _, err := fmt.Fprintf(c.w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return err
		}
		c.w.Flush()
		return nil
	}
	elapsed := func() float64 { return ms(s.now().Sub(c.start)) }
	hreq.OnRoute = func(d router.Decision) error {
		return send("route", map[string]any{"ms": elapsed(), "decision": d})
	}
	first := true
	res, err := c.ht.Stream(c.r.Context(), hreq, func(piece string) error {
		if piece == "" {
			return nil
		}
		ev := map[string]any{"text": piece}
		if first {
			first = false
			ev["ms"] = elapsed()
		}
		return send("token", ev)
	})
	c.record(res)
	if err != nil {
		aerr := hostError(c.id, err)
		if !started {
			return aerr
		}
		c.err = aerr
		send("error", aerr.body())
		return nil
	}
	c.keepTurn(hreq.Query, res.Response)
	send("done", map[string]any{"ms": elapsed(), "result": wire.FromResult(res)})
	return nil
}
