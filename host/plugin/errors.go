package plugin

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kinds of call failure. A *CallError matches exactly one of them with
// errors.Is (or, for a call the caller cancelled, context.Canceled or
// context.DeadlineExceeded).
var (
	// ErrClosed: the plugin (or its runtime) is closed or closing.
	ErrClosed = errors.New("plugin closed")
	// ErrTimeout: the plugin ran longer than Limits.CallTimeout and was stopped.
	ErrTimeout = errors.New("timed out")
	// ErrTrap: the instance trapped or exited (a Go panic, out of memory,
	// unreachable, a denied Extism function such as http_request).
	ErrTrap = errors.New("trapped")
	// ErrFailed: the export returned a non-zero status or set an error (or
	// no instance could be made to run it).
	ErrFailed = errors.New("failed")
	// ErrBadOutput: the output is not a valid document for this export
	// (invalid UTF-8, not JSON, trailing data, a field out of bounds).
	ErrBadOutput = errors.New("invalid output")
	// ErrOutputTooLarge: the output exceeds Limits.MaxOutputBytes.
	ErrOutputTooLarge = errors.New("output too large")
	// ErrInputTooLarge: the request exceeds Limits.MaxInputBytes.
	ErrInputTooLarge = errors.New("input too large")
	// ErrNoHandle: Handle was called on a plugin without a handle export.
	ErrNoHandle = errors.New("plugin has no handle export")
	// ErrNoTool: Tool was called for a tool the plugin does not declare.
	ErrNoTool = errors.New("plugin has no such tool")
	// ErrCapability: the plugin called a host function whose capability it
	// did not declare.
	ErrCapability = errors.New("capability denied")
	// ErrHostCallLimit: the plugin made more host calls than
	// Limits.MaxHostCalls allows in one export call.
	ErrHostCallLimit = errors.New("host-call cap exceeded")
	// ErrBackedOff: the plugin failed too many calls in a row and its
	// calls are refused for a while (a circuit breaker), rather than run on
	// a fresh instance each.
	ErrBackedOff = errors.New("backed off after repeated failures")
	// ErrMemoryBudget: no instance could be made because the plugin
	// instances of the runtime hold all of Options.MaxTotalMemoryBytes.
	ErrMemoryBudget = errors.New("plugin memory budget exhausted")
)

// CallError is the error of a failed export call. Its message names the
// plugin, the export and what went wrong, e.g.
//
//	plugin "trap": prompt: trapped: wasm error: unreachable: panic: runtime error: index out of range [7] with length 0
type CallError struct {
	Plugin string // manifest name; empty during load, whose error names the file instead
	Export string // describe, prompt, validate or handle
	Kind   error  // one of the Err* values of this package, or a context error
	Err    error  // details; may be nil
}

// Error implements error.
func (e *CallError) Error() string {
	var b strings.Builder
	if e.Plugin != "" {
		b.WriteString("plugin ")
		b.WriteString(strconv.Quote(e.Plugin))
		b.WriteString(": ")
	}
	b.WriteString(e.Export)
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the kind and the details, so errors.Is works with both.
func (e *CallError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// CodedError is an error that carries one of the abi error codes (abi.ErrEngine,
// abi.ErrModelDenied, ...). A Services implementation returns one to choose
// the code the plugin sees; any other error is reported as abi.ErrEngine.
type CodedError struct {
	Code string // an abi.Err* code
	Err  error
}

// Error implements error.
func (e *CodedError) Error() string {
	if e.Err == nil {
		return e.Code
	}
	return e.Code + ": " + e.Err.Error()
}

// Unwrap returns the wrapped error.
func (e *CodedError) Unwrap() error { return e.Err }

// sanitize makes untrusted text (plugin error messages, stderr) safe to put
// in an error or a log line: valid UTF-8, non-graphic runes replaced by '?',
// newlines by spaces, and cut to max bytes.
func sanitize(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t' || r == '\r':
			return ' '
		case !unicode.IsGraphic(r):
			return '?'
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
