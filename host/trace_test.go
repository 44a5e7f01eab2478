package host

import (
	"context"
	"slices"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestSpansPerStage(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := newHost(t, WithEngine(&fakeEngine{}), WithTracerProvider(tp))
	res, err := h.Process(context.Background(), Request{Query: "I was charged twice for my order, can I get a refund?"})
	if err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	var names []string
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		names = append(names, s.Name())
		if s.Name() == "mdsa.request" {
			root = s
		}
	}
	for _, want := range []string{"mdsa.request", "mdsa.route", "mdsa.prompt", "mdsa.generate", "mdsa.validate"} {
		if !slices.Contains(names, want) {
			t.Fatalf("span %s missing; have %v", want, names)
		}
	}
	for _, s := range spans {
		if s.Name() != "mdsa.request" && s.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("span %s is not a child of mdsa.request", s.Name())
		}
	}
	attrs := map[string]string{}
	for _, a := range root.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["mdsa.domain"] != res.Domain || attrs["mdsa.request_id"] != res.RequestID || attrs["mdsa.status"] != string(res.Status) {
		t.Fatalf("request span attributes %v for %+v", attrs, res)
	}
}
