package router

import (
	"context"
	"strings"
)

// Conversation-aware routing. A follow-up such as "and what about the fees
// on that?" says little alone; the turns before it say which domain the
// conversation is in. RouteConversation keeps a follow-up in that domain
// unless the query alone clearly belongs to another.

// ConversationOptions tune RouteConversation; zero values take the
// defaults.
type ConversationOptions struct {
	// Switch is the confidence the query alone needs to take the
	// conversation to another domain (default DefaultSwitch).
	Switch float64
	// Turns is how many of the latest earlier user turns give the
	// context (default 2).
	Turns int
	// MaxContextBytes bounds the context text routed (default 4096; the
	// latest text is kept).
	MaxContextBytes int
}

// DefaultSwitch is ConversationOptions.Switch's default, chosen on a
// development set of dialogues (never the test set).
const DefaultSwitch = 0.7

// Conversation reasons.
const (
	// ConvNoHistory: no earlier user turn; the query alone decided.
	ConvNoHistory = "no_history"
	// ConvNoContext: the earlier turns route to no domain; the query
	// alone decided.
	ConvNoContext = "no_context"
	// ConvSame: the query alone routes to the conversation's domain.
	ConvSame = "same_domain"
	// ConvSwitched: the query alone clearly belongs to another domain.
	ConvSwitched = "switched"
	// ConvFollowUp: the query alone is ambiguous or out of scope; it
	// stays in the conversation's domain.
	ConvFollowUp = "follow_up"
)

// Conversation says how the earlier turns weighed in a routing decision.
type Conversation struct {
	// Prior is the domain the earlier user turns route to ("" when they
	// route to none), with its confidence.
	Prior           string  `json:"prior"`
	PriorConfidence float64 `json:"prior_confidence"`
	// Alone is where the query routes on its own ("" out of scope), with
	// its confidence.
	Alone           string  `json:"alone"`
	AloneConfidence float64 `json:"alone_confidence"`
	// Reason is one of the Conv* constants.
	Reason string `json:"reason"`
	// Switch is the confidence the query alone needed to switch.
	Switch float64 `json:"switch"`
}

// RouteConversation routes query, the latest user turn of a conversation
// whose earlier user turns are history (oldest first).
func RouteConversation(ctx context.Context, r Router, query string, history []string, o ConversationOptions) (Decision, Conversation) {
	if o.Switch <= 0 {
		o.Switch = DefaultSwitch
	}
	if o.Turns <= 0 {
		o.Turns = 2
	}
	if o.MaxContextBytes <= 0 {
		o.MaxContextBytes = 4096
	}
	alone := r.Route(ctx, query)
	conv := Conversation{Alone: alone.Domain, AloneConfidence: alone.Confidence, Switch: o.Switch}
	var turns []string
	for i := len(history) - 1; i >= 0 && len(turns) < o.Turns; i-- {
		if t := strings.TrimSpace(history[i]); t != "" {
			turns = append(turns, t)
		}
	}
	if len(turns) == 0 {
		conv.Reason = ConvNoHistory
		return alone, conv
	}
	var b strings.Builder
	for i := len(turns) - 1; i >= 0; i-- {
		b.WriteString(turns[i])
		b.WriteByte('\n')
	}
	context := b.String()
	if len(context) > o.MaxContextBytes {
		cut := len(context) - o.MaxContextBytes
		for cut < len(context) && context[cut]&0xC0 == 0x80 {
			cut++ // not inside a rune
		}
		context = context[cut:]
	}
	prior := r.Route(ctx, context)
	conv.Prior, conv.PriorConfidence = prior.Domain, prior.Confidence
	switch {
	case prior.OutOfScope:
		conv.Reason = ConvNoContext
		return alone, conv
	case !alone.OutOfScope && alone.Domain == prior.Domain:
		conv.Reason = ConvSame
		return alone, conv
	case !alone.OutOfScope && alone.Confidence >= o.Switch:
		conv.Reason = ConvSwitched
		return alone, conv
	}
	conv.Reason = ConvFollowUp
	// The query read with its context: its scores, if they agree on the
	// conversation's domain; else the context's own.
	with := r.Route(ctx, context+query)
	if !with.OutOfScope && with.Domain == prior.Domain {
		return with, conv
	}
	return prior, conv
}
