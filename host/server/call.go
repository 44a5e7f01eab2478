package server

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/internal/telemetry"
	"github.com/mdsa-go/mdsa/internal/tenant"
)

// Endpoint names, as metrics and logs label them.
const (
	epChat       = "chat.completions"
	epEmbeddings = "embeddings"
	epModels     = "models"
	epQuery      = "query"
	epRoute      = "route"
)

// bodyReadTimeout bounds reading one request body.
const bodyReadTimeout = time.Minute

// unknownTenant labels requests whose key matched no tenant.
const unknownTenant = "unknown"

// headerRequestID carries the request id both ways.
const headerRequestID = "X-Request-Id"

// routes builds the handler of the whole API.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := map[string][]string{} // path -> allowed methods, for 405s
	add := func(method, path, endpoint string, h func(*call) *apiError) {
		api[path] = append(api[path], method)
		mux.HandleFunc(method+" "+path, func(w http.ResponseWriter, r *http.Request) {
			s.serveAPI(w, r, endpoint, h)
		})
	}
	add(http.MethodPost, "/v1/chat/completions", epChat, s.chat)
	add(http.MethodPost, "/v1/embeddings", epEmbeddings, s.embeddings)
	add(http.MethodGet, "/v1/models", epModels, s.listModels)
	add(http.MethodGet, "/v1/models/{model...}", epModels, s.getModel)
	add(http.MethodPost, "/v1/query", epQuery, s.query)
	add(http.MethodPost, "/v1/route", epRoute, s.route)
	add(http.MethodPost, "/v1/conversations", epConversations, s.convCreate)
	add(http.MethodGet, "/v1/conversations", epConversations, s.convList)
	add(http.MethodGet, "/v1/conversations/{id}", epConversations, s.convGet)
	add(http.MethodDelete, "/v1/conversations/{id}", epConversations, s.convDelete)
	s.knowledgeRoutes(add)

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.Ready() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting_down"})
			return
		}
		writeJSON(w, http.StatusOK, readiness{Status: "ready", Warnings: s.warnings})
	})
	mux.Handle("GET /metrics", s.metrics.Handler())
	s.adminRoutes(mux)
	s.consoleRoutes(mux)
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		api[p] = []string{http.MethodGet}
	}

	// The same paths with any other method: 405 in OpenAI's format (the
	// mux's own 405 is plain text).
	for path, methods := range api {
		allow := strings.Join(methods, ", ")
		if slices.Contains(methods, http.MethodGet) {
			allow += ", HEAD"
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			s.refuse(w, r, &apiError{Status: http.StatusMethodNotAllowed, Type: typeInvalidRequest, Code: "method_not_allowed",
				Message: "method " + r.Method + " is not allowed on " + r.URL.Path + "; use " + strings.Join(methods, " or "), Refused: refusedBadRequest})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.refuse(w, r, &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "unknown_url",
			Message: "no such endpoint: " + r.Method + " " + clip(r.URL.Path, 200) +
				" (the API has /v1/chat/completions, /v1/embeddings, /v1/models, /v1/query, /v1/route)", Refused: refusedBadRequest})
	})
	return withRequestID(mux)
}

// withRequestID gives every response an X-Request-Id: the incoming one when
// it is a sane token, else a new one.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(headerRequestID)
		if !saneID(id) {
			id = newRequestID()
			r.Header.Del(headerRequestID) // so handlers can tell it was not given
		}
		w.Header().Set(headerRequestID, id)
		next.ServeHTTP(w, r)
	})
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// refuse answers a request that reached no endpoint (405, 404), counting and
// logging it.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, e *apiError) {
	writeError(w, e)
	s.metrics.ObserveRefused(unknownTenant, e.Refused)
	s.log.Info("request refused", "request_id", w.Header().Get(headerRequestID), "method", r.Method,
		"path", clip(r.URL.Path, 200), "code", e.Status, "error", e.Message)
}

// call is one request to an API endpoint: who asked, what came of it.
type call struct {
	s        *Server
	w        *responseWriter
	r        *http.Request
	endpoint string
	id       string
	start    time.Time

	t *tenant.Tenant
	// hostTenant is the host's name for the tenant: "" on an open server;
	// ht is the host's view of it.
	hostTenant string
	ht         *host.Tenant
	// label names the tenant in metrics and logs.
	label string

	// What came of it.
	domain  string
	status  host.Status // ok, flagged, out_of_scope; "" until known
	tokens  host.Tokens
	timings host.Timings
	err     *apiError
	// For the console: the query and the whole result (routing
	// alternatives, validation, answer); forced when the request named
	// its domain.
	query  string
	forced bool
	res    host.Result
	// convID is the kept conversation the request continues, if any.
	convID string
}

// serveAPI runs an API endpoint: authenticate, admit, handle, account.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, endpoint string, h func(*call) *apiError) {
	c := s.newCall(w, r, endpoint)
	defer c.finish()
	defer c.recoverPanic()

	key := apiKey(r)
	t, err := s.tenants.Authenticate(key)
	if err != nil {
		msg := "invalid API key"
		switch {
		case key == "" && r.Header.Get("Authorization") != "":
			msg = "the Authorization header must be \"Bearer KEY\""
		case key == "":
			msg = "missing API key: send it as Authorization: Bearer KEY (or in an api-key header)"
		}
		c.fail(unauthorized(msg))
		return
	}
	c.serve(t, h)
}

// newCall starts the accounting of one request to endpoint.
func (s *Server) newCall(w http.ResponseWriter, r *http.Request, endpoint string) *call {
	return &call{s: s, w: &responseWriter{ResponseWriter: w}, r: r, endpoint: endpoint,
		id: w.Header().Get(headerRequestID), start: s.now(), label: unknownTenant}
}

// recoverPanic turns a panic of the handler into a 500 (deferred).
func (c *call) recoverPanic() {
	if p := recover(); p != nil {
		if p == http.ErrAbortHandler {
			panic(p)
		}
		// A bug, not the client's fault: answer 500 and log where.
		c.fail(internalError(c.id, fmt.Errorf("panic: %v\n%s", p, debug.Stack())))
	}
}

// serve runs an API endpoint for the authenticated tenant t: admit,
// handle; c.finish accounts for it.
func (c *call) serve(t *tenant.Tenant, h func(*call) *apiError) {
	s, r, endpoint := c.s, c.r, c.endpoint
	var err error
	c.t, c.label = t, t.Name
	if !s.tenants.Open() {
		c.hostTenant = t.Name
	}
	if c.ht, err = s.h.Tenant(c.hostTenant); err != nil { // New checked the names
		c.fail(internalError(c.id, err))
		return
	}
	done := s.metrics.InFlight(c.label, endpoint)
	defer done()

	ticket, err := t.Admit(r.Context())
	if err != nil {
		var le *tenant.LimitError
		if errors.As(err, &le) {
			s.pace.hold(r.Context(), t.Name, le.RetryAfter)
			c.fail(limitError(le, ""))
		} else if errors.Is(err, tenant.ErrLimitsUnavailable) {
			c.fail(&apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "limits_unavailable",
				Message:    "the shared rate limits cannot be checked now (server.limits_fail = \"closed\"); retry later (request id " + c.id + ")",
				RetryAfter: time.Second, Cause: err})
		} else {
			c.fail(internalError(c.id, err))
		}
		return
	}
	defer func() { ticket.Done(c.tokens.Charged()) }()

	if aerr := h(c); aerr != nil {
		if aerr.Code == codePluginBackedOff {
			// Held like a 429: a client retrying in a loop would otherwise
			// get thousands of these per second.
			s.pace.hold(r.Context(), t.Name, aerr.RetryAfter)
		}
		c.fail(aerr)
	}
}

// apiKey is the bearer token, or the api-key header.
func apiKey(r *http.Request) string {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, key, ok := strings.Cut(auth, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(key)
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get("api-key"))
}

// fail records e and sends it, unless the answer has started (a stream) or
// the client is gone.
func (c *call) fail(e *apiError) {
	c.err = e
	if c.w.wrote || e.Status == statusClientClosed {
		return
	}
	writeError(c.w, e)
}

// record takes the outcome of a host call.
func (c *call) record(res host.Result) {
	c.domain, c.status, c.tokens, c.timings = res.Domain, res.Status, res.Tokens, res.Timings
	c.res = res
}

// finish logs the request and records its metrics.
func (c *call) finish() {
	s := c.s
	code := c.w.code
	if code == 0 {
		code = http.StatusOK
	}
	status := string(c.status)
	if c.err != nil {
		status = "error"
		if c.err.Status == statusClientClosed {
			code = statusClientClosed
		}
		if c.err.Refused != "" {
			s.metrics.ObserveRefused(c.label, c.err.Refused)
		}
	} else if status == "" {
		status = string(host.StatusOK)
	}
	total := s.now().Sub(c.start)
	s.metrics.ObserveRequest(telemetry.RequestObs{
		Tenant: c.label, Endpoint: c.endpoint, Domain: c.domain, Status: status, Code: code,
		Route: c.timings.Route, Prompt: c.timings.Prompt, Generate: c.timings.Generate,
		Validate: c.timings.Validate, Total: total,
		PromptTokens: c.tokens.Prompt, CompletionTokens: c.tokens.Completion, CachedTokens: c.tokens.Cached,
		EmbeddedTokens: c.tokens.Embedded,
	})
	if s.console != nil {
		s.console.record(c, status, code, total)
	}
	attrs := []any{"request_id", c.id, "tenant", c.label, "endpoint", c.endpoint, "domain", c.domain,
		"status", status, "code", code, "duration_ms", float64(total.Microseconds()) / 1000}
	switch {
	case c.err == nil:
		s.log.Info("request", attrs...)
	case c.err.Status >= 500 && c.err.Status != statusClientClosed || c.err.Status == http.StatusBadGateway:
		attrs = append(attrs, "error", c.err.Message)
		if c.err.Cause != nil {
			attrs = append(attrs, "cause", c.err.Cause.Error())
		}
		s.log.Error("request failed", attrs...)
	default:
		attrs = append(attrs, "error", c.err.Message)
		s.log.Info("request refused", attrs...)
	}
}

// readBody reads r's body, at most limit bytes (an *http.MaxBytesError
// beyond), within timeout: a client that stalls is cut off rather than
// holding a connection and a goroutine for ever. The deadline covers the
// body only and is cleared once it is read (a server without the support,
// such as a test recorder, just has none).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, error) {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(timeout)) == nil {
		defer rc.SetReadDeadline(time.Time{})
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		// A closed body tells net/http not to read the rest of it before
		// answering (it would, with the deadline gone, for ever): the
		// connection closes after the answer instead.
		r.Body.Close()
	}
	return data, err
}

// body reads the request body, at most server.max_body_bytes of it.
func (c *call) body() ([]byte, *apiError) {
	limit := c.s.cfg.Server.MaxBodyBytes
	return c.readLimited(limit, "this server's limit of "+itoa(limit)+" bytes (server.max_body_bytes)")
}

// readLimited reads the body, at most limit bytes (what names the limit in
// the 413).
func (c *call) readLimited(limit int64, what string) ([]byte, *apiError) {
	tooLarge := &apiError{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: "request_too_large",
		Message: "the request body is over " + what, Refused: refusedTooLarge}
	if c.r.ContentLength > limit {
		return nil, tooLarge
	}
	data, err := readBody(c.w.ResponseWriter, c.r, limit, c.s.bodyTimeout)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, badRequest("", "invalid_body", "reading the request body: %v", err)
	}
	return data, nil
}

// json sends v with code.
func (c *call) json(code int, v any) { writeJSON(c.w, code, v) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Not JSON-encodable (a NaN in a vector): say so rather than send
		// half a document under a success status.
		code = http.StatusInternalServerError
		buf.Reset()
		e := &apiError{Type: typeServer, Code: "internal_error", Message: "internal error: the answer could not be encoded as JSON"}
		json.NewEncoder(&buf).Encode(e.body())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(buf.Bytes()) // a write error means the client is gone
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", itoa(retrySeconds(e.RetryAfter)))
	}
	writeJSON(w, e.Status, e.body())
}

// responseWriter remembers the status sent; it passes Flush (and, through
// Unwrap, everything else) to the connection's writer.
type responseWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush sends buffered data to the client.
func (w *responseWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func itoa[T ~int | ~int64](v T) string { return strconv.FormatInt(int64(v), 10) }
