// Package telemetry is the observability layer of `mdsa serve`: Prometheus
// metrics for requests, refusals and in-flight work, metrics read from the
// running host (plugins and the model registry) at scrape time, and an
// OpenTelemetry tracer provider that exports spans over OTLP/HTTP.
//
// The package does not import package host; it reads the host through the
// small Source interface, which *host.Host satisfies.
//
// Every Metrics value owns its own prometheus.Registry (never the global
// default one), so several servers, or tests, can run in one process.
//
// Label values given to Metrics must come from small, bounded sets
// (configured tenant names, fixed endpoint names, plugin names, statuses,
// HTTP codes): every distinct combination is a new time series. An empty
// tenant is reported as "default" and an empty domain as "none".
package telemetry
