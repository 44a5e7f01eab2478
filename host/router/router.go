// Package router decides which domain a query belongs to, how sure it is,
// and when a query belongs to no domain at all.
//
// New learns a hybrid router from the keywords and example utterances that
// plugins declare: a multinomial logistic regression over TF-IDF word,
// word-bigram and character n-gram features (or nearest-centroid scores when
// there are too many domains for a dense model), nearest-example similarity
// through an inverted index, keyword evidence and, when an Embedder is
// given, cosine similarity to embedded examples. The scores are fused and
// the best one is turned into a calibrated confidence (Platt scaling fitted
// on held-out examples, or on labelled samples given to Calibrate). Under
// the threshold of its domain a query is out of scope.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
)

// Domain is what a plugin teaches the router.
type Domain struct {
	Name     string
	Keywords []string
	Examples []string
}

// Scored is a domain with its calibrated score in [0, 1].
type Scored struct {
	Domain string  `json:"domain"`
	Score  float64 `json:"score"`
}

// Decision is the router's answer for one query.
type Decision struct {
	// Domain is the chosen domain, or "" when OutOfScope.
	Domain string `json:"domain"`
	// Confidence is the calibrated probability that the best candidate
	// (Alternatives[0]) is the right domain for the query, in [0, 1]. It is
	// set even when the query is out of scope.
	Confidence float64 `json:"confidence"`
	// OutOfScope is true when the best candidate's confidence is under the
	// threshold of its domain, or the query has no evidence at all.
	OutOfScope bool `json:"out_of_scope"`
	// Alternatives are the best candidates, best first.
	Alternatives []Scored `json:"alternatives"`
}

// Router routes queries. Implementations are safe for concurrent use and
// immutable: a change of domains builds a new Router.
type Router interface {
	Route(ctx context.Context, query string) Decision
	// Domains lists the domain names the router knows, sorted.
	Domains() []string
}

// Explainer is a Router that can say why it routes a query where it does,
// for an operator console. Explain's Decision is the one Route makes for
// the same query.
type Explainer interface {
	Explain(ctx context.Context, query string) Explanation
}

// Embedder turns texts into vectors; engine.Engine's Embed has this shape.
type Embedder interface {
	Embed(ctx context.Context, inputs []string) ([][]float32, error)
}

// Options tune a router.
type Options struct {
	// Threshold is the confidence under which a query is out of scope.
	Threshold float64
	// DomainThresholds override Threshold for some domains (a stricter
	// medical domain, say).
	DomainThresholds map[string]float64
	// TopK is how many alternatives a Decision lists (default 3).
	TopK int
	// Embedder, when set, adds the embedding stage: examples are embedded
	// once at New, queries at Route. A failing Embed falls back to the
	// lexical scores for that query.
	Embedder Embedder
	// Background are utterances that belong to no domain (DefaultBackground
	// is a built-in set). They train an extra class that pulls out-of-scope
	// queries away from the domains. Utterances that share a keyword with a
	// domain or look too much like one of its examples are left out.
	Background []string
	// Logger receives build reports and embedding failures (default: discard).
	Logger *slog.Logger
	// Seed makes training reproducible (default 1).
	Seed uint64
	// MaxDomainFeatures bounds what one domain adds to training: its
	// keywords, then its examples, are taken in order while the distinct
	// features (words and word pairs) they bring fit (default
	// DefaultMaxDomainFeatures); the rest are left out, logged, and counted
	// in Info.LeftOut. Training cost grows with the features: one manifest
	// within the ABI's caps (1,024 keywords, 880 examples of 900 bytes of
	// distinct words) took 11 s and 588 MB to train without the bound.
	MaxDomainFeatures int

	// linearCells overrides maxLinearCells (tests).
	linearCells int
}

// Sample is a labelled query: Domain "" means it belongs to no domain.
type Sample struct {
	Query  string `json:"query"`
	Domain string `json:"domain"`
}

func (o *Options) check(names []string) error {
	var errs []error
	if o.Threshold < 0 || o.Threshold > 1 {
		errs = append(errs, fmt.Errorf("router: threshold %g out of range [0, 1]", o.Threshold))
	}
	for d, th := range o.DomainThresholds {
		if th < 0 || th > 1 {
			errs = append(errs, fmt.Errorf("router: threshold %g for domain %q out of range [0, 1]", th, d))
		}
		if _, ok := slices.BinarySearch(names, d); !ok {
			errs = append(errs, fmt.Errorf("router: threshold for unknown domain %q (have %v)", d, names))
		}
	}
	if o.TopK <= 0 {
		o.TopK = 3
	}
	if o.linearCells == 0 {
		o.linearCells = maxLinearCells
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

func checkDomains(domains []Domain) error {
	seen := map[string]bool{}
	var errs []error
	for _, d := range domains {
		switch {
		case d.Name == "":
			errs = append(errs, errors.New("router: a domain has no name"))
		case seen[d.Name]:
			errs = append(errs, fmt.Errorf("router: domain %q declared twice", d.Name))
		case len(d.Keywords) == 0 && len(d.Examples) == 0:
			errs = append(errs, fmt.Errorf("router: domain %q has neither keywords nor examples", d.Name))
		}
		seen[d.Name] = true
	}
	return errors.Join(errs...)
}
