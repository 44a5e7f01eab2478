package sdk

import (
	"fmt"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Check is what a Validator looks at: the request and the current response.
// A validator that revises the answer (redaction, an added disclaimer)
// assigns the new text to Response; validators later in the list see the
// revised text, and the validate export returns it as the revised response.
type Check struct {
	Query    string // the user's query
	Domain   string // the domain the host routed the query to
	Response string // the answer as revised so far

	// Word analyses shared by the validators; recomputed when the text
	// changes.
	resp, query textCache
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
	s := 1.0
	for _, is := range issues {
		switch is.Severity {
		case abi.SeverityInfo:
			s *= 1 - PenaltyInfo
		case abi.SeverityWarning:
			s *= 1 - PenaltyWarning
		default:
			s *= 1 - PenaltyError
		}
	}
	return min(max(s, 0), 1)
}

// Evaluate runs validators in order over req and combines their findings:
// OK is true when no issue has error severity, Score comes from Score, and
// Response is set when a validator revised the text. Issues is never nil.
func Evaluate(req abi.ValidateRequest, validators ...Validator) abi.Validation {
	c := Check{Query: req.Query, Domain: req.Domain, Response: req.Response}
	issues := make([]abi.Issue, 0, 4)
	for _, v := range validators {
		if v.Check == nil {
			continue
		}
		issues = append(issues, v.Check(&c)...)
	}
	out := abi.Validation{OK: true, Score: Score(issues), Issues: issues}
	for _, is := range issues {
		if is.Severity != abi.SeverityInfo && is.Severity != abi.SeverityWarning {
			out.OK = false
			break
		}
	}
	if c.Response != req.Response {
		r := c.Response
		out.Response = &r
	}
	return out
}
