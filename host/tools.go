package host

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// ErrToolsUnsupported is the error of a request with client tools routed
// to (or forced on) a domain that answers through its own handle export,
// which cannot make tool calls.
var ErrToolsUnsupported = errors.New("the domain answers through its handle export and cannot call tools")

// ErrConstrainedUnsupported is the error of a request with a response
// format or tools whose model runs on an engine that cannot constrain its
// output (a remote server of a kind that takes no grammar: a plain
// OpenAI-compatible server, or Ollama asked for tools).
var ErrConstrainedUnsupported = errors.New("the model's engine cannot constrain its output (structured outputs and tools need the embedded engine or a llama-server or vLLM backend; Ollama backends take structured outputs only)")

// ToolClashError is the error of a request whose client tools name a tool
// of the domain that answers it.
type ToolClashError struct {
	Domain string
	Err    error // a *structured.Error naming the client's tool
}

// Error implements error.
func (e *ToolClashError) Error() string {
	return fmt.Sprintf("tools: clash with the tools of the domain %s: %v", e.Domain, e.Err)
}

// Unwrap returns the structured error.
func (e *ToolClashError) Unwrap() error { return e.Err }

// ToolStep is one call of a domain's tool the host ran while answering.
type ToolStep struct {
	// Round is the model turn (1-based) that made the call.
	Round     int    `json:"round"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	// Content is what the model read back; IsError marks a failed call
	// (arguments the schema refuses, or the tool's own error).
	Content  string        `json:"content"`
	IsError  bool          `json:"is_error,omitempty"`
	Duration time.Duration `json:"-"`
}

// FinishToolCalls is Result.FinishReason when the answer is calls of the
// client's tools (Result.ToolCalls).
const FinishToolCalls = "tool_calls"

// requestTools is the toolset of a request routed to p: the client's tools
// and p's own (unless plugin tools are off), or nil when there are none.
func (h *Host) requestTools(req Request, p *plugin.Plugin) (*structured.Toolset, error) {
	own := p.Tools()
	if h.cfg.Plugins.MaxToolSteps <= 0 {
		own = nil
	}
	if len(own) == 0 {
		return req.Tools, nil
	}
	ts, err := req.Tools.With(own)
	if err != nil {
		return nil, &ToolClashError{Domain: p.Name(), Err: err}
	}
	return ts, nil
}

// turnResult is what the model's turns came to: the final generation
// (Text the answer, or the client's calls in calls), the domain's tool
// steps run on the way, and the tokens of every turn.
type turnResult struct {
	gen   engine.Result
	calls []structured.Call
	steps []ToolStep
	turns int
}

// generateTurns runs the model on msgs under the request's format and
// tools. Each turn is constrained by their grammar; a turn of calls of the
// domain's tools runs them (arguments checked against their schemas) and
// feeds the results back, up to plugins.max_tool_steps rounds, after which
// the model must answer without them; calls of the client's tools end the
// request (they are the answer). max_tokens bounds the completion tokens
// of all turns together. Streamed text (onToken) is only an answer's, never
// a call's: under a toolset's grammar the first byte tells them apart.
func (h *Host) generateTurns(ctx context.Context, e engine.Engine, p *plugin.Plugin, query string,
	msgs []abi.Message, params engine.Params, ts *structured.Toolset, format *structured.Format,
	onToken engine.TokenFunc) (turnResult, error) {
	var out turnResult
	budget := params.MaxTokens
	for round := 1; ; round++ {
		cur := ts
		if ts.Active() && round > h.cfg.Plugins.MaxToolSteps {
			cur = ts.Final()
		}
		g, err := structured.Grammar(cur, format)
		if err != nil {
			return out, fmt.Errorf("%w: %w", engine.ErrInvalidInput, err)
		}
		params.Grammar, params.Schema = g, structured.Schema(cur, format)
		params.MaxTokens = budget
		tok := onToken
		if cur.Active() && onToken != nil {
			tok = structured.AnswerOnly(onToken)
		}
		gen, err := e.Generate(ctx, engine.Request{Messages: toEngineMessages(msgs), Params: params}, tok)
		if err != nil && params.Grammar != "" && errors.Is(err, engine.ErrNotSupported) {
			err = fmt.Errorf("%w: %w", ErrConstrainedUnsupported, err)
		}
		out.turns = round
		out.gen.TokensIn += gen.TokensIn
		out.gen.TokensCached += gen.TokensCached
		out.gen.TokensOut += gen.TokensOut
		out.gen.Model, out.gen.FinishReason, out.gen.Text = gen.Model, gen.FinishReason, gen.Text
		if err != nil {
			return out, err
		}
		if !cur.Active() || !structured.IsCall(gen.Text) {
			return out, nil
		}
		calls, ok := structured.Parse(gen.Text)
		if !ok {
			// Cut short by the token limit: no answer (the call's markup
			// is not one).
			out.gen.Text = ""
			return out, nil
		}
		var client []structured.Call
		for _, c := range calls {
			if t, _ := cur.Find(c.Name); t.Domain == "" {
				client = append(client, c)
			}
		}
		if len(client) > 0 {
			// The client runs its tools; calls of the domain's made in the
			// same turn are dropped (the client could not send their
			// results back).
			out.calls = client
			out.gen.FinishReason = FinishToolCalls
			out.gen.Text = ""
			return out, nil
		}
		results := make([]structured.Result, len(calls))
		for i, c := range calls {
			step, err := h.runTool(ctx, p, cur, query, c, round)
			if err != nil {
				return out, err
			}
			out.steps = append(out.steps, step)
			results[i] = structured.Result{CallID: c.ID, Name: c.Name, Content: step.Content}
		}
		msgs = append(msgs, structured.Messages([]structured.Turn{{Calls: calls, Results: results}})...)
		budget -= gen.TokensOut
		if budget <= 0 {
			out.gen.FinishReason = engine.FinishLength
			out.gen.Text = ""
			return out, nil
		}
	}
}

// runTool runs one call of a domain's tool: arguments the schema refuses
// are a failed call the model reads, not an error; a failing export is.
func (h *Host) runTool(ctx context.Context, p *plugin.Plugin, ts *structured.Toolset, query string, c structured.Call, round int) (ToolStep, error) {
	step := ToolStep{Round: round, Name: c.Name, Arguments: c.Arguments}
	t, _ := ts.Find(c.Name)
	if err := t.Check(c.Arguments); err != nil {
		step.Content, step.IsError = "error: "+err.Error(), true
		return step, nil
	}
	start := time.Now()
	tctx, end := h.stage(ctx, "mdsa.tool")
	resp, err := p.Tool(tctx, abi.ToolRequest{Name: c.Name, Arguments: []byte(c.Arguments), Query: query})
	end(err)
	step.Duration = time.Since(start)
	if err != nil {
		return step, fmt.Errorf("plugin %s: tool %s: %w", p.Name(), c.Name, err)
	}
	step.Content, step.IsError = resp.Content, resp.IsError
	return step, nil
}

// checkFormat applies the response format to a final answer: a revision by
// the validator that breaks the format is dropped (the model's answer is
// kept), and an answer that does not meet the format (a best-effort schema,
// or one cut short by the token limit) is flagged.
func checkFormat(format *structured.Format, model string, v *abi.Validation, finish string) string {
	if format == nil {
		return ""
	}
	answer := model
	if v.Response != nil {
		if err := format.Check(*v.Response); err == nil {
			answer = *v.Response
		} else {
			v.Issues = append(v.Issues, abi.Issue{Code: "revision_dropped", Severity: abi.SeverityInfo,
				Message: "the plugin's revision of the answer is not valid for the response format (" + err.Error() + "); the model's answer is kept"})
		}
		v.Response = nil
	}
	if err := format.Check(answer); err != nil {
		msg := "the answer does not meet the response format: " + err.Error()
		if finish == engine.FinishLength {
			msg = "the answer was cut short by the token limit: " + err.Error()
		}
		v.Issues = append(v.Issues, abi.Issue{Code: "format_unmet", Severity: abi.SeverityError, Message: msg})
		v.OK = false
		v.Score = min(v.Score, 0.5)
	}
	return answer
}

// abiFormat is the response format as plugins see it.
func abiFormat(f *structured.Format) *abi.ResponseFormat {
	if f == nil {
		return nil
	}
	return &abi.ResponseFormat{Type: f.Type, Schema: f.Schema}
}
