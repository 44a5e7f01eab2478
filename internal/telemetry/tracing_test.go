package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestTracerProviderEmptyIsNoop(t *testing.T) {
	tp, shutdown, err := NewTracerProvider(context.Background(), "", "mdsa", "v0")
	if err != nil {
		t.Fatalf("NewTracerProvider(\"\"): %v", err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "op")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Fatal("span from the empty-endpoint provider records or has a valid context")
	}
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatalf("no-op shutdown: %v", err)
	}
}

// otlpRequest is one request received by the fake collector.
type otlpRequest struct {
	path, contentType string
	body              []byte
}

// fakeCollector accepts OTLP/HTTP posts and hands them to the test.
func fakeCollector(t *testing.T) (*httptest.Server, <-chan otlpRequest) {
	t.Helper()
	ch := make(chan otlpRequest, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case ch <- otlpRequest{path: r.URL.Path, contentType: r.Header.Get("Content-Type"), body: body}:
		default:
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func TestTracerProviderExportsOverOTLPHTTP(t *testing.T) {
	srv, got := fakeCollector(t)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		name, endpoint, path string
	}{
		{"host:port", hostPort, "/v1/traces"},
		{"url", srv.URL, "/v1/traces"},
		{"url with slash", srv.URL + "/", "/v1/traces"},
		{"url with path", srv.URL + "/otlp/spans", "/otlp/spans"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			tp, shutdown, err := NewTracerProvider(ctx, tc.endpoint, "mdsa-test", "1.2.3")
			if err != nil {
				t.Fatalf("NewTracerProvider(%q): %v", tc.endpoint, err)
			}
			_, span := tp.Tracer("telemetry-test").Start(ctx, "chat.completions")
			if !span.IsRecording() {
				t.Fatal("span is not recording")
			}
			span.End()
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			var req otlpRequest
			select {
			case req = <-got:
			default:
				t.Fatal("no OTLP request reached the collector by the end of shutdown")
			}
			if req.path != tc.path {
				t.Fatalf("path %q, want %q", req.path, tc.path)
			}
			if req.contentType != "application/x-protobuf" {
				t.Fatalf("Content-Type %q, want application/x-protobuf", req.contentType)
			}
			var export coltracepb.ExportTraceServiceRequest
			if err := proto.Unmarshal(req.body, &export); err != nil {
				t.Fatalf("decode export request: %v", err)
			}
			attrs := map[string]string{}
			var spans []string
			for _, rs := range export.GetResourceSpans() {
				for _, kv := range rs.GetResource().GetAttributes() {
					attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
				}
				for _, ss := range rs.GetScopeSpans() {
					for _, s := range ss.GetSpans() {
						spans = append(spans, s.GetName())
					}
				}
			}
			if len(spans) != 1 || spans[0] != "chat.completions" {
				t.Fatalf("spans %v, want [chat.completions]", spans)
			}
			if attrs["service.name"] != "mdsa-test" || attrs["service.version"] != "1.2.3" {
				t.Fatalf("resource attributes %v, want service.name mdsa-test and service.version 1.2.3", attrs)
			}
		})
	}
}

func TestTracerProviderUnreachableDoesNotBlock(t *testing.T) {
	ctx := context.Background()
	tp, shutdown, err := NewTracerProvider(ctx, "127.0.0.1:1", "mdsa-test", "")
	if err != nil {
		t.Fatalf("NewTracerProvider: %v", err)
	}
	tr := tp.Tracer("telemetry-test")
	start := time.Now()
	for i := 0; i < 5000; i++ { // more than the queue holds: extra spans are dropped, not waited for
		_, span := tr.Start(ctx, "op")
		span.End()
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("creating spans took %v with an unreachable collector", d)
	}
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	_ = shutdown(sctx) // may report the export failure or the deadline; must not hang
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %v with a 200ms context", d)
	}
}

func TestTracerProviderBadEndpoint(t *testing.T) {
	for _, ep := range []string{
		"localhost",             // no port
		"ftp://localhost:4318",  // scheme
		"http://",               // no host
		"http://u:p@host:4318",  // credentials in the URL
		"http://host:4318/?a=b", // query
		"http://[::1",           // unparsable
	} {
		tp, shutdown, err := NewTracerProvider(context.Background(), ep, "mdsa", "")
		if err == nil {
			_ = shutdown(context.Background())
			t.Errorf("NewTracerProvider(%q): no error (provider %T)", ep, tp)
			continue
		}
		if !strings.Contains(err.Error(), "telemetry:") {
			t.Errorf("NewTracerProvider(%q): error %q does not say where", ep, err)
		}
	}
}

func TestTracerProviderHangingCollectorShutdownBounded(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select { // never answers until the test ends
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets srv.Close finish

	ctx := context.Background()
	tp, shutdown, err := NewTracerProvider(ctx, srv.URL, "mdsa-test", "")
	if err != nil {
		t.Fatalf("NewTracerProvider: %v", err)
	}
	_, span := tp.Tracer("telemetry-test").Start(ctx, "op")
	span.End()
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = shutdown(sctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %v with a 300ms context and a hanging collector", d)
	}
	if err == nil {
		t.Fatal("shutdown reported success although the collector never answered")
	}
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the export never reached the collector")
	}
}
