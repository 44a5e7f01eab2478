package sdk

import (
	"fmt"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Check is what a Validator looks at: the request and the current response.
// A validator that revises the answer (redaction, an added disclaimer)
// assigns the new text to Response; validators later in the list see the
// revised text, and the validate export returns it as the revised response.
// A Check is valid only during the validation: the validate export reuses
// it for the next request, so validators must not keep a pointer to it
// (its strings may be kept).
type Check struct {
	Query    string // the user's query
	Domain   string // the domain the host routed the query to
	Response string // the answer as revised so far

	// Word analyses shared by the validators; recomputed when the text
	// changes.
	resp, query textCache

	// Storage for the built-in validators' reports: one allocation per
	// Check instead of one per report. Slots are never reused, so a report
	// stays valid while the Check lives.
	issues  [4]abi.Issue
	nIssues int
	// collected holds Evaluate's result, for up to 4 issues.
	collected [4]abi.Issue
}

func (c *Check) responseAnalysis() *analysis { return c.resp.get(c.Response) }
func (c *Check) responseWords() []tok        { return c.resp.get(c.Response).words }
func (c *Check) queryWords() []tok           { return c.query.get(c.Query).words }

// Validator checks one property of a response. Build one with the
// constructors in this package (MaxLength, RequireDisclaimer, RedactPII, ...)
// or directly:
//
//	sdk.Validator{Name: "no_urls", Check: func(c *sdk.Check) []abi.Issue { ... }}
//
// Check must not panic on any input and should return nil when it finds
// nothing.
type Validator struct {
	Name  string
	Check func(c *Check) []abi.Issue
	err   error // set by constructors given bad arguments; Register reports it
}

// invalid returns a Validator that makes registration fail with err.
func invalid(name string, err error) Validator {
	return Validator{Name: name, err: fmt.Errorf("validator %s: %w", name, err)}
}

func (v Validator) validate() error {
	if v.err != nil {
		return v.err
	}
	if v.Check == nil {
		return fmt.Errorf("validator %q: Check is nil", v.Name)
	}
	return nil
}

// Penalties applied to the score for each issue, by severity.
const (
	PenaltyError   = 0.5
	PenaltyWarning = 0.15
	PenaltyInfo    = 0.0
)

// Score turns issues into a quality score in [0,1]: 1 for none, multiplied
// by (1 - penalty) for each issue (PenaltyError, PenaltyWarning,
// PenaltyInfo). Unknown severities count as errors.
func Score(issues []abi.Issue) float64 {
	s, _ := scoreOK(issues)
	return s
}

// scoreOK returns Score(issues) and whether no issue has error severity,
// in one pass. The penalties are constants in [0,1], so the score needs no
// clamping.
func scoreOK(issues []abi.Issue) (float64, bool) {
	s, ok := 1.0, true
	for k := range issues {
		switch issues[k].Severity {
		case abi.SeverityInfo:
			s *= 1 - PenaltyInfo
		case abi.SeverityWarning:
			s *= 1 - PenaltyWarning
		default:
			s *= 1 - PenaltyError
			ok = false
		}
	}
	return s, ok
}

// Evaluate runs validators in order over req and combines their findings:
// OK is true when no issue has error severity, Score comes from Score, and
// Response is set when a validator revised the text. Issues is never nil.
func Evaluate(req abi.ValidateRequest, validators ...Validator) abi.Validation {
	return evaluate(&Check{}, req, validators)
}

// evaluate is Evaluate using c, a zero or recycled Check. The result's
// Issues and Response may point into c.
func evaluate(c *Check, req abi.ValidateRequest, validators []Validator) abi.Validation {
	c.Query, c.Domain, c.Response = req.Query, req.Domain, req.Response
	// The reports are collected in the Check's array (one allocation for
	// the whole evaluation).
	issues := c.collected[:0]
	for _, v := range validators {
		if v.Check == nil {
			continue
		}
		if found := v.Check(c); len(found) > 0 {
			issues = append(issues, found...)
		}
	}
	out := abi.Validation{Issues: issues}
	out.Score, out.OK = scoreOK(issues)
	// A structured answer (JSON the client asked for) is reported on, not
	// revised: a disclaimer appended would break it.
	if c.Response != req.Response && req.ResponseFormat == nil {
		out.Response = &c.Response
	}
	return out
}

// recycle clears c for another evaluate, keeping the storage of its word
// analyses.
func (c *Check) recycle() {
	resp, query := c.resp, c.query
	resp.recycle()
	query.recycle()
	*c = Check{resp: resp, query: query}
}
