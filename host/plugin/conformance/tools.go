package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// unknownToolName is the tool name the tools check asks for that no plugin
// declares (a valid name, so only the plugin's dispatch can refuse it).
const unknownToolName = "conformance-no-such-tool"

func (c *checker) tool(req abi.ToolRequest) (abi.ToolResponse, time.Duration, error) {
	var r abi.ToolResponse
	d, err := c.call(abi.ExportTool, func(ctx context.Context) (err error) {
		r, err = c.p.Tool(ctx, req)
		return err
	})
	return r, d, err
}

// toolCall is one call of the tools check.
type toolCall struct {
	what string
	req  abi.ToolRequest
	// valid: the arguments are valid against the tool's parameters.
	valid bool
}

// toolCalls returns the calls of the tools check: for each tool, the
// argument sets of toolArgSets, with the query of the first prompt sample.
// invalidMinimal lists the tools whose generated minimal arguments the
// schema rejects (a schema beyond the generator, or one no value meets).
func (c *checker) toolCalls(tools []structured.Tool) (calls []toolCall, invalidMinimal []string) {
	query := c.samples[0].req.Query
	for _, t := range tools {
		for _, s := range toolArgSets(t.Parameters) {
			valid := t.Check(string(s.args)) == nil
			if s.name == "minimal" && !valid {
				invalidMinimal = append(invalidMinimal, t.Name)
			}
			calls = append(calls, toolCall{
				what:  fmt.Sprintf("tool %s with %s arguments %s", t.Name, s.name, clip(string(s.args))),
				req:   abi.ToolRequest{Name: t.Name, Arguments: s.args, Query: query},
				valid: valid,
			})
		}
	}
	return calls, invalidMinimal
}

// checkTools calls each declared tool with arguments made from its schema
// (valid, empty and of the wrong types), twice each, and the tool export
// with an unknown tool name and with malformed input on the probe.
func (c *checker) checkTools() []string {
	tools := c.p.Tools()
	if len(tools) == 0 {
		c.note = "no tools (nothing to check)"
		return nil
	}
	calls, invalidMinimal := c.toolCalls(tools)
	var (
		probs []string
		times []time.Duration
		rep   repeats
		// hinted, hintedEmpty: the advice on failed calls and empty
		// error results was given (once is enough).
		hinted, hintedEmpty bool
	)
calls:
	for i, tc := range calls {
		r1, d, err := c.tool(tc.req)
		if err != nil {
			p, stop := rep.failed(tc.what, err, len(calls)-i-1, c.dead[abi.ExportTool] != nil)
			if !hinted && !stop {
				p += " (a tool must answer arguments it cannot use with is_error and a message, not fail the call)"
				hinted = true
			}
			probs = append(probs, p)
			if stop {
				break
			}
			continue
		}
		times = append(times, d)
		for _, p := range checkToolResponse(r1) {
			if p == emptyErrorProblem && !hintedEmpty {
				p += " (the content must tell the model what was wrong)"
				hintedEmpty = true
			}
			probs = append(probs, fmt.Sprintf("%s: %s", tc.what, p))
		}
		if p, ok := c.slow(tc.what, d); ok {
			probs = append(probs, p)
		}
		// The same call again must give the same result.
		r2, d, err := c.tool(tc.req)
		switch {
		case err != nil:
			probs = append(probs, fmt.Sprintf("%s: the same call failed the second time: %v", tc.what, err))
			if c.dead[abi.ExportTool] != nil {
				break calls
			}
		case r1 != r2:
			probs = append(probs, fmt.Sprintf("%s: not deterministic: the same call returned %q, then %q", tc.what, clip(r1.Content), clip(r2.Content)))
		default:
			times = append(times, d)
			if p, ok := c.slow(tc.what+" (again)", d); ok {
				probs = append(probs, p)
			}
		}
	}
	if len(times) > 0 {
		c.rep.CallUS[abi.ExportTool] = us(median(times))
	}
	probs = append(probs, c.probeTool(tools, calls)...)
	if len(probs) == 0 {
		c.note = fmt.Sprintf("%d tool(s), %d calls (minimal, empty and wrong-type arguments, each twice), p50 %s; "+
			"an unknown tool name and malformed input fail cleanly", len(tools), len(times), round(median(times)))
		if len(invalidMinimal) > 0 {
			c.note += fmt.Sprintf("; the generated minimal arguments of %s are not valid against their schemas (beyond the generator), so none of their calls had valid arguments",
				strings.Join(invalidMinimal, ", "))
		}
	}
	return probs
}

// emptyErrorProblem is checkToolResponse's problem with an error result
// that does not say what went wrong.
const emptyErrorProblem = "is_error with empty content"

// firstLine cuts a message at its first line break (a trap's message goes
// on with the wasm stack trace).
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}

// checkToolResponse checks a tool's result beyond the host's decoding: an
// error result says why, content is UTF-8 within MaxToolContentLen.
func checkToolResponse(r abi.ToolResponse) []string {
	var probs []string
	if r.IsError && strings.TrimSpace(r.Content) == "" {
		probs = append(probs, emptyErrorProblem)
	}
	if !utf8.ValidString(r.Content) {
		probs = append(probs, "content is not valid UTF-8")
	}
	if len(r.Content) > abi.MaxToolContentLen {
		probs = append(probs, fmt.Sprintf("content has %d bytes, at most %d allowed", len(r.Content), abi.MaxToolContentLen))
	}
	return probs
}

// probeTool calls the tool export on the probe's instance (plugin.Plugin
// refuses unknown tool names before the call, and only sends well-formed
// JSON): an unknown tool name must fail with an error (not succeed, trap
// or hang), and the instance must then still run a valid call; malformed
// JSON must fail (an error or a trap) and not hang.
func (c *checker) probeTool(tools []structured.Tool, calls []toolCall) []string {
	if cause := c.dead[abi.ExportTool]; cause != nil {
		return []string{fmt.Sprintf("tool not probed with an unknown tool name or malformed input: it timed out earlier (%v)", cause)}
	}
	pr, err := c.probe()
	if err != nil {
		return []string{fmt.Sprintf("unknown-tool probe: %v", err)}
	}
	// A call of the first tool that is valid against its schema when the
	// generator managed one.
	valid := calls[0].req
	for _, tc := range calls {
		if tc.valid && tc.req.Name == tools[0].Name {
			valid = tc.req
			break
		}
	}
	validIn, _ := json.Marshal(valid)
	unknown, _ := json.Marshal(abi.ToolRequest{Name: unknownToolName, Arguments: json.RawMessage("{}"), Query: valid.Query})

	var probs []string
	start := time.Now()
	o, out, err := pr.call(c.ctx, abi.ExportTool, unknown)
	switch o {
	case succeeded:
		probs = append(probs, fmt.Sprintf("tool returned a normal response for the unknown tool %q (%s); it must fail with an error",
			unknownToolName, clip(string(out))))
	case hung:
		probs = append(probs, fmt.Sprintf("tool hung on the unknown tool %q: %v", unknownToolName, err))
	case trapped:
		probs = append(probs, fmt.Sprintf("tool trapped on the unknown tool %q (%s); it must fail with an error message, not trap (a trap costs the host the instance)",
			unknownToolName, firstLine(errString(err))))
	case errored:
		if c.ctx.Err() != nil {
			return append(probs, fmt.Sprintf("tool: %v", c.ctx.Err()))
		}
		if strings.HasPrefix(errString(err), "instantiate:") {
			return append(probs, fmt.Sprintf("unknown-tool probe: %v", err))
		}
		// The instance reported a clean error: it must still work.
		o2, res, err2 := pr.call(c.ctx, abi.ExportTool, validIn)
		if o2 != succeeded {
			probs = append(probs, fmt.Sprintf("tool failed cleanly on the unknown tool %q, but the same instance then failed a valid call of %s: %s",
				unknownToolName, valid.Name, firstLine(errString(err2))))
			pr.drop()
		} else if _, err := abi.DecodeToolResponse(res); err != nil {
			probs = append(probs, fmt.Sprintf("tool failed cleanly on the unknown tool %q, but the same instance then answered a valid call of %s with invalid output: %v",
				unknownToolName, valid.Name, err))
		}
	}
	if d := time.Since(start); d > c.opts.SlowCall+c.opts.Limits.CallTimeout {
		probs = append(probs, fmt.Sprintf("tool took %s to refuse the unknown tool %q", round(d), unknownToolName))
	}
	if o == hung {
		return probs
	}

	for _, in := range malformedInputs() {
		start := time.Now()
		o, _, err := pr.call(c.ctx, abi.ExportTool, []byte(in))
		switch o {
		case succeeded:
			return append(probs, fmt.Sprintf("tool returned success for malformed input %q; it must fail with an error", in))
		case hung:
			return append(probs, fmt.Sprintf("tool hung on malformed input %q: %v", in, err))
		case errored:
			if c.ctx.Err() != nil {
				return append(probs, fmt.Sprintf("tool: %v", c.ctx.Err()))
			}
		}
		if d := time.Since(start); d > c.opts.SlowCall+c.opts.Limits.CallTimeout {
			probs = append(probs, fmt.Sprintf("tool took %s to reject malformed input %q", round(d), in))
		}
	}
	return probs
}
