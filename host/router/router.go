// Package router decides which domain a query belongs to, how sure it is,
// and when a query belongs to no domain at all.
//
// The Router interface is what the host depends on; New builds v0, a small
// lexical router learned from the keywords and example utterances that the
// plugins declare. A later router replaces the algorithm behind the same
// interface.
package router

import (
	"errors"
	"fmt"
	"slices"
)

// Domain is what a plugin teaches the router.
type Domain struct {
	Name     string
	Keywords []string
	Examples []string
}

// Scored is a domain with its score in [0, 1].
type Scored struct {
	Domain string  `json:"domain"`
	Score  float64 `json:"score"`
}

// Decision is the router's answer for one query.
type Decision struct {
	// Domain is the best domain, or "" when OutOfScope.
	Domain string `json:"domain"`
	// Confidence of Domain in [0, 1].
	Confidence float64 `json:"confidence"`
	// OutOfScope is true when no domain reaches the threshold.
	OutOfScope bool `json:"out_of_scope"`
	// Alternatives are the best domains, best first (Domain included).
	Alternatives []Scored `json:"alternatives"`
}

// Router routes queries. Implementations are safe for concurrent use and
// immutable: a change of domains builds a new Router.
type Router interface {
	Route(query string) Decision
	// Domains lists the domain names the router knows, sorted.
	Domains() []string
}

// Options tune a router.
type Options struct {
	// Threshold is the confidence under which a query is out of scope.
	Threshold float64
	// TopK is how many alternatives a Decision lists (default 3).
	TopK int
}

// New builds the v0 router from domains.
func New(domains []Domain, opts Options) (Router, error) {
	if opts.Threshold < 0 || opts.Threshold > 1 {
		return nil, fmt.Errorf("router: threshold %g out of range [0, 1]", opts.Threshold)
	}
	if opts.TopK <= 0 {
		opts.TopK = 3
	}
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
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return newLexical(domains, opts), nil
}

func sortedNames(domains []Domain) []string {
	names := make([]string, len(domains))
	for i, d := range domains {
		names[i] = d.Name
	}
	slices.Sort(names)
	return names
}
