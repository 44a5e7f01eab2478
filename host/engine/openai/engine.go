// Package openai is an engine.Engine that runs a model on OpenAI-compatible
// servers: llama.cpp's llama-server, vLLM, Ollama, or any server of that
// API. One Engine serves one model from a pool of backends, balanced by
// least outstanding requests or by prompt prefix (so that a domain's
// system prompt stays warm in one backend's KV cache), with active health
// checks, passive ejection of failing backends, retries on another backend
// before the first token, a cap of requests per backend and timeouts for
// connecting, the first token and an idle stream.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
)

// Kinds of backend: the API is the same, the extensions and the health and
// load endpoints differ.
const (
	KindOpenAI      = "openai"       // any OpenAI-compatible server: health is GET /v1/models
	KindLlamaServer = "llama-server" // GET /health, /metrics (llamacpp:requests_*) or /slots, POST /tokenize, cache_prompt
	KindVLLM        = "vllm"         // GET /health, /metrics (vllm:num_requests_*), POST /tokenize
	KindOllama      = "ollama"       // GET /api/version; /api/ps: a server without the model loaded counts as busy
)

// Balancing strategies.
const (
	// BalanceLeastOutstanding sends each request to the backend with the
	// fewest requests in flight (this engine's, or what the backend
	// reports, whichever is more).
	BalanceLeastOutstanding = "least-outstanding"
	// BalancePrefix sends requests that share a prompt prefix (a domain's
	// system prompt) to the same backend, where that prefix is already in
	// the KV cache, with bounded load: no backend takes more than
	// PrefixLoadFactor times the mean share of the last second's requests
	// (see affinity.go).
	BalancePrefix = "prefix"
)

// ErrUnavailable is wrapped by errors of a request no backend could take:
// every backend down, ejected or at its limit, or each one tried failed.
// It matches engine.ErrUnavailable.
var ErrUnavailable = fmt.Errorf("openai: no backend can take the request (%w)", engine.ErrUnavailable)

// Backend is one server.
type Backend struct {
	// URL is the server's base address, e.g. http://10.0.0.5:8000; a
	// trailing /v1 is accepted.
	URL string
	// APIKey, when set, is sent as a bearer token.
	APIKey string
}

// Options configure an Engine.
type Options struct {
	// Name is the model's name in MDSA (engine.Engine.Model).
	Name string
	// Model is the model id sent to the backends; "" sends Name.
	Model string
	// Kind is one of the Kind constants; "" is KindOpenAI.
	Kind string
	// Backends serve the model; at least one.
	Backends []Backend
	// Balance is BalanceLeastOutstanding (the default) or BalancePrefix.
	Balance string
	// PrefixLoadFactor bounds a backend's load under BalancePrefix, as a
	// multiple of the mean; 0 means 1.25.
	PrefixLoadFactor float64
	// MaxConcurrent caps the requests in flight to one backend; 0 means 64.
	MaxConcurrent int
	// ConnectTimeout bounds connecting to a backend; 0 means 5 s.
	ConnectTimeout time.Duration
	// FirstTokenTimeout bounds the wait for a stream's first event (and
	// for a whole non-streamed answer: embeddings, token counts); 0 means
	// 60 s.
	FirstTokenTimeout time.Duration
	// IdleTimeout bounds the wait between two events of a stream; 0 means
	// 30 s.
	IdleTimeout time.Duration
	// HealthInterval is how often each backend's health (and reported
	// load) is checked; 0 means 1 s, negative turns the checks off.
	HealthInterval time.Duration
	// EjectAfter is how many failed requests in a row eject a backend; 0
	// means 3. A refused connection ejects at once.
	EjectAfter int
	// EjectTime is the first ejection's cool-down, doubled for each
	// ejection in a row up to MaxEjectTime; 0 means 1 s and 30 s.
	EjectTime    time.Duration
	MaxEjectTime time.Duration
	// Retries is how many other backends a request may try when one
	// fails before the first token; 0 means 2, negative none.
	Retries int
	// Client, when set, is the HTTP client (its transport's timeouts
	// then apply instead of ConnectTimeout).
	Client *http.Client
	// Logger receives ejections and readmissions; nil discards.
	Logger *slog.Logger
}

// Engine runs one model on a pool of backends. It is safe for concurrent
// use.
type Engine struct {
	opts     Options
	model    string
	backends []*backend
	ring     ring
	aff      affinity
	client   *http.Client
	log      *slog.Logger
	rr       atomic.Uint64 // rotates ties

	closeOnce sync.Once
	closed    atomic.Bool
	stop      context.CancelFunc
	checks    sync.WaitGroup
}

// Open checks opts and starts the health checks. It does not wait for any
// backend to answer: a backend that is down is found by its first check
// or its first request.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	if strings.TrimSpace(opts.Name) == "" {
		return nil, errors.New("openai: the model has no name")
	}
	switch opts.Kind {
	case "":
		opts.Kind = KindOpenAI
	case KindOpenAI, KindLlamaServer, KindVLLM, KindOllama:
	default:
		return nil, fmt.Errorf("openai: model %q: unknown backend kind %q (want %s, %s, %s or %s)",
			opts.Name, opts.Kind, KindOpenAI, KindLlamaServer, KindVLLM, KindOllama)
	}
	switch opts.Balance {
	case "":
		opts.Balance = BalanceLeastOutstanding
	case BalanceLeastOutstanding, BalancePrefix:
	default:
		return nil, fmt.Errorf("openai: model %q: unknown balance %q (want %s or %s)",
			opts.Name, opts.Balance, BalanceLeastOutstanding, BalancePrefix)
	}
	if len(opts.Backends) == 0 {
		return nil, fmt.Errorf("openai: model %q has no backends", opts.Name)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.ConnectTimeout, 5*time.Second)
	def(&opts.FirstTokenTimeout, 60*time.Second)
	def(&opts.IdleTimeout, 30*time.Second)
	def(&opts.EjectTime, time.Second)
	def(&opts.MaxEjectTime, 30*time.Second)
	if opts.HealthInterval == 0 {
		opts.HealthInterval = time.Second
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 64
	}
	if opts.EjectAfter <= 0 {
		opts.EjectAfter = 3
	}
	switch {
	case opts.Retries == 0:
		opts.Retries = 2
	case opts.Retries < 0:
		opts.Retries = 0
	}
	if opts.PrefixLoadFactor <= 1 {
		opts.PrefixLoadFactor = 1.25
	}
	e := &Engine{opts: opts, model: opts.Model, client: opts.Client, log: opts.Logger}
	if e.model == "" {
		e.model = opts.Name
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	urls := make([]string, 0, len(opts.Backends))
	for i, b := range opts.Backends {
		u, err := baseURL(b.URL)
		if err != nil {
			return nil, fmt.Errorf("openai: model %q: backend %d: %w", opts.Name, i, err)
		}
		for _, prev := range urls {
			if prev == u {
				return nil, fmt.Errorf("openai: model %q: backend %s is listed twice", opts.Name, u)
			}
		}
		urls = append(urls, u)
		e.backends = append(e.backends, &backend{url: u, key: b.APIKey, limit: opts.MaxConcurrent})
	}
	e.ring = newRing(urls)
	if e.client == nil {
		tr := &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   opts.ConnectTimeout,
			MaxIdleConnsPerHost:   opts.MaxConcurrent,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: opts.FirstTokenTimeout,
			ForceAttemptHTTP2:     true,
		}
		e.client = &http.Client{Transport: tr}
	}
	if opts.HealthInterval > 0 {
		hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		e.stop = cancel
		for _, b := range e.backends {
			e.checks.Add(1)
			go e.watch(hctx, b)
		}
	}
	return e, nil
}

// baseURL checks a backend address and strips a trailing "/" and "/v1".
func baseURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("bad URL %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("bad URL %q: want http://HOST:PORT or https://HOST:PORT", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("bad URL %q: no query, fragment or user info", raw)
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, "/v1")
	u.Path = strings.TrimRight(p, "/")
	return u.String(), nil
}

// Model implements engine.Engine.
func (e *Engine) Model() string { return e.opts.Name }

// Backends reports each backend's state, in the configured order.
func (e *Engine) Backends() []BackendStatus {
	now := time.Now()
	out := make([]BackendStatus, len(e.backends))
	for i, b := range e.backends {
		out[i] = b.status(now)
	}
	return out
}

// Closed reports whether Close was called.
func (e *Engine) Closed() bool { return e.closed.Load() }

// Close stops the health checks and closes idle connections. Calls after
// Close fail with engine.ErrClosed; requests in flight finish.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		if e.stop != nil {
			e.stop()
		}
		e.checks.Wait()
		e.client.CloseIdleConnections()
	})
	return nil
}

// pick chooses a backend for a request whose prefix hashes to key (0: no
// affinity), among those not in tried; it returns an ErrUnavailable error
// with each backend's reason when there is none.
func (e *Engine) pick(tried []bool, key uint64) (*backend, error) {
	now := time.Now()
	var why []string
	ok := make([]bool, len(e.backends))
	n, total := 0, 0
	for i, b := range e.backends {
		if tried[i] {
			continue
		}
		if avail, reason := b.available(now); !avail {
			why = append(why, reason)
			continue
		}
		ok[i] = true
		n++
		total += b.load()
	}
	if n == 0 {
		if len(why) == 0 {
			why = append(why, "every backend was tried")
		}
		return nil, fmt.Errorf("%w %q: %s", ErrUnavailable, e.opts.Name, strings.Join(why, "; "))
	}
	if e.opts.Balance == BalancePrefix && key != 0 {
		if b := e.pickPrefix(key, ok, now); b != nil {
			return b, nil
		}
	}
	// Least outstanding; ties rotate.
	start := int(e.rr.Add(1) % uint64(len(e.backends)))
	var best *backend
	bestLoad := 0
	for k := range e.backends {
		i := (start + k) % len(e.backends)
		if !ok[i] {
			continue
		}
		if l := e.backends[i].load(); best == nil || l < bestLoad {
			best, bestLoad = e.backends[i], l
		}
	}
	return best, nil
}

// prefixKey is the affinity key of a request: its system message (a
// domain's system prompt), else the start of its first message or prompt.
func prefixKey(req engine.Request) uint64 {
	const head = 512
	text := req.Prompt
	if len(req.Messages) > 0 {
		text = req.Messages[0].Content
		for _, m := range req.Messages {
			if m.Role == "system" {
				text = m.Content
				break
			}
		}
	}
	if text == "" {
		return 0
	}
	return hash64(text[:min(len(text), head)]) | 1
}

// index is b's position in e.backends.
func (e *Engine) index(b *backend) int {
	for i, x := range e.backends {
		if x == b {
			return i
		}
	}
	return -1
}

// attempt runs one request against backends, one after another until one
// succeeds, the request fails in a way no backend fixes, or it has started
// answering (no retry after the first token: its text was sent on).
// try returns whether anything reached the caller.
func (e *Engine) attempt(ctx context.Context, key uint64, try func(ctx context.Context, b *backend) (started bool, err error)) error {
	if e.closed.Load() {
		return engine.ErrClosed
	}
	tried := make([]bool, len(e.backends))
	var lastErr error
	for range e.opts.Retries + 1 {
		b, err := e.pick(tried, key)
		if err != nil {
			if lastErr != nil {
				return fmt.Errorf("%w (last failure: %w)", err, lastErr)
			}
			return err
		}
		tried[e.index(b)] = true
		b.sent(time.Now())
		b.outstanding.Add(1)
		started, err := try(ctx, b)
		b.outstanding.Add(-1)
		if err == nil {
			b.succeeded()
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("openai: %w", context.Cause(ctx))
		}
		var ue *upstreamError
		if errors.As(err, &ue) && !ue.retryable() {
			b.succeeded() // the backend works; the request was refused
			return ue.asEngineError()
		}
		if errors.Is(err, errCallback) {
			return err
		}
		refused := isConnRefused(err)
		if b.fail(err, refused, e.opts.EjectAfter, e.opts.EjectTime, e.opts.MaxEjectTime, time.Now()) {
			e.log.Warn("openai backend ejected", "model", e.opts.Name, "backend", b.url, "err", err)
		}
		if started {
			return fmt.Errorf("openai: model %q: backend %s failed mid-answer: %w", e.opts.Name, b.url, err)
		}
		lastErr = err
	}
	return fmt.Errorf("%w %q: every try failed, the last: %w", ErrUnavailable, e.opts.Name, lastErr)
}

// errCallback wraps an error the caller's TokenFunc returned.
var errCallback = errors.New("openai: stopped by the caller")

func isConnRefused(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// post sends body to path on b and returns the response of a 200; other
// statuses are read into an *upstreamError.
func (e *Engine) post(ctx context.Context, b *backend, path string, body any) (*http.Response, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("openai: encoding the request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url+path, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if b.key != "" {
		req.Header.Set("Authorization", "Bearer "+b.key)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, parseError(b.url, resp.StatusCode, msg)
	}
	return resp, nil
}

// Timeouts, the causes of a cancelled request.
var (
	errFirstToken = errors.New("openai: no first token within the first-token timeout")
	errIdle       = errors.New("openai: the stream was idle past the idle timeout")
)
