package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdsa-go/mdsa/host/plugin"
)

// sourceCollector reads a Source at every scrape; it keeps no state and
// runs no goroutine of its own.
type sourceCollector struct {
	src Source

	pluginCalls     *prometheus.Desc
	pluginErrors    *prometheus.Desc
	pluginTraps     *prometheus.Desc
	pluginTimeouts  *prometheus.Desc
	pluginHostCalls *prometheus.Desc
	pluginInstances *prometheus.Desc
	pluginThrottled *prometheus.Desc
	pluginThrottleS *prometheus.Desc
	pluginMemory    *prometheus.Desc
	pluginMemLimit  *prometheus.Desc
	pluginMemRefuse *prometheus.Desc

	modelLoads        *prometheus.Desc
	modelLoadFailures *prometheus.Desc
	modelEvictions    *prometheus.Desc
	modelIdleUnloads  *prometheus.Desc
	modelHits         *prometheus.Desc
	modelMisses       *prometheus.Desc
	modelResident     *prometheus.Desc
	modelBudget       *prometheus.Desc
	modelsLoaded      *prometheus.Desc
	modelGPULayers    *prometheus.Desc

	backendUp          *prometheus.Desc
	backendOutstanding *prometheus.Desc
	backendRequests    *prometheus.Desc
}

func newSourceCollector(src Source) *sourceCollector {
	pl := []string{"tenant", "plugin"}
	pd := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "plugin", name), help, pl, nil)
	}
	md := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, nil, nil)
	}
	bl := []string{"model", "backend"}
	bd := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "backend", name), help, append(bl, extra...), nil)
	}
	return &sourceCollector{
		backendUp:          bd("up", "1 while a remote inference server takes requests (its health check passes and it is not ejected), else 0."),
		backendOutstanding: bd("outstanding", "Requests in flight to a remote inference server."),
		backendRequests:    bd("requests_total", "Requests a remote inference server answered (result=served) or failed (result=failed).", "result"),
		src:                src,
		pluginCalls:        pd("calls_total", "Plugin export calls, the describe call at load included."),
		pluginErrors:       pd("errors_total", "Plugin calls that failed for any reason."),
		pluginTraps:        pd("traps_total", "Plugin calls whose instance trapped or exited."),
		pluginTimeouts:     pd("timeouts_total", "Plugin calls stopped by the call timeout."),
		pluginHostCalls:    pd("host_calls_total", "Host-function calls made by the plugin."),
		pluginInstances:    pd("instances", "Plugin instances alive now (in use or idle)."),
		pluginThrottled:    pd("throttled_total", "Plugin calls and instantiations slowed down for running past plugins.throttle_after."),
		pluginThrottleS:    pd("throttled_seconds_total", "Time throttled plugin calls were made to wait."),
		pluginMemory:       md("plugin_memory_bytes", "Linear memory held by all plugin instances (every plugin and tenant), plus the stack reserved by running calls."),
		pluginMemLimit:     md("plugin_memory_budget_bytes", "The most all plugin instances may hold together (plugins.total_memory_mb)."),
		pluginMemRefuse:    md("plugin_memory_refused_total", "Plugin memory grows and new instances refused because the budget was full."),

		modelLoads:        md("model_loads_total", "Successful model loads."),
		modelLoadFailures: md("model_load_failures_total", "Failed model loads (after the out-of-memory retry)."),
		modelEvictions:    md("model_evictions_total", "Models unloaded to make room for another."),
		modelIdleUnloads:  md("model_idle_unloads_total", "Models unloaded after their keep-alive ran out."),
		modelHits:         md("model_hits_total", "Model requests served by a loaded model."),
		modelMisses:       md("model_misses_total", "Model requests that waited for a load."),
		modelResident:     md("model_resident_bytes", "Estimated memory of the models loading, loaded or unloading."),
		modelBudget:       md("model_budget_bytes", "Memory budget of the model registry (0: none)."),
		modelsLoaded:      md("models_loaded", "Models loading, loaded or unloading (those counted in mdsa_model_resident_bytes)."),
		modelGPULayers: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "model", "gpu_layers"),
			"Layers of a loaded model that run on a GPU (0: all on the CPU); only for engines that say where they run (llama.cpp).", []string{"model"}, nil),
	}
}

// Describe sends every descriptor the collector can emit.
func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.pluginCalls, c.pluginErrors, c.pluginTraps, c.pluginTimeouts, c.pluginHostCalls, c.pluginInstances,
		c.pluginThrottled, c.pluginThrottleS, c.pluginMemory, c.pluginMemLimit, c.pluginMemRefuse,
		c.modelLoads, c.modelLoadFailures, c.modelEvictions, c.modelIdleUnloads, c.modelHits, c.modelMisses,
		c.modelResident, c.modelBudget, c.modelsLoaded, c.modelGPULayers,
		c.backendUp, c.backendOutstanding, c.backendRequests,
	} {
		ch <- d
	}
}

// Collect reads the Source: each configured tenant, or the untenanted set
// when there are none. A tenant whose PluginStats fails is skipped (it may
// have been removed by a reload between Tenants and PluginStats); so is a
// second tenant that maps to an already reported label.
func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	seen := make(map[string]bool)
	// The untenanted set serves traffic only on an open server (no
	// tenants); with tenants it holds the plugins' base instances, which
	// would show as a tenant "default" that no one configured.
	tenants := c.src.Tenants()
	if len(tenants) == 0 {
		tenants = []string{""}
	}
	for _, t := range tenants {
		label := tenantLabel(t)
		if seen[label] {
			continue
		}
		stats, err := c.src.PluginStats(t)
		if err != nil {
			continue
		}
		seen[label] = true
		for name, s := range stats {
			c.collectPlugin(ch, label, labelValue(name), s)
		}
	}

	mem := c.src.PluginMemory()
	emit(ch, c.pluginMemory, prometheus.GaugeValue, float64(mem.Used))
	emit(ch, c.pluginMemLimit, prometheus.GaugeValue, float64(mem.Limit))
	emit(ch, c.pluginMemRefuse, prometheus.CounterValue, float64(mem.Refused))

	ms := c.src.ModelStats()
	counter := func(d *prometheus.Desc, v int64) { emit(ch, d, prometheus.CounterValue, float64(v)) }
	gauge := func(d *prometheus.Desc, v int64) { emit(ch, d, prometheus.GaugeValue, float64(v)) }
	counter(c.modelLoads, ms.Loads)
	counter(c.modelLoadFailures, ms.LoadFailures)
	counter(c.modelEvictions, ms.Evictions)
	counter(c.modelIdleUnloads, ms.IdleUnloads)
	counter(c.modelHits, ms.Hits)
	counter(c.modelMisses, ms.Misses)
	gauge(c.modelResident, ms.ResidentBytes)
	gauge(c.modelBudget, ms.BudgetBytes)
	gauge(c.modelsLoaded, int64(len(ms.Loaded)))
	for _, m := range ms.Loaded {
		if m.Placement != nil {
			emit(ch, c.modelGPULayers, prometheus.GaugeValue, float64(m.Placement.GPULayers), labelValue(m.Name))
		}
	}

	for model, bs := range c.src.RemoteBackends() {
		m := labelValue(model)
		for _, b := range bs {
			up := 0.0
			if b.Healthy {
				up = 1
			}
			u := labelValue(b.URL)
			emit(ch, c.backendUp, prometheus.GaugeValue, up, m, u)
			emit(ch, c.backendOutstanding, prometheus.GaugeValue, float64(b.Outstanding), m, u)
			emit(ch, c.backendRequests, prometheus.CounterValue, float64(b.Served), m, u, "served")
			emit(ch, c.backendRequests, prometheus.CounterValue, float64(b.Failed), m, u, "failed")
		}
	}
}

func (c *sourceCollector) collectPlugin(ch chan<- prometheus.Metric, tenant, name string, s plugin.Stats) {
	counter := func(d *prometheus.Desc, v uint64) {
		emit(ch, d, prometheus.CounterValue, float64(v), tenant, name)
	}
	counter(c.pluginCalls, s.Calls)
	counter(c.pluginErrors, s.Errors)
	counter(c.pluginTraps, s.Traps)
	counter(c.pluginTimeouts, s.Timeouts)
	counter(c.pluginHostCalls, s.HostCalls)
	counter(c.pluginThrottled, s.Throttled)
	emit(ch, c.pluginThrottleS, prometheus.CounterValue, s.ThrottledTime.Seconds(), tenant, name)
	emit(ch, c.pluginInstances, prometheus.GaugeValue, float64(s.Instances), tenant, name)
}

// emit sends one constant metric; label values are already valid, so an
// error cannot happen, and would only drop this one sample.
func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	if m, err := prometheus.NewConstMetric(d, t, v, labels...); err == nil {
		ch <- m
	}
}
