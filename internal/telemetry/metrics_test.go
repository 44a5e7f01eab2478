package telemetry

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/engine/openai"
	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/host/plugin"
)

// scrape GETs the metrics handler and returns the body, checking the
// text exposition format.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape: read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape: Content-Type %q, want text/plain", ct)
	}
	return string(body)
}

// family gathers m's registry and returns the named family's metrics keyed
// by their labels rendered as "k=v,k=v" (sorted by name, as gathered).
func family(t *testing.T, m *Metrics, name string) map[string]*dto.Metric {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.Metric{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var parts []string
			for _, l := range mt.GetLabel() {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(parts, ",")] = mt
		}
	}
	return out
}

func TestObserveRequestCountersExact(t *testing.T) {
	m := NewMetrics(nil)
	ok := RequestObs{
		Tenant: "acme", Endpoint: "chat.completions", Domain: "finance", Status: "ok", Code: 200,
		Route: 2 * time.Millisecond, Prompt: time.Millisecond, Generate: 1500 * time.Millisecond,
		Validate: 300 * time.Microsecond, Total: 1600 * time.Millisecond,
		PromptTokens: 12, CompletionTokens: 30, CachedTokens: 10,
	}
	m.ObserveRequest(ok)
	m.ObserveRequest(ok)
	m.ObserveRequest(RequestObs{Endpoint: "query", Status: "error", Code: 500, PromptTokens: -4})
	m.ObserveRefused("acme", "rate_limited")
	m.ObserveRefused("", "unauthorized")
	m.ObserveRefused("acme", "rate_limited")

	want := `
# HELP mdsa_requests_total Finished requests by tenant, endpoint, domain, status (ok, flagged, out_of_scope, error) and HTTP code.
# TYPE mdsa_requests_total counter
mdsa_requests_total{code="200",domain="finance",endpoint="chat.completions",status="ok",tenant="acme"} 2
mdsa_requests_total{code="500",domain="none",endpoint="query",status="error",tenant="default"} 1
# HELP mdsa_tokens_total Tokens processed, by tenant, domain and kind (prompt, completion, prompt_cached: the prompt tokens reused from the engine's cache rather than evaluated; embedded: input tokens of plugins' mdsa_embed calls).
# TYPE mdsa_tokens_total counter
mdsa_tokens_total{domain="finance",kind="completion",tenant="acme"} 60
mdsa_tokens_total{domain="finance",kind="prompt",tenant="acme"} 24
mdsa_tokens_total{domain="finance",kind="prompt_cached",tenant="acme"} 20
# HELP mdsa_refused_total Requests refused before any work, by tenant and reason (unauthorized, forbidden, rate_limited, too_large, bad_request).
# TYPE mdsa_refused_total counter
mdsa_refused_total{reason="rate_limited",tenant="acme"} 2
mdsa_refused_total{reason="unauthorized",tenant="default"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"mdsa_requests_total", "mdsa_tokens_total", "mdsa_refused_total"); err != nil {
		t.Fatal(err)
	}
}

func TestObserveRequestHistograms(t *testing.T) {
	m := NewMetrics(nil)
	m.ObserveRequest(RequestObs{
		Tenant: "acme", Endpoint: "chat.completions", Domain: "finance", Status: "ok", Code: 200,
		Route: 2 * time.Millisecond, Generate: 1500 * time.Millisecond, Total: 1600 * time.Millisecond,
	})
	m.ObserveRequest(RequestObs{
		Tenant: "acme", Endpoint: "chat.completions", Domain: "finance", Status: "ok", Code: 200,
		Route: 20 * time.Microsecond, Total: 400 * time.Millisecond,
	})

	dur := family(t, m, "mdsa_request_duration_seconds")
	if len(dur) != 1 {
		t.Fatalf("request duration series: %v, want one", keys(dur))
	}
	h := dur["endpoint=chat.completions,tenant=acme"].GetHistogram()
	if h.GetSampleCount() != 2 || math.Abs(h.GetSampleSum()-2.0) > 1e-9 {
		t.Fatalf("request duration: count %d sum %g, want 2 and 2.0", h.GetSampleCount(), h.GetSampleSum())
	}
	assertBucketed(t, h, 0.4, 1.6)

	stages := family(t, m, "mdsa_stage_duration_seconds")
	// Prompt and Validate were zero in both observations: no series.
	if _, ok := stages["domain=finance,stage=prompt"]; ok {
		t.Fatalf("prompt stage observed although zero: %v", keys(stages))
	}
	if _, ok := stages["domain=finance,stage=validate"]; ok {
		t.Fatalf("validate stage observed although zero: %v", keys(stages))
	}
	route := stages["domain=finance,stage=route"].GetHistogram()
	if route.GetSampleCount() != 2 || math.Abs(route.GetSampleSum()-0.00202) > 1e-9 {
		t.Fatalf("route stage: count %d sum %g, want 2 and 0.00202", route.GetSampleCount(), route.GetSampleSum())
	}
	assertBucketed(t, route, 20e-6, 2e-3)
	gen := stages["domain=finance,stage=generate"].GetHistogram()
	if gen.GetSampleCount() != 1 || gen.GetSampleSum() != 1.5 {
		t.Fatalf("generate stage: count %d sum %g, want 1 and 1.5", gen.GetSampleCount(), gen.GetSampleSum())
	}
	if len(stages) != 2 {
		t.Fatalf("stage series %v, want route and generate only", keys(stages))
	}
}

// assertBucketed checks that the cumulative bucket counts match the
// observed values exactly.
func assertBucketed(t *testing.T, h *dto.Histogram, values ...float64) {
	t.Helper()
	for _, b := range h.GetBucket() {
		var want uint64
		for _, v := range values {
			if v <= b.GetUpperBound() {
				want++
			}
		}
		if b.GetCumulativeCount() != want {
			t.Fatalf("bucket le=%g: count %d, want %d (values %v)", b.GetUpperBound(), b.GetCumulativeCount(), want, values)
		}
	}
}

func keys(m map[string]*dto.Metric) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestDurationBucketsCover10usTo60s(t *testing.T) {
	b := DurationBuckets()
	if len(b) < 10 || len(b) > 30 {
		t.Fatalf("%d buckets, want a modest number", len(b))
	}
	if math.Abs(b[0]-10e-6) > 1e-12 {
		t.Fatalf("first bucket %g, want 1e-05", b[0])
	}
	if b[len(b)-1] < 60 {
		t.Fatalf("last bucket %g, want >= 60", b[len(b)-1])
	}
	for i := 1; i < len(b); i++ {
		if b[i] <= b[i-1] || b[i]/b[i-1] > 3 {
			t.Fatalf("buckets %g then %g: want increasing by at most 3x", b[i-1], b[i])
		}
	}

	// The histograms exposed use these buckets.
	m := NewMetrics(nil)
	m.ObserveRequest(RequestObs{Tenant: "t", Endpoint: "route", Domain: "d", Status: "ok", Code: 200,
		Route: 10 * time.Microsecond, Total: 60 * time.Second})
	body := scrape(t, m)
	for _, line := range []string{
		`mdsa_stage_duration_seconds_bucket{domain="d",stage="route",le="1e-05"} 1`,
		`mdsa_request_duration_seconds_bucket{endpoint="route",tenant="t",le="1e-05"} 0`,
		`mdsa_request_duration_seconds_bucket{endpoint="route",tenant="t",le="60"} 1`,
		`mdsa_request_duration_seconds_bucket{endpoint="route",tenant="t",le="+Inf"} 1`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("scrape lacks %q", line)
		}
	}
}

func TestHandlerExposesRuntimeAndRequests(t *testing.T) {
	m := NewMetrics(nil)
	m.ObserveRequest(RequestObs{Tenant: "acme", Endpoint: "embeddings", Domain: "support", Status: "flagged", Code: 200})
	body := scrape(t, m)
	for _, want := range []string{
		"# TYPE mdsa_requests_total counter\n",
		`mdsa_requests_total{code="200",domain="support",endpoint="embeddings",status="flagged",tenant="acme"} 1` + "\n",
		"# TYPE go_goroutines gauge\n",
		"# TYPE process_resident_memory_bytes gauge\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	// Nothing else was observed: no token, duration or stage series.
	for _, absent := range []string{"mdsa_tokens_total{", "mdsa_stage_duration_seconds_bucket{", "mdsa_request_duration_seconds_bucket{"} {
		if strings.Contains(body, absent) {
			t.Errorf("scrape has %q although nothing was observed", absent)
		}
	}
	// Two Metrics do not share a registry (nor use the global one).
	other := NewMetrics(nil)
	if strings.Contains(scrape(t, other), "mdsa_requests_total{") {
		t.Fatal("a second Metrics sees the first one's requests")
	}
	if n, _ := testutil.GatherAndCount(prometheus.DefaultGatherer, "mdsa_requests_total"); n != 0 {
		t.Fatalf("global default registry holds %d mdsa_requests_total series", n)
	}
}

func TestInFlight(t *testing.T) {
	m := NewMetrics(nil)
	gauge := func(tenant, endpoint string) float64 {
		return testutil.ToFloat64(m.inflight.WithLabelValues(tenant, endpoint))
	}
	d1 := m.InFlight("acme", "chat.completions")
	d2 := m.InFlight("acme", "chat.completions")
	d3 := m.InFlight("", "query")
	if g := gauge("acme", "chat.completions"); g != 2 {
		t.Fatalf("after two starts: %g, want 2", g)
	}
	if g := gauge("default", "query"); g != 1 {
		t.Fatalf("untenanted: %g, want 1 under tenant default", g)
	}
	d1()
	d1() // a second call must not decrement again
	if g := gauge("acme", "chat.completions"); g != 1 {
		t.Fatalf("after one done (called twice): %g, want 1", g)
	}
	d2()
	d3()
	if g := gauge("acme", "chat.completions"); g != 0 {
		t.Fatalf("after both done: %g, want 0", g)
	}
	want := `
# HELP mdsa_inflight_requests Requests being served now, by tenant and endpoint.
# TYPE mdsa_inflight_requests gauge
mdsa_inflight_requests{endpoint="chat.completions",tenant="acme"} 0
mdsa_inflight_requests{endpoint="query",tenant="default"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "mdsa_inflight_requests"); err != nil {
		t.Fatal(err)
	}
}

func TestInFlightConcurrent(t *testing.T) {
	m := NewMetrics(nil)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				done := m.InFlight("acme", "query")
				m.ObserveRequest(RequestObs{Tenant: "acme", Endpoint: "query", Domain: "finance", Status: "ok", Code: 200, Total: time.Millisecond})
				done()
			}
		}()
	}
	// Scrape while observing.
	for i := 0; i < 3; i++ {
		_ = scrape(t, m)
	}
	wg.Wait()
	if g := testutil.ToFloat64(m.inflight.WithLabelValues("acme", "query")); g != 0 {
		t.Fatalf("in-flight after all done: %g, want 0", g)
	}
	if c := testutil.ToFloat64(m.requests.WithLabelValues("acme", "query", "finance", "ok", "200")); c != 1600 {
		t.Fatalf("requests: %g, want 1600", c)
	}
}

func TestBadLabelValuesDoNotPanic(t *testing.T) {
	m := NewMetrics(nil)
	bad := "a\xffb"
	m.ObserveRequest(RequestObs{Tenant: bad, Endpoint: bad, Domain: bad, Status: bad, Code: -1,
		Route: time.Millisecond, Total: -time.Second, PromptTokens: math.MinInt, CompletionTokens: 1})
	m.ObserveRefused(bad, bad)
	m.InFlight(bad, bad)()
	want := `
# HELP mdsa_refused_total Requests refused before any work, by tenant and reason (unauthorized, forbidden, rate_limited, too_large, bad_request).
# TYPE mdsa_refused_total counter
mdsa_refused_total{reason="a` + "\uFFFD" + `b",tenant="a` + "\uFFFD" + `b"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "mdsa_refused_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "mdsa_request_duration_seconds"); err != nil || n != 0 {
		t.Fatalf("negative total observed: %d series (err %v)", n, err)
	}
}

// FuzzObserve checks that any label strings are accepted without a panic
// and leave a registry that still gathers.
func FuzzObserve(f *testing.F) {
	f.Add("acme", "chat.completions", "finance", "ok", 200, int64(time.Millisecond), 10)
	f.Add("", "", "", "", 0, int64(0), 0)
	f.Add("\xff\xfe", "a\"b\\c\nd", "{}=,", "é", -1, int64(-5), -7)
	m := NewMetrics(nil)
	f.Fuzz(func(t *testing.T, tenant, endpoint, domain, status string, code int, d int64, tokens int) {
		m.ObserveRequest(RequestObs{Tenant: tenant, Endpoint: endpoint, Domain: domain, Status: status, Code: code,
			Route: time.Duration(d), Generate: time.Duration(d), Total: time.Duration(d),
			PromptTokens: tokens, CompletionTokens: tokens})
		m.ObserveRefused(tenant, status)
		m.InFlight(tenant, endpoint)()
		if _, err := m.Registry().Gather(); err != nil {
			t.Fatalf("gather after %q/%q/%q/%q: %v", tenant, endpoint, domain, status, err)
		}
	})
}

// fakeSource is a Source with fixed answers.
type fakeSource struct {
	tenants []string
	plugins map[string]map[string]plugin.Stats // by tenant; missing: error
	models  models.Stats
	memory  plugin.MemoryStats
	remotes map[string][]openai.BackendStatus
}

func (f *fakeSource) RemoteBackends() map[string][]openai.BackendStatus { return f.remotes }

func (f *fakeSource) Tenants() []string { return f.tenants }

func (f *fakeSource) PluginStats(tenant string) (map[string]plugin.Stats, error) {
	s, ok := f.plugins[tenant]
	if !ok {
		return nil, fmt.Errorf("fake: %w %q", errUnknownTenant, tenant)
	}
	return s, nil
}

func (f *fakeSource) ModelStats() models.Stats { return f.models }

func (f *fakeSource) PluginMemory() plugin.MemoryStats { return f.memory }

var errUnknownTenant = errors.New("unknown tenant")

func TestSourceCollector(t *testing.T) {
	src := &fakeSource{
		tenants: []string{"acme", "broken", "zeta"},
		plugins: map[string]map[string]plugin.Stats{
			// The untenanted set: not reported when there are tenants.
			"": {"finance": {Calls: 10, Errors: 3, Traps: 1, Timeouts: 2, HostCalls: 40, Instances: 2, Canceled: 9,
				Throttled: 4, ThrottledTime: 1500 * time.Millisecond}},
			"acme": {
				"finance": {Calls: 5, HostCalls: 7, Instances: 1},
				"medical": {Calls: 1, Errors: 1, Traps: 1},
			},
			"zeta": {},
			// "broken" is absent: PluginStats fails for it.
		},
		models: models.Stats{
			Hits: 100, Misses: 4, Loads: 5, LoadFailures: 1, Evictions: 2, IdleUnloads: 3,
			LoadTime: time.Second, ResidentBytes: 1 << 30, BudgetBytes: 4 << 30,
			Loaded: []models.ModelStat{{Name: "a", State: "ready", Placement: &engine.Placement{GPULayers: 20, Layers: 33}}, {Name: "b", State: "loading"}},
		},
		memory: plugin.MemoryStats{Limit: 2 << 30, Used: 96 << 20, Peak: 128 << 20, Refused: 3},
		remotes: map[string][]openai.BackendStatus{"qwen7b": {
			{URL: "http://a:8000", Healthy: true, Outstanding: 3, Served: 10, Failed: 1},
			{URL: "http://b:8000", Ejected: true, Failed: 4},
		}},
	}
	m := NewMetrics(src)
	want := `
# HELP mdsa_plugin_calls_total Plugin export calls, the describe call at load included.
# TYPE mdsa_plugin_calls_total counter
mdsa_plugin_calls_total{plugin="finance",tenant="acme"} 5
mdsa_plugin_calls_total{plugin="medical",tenant="acme"} 1
# HELP mdsa_plugin_errors_total Plugin calls that failed for any reason.
# TYPE mdsa_plugin_errors_total counter
mdsa_plugin_errors_total{plugin="finance",tenant="acme"} 0
mdsa_plugin_errors_total{plugin="medical",tenant="acme"} 1
# HELP mdsa_plugin_traps_total Plugin calls whose instance trapped or exited.
# TYPE mdsa_plugin_traps_total counter
mdsa_plugin_traps_total{plugin="finance",tenant="acme"} 0
mdsa_plugin_traps_total{plugin="medical",tenant="acme"} 1
# HELP mdsa_plugin_timeouts_total Plugin calls stopped by the call timeout.
# TYPE mdsa_plugin_timeouts_total counter
mdsa_plugin_timeouts_total{plugin="finance",tenant="acme"} 0
mdsa_plugin_timeouts_total{plugin="medical",tenant="acme"} 0
# HELP mdsa_plugin_host_calls_total Host-function calls made by the plugin.
# TYPE mdsa_plugin_host_calls_total counter
mdsa_plugin_host_calls_total{plugin="finance",tenant="acme"} 7
mdsa_plugin_host_calls_total{plugin="medical",tenant="acme"} 0
# HELP mdsa_plugin_instances Plugin instances alive now (in use or idle).
# TYPE mdsa_plugin_instances gauge
mdsa_plugin_instances{plugin="finance",tenant="acme"} 1
mdsa_plugin_instances{plugin="medical",tenant="acme"} 0
# HELP mdsa_plugin_throttled_total Plugin calls and instantiations slowed down for running past plugins.throttle_after.
# TYPE mdsa_plugin_throttled_total counter
mdsa_plugin_throttled_total{plugin="finance",tenant="acme"} 0
mdsa_plugin_throttled_total{plugin="medical",tenant="acme"} 0
# HELP mdsa_plugin_throttled_seconds_total Time throttled plugin calls were made to wait.
# TYPE mdsa_plugin_throttled_seconds_total counter
mdsa_plugin_throttled_seconds_total{plugin="finance",tenant="acme"} 0
mdsa_plugin_throttled_seconds_total{plugin="medical",tenant="acme"} 0
# HELP mdsa_plugin_memory_bytes Linear memory held by all plugin instances (every plugin and tenant), plus the stack reserved by running calls.
# TYPE mdsa_plugin_memory_bytes gauge
mdsa_plugin_memory_bytes 1.00663296e+08
# HELP mdsa_plugin_memory_budget_bytes The most all plugin instances may hold together (plugins.total_memory_mb).
# TYPE mdsa_plugin_memory_budget_bytes gauge
mdsa_plugin_memory_budget_bytes 2.147483648e+09
# HELP mdsa_plugin_memory_refused_total Plugin memory grows and new instances refused because the budget was full.
# TYPE mdsa_plugin_memory_refused_total counter
mdsa_plugin_memory_refused_total 3
# HELP mdsa_model_loads_total Successful model loads.
# TYPE mdsa_model_loads_total counter
mdsa_model_loads_total 5
# HELP mdsa_model_load_failures_total Failed model loads (after the out-of-memory retry).
# TYPE mdsa_model_load_failures_total counter
mdsa_model_load_failures_total 1
# HELP mdsa_model_evictions_total Models unloaded to make room for another.
# TYPE mdsa_model_evictions_total counter
mdsa_model_evictions_total 2
# HELP mdsa_model_idle_unloads_total Models unloaded after their keep-alive ran out.
# TYPE mdsa_model_idle_unloads_total counter
mdsa_model_idle_unloads_total 3
# HELP mdsa_model_hits_total Model requests served by a loaded model.
# TYPE mdsa_model_hits_total counter
mdsa_model_hits_total 100
# HELP mdsa_model_misses_total Model requests that waited for a load.
# TYPE mdsa_model_misses_total counter
mdsa_model_misses_total 4
# HELP mdsa_model_resident_bytes Estimated memory of the models loading, loaded or unloading.
# TYPE mdsa_model_resident_bytes gauge
mdsa_model_resident_bytes 1.073741824e+09
# HELP mdsa_model_budget_bytes Memory budget of the model registry (0: none).
# TYPE mdsa_model_budget_bytes gauge
mdsa_model_budget_bytes 4.294967296e+09
# HELP mdsa_models_loaded Models loading, loaded or unloading (those counted in mdsa_model_resident_bytes).
# TYPE mdsa_models_loaded gauge
mdsa_models_loaded 2
# HELP mdsa_model_gpu_layers Layers of a loaded model that run on a GPU (0: all on the CPU); only for engines that say where they run (llama.cpp).
# TYPE mdsa_model_gpu_layers gauge
mdsa_model_gpu_layers{model="a"} 20
# HELP mdsa_backend_up 1 while a remote inference server takes requests (its health check passes and it is not ejected), else 0.
# TYPE mdsa_backend_up gauge
mdsa_backend_up{backend="http://a:8000",model="qwen7b"} 1
mdsa_backend_up{backend="http://b:8000",model="qwen7b"} 0
# HELP mdsa_backend_outstanding Requests in flight to a remote inference server.
# TYPE mdsa_backend_outstanding gauge
mdsa_backend_outstanding{backend="http://a:8000",model="qwen7b"} 3
mdsa_backend_outstanding{backend="http://b:8000",model="qwen7b"} 0
# HELP mdsa_backend_requests_total Requests a remote inference server answered (result=served) or failed (result=failed).
# TYPE mdsa_backend_requests_total counter
mdsa_backend_requests_total{backend="http://a:8000",model="qwen7b",result="failed"} 1
mdsa_backend_requests_total{backend="http://a:8000",model="qwen7b",result="served"} 10
mdsa_backend_requests_total{backend="http://b:8000",model="qwen7b",result="failed"} 4
mdsa_backend_requests_total{backend="http://b:8000",model="qwen7b",result="served"} 0
`
	names := []string{
		"mdsa_plugin_calls_total", "mdsa_plugin_errors_total", "mdsa_plugin_traps_total",
		"mdsa_plugin_timeouts_total", "mdsa_plugin_host_calls_total", "mdsa_plugin_instances",
		"mdsa_plugin_throttled_total", "mdsa_plugin_throttled_seconds_total",
		"mdsa_plugin_memory_bytes", "mdsa_plugin_memory_budget_bytes", "mdsa_plugin_memory_refused_total",
		"mdsa_model_loads_total", "mdsa_model_load_failures_total", "mdsa_model_evictions_total",
		"mdsa_model_idle_unloads_total", "mdsa_model_hits_total", "mdsa_model_misses_total",
		"mdsa_model_resident_bytes", "mdsa_model_budget_bytes", "mdsa_models_loaded", "mdsa_model_gpu_layers",
		"mdsa_backend_up", "mdsa_backend_outstanding", "mdsa_backend_requests_total",
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// The whole scrape succeeds over HTTP, values read at scrape time.
	src.models.Hits = 101
	src.plugins["acme"]["finance"] = plugin.Stats{Calls: 6}
	body := scrape(t, m)
	for _, line := range []string{
		"mdsa_model_hits_total 101",
		`mdsa_plugin_calls_total{plugin="finance",tenant="acme"} 6`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("scrape lacks %q", line)
		}
	}
	if strings.Contains(body, `tenant="broken"`) {
		t.Error("scrape reports the tenant whose PluginStats failed")
	}
}

func TestSourceCollectorDefaultNameClash(t *testing.T) {
	// With tenants, the untenanted set (the plugins' base instances) is
	// not reported: a tenant configured as "default" is the only one.
	src := &fakeSource{
		tenants: []string{"default"},
		plugins: map[string]map[string]plugin.Stats{
			"":        {"p": {Calls: 1}},
			"default": {"p": {Calls: 2}},
		},
	}
	m := NewMetrics(src)
	want := `
# HELP mdsa_plugin_calls_total Plugin export calls, the describe call at load included.
# TYPE mdsa_plugin_calls_total counter
mdsa_plugin_calls_total{plugin="p",tenant="default"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "mdsa_plugin_calls_total"); err != nil {
		t.Fatal(err)
	}
	// An open server (no tenants) reports its untenanted set as "default".
	src.tenants = nil
	want = strings.Replace(want, "} 2", "} 1", 1)
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "mdsa_plugin_calls_total"); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	m := NewMetrics(nil)
	o := RequestObs{
		Tenant: "acme", Endpoint: "chat.completions", Domain: "finance", Status: "ok", Code: 200,
		Route: 2 * time.Millisecond, Prompt: time.Millisecond, Generate: 1500 * time.Millisecond,
		Validate: 300 * time.Microsecond, Total: 1600 * time.Millisecond,
		PromptTokens: 12, CompletionTokens: 30, CachedTokens: 10,
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveRequest(o)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.ObserveRequest(o)
			}
		})
	})
}
