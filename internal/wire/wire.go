// Package wire is the JSON shape of a host.Result, as the HTTP API's
// /v1/query and the CLI's --json write it: timings in milliseconds under
// "timings_ms", the status as a string. host.Result itself is Go-native
// (time.Duration timings, a typed status).
package wire

import (
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Result is a host.Result on the wire.
type Result struct {
	RequestID    string          `json:"request_id"`
	Status       string          `json:"status"`
	Domain       string          `json:"domain"`
	Confidence   float64         `json:"confidence"`
	Alternatives []router.Scored `json:"alternatives,omitempty"`
	Response     string          `json:"response"`
	Validation   abi.Validation  `json:"validation"`
	Model        string          `json:"model"`
	FinishReason string          `json:"finish_reason,omitempty"`
	Tokens       host.Tokens     `json:"tokens"`
	TimingsMS    Timings         `json:"timings_ms"`
	// Cache is "hit", "miss" or absent (not a request the cache keeps).
	Cache string `json:"cache,omitempty"`
	// Conversation says how earlier user turns weighed in the routing.
	Conversation *router.Conversation `json:"conversation,omitempty"`
	// HistoryDropped counts the oldest messages left out of the prompt
	// to fit the model's context.
	HistoryDropped int `json:"history_dropped,omitempty"`
	// ToolSteps are the domain's own tools the host ran.
	ToolSteps []host.ToolStep `json:"tool_steps,omitempty"`
	// Citations are the knowledge-base passages the prompt was given.
	Citations []host.Citation `json:"citations,omitempty"`
}

// Timings are host.Timings in milliseconds, to the microsecond.
type Timings struct {
	Route float64 `json:"route"`
	// Retrieve is the knowledge-base search of a domain that declares one.
	Retrieve float64 `json:"retrieve,omitempty"`
	Prompt   float64 `json:"prompt"`
	Generate float64 `json:"generate"`
	Validate float64 `json:"validate"`
	Total    float64 `json:"total"`
}

// FromResult converts a host.Result to its wire shape.
func FromResult(r host.Result) Result {
	return Result{
		RequestID: r.RequestID, Status: string(r.Status), Domain: r.Domain, Confidence: r.Confidence,
		Alternatives: r.Alternatives, Response: r.Response, Validation: r.Validation, Model: r.Model,
		FinishReason: r.FinishReason, Tokens: r.Tokens, TimingsMS: FromTimings(r.Timings), Cache: r.Cache,
		Conversation: r.Conversation, HistoryDropped: r.HistoryDropped, ToolSteps: r.ToolSteps, Citations: r.Citations,
	}
}

// FromTimings converts host.Timings to milliseconds.
func FromTimings(t host.Timings) Timings {
	return Timings{Route: Millis(t.Route), Retrieve: Millis(t.Retrieve), Prompt: Millis(t.Prompt), Generate: Millis(t.Generate),
		Validate: Millis(t.Validate), Total: Millis(t.Total)}
}

// Millis is d in milliseconds, to the microsecond.
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Change is a host.Change on the wire (the admin API's answer to a PUT or
// DELETE, and each change of a reload report).
type Change struct {
	Name         string   `json:"name"`
	Version      string   `json:"version,omitempty"`
	OldVersion   string   `json:"old_version,omitempty"`
	SHA256       string   `json:"sha256,omitempty"`
	Path         string   `json:"path"`
	Action       string   `json:"action"`
	Milliseconds float64  `json:"ms"`
	CompileMS    float64  `json:"compile_ms"`
	Tenants      []string `json:"tenants,omitempty"`
	Note         string   `json:"note,omitempty"`
}

// Refusal is a host.Refusal on the wire.
type Refusal struct {
	Name   string `json:"name,omitempty"`
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// ReloadReport is a host.ReloadReport on the wire.
type ReloadReport struct {
	Changes []Change  `json:"changes"`
	Refused []Refusal `json:"refused"`
	TookMS  float64   `json:"took_ms"`
}

// FromChange converts a host.Change to its wire shape.
func FromChange(c host.Change) Change {
	return Change{Name: c.Name, Version: c.Version, OldVersion: c.OldVersion, SHA256: c.SHA256, Path: c.Path,
		Action: c.Action, Milliseconds: Millis(c.Took), CompileMS: Millis(c.Compile), Tenants: c.Tenants, Note: c.Note}
}

// FromReload converts a host.ReloadReport to its wire shape (empty lists,
// not null).
func FromReload(r host.ReloadReport) ReloadReport {
	out := ReloadReport{Changes: make([]Change, 0, len(r.Changes)), Refused: make([]Refusal, 0, len(r.Refused)), TookMS: Millis(r.Took)}
	for _, c := range r.Changes {
		out.Changes = append(out.Changes, FromChange(c))
	}
	for _, f := range r.Refused {
		out.Refused = append(out.Refused, Refusal(f))
	}
	return out
}
