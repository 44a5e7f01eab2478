package telemetry

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mdsa-go/mdsa/host/engine/openai"
	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/host/plugin"
)

// Source is what metrics read from the running host at scrape time (the
// server adapts *host.Host to it).
type Source interface {
	// PluginStats reports each plugin's counters for a tenant ("" for the
	// untenanted set), keyed by plugin name.
	PluginStats(tenant string) (map[string]plugin.Stats, error)
	// ModelStats reports the model registry's counters and loaded models.
	ModelStats() models.Stats
	// PluginMemory reports the linear memory of every plugin instance
	// against the runtime's total budget.
	PluginMemory() plugin.MemoryStats
	// RemoteBackends reports the servers of each model served by a
	// [backends] group, by model name.
	RemoteBackends() map[string][]openai.BackendStatus
	// Tenants lists the configured tenants' names. With none, the
	// untenanted set "" is read instead (reported as tenant "default").
	Tenants() []string
}

// Namespace is the prefix of every metric this package defines.
const Namespace = "mdsa"

// DefaultTenant is the tenant label used for an empty tenant name.
const DefaultTenant = "default"

// NoDomain is the domain label used for an empty domain name (a request
// refused or failed before it was routed).
const NoDomain = "none"

// Stage names of mdsa_stage_duration_seconds.
const (
	StageRoute    = "route"
	StagePrompt   = "prompt"
	StageGenerate = "generate"
	StageValidate = "validate"
)

// Token kinds of mdsa_tokens_total.
const (
	TokensPrompt     = "prompt"
	TokensCompletion = "completion"
	// TokensPromptCached counts the prompt tokens reused from the engine's
	// cache; they are also counted as prompt. Evaluated prompt tokens are
	// prompt - prompt_cached.
	TokensPromptCached = "prompt_cached"
	// TokensEmbedded counts the input tokens a plugin's mdsa_embed calls
	// embedded while serving requests.
	TokensEmbedded = "embedded"
)

// DurationBuckets returns the histogram buckets (seconds) of the request and
// stage durations: 20 exponential buckets from 10µs to 60s, each about 2.27
// times the previous one, rounded to three significant digits (1e-05,
// 2.27e-05, ..., 26.4, 60).
func DurationBuckets() []float64 {
	b := prometheus.ExponentialBucketsRange(10e-6, 60, 20)
	for i, v := range b {
		b[i] = roundSignificant(v, 3)
	}
	return b
}

// roundSignificant rounds v > 0 to n significant decimal digits.
func roundSignificant(v float64, n int) float64 {
	scale := math.Pow(10, float64(n-1)-math.Floor(math.Log10(v)))
	return math.Round(v*scale) / scale
}

// Metrics records the server's request metrics and exposes them, with the
// host's plugin and model metrics and the Go runtime and process metrics,
// on its own registry. It is safe for concurrent use.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	requests *prometheus.CounterVec   // tenant, endpoint, domain, status, code
	duration *prometheus.HistogramVec // tenant, endpoint
	stages   *prometheus.HistogramVec // stage, domain
	tokens   *prometheus.CounterVec   // tenant, domain, kind
	refused  *prometheus.CounterVec   // tenant, reason
	inflight *prometheus.GaugeVec     // tenant, endpoint
	cache    *prometheus.CounterVec   // tenant, result
}

// NewMetrics builds the metrics on a new registry, which also holds the Go
// runtime and process collectors and, when src is not nil, a collector that
// reads src at every scrape.
func NewMetrics(src Source) *Metrics {
	buckets := DurationBuckets()
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "requests_total",
			Help: "Finished requests by tenant, endpoint, domain, status (ok, flagged, out_of_scope, error) and HTTP code.",
		}, []string{"tenant", "endpoint", "domain", "status", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "request_duration_seconds",
			Help:    "Total time of finished requests, by tenant and endpoint.",
			Buckets: buckets,
		}, []string{"tenant", "endpoint"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "stage_duration_seconds",
			Help:    "Time of one stage (route, prompt, generate, validate) of a request, by domain.",
			Buckets: buckets,
		}, []string{"stage", "domain"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "tokens_total",
			Help: "Tokens processed, by tenant, domain and kind (prompt, completion, prompt_cached: the prompt tokens reused from the engine's cache rather than evaluated; embedded: input tokens of plugins' mdsa_embed calls).",
		}, []string{"tenant", "domain", "kind"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "refused_total",
			Help: "Requests refused before any work, by tenant and reason (unauthorized, forbidden, rate_limited, too_large, bad_request).",
		}, []string{"tenant", "reason"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "inflight_requests",
			Help: "Requests being served now, by tenant and endpoint.",
		}, []string{"tenant", "endpoint"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "cache_requests_total",
			Help: "Response cache lookups by tenant and result (hit: answered from the cache; miss: computed and kept).",
		}, []string{"tenant", "result"}),
	}
	m.reg.MustRegister(
		m.requests, m.duration, m.stages, m.tokens, m.refused, m.inflight, m.cache,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if src != nil {
		m.reg.MustRegister(newSourceCollector(src))
	}
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// One failing collector must not hide every other metric.
		ErrorHandling: promhttp.ContinueOnError,
		// Counts failed scrapes as promhttp_metric_handler_errors_total.
		Registry: m.reg,
	})
	return m
}

// Handler serves the registry's metrics in the Prometheus text exposition
// format (for GET /metrics).
func (m *Metrics) Handler() http.Handler { return m.handler }

// Registry returns the registry behind Handler, for registering further
// collectors or for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RequestObs is one finished request.
type RequestObs struct {
	// Tenant is the tenant's name ("" is reported as "default"), Endpoint
	// the API endpoint (e.g. "chat.completions", "query", "route",
	// "embeddings") and Domain the plugin that served it ("" is reported as
	// "none").
	Tenant, Endpoint, Domain string
	// Status is the outcome: ok, flagged, out_of_scope or error.
	Status string
	// Code is the HTTP status code sent.
	Code int
	// Route, Prompt, Generate and Validate are the stage times, Total the
	// whole request; zero (or negative) durations are not observed.
	Route, Prompt, Generate, Validate, Total time.Duration
	// PromptTokens, CompletionTokens and CachedTokens (the prompt tokens
	// reused from the engine's cache) are added to mdsa_tokens_total when
	// positive.
	PromptTokens, CompletionTokens, CachedTokens int
	// EmbeddedTokens (a plugin's mdsa_embed inputs) likewise.
	EmbeddedTokens int
}

// ObserveRequest records one finished request: mdsa_requests_total, the
// durations that are set and the token counts.
func (m *Metrics) ObserveRequest(o RequestObs) {
	tenant := tenantLabel(o.Tenant)
	endpoint := labelValue(o.Endpoint)
	domain := domainLabel(o.Domain)

	m.requests.WithLabelValues(tenant, endpoint, domain, labelValue(o.Status), strconv.Itoa(o.Code)).Inc()
	if o.Total > 0 {
		m.duration.WithLabelValues(tenant, endpoint).Observe(o.Total.Seconds())
	}
	observeStage(m.stages, StageRoute, domain, o.Route)
	observeStage(m.stages, StagePrompt, domain, o.Prompt)
	observeStage(m.stages, StageGenerate, domain, o.Generate)
	observeStage(m.stages, StageValidate, domain, o.Validate)
	if o.PromptTokens > 0 {
		m.tokens.WithLabelValues(tenant, domain, TokensPrompt).Add(float64(o.PromptTokens))
	}
	if o.CompletionTokens > 0 {
		m.tokens.WithLabelValues(tenant, domain, TokensCompletion).Add(float64(o.CompletionTokens))
	}
	if o.CachedTokens > 0 {
		m.tokens.WithLabelValues(tenant, domain, TokensPromptCached).Add(float64(o.CachedTokens))
	}
	if o.EmbeddedTokens > 0 {
		m.tokens.WithLabelValues(tenant, domain, TokensEmbedded).Add(float64(o.EmbeddedTokens))
	}
}

func observeStage(h *prometheus.HistogramVec, stage, domain string, d time.Duration) {
	if d > 0 {
		h.WithLabelValues(stage, domain).Observe(d.Seconds())
	}
}

// ObserveRefused counts a request refused before any work; reason is one of
// unauthorized, forbidden, rate_limited, too_large or bad_request.
func (m *Metrics) ObserveRefused(tenant, reason string) {
	m.refused.WithLabelValues(tenantLabel(tenant), labelValue(reason)).Inc()
}

// ObserveCache counts one response cache lookup of tenant: "hit" or "miss".
func (m *Metrics) ObserveCache(tenant, result string) {
	m.cache.WithLabelValues(tenantLabel(tenant), labelValue(result)).Inc()
}

// InFlight counts a request as being served until done is called; calling
// done more than once has no further effect.
func (m *Metrics) InFlight(tenant, endpoint string) (done func()) {
	g := m.inflight.WithLabelValues(tenantLabel(tenant), labelValue(endpoint))
	g.Inc()
	var once sync.Once
	return func() { once.Do(g.Dec) }
}

// tenantLabel maps the untenanted set "" to "default".
func tenantLabel(t string) string {
	if t == "" {
		return DefaultTenant
	}
	return labelValue(t)
}

// domainLabel maps "no domain" to "none".
func domainLabel(d string) string {
	if d == "" {
		return NoDomain
	}
	return labelValue(d)
}

// labelValue makes s a valid label value: Prometheus refuses (and
// WithLabelValues panics on) invalid UTF-8.
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
