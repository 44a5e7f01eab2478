package router

import (
	"context"
	"strings"
	"testing"
)

// mapRouter routes by the last line of the text it is given (the query
// read with its context ends with the query), then by a table.
type mapRouter map[string]Decision

func (m mapRouter) Route(_ context.Context, q string) Decision {
	if d, ok := m[q]; ok {
		return d
	}
	return Decision{OutOfScope: true}
}

func (m mapRouter) Domains() []string { return nil }

func in(domain string, conf float64) Decision {
	return Decision{Domain: domain, Confidence: conf, Alternatives: []Scored{{Domain: domain, Score: conf}}}
}

func TestRouteConversationReasons(t *testing.T) {
	ctx := context.Background()
	r := mapRouter{
		"my loan rate went up":                               in("finance", 0.95),
		"my loan rate went up\n":                             in("finance", 0.95),
		"what about the fees on that?":                       in("support", 0.40),
		"my loan rate went up\nwhat about the fees on that?": in("finance", 0.7),
		"and after that?":                                    {OutOfScope: true, Confidence: 0.1},
		"my laptop will not boot, blue screen again":         in("technical", 0.97),
		"should I refinance it?":                             in("finance", 0.9),
		"hello there\n":                                      {OutOfScope: true},
	}
	o := ConversationOptions{Switch: 0.8}
	cases := []struct {
		query   string
		history []string
		domain  string
		reason  string
	}{
		{"my loan rate went up", nil, "finance", ConvNoHistory},
		{"what about the fees on that?", []string{"my loan rate went up"}, "finance", ConvFollowUp},
		{"and after that?", []string{"my loan rate went up"}, "finance", ConvFollowUp},
		{"my laptop will not boot, blue screen again", []string{"my loan rate went up"}, "technical", ConvSwitched},
		{"should I refinance it?", []string{"my loan rate went up"}, "finance", ConvSame},
		{"what about the fees on that?", []string{"hello there"}, "support", ConvNoContext},
		{"what about the fees on that?", []string{"", "  "}, "support", ConvNoHistory},
	}
	for _, c := range cases {
		d, conv := RouteConversation(ctx, r, c.query, c.history, o)
		if d.Domain != c.domain || conv.Reason != c.reason {
			t.Errorf("%q after %q: %q (%s), want %q (%s)", c.query, c.history, d.Domain, conv.Reason, c.domain, c.reason)
		}
	}
	// The query read with its context agrees: its scores are kept.
	d, conv := RouteConversation(ctx, r, "what about the fees on that?", []string{"my loan rate went up"}, o)
	if d.Confidence != 0.7 || conv.Prior != "finance" || conv.Alone != "support" || conv.AloneConfidence != 0.4 || conv.Switch != 0.8 {
		t.Errorf("follow-up: %+v %+v", d, conv)
	}
}

func TestRouteConversationBoundsContext(t *testing.T) {
	var seen []string
	r := recordRouter{seen: &seen}
	long := strings.Repeat("é", 10000)
	RouteConversation(context.Background(), r, "q", []string{"old", long, "latest"}, ConversationOptions{Turns: 2, MaxContextBytes: 1000})
	for _, s := range seen {
		if len(s) > 1000+len("q") || strings.Contains(s, "old") {
			t.Fatalf("routed %d bytes (old turn included: %v)", len(s), strings.Contains(s, "old"))
		}
		if !strings.HasSuffix(strings.TrimSuffix(s, "q"), "latest\n") && s != "q" {
			t.Fatalf("the latest turn is not kept: ...%q", s[max(0, len(s)-20):])
		}
	}
}

type recordRouter struct{ seen *[]string }

func (r recordRouter) Route(_ context.Context, q string) Decision {
	*r.seen = append(*r.seen, q)
	return in("finance", 0.5)
}

func (r recordRouter) Domains() []string { return nil }

// With the hybrid router: a follow-up with no domain words stays in the
// conversation's domain; a clear new question switches.
func TestRouteConversationHybrid(t *testing.T) {
	r := mustNew(t, Options{Threshold: 0.3})
	ctx := context.Background()
	hist := []string{"I was charged twice for my order and want a refund"}
	if d, conv := RouteConversation(ctx, r, "how long will that take?", hist, ConversationOptions{}); d.Domain != "support" || conv.Reason == ConvSwitched {
		t.Errorf("follow-up: %+v %+v", d, conv)
	}
	if d, conv := RouteConversation(ctx, r, "I have a fever and a bad headache, should I see a doctor?", hist, ConversationOptions{}); d.Domain != "medical" || conv.Reason != ConvSwitched {
		t.Errorf("switch: %+v %+v", d, conv)
	}
}
