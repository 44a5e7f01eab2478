package structured

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mdsa-go/mdsa/host/grammar"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Tool choices (OpenAI's tool_choice).
const (
	ChoiceAuto     = "auto"     // the model answers or calls tools
	ChoiceNone     = "none"     // the model answers; no calls
	ChoiceRequired = "required" // the model calls one or more tools
	ChoiceFunction = "function" // the model calls the tool named in Choice.Name
)

// Bounds on tools.
const (
	// MaxTools bounds the tools of one request (the client's and the
	// domain's together).
	MaxTools = 128
	// MaxDescription bounds a tool's description.
	MaxDescription = 8 << 10
	// MaxParallelCalls bounds the calls of one model turn.
	MaxParallelCalls = 8
)

// Tool is a function the model may call.
type Tool struct {
	Name        string
	Description string
	// Parameters is the JSON Schema of the arguments, an object schema.
	Parameters json.RawMessage
	// Strict asks that Parameters be enforced exactly: a schema the
	// grammar cannot express exactly is refused. Without it, the grammar
	// keeps the arguments' shape and Check finds the rest.
	Strict bool
	// Domain is the plugin that implements the tool; "" for the client's
	// own tools, whose calls are returned to the client.
	Domain string

	validator *jsonschema.Schema
}

// emptyParameters is the schema of a tool that takes no arguments.
var emptyParameters = json.RawMessage(`{"type":"object","properties":{}}`)

// NewTool checks a tool definition: its name (1-64 of [A-Za-z0-9_-]),
// description (at most MaxDescription bytes) and parameters (an object
// schema that compiles; none means no arguments). Errors are *Error on
// "name", "description" or "parameters".
func NewTool(name, description string, parameters json.RawMessage, strict bool) (Tool, error) {
	if name == "" || len(name) > maxNameLen || !validName(name) {
		return Tool{}, fieldErr("name", fmt.Sprintf("must be 1-%d letters, digits, '_' or '-', got %q", maxNameLen, clip(name, 80)))
	}
	if len(description) > MaxDescription {
		return Tool{}, fieldErr("description", fmt.Sprintf("has %d bytes, at most %d", len(description), MaxDescription))
	}
	if len(bytes.TrimSpace(parameters)) == 0 || string(bytes.TrimSpace(parameters)) == "null" {
		parameters = emptyParameters
	}
	var shape struct {
		Type any `json:"type"`
	}
	if json.Unmarshal(parameters, &shape) == nil && shape.Type != nil && shape.Type != "object" {
		return Tool{}, &Error{Field: "parameters", Pointer: "/type", Msg: "the arguments must be an object: type \"object\""}
	}
	t := Tool{Name: name, Description: description, Strict: strict}
	var err error
	if t.Parameters, _, t.validator, err = compileSchema("parameters", parameters, strict, formatOptions); err != nil {
		return Tool{}, err
	}
	return t, nil
}

// Check reports why args (a JSON document) are not valid arguments of the
// tool; nil when they are.
func (t Tool) Check(args string) error {
	if depthOver(args, maxCheckDepth) {
		return fmt.Errorf("the arguments are nested deeper than %d levels", maxCheckDepth)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(args))
	if err != nil {
		return fmt.Errorf("the arguments are not JSON: %w", err)
	}
	if t.validator == nil {
		return nil
	}
	if err := t.validator.Validate(doc); err != nil {
		return fmt.Errorf("the arguments are not valid against the parameters: %s", validationMsg(err))
	}
	return nil
}

// Choice is which calls the model may or must make.
type Choice struct {
	// Mode is ChoiceAuto (the default), ChoiceNone, ChoiceRequired or
	// ChoiceFunction.
	Mode string
	// Name is the tool of ChoiceFunction.
	Name string
}

// Toolset is the tools of one request and how the model may use them.
type Toolset struct {
	Tools    []Tool
	Choice   Choice
	Parallel bool
}

// NewToolset checks tools (unique names, at most MaxTools) and the choice
// (a ChoiceFunction names one of them). Errors are *Error on "tools" or
// "tool_choice".
func NewToolset(tools []Tool, choice Choice, parallel bool) (*Toolset, error) {
	if choice.Mode == "" {
		choice.Mode = ChoiceAuto
	}
	ts := &Toolset{Choice: choice, Parallel: parallel}
	if err := ts.add(tools); err != nil {
		return nil, err
	}
	switch choice.Mode {
	case ChoiceAuto, ChoiceNone:
	case ChoiceRequired:
		if len(tools) == 0 {
			return nil, fieldErr("tool_choice", "\"required\" needs tools")
		}
	case ChoiceFunction:
		if _, ok := ts.Find(choice.Name); !ok {
			return nil, fieldErr("tool_choice", fmt.Sprintf("names the function %q, which is not among the tools", clip(choice.Name, 80)))
		}
	default:
		return nil, fieldErr("tool_choice", fmt.Sprintf("unknown choice %q: use auto, none, required or a function", clip(choice.Mode, 80)))
	}
	return ts, nil
}

func (ts *Toolset) add(tools []Tool) error {
	for i, t := range tools {
		if len(ts.Tools) >= MaxTools {
			return fieldErr("tools", fmt.Sprintf("more than %d tools", MaxTools))
		}
		if o, ok := ts.Find(t.Name); ok {
			if o.Domain != "" || t.Domain != "" {
				d := o.Domain + t.Domain
				return fieldErr("tools", fmt.Sprintf("%q is a tool of the domain %s; rename yours", t.Name, d))
			}
			return fieldErr("tools["+strconv.Itoa(i)+"].name", fmt.Sprintf("%q is given twice", t.Name))
		}
		ts.Tools = append(ts.Tools, t)
	}
	return nil
}

// With returns a toolset that also holds more (a domain's own tools);
// ts may be nil (no client tools: the choice is auto).
func (ts *Toolset) With(more []Tool) (*Toolset, error) {
	out := &Toolset{Choice: Choice{Mode: ChoiceAuto}, Parallel: true}
	if ts != nil {
		out.Choice, out.Parallel = ts.Choice, ts.Parallel
		out.Tools = append(out.Tools, ts.Tools...)
	}
	if err := out.add(more); err != nil {
		return nil, err
	}
	return out, nil
}

// Find returns the tool named name.
func (ts *Toolset) Find(name string) (Tool, bool) {
	if ts == nil {
		return Tool{}, false
	}
	for _, t := range ts.Tools {
		if t.Name == name {
			return t, true
		}
	}
	return Tool{}, false
}

// Active reports whether the model may call a tool.
func (ts *Toolset) Active() bool {
	return ts != nil && ts.Choice.Mode != ChoiceNone && len(ts.callable()) > 0
}

// Final returns the toolset of a last step: the client's tools only (the
// domain's may not be called again), under the same choice, or, when the
// choice names a domain's tool or the client has none, no calls at all.
func (ts *Toolset) Final() *Toolset {
	out := &Toolset{Choice: ts.Choice, Parallel: ts.Parallel}
	for _, t := range ts.Tools {
		if t.Domain == "" {
			out.Tools = append(out.Tools, t)
		}
	}
	if _, ok := out.Find(out.Choice.Name); out.Choice.Mode == ChoiceFunction && !ok || len(out.Tools) == 0 {
		out.Choice = Choice{Mode: ChoiceNone}
	}
	return out
}

// callable returns the tools the choice allows calling.
func (ts *Toolset) callable() []Tool {
	switch ts.Choice.Mode {
	case ChoiceNone:
		return nil
	case ChoiceFunction:
		t, _ := ts.Find(ts.Choice.Name)
		return []Tool{t}
	}
	return ts.Tools
}

// Call is one call the model made.
type Call struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Arguments is the JSON object of the arguments, as text.
	Arguments string `json:"arguments"`
}

// Result is what a call returned.
type Result struct {
	CallID  string `json:"call_id"`
	Name    string `json:"name,omitempty"`
	Content string `json:"content"`
}

// Turn is one round of tools after a query: the model's calls and their
// results.
type Turn struct {
	Calls   []Call
	Results []Result
}

// Messages renders turns as the chat messages that follow the query: per
// turn, the model's calls as an assistant message and their results as a
// user message.
func Messages(turns []Turn) []abi.Message {
	out := make([]abi.Message, 0, 2*len(turns))
	for _, t := range turns {
		out = append(out, abi.Message{Role: abi.RoleAssistant, Content: RenderCalls(t.Calls)},
			abi.Message{Role: abi.RoleUser, Content: RenderResults(t.Results)})
	}
	return out
}

// The markup of calls and results in the model's text, as many small
// models were trained to write and read them.
const (
	callOpen    = "<tool_call>\n"
	callClose   = "\n</tool_call>"
	resultOpen  = "<tool_response>\n"
	resultClose = "\n</tool_response>"
)

// RenderCalls writes calls as the model writes them.
func RenderCalls(calls []Call) string {
	var b strings.Builder
	for i, c := range calls {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(callOpen)
		b.WriteString(`{"name": `)
		name, _ := json.Marshal(c.Name)
		b.Write(name)
		b.WriteString(`, "arguments": `)
		args := strings.TrimSpace(c.Arguments)
		if args == "" {
			args = "{}"
		}
		b.WriteString(args)
		b.WriteString("}")
		b.WriteString(callClose)
	}
	return b.String()
}

// RenderResults writes results as the model reads them.
func RenderResults(results []Result) string {
	var b strings.Builder
	for i, r := range results {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(resultOpen)
		b.WriteString(r.Content)
		b.WriteString(resultClose)
	}
	return b.String()
}

// IsCall reports whether generated text (so far) is a tool call rather
// than an answer: under the toolset's grammar an answer never starts with
// '<' and a call always does.
func IsCall(text string) bool { return strings.HasPrefix(text, "<") }

// AnswerOnly wraps a streaming callback so that it receives the text of
// an answer and nothing of calls (which start with '<', see IsCall).
func AnswerOnly(onPiece func(string) error) func(string) error {
	decided, call := false, false
	return func(piece string) error {
		if !decided {
			if piece == "" {
				return nil
			}
			decided, call = true, strings.HasPrefix(piece, "<")
		}
		if call {
			return nil
		}
		return onPiece(piece)
	}
}

// Parse reads the calls in text, as made under the toolset's grammar, and
// gives each a new id. ok is false when text is not calls or is cut short
// (the token limit came first).
func Parse(text string) (calls []Call, ok bool) {
	rest := text
	for {
		rest = strings.TrimLeft(rest, " \n")
		if rest == "" {
			return calls, len(calls) > 0
		}
		body, ok := strings.CutPrefix(rest, strings.TrimSuffix(callOpen, "\n"))
		if !ok {
			return nil, false
		}
		dec := json.NewDecoder(strings.NewReader(body))
		var c struct {
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if dec.Decode(&c) != nil || c.Name == "" {
			return nil, false
		}
		after, ok := strings.CutPrefix(strings.TrimLeft(body[dec.InputOffset():], " \n"), strings.TrimPrefix(callClose, "\n"))
		if !ok {
			return nil, false
		}
		var args bytes.Buffer
		if json.Compact(&args, c.Arguments) != nil {
			return nil, false
		}
		calls = append(calls, Call{ID: NewCallID(), Name: c.Name, Arguments: args.String()})
		rest = after
	}
}

// NewCallID returns a new call id, "call_" and 24 random letters and digits.
func NewCallID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [24]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "call_" + string(b[:])
}

// Schema is the JSON Schema an answer under ts and format must match when
// the turn is constrained by a response format alone (an object for
// json_object), for engines that take a schema rather than a grammar
// (Ollama); nil when nothing constrains the turn or a toolset does, whose
// calls no schema describes.
func Schema(ts *Toolset, format *Format) json.RawMessage {
	switch {
	case ts.Active() || format == nil:
		return nil
	case format.Type == FormatJSONSchema:
		return format.Schema
	default:
		return json.RawMessage(`{"type":"object"}`)
	}
}

// Grammar is the GBNF grammar of the model's turn under ts and format
// (either may be nil): calls to the tools the choice allows, or, where the
// choice lets the model answer, an answer of the format (any text not
// starting with '<' without one). "" when nothing constrains the turn.
func Grammar(ts *Toolset, format *Format) (string, error) {
	if !ts.Active() {
		if format == nil {
			return "", nil
		}
		return format.Grammar(), nil
	}
	var named []grammar.Named
	var alts []string
	for i, t := range ts.callable() {
		rule := "tool-" + strconv.Itoa(i)
		named = append(named, grammar.Named{Rule: rule, Schema: t.Parameters, Lenient: !t.Strict})
		alts = append(alts, gbnfLit(`{"name": "`+t.Name+`", "arguments": `)+" "+rule)
	}
	call := gbnfLit(callOpen) + " ( " + strings.Join(alts, " | ") + ` ) "}" ` + gbnfLit(callClose)
	calls := "( " + call + " )"
	if ts.Parallel {
		calls += ` ( "\n" ` + calls + " ){0," + strconv.Itoa(MaxParallelCalls-1) + "}"
	}
	root := calls
	if ts.Choice.Mode == ChoiceAuto {
		answer := `[^<\x00] [^\x00]*`
		if format != nil {
			answer = "answer"
			var schema []byte
			if format.Type == FormatJSONSchema {
				schema = format.Schema
			}
			named = append(named, grammar.Named{Rule: "answer", Schema: schema, Lenient: !format.Strict})
		}
		root = calls + " | " + answer
	}
	g, err := grammar.Compose(root, named, formatOptions)
	if err != nil {
		return "", schemaError("tools", err)
	}
	return g, nil
}

// gbnfLit quotes s as a GBNF string literal.
func gbnfLit(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Instruction is what the prompt tells the model about the tools.
func (ts *Toolset) Instruction() string {
	if !ts.Active() {
		return ""
	}
	var b strings.Builder
	b.WriteString("# Tools\n\nYou can call functions to help you answer. They are, as JSON:\n")
	for _, t := range ts.callable() {
		d, _ := json.Marshal(struct {
			Name        string          `json:"name"`
			Description string          `json:"description,omitempty"`
			Parameters  json.RawMessage `json:"parameters"`
		}{t.Name, t.Description, t.Parameters})
		b.Write(d)
		b.WriteByte('\n')
	}
	b.WriteString("\nTo call a function, reply with only this, once per call:\n" + callOpen +
		`{"name": "<function name>", "arguments": <the arguments as a JSON object>}` + callClose +
		"\nEach result comes back to you inside " + strings.TrimSpace(resultOpen) + " " + strings.TrimSpace(resultClose) + ".")
	switch ts.Choice.Mode {
	case ChoiceAuto:
		b.WriteString(" When no function is needed, or the results are in, answer the user directly.")
	case ChoiceRequired:
		b.WriteString(" Call at least one function now.")
	case ChoiceFunction:
		b.WriteString(" Call " + ts.Choice.Name + " now.")
	}
	return b.String()
}

// Instruct adds instructions to the system message of msgs (the first
// message when it is a system one, else a new first message).
func Instruct(msgs []abi.Message, instructions ...string) []abi.Message {
	var parts []string
	for _, s := range instructions {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return msgs
	}
	text := strings.Join(parts, "\n\n")
	out := make([]abi.Message, 0, len(msgs)+1)
	if len(msgs) > 0 && msgs[0].Role == abi.RoleSystem {
		first := msgs[0]
		if first.Content != "" {
			first.Content += "\n\n"
		}
		first.Content += text
		return append(append(out, first), msgs[1:]...)
	}
	return append(append(out, abi.Message{Role: abi.RoleSystem, Content: text}), msgs...)
}
