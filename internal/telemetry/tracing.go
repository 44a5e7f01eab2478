package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Bounds on exporting, so that an unreachable collector costs little: an
// export attempt gives up after exportAttemptTimeout, retries of one batch
// stop after exportRetryFor, and the batch processor abandons a batch after
// batchExportTimeout. Spans that arrive while the queue is full are dropped,
// never waited for.
const (
	exportAttemptTimeout = 5 * time.Second
	exportRetryFor       = 10 * time.Second
	batchExportTimeout   = 15 * time.Second
)

// NewTracerProvider returns a provider exporting spans over OTLP/HTTP to
// endpoint ("host:port", or a URL http(s)://host:port[/path]); "" returns a
// no-op provider. service names the resource (service.name), version sets
// service.version when not empty; OTEL_RESOURCE_ATTRIBUTES adds further
// attributes. shutdown flushes and stops the exporter (bounded by its ctx).
//
// A plain "host:port" is reached over HTTP (no TLS); give an https:// URL
// for TLS. A URL without a path posts to /v1/traces, with a path to that
// path as given. Spans are sent by a batch span processor in the
// background: an unreachable collector never blocks nor fails the code
// creating spans, and export errors go to otel's error handler only.
//
// The provider is not installed globally; the caller decides whether to
// call otel.SetTracerProvider.
func NewTracerProvider(ctx context.Context, endpoint, service, version string) (trace.TracerProvider, func(context.Context) error, error) {
	if strings.TrimSpace(endpoint) == "" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	opts, err := endpointOptions(endpoint)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts,
		otlptracehttp.WithTimeout(exportAttemptTimeout),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{
			Enabled:         true,
			InitialInterval: 500 * time.Millisecond,
			MaxInterval:     5 * time.Second,
			MaxElapsedTime:  exportRetryFor,
		}),
	)
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: OTLP/HTTP trace exporter for %q: %w", endpoint, err)
	}

	attrs := []attribute.KeyValue{attribute.String("service.name", service)}
	if version != "" {
		attrs = append(attrs, attribute.String("service.version", version))
	}
	res, err := resource.New(ctx,
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...), // last: service wins over the environment
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, nil, fmt.Errorf("telemetry: trace resource for service %q: %w", service, err)
	}

	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(exp, sdktrace.WithExportTimeout(batchExportTimeout)),
	)
	shutdown := func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("telemetry: shut down tracer provider (exporting to %q): %w", endpoint, err)
		}
		return nil
	}
	return tp, shutdown, nil
}

// endpointOptions turns "host:port" or "http(s)://host:port[/path]" into
// exporter options. Options are always given explicitly, so they take
// precedence over the OTEL_EXPORTER_OTLP_* environment variables.
func endpointOptions(endpoint string) ([]otlptracehttp.Option, error) {
	endpoint = strings.TrimSpace(endpoint)
	if !strings.Contains(endpoint, "://") {
		if _, _, err := net.SplitHostPort(endpoint); err != nil {
			return nil, fmt.Errorf("telemetry: OTLP endpoint %q: want host:port or http(s)://host:port[/path]: %w", endpoint, err)
		}
		return []otlptracehttp.Option{otlptracehttp.WithEndpoint(endpoint), otlptracehttp.WithInsecure()}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP endpoint %q: %w", endpoint, err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("telemetry: OTLP endpoint %q: want http(s)://host:port[/path] (no user, query or fragment)", endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
	switch u.Scheme {
	case "http":
		opts = append(opts, otlptracehttp.WithInsecure())
	case "https":
	default:
		return nil, fmt.Errorf("telemetry: OTLP endpoint %q: scheme %q is not http or https", endpoint, u.Scheme)
	}
	if u.Path != "" && u.Path != "/" {
		opts = append(opts, otlptracehttp.WithURLPath(u.Path))
	}
	return opts, nil
}
