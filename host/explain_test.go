package host

import (
	"context"
	"reflect"
	"testing"
)

func TestExplainMatchesRoute(t *testing.T) {
	h := newHost(t, WithEngine(&fakeEngine{text: "x"}))
	ctx := context.Background()
	for _, q := range []string{"I was charged twice and want a refund for my order", "Give me a recipe for banana bread"} {
		want := h.Route(ctx, q)
		e, err := h.Explain(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(e.Decision, want) || len(e.Alternatives) != len(want.Alternatives) || e.Reason == "" {
			t.Fatalf("%q: explained %+v, routed %+v", q, e, want)
		}
		tn, err := h.Tenant("")
		if err != nil {
			t.Fatal(err)
		}
		te, err := tn.Explain(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(te.Decision, want) {
			t.Fatalf("%q: tenant explained %+v, routed %+v", q, te.Decision, want)
		}
	}
	if d := h.Route(ctx, "I was charged twice and want a refund for my order"); d.Domain != "support" {
		t.Fatalf("routed %+v", d)
	}
}
