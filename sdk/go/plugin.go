package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Plugin declares a domain plugin. Only Manifest is required; everything
// else has a default:
//
//   - the prompt export renders System (if set) as the system message, the
//     request's history as chat turns (at most MaxHistory of the latest
//     user/assistant turns; other roles are dropped, so a caller cannot
//     inject a system turn) and Template (default "{{query}}") as the final
//     user message; see RenderTemplate for the placeholders;
//   - the validate export runs Validators in order (see Evaluate);
//   - the handle export, linked only when the plugin imports
//     github.com/mdsa-go/mdsa/sdk/go/handle, runs prompt, mdsa_generate and
//     validate in one call.
//
// Prompt, Validate and Handle replace those defaults; they receive an *Env
// that gives them the host functions and the defaults to build on.
type Plugin struct {
	// Manifest is what describe returns. ABI may be left 0 (it is set to
	// abi.Version); any other value but abi.Version is refused.
	Manifest abi.Manifest
	// System is the system prompt template (placeholders allowed).
	System string
	// Template is the user message template; "" means "{{query}}".
	Template string
	// MaxHistory caps the history turns passed on; 0 means all.
	MaxHistory int
	// Validators run by the default validate export, in order.
	Validators []Validator

	// Prompt, when set, replaces the default prompt export.
	Prompt func(env *Env, req abi.PromptRequest) (abi.PromptResponse, error)
	// Validate, when set, replaces the default validate export.
	Validate func(env *Env, req abi.ValidateRequest) (abi.Validation, error)
	// Handle, when set, replaces the default handle export. It only runs when
	// the plugin imports the sdk/go/handle package, which adds the export.
	Handle func(env *Env, req abi.PromptRequest) (abi.HandleResponse, error)

	// Tools are functions the model may call while answering a query of
	// the domain (ABI 1.1): Compile declares them in the manifest (and sets
	// its abi_minor), and the tool export runs them.
	Tools []Tool
}

// Tool is one of a plugin's tools.
type Tool struct {
	// Name is 1-64 of [A-Za-z0-9_-]; Description tells the model what the
	// tool does and when to call it.
	Name        string
	Description string
	// Parameters is the JSON Schema of the arguments (an object schema);
	// "" means the tool takes none. The host makes the model write
	// arguments of this shape and checks them before Run sees them.
	Parameters string
	// Run computes the result the model reads. An error is reported to the
	// model as a failed call (its message is the content), which the model
	// may correct.
	Run func(env *Env, args json.RawMessage) (string, error)
}

// Compiled is a checked Plugin with its templates parsed and its describe
// output encoded. It is immutable and safe for concurrent use.
type Compiled struct {
	p        Plugin
	system   template
	user     template
	describe []byte
	jsonSize int // bytes of the templates' JSON-escaped literal text
}

var nameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

// Compile checks p and prepares it for serving. Register calls it; tests
// may call it directly.
func Compile(p Plugin) (*Compiled, error) {
	m := &p.Manifest
	if m.ABI == 0 {
		m.ABI = abi.Version
	}
	var errs []error
	if m.ABI != abi.Version {
		errs = append(errs, fmt.Errorf("manifest abi %d: this SDK speaks ABI %d", m.ABI, abi.Version))
	}
	if !nameRe.MatchString(m.Name) {
		errs = append(errs, fmt.Errorf("manifest name %q: want 1-64 of [a-z0-9_-], starting with a letter", m.Name))
	}
	if strings.TrimSpace(m.Version) == "" {
		errs = append(errs, errors.New("manifest version is empty"))
	}
	for _, c := range m.Capabilities {
		if !abi.KnownCapability(c) {
			errs = append(errs, fmt.Errorf("manifest capability %q is unknown", c))
		}
	}
	if t := m.Model.Tier; t != "" && t != abi.TierDomain && t != abi.TierReasoner {
		errs = append(errs, fmt.Errorf("manifest model tier %q is unknown", t))
	}
	if p.MaxHistory < 0 {
		errs = append(errs, fmt.Errorf("MaxHistory %d is negative", p.MaxHistory))
	}
	if m.Keywords == nil {
		m.Keywords = []string{}
	}
	if m.Examples == nil {
		m.Examples = []string{}
	}
	if m.Capabilities == nil {
		m.Capabilities = []string{}
	}
	c := &Compiled{p: p}
	var err error
	if c.system, err = parseTemplate(p.System); err != nil {
		errs = append(errs, fmt.Errorf("System: %w", err))
	}
	if p.Template == "" {
		p.Template = "{{query}}"
	}
	if c.user, err = parseTemplate(p.Template); err != nil {
		errs = append(errs, fmt.Errorf("Template: %w", err))
	}
	for _, t := range [2]template{c.system, c.user} {
		for _, seg := range t {
			c.jsonSize += len(seg.json)
		}
	}
	for _, v := range p.Validators {
		if err := v.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.Knowledge != nil || slices.Contains(m.Capabilities, abi.CapRetrieve) {
		m.ABIMinor = max(m.ABIMinor, 1)
	}
	if len(p.Tools) > 0 {
		m.Tools = m.Tools[:0:0]
		m.ABIMinor = max(m.ABIMinor, 1)
		for i, t := range p.Tools {
			if t.Run == nil {
				errs = append(errs, fmt.Errorf("Tools[%d] %q: Run is nil", i, t.Name))
			}
			spec := abi.ToolSpec{Name: t.Name, Description: t.Description}
			if t.Parameters != "" {
				if !json.Valid([]byte(t.Parameters)) {
					errs = append(errs, fmt.Errorf("Tools[%d] %q: Parameters is not JSON", i, t.Name))
					continue
				}
				spec.Parameters = json.RawMessage(t.Parameters)
			}
			m.Tools = append(m.Tools, spec)
		}
	}
	if len(errs) == 0 {
		// The host's own checks, so that a plugin that would be refused at
		// load fails here, in native tests, with the same message.
		if err := abi.CheckManifest(m); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("plugin %q: %w", m.Name, errors.Join(errs...))
	}
	// Later edits to the caller's slices must not change the plugin.
	c.p.Validators = slices.Clone(p.Validators)
	c.p.Tools = slices.Clone(p.Tools)
	c.p.Manifest = *m
	if c.describe, err = json.Marshal(c.p.Manifest); err != nil {
		return nil, fmt.Errorf("plugin %q: encode manifest: %w", m.Name, err)
	}
	return c, nil
}

// Manifest returns the manifest describe reports (a deep copy).
func (c *Compiled) Manifest() abi.Manifest {
	var m abi.Manifest
	// Decoding our own encoding cannot fail.
	_ = json.Unmarshal(c.describe, &m)
	return m
}

// registration holds the one plugin of this module. Register fills it
// during package initialisation (wasm modules are single-threaded there);
// afterwards it is only read. The mutex keeps native tests race-free.
var registration struct {
	mu  sync.Mutex
	c   *Compiled
	err error
	set bool
}

// Register declares the plugin this module serves. Call it once, from an
// init function of the plugin's main package. A plugin that fails Compile,
// or a second call, is not fatal here: every export then fails with the
// error, so the host refuses the plugin at load with a clear message.
func Register(p Plugin) {
	c, err := Compile(p)
	registration.mu.Lock()
	defer registration.mu.Unlock()
	if registration.set {
		registration.err = errors.Join(registration.err,
			fmt.Errorf("sdk.Register called more than once (again for %q)", p.Manifest.Name))
		return
	}
	registration.set = true
	registration.c, registration.err = c, err
}

// Registered returns the plugin passed to Register, or the reason it cannot
// serve. Plugin tests use it to call their exports natively:
//
//	c, err := sdk.Registered()
//	out, err := c.Invoke(nil, abi.ExportValidate, []byte(`{"query":"...","response":"..."}`))
func Registered() (*Compiled, error) {
	registration.mu.Lock()
	defer registration.mu.Unlock()
	if !registration.set {
		return nil, errors.New("no plugin registered: call sdk.Register from an init function of the plugin's main package")
	}
	if registration.err != nil {
		return nil, registration.err
	}
	return registration.c, nil
}

// Env is what custom Prompt, Validate and Handle functions receive: the host
// functions (embedded *Host: env.Generate, env.Embed, env.CountTokens) and
// the plugin's default behaviour to build on.
type Env struct {
	*Host
	c *Compiled
}

// Manifest returns the plugin's manifest.
func (e *Env) Manifest() abi.Manifest { return e.c.Manifest() }

// DefaultPrompt builds the messages from System, the history and Template.
func (e *Env) DefaultPrompt(req abi.PromptRequest) (abi.PromptResponse, error) {
	return e.c.defaultPrompt(&req)
}

// DefaultValidate runs the plugin's Validators.
func (e *Env) DefaultValidate(req abi.ValidateRequest) abi.Validation {
	return Evaluate(req, e.c.p.Validators...)
}

// DefaultHandle runs the whole request inside the plugin: the plugin's
// prompt (custom or default), mdsa_generate with the manifest's generation
// settings overlaid by the prompt's, then the plugin's validate, whose
// revised response (if any) becomes the answer.
func (e *Env) DefaultHandle(req abi.PromptRequest) (abi.HandleResponse, error) {
	pr, err := e.c.prompt(e, &req)
	if err != nil {
		return abi.HandleResponse{}, err
	}
	gen, err := e.Generate(abi.GenerateRequest{
		Messages:   pr.Messages,
		Generation: MergeGeneration(e.c.p.Manifest.Generation, pr.Generation),
	})
	if err != nil {
		return abi.HandleResponse{}, err
	}
	v, err := e.c.validate(e, &abi.ValidateRequest{Query: req.Query, Response: gen.Text, Domain: e.c.p.Manifest.Name})
	if err != nil {
		return abi.HandleResponse{}, err
	}
	out := abi.HandleResponse{Response: gen.Text, Validation: v}
	if v.Response != nil {
		out.Response = *v.Response
	}
	return out, nil
}

// MergeGeneration returns base with every field that over sets replacing
// base's (zero values and nil pointers in over mean "not set").
func MergeGeneration(base, over abi.Generation) abi.Generation {
	if over.MaxTokens != 0 {
		base.MaxTokens = over.MaxTokens
	}
	if over.Temperature != nil {
		base.Temperature = over.Temperature
	}
	if over.TopP != nil {
		base.TopP = over.TopP
	}
	if over.TopK != 0 {
		base.TopK = over.TopK
	}
	if over.RepeatPenalty != nil {
		base.RepeatPenalty = over.RepeatPenalty
	}
	if over.Stop != nil {
		base.Stop = over.Stop
	}
	if over.Seed != nil {
		base.Seed = over.Seed
	}
	return base
}

// F32 returns a pointer to v, for the optional float fields of
// abi.Generation: Temperature: sdk.F32(0.3).
func F32(v float32) *float32 { return &v }

func (c *Compiled) defaultPrompt(req *abi.PromptRequest) (abi.PromptResponse, error) {
	hist := req.History
	if c.p.MaxHistory > 0 && len(hist) > c.p.MaxHistory {
		hist = hist[len(hist)-c.p.MaxHistory:]
	}
	msgs := make([]abi.Message, 0, len(hist)+2)
	if sys := c.system.render(req); sys != "" {
		msgs = append(msgs, abi.Message{Role: abi.RoleSystem, Content: sys})
	}
	for _, m := range hist {
		if (m.Role == abi.RoleUser || m.Role == abi.RoleAssistant) && m.Content != "" {
			msgs = append(msgs, m)
		}
	}
	msgs = append(msgs, abi.Message{Role: abi.RoleUser, Content: c.user.render(req)})
	return abi.PromptResponse{Messages: msgs}, nil
}

func (c *Compiled) prompt(env *Env, req *abi.PromptRequest) (abi.PromptResponse, error) {
	if strings.TrimSpace(req.Query) == "" {
		return abi.PromptResponse{}, errors.New("the query is empty")
	}
	if c.p.Prompt != nil {
		r, err := c.p.Prompt(env, *req)
		if err == nil && len(r.Messages) == 0 {
			err = errors.New("custom Prompt returned no messages")
		}
		return r, err
	}
	return c.defaultPrompt(req)
}

func (c *Compiled) validate(env *Env, req *abi.ValidateRequest) (abi.Validation, error) {
	if c.p.Validate != nil {
		v, err := c.p.Validate(env, *req)
		if v.Issues == nil {
			v.Issues = []abi.Issue{}
		}
		v.Score = min(max(v.Score, 0), 1)
		return v, err
	}
	return Evaluate(*req, c.p.Validators...), nil
}

func (c *Compiled) handle(env *Env, req *abi.PromptRequest) (abi.HandleResponse, error) {
	if strings.TrimSpace(req.Query) == "" {
		return abi.HandleResponse{}, errors.New("the query is empty")
	}
	if c.p.Handle != nil {
		r, err := c.p.Handle(env, *req)
		if r.Validation.Issues == nil {
			r.Validation.Issues = []abi.Issue{}
		}
		return r, err
	}
	return env.DefaultHandle(*req)
}

// tool runs the tool req names; its error becomes a failed call the model
// reads. A name the plugin does not declare is the host's mistake: an
// error of the export.
func (c *Compiled) tool(env *Env, req *abi.ToolRequest) (abi.ToolResponse, error) {
	for _, t := range c.p.Tools {
		if t.Name != req.Name {
			continue
		}
		args := req.Arguments
		if len(args) == 0 {
			args = json.RawMessage("{}")
		}
		out, err := t.Run(env, args)
		if err != nil {
			return abi.ToolResponse{Content: err.Error(), IsError: true}, nil
		}
		return abi.ToolResponse{Content: out}, nil
	}
	return abi.ToolResponse{}, fmt.Errorf("no tool named %q", req.Name)
}

// Invoke runs the export named export (abi.ExportDescribe, ExportPrompt,
// ExportValidate, ExportHandle or ExportTool) on input, the JSON the host would pass,
// and returns the JSON output. h serves host calls; nil means WasmHost.
// Errors say which export failed and why; a panic in plugin code is
// recovered and returned as an error. The wasm exports are thin wrappers
// around Invoke, so native tests exercise the same code.
func (c *Compiled) Invoke(h *Host, export string, input []byte) (out []byte, err error) {
	return c.invoke(h, export, input, nil, false)
}

// invoke is Invoke appending its output to dst[:0] (a scratch buffer the
// wasm layer reuses across calls; nil allocates). owned says that input is
// an immutable buffer of this call, which decoded strings may point into.
func (c *Compiled) invoke(h *Host, export string, input, dst []byte, owned bool) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out = nil
			err = fmt.Errorf("%s: plugin panicked: %v%s", export, r, panicSite())
		}
	}()
	if h == nil {
		h = wasmHost
	}
	switch export {
	case abi.ExportDescribe:
		return bytes.Clone(c.describe), nil
	case abi.ExportPrompt:
		if c.p.Prompt == nil {
			if out, ok := c.fastPrompt(input, dst); ok {
				return out, nil
			}
		}
		return c.promptDecoded(h, input, dst, owned)
	case abi.ExportValidate:
		// req stays on the stack: only the fallback's copy escapes (to
		// encoding/json), and an allocation costs microseconds in the
		// sandbox.
		var req abi.ValidateRequest
		if !fastValidateRequest(input, &req, owned) {
			slow := new(abi.ValidateRequest)
			if err := decodeInput(input, slow, owned, fastValidateRequest); err != nil {
				return nil, fmt.Errorf("%s: %w", export, err)
			}
			req = *slow
		}
		if c.p.Validate == nil {
			// The result is encoded before the Check is recycled.
			ck := getCheck()
			res := evaluate(ck, req, c.p.Validators)
			out = appendValidation(dst[:0], &res)
			putCheck(ck)
			return out, nil
		}
		res, err := c.validate(&Env{Host: h, c: c}, &req)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", export, err)
		}
		return appendValidation(dst[:0], &res), nil
	case abi.ExportHandle:
		var req abi.PromptRequest
		if err := decodePromptRequest(input, &req, owned); err != nil {
			return nil, fmt.Errorf("%s: %w", export, err)
		}
		res, err := c.handle(&Env{Host: h, c: c}, &req)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", export, err)
		}
		return encodeHandleResponse(&res), nil
	case abi.ExportTool:
		var req abi.ToolRequest
		if err := json.Unmarshal(input, &req); err != nil {
			return nil, fmt.Errorf("%s: decode input: %w", export, err)
		}
		res, err := c.tool(&Env{Host: h, c: c}, &req)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", export, err)
		}
		return json.Marshal(res)
	default:
		return nil, fmt.Errorf("unknown export %q", export)
	}
}

// promptDecoded runs the prompt export by decoding its input: the path for
// custom Prompt functions and for inputs fastPrompt does not take.
func (c *Compiled) promptDecoded(h *Host, input, dst []byte, owned bool) ([]byte, error) {
	var req abi.PromptRequest
	if err := decodePromptRequest(input, &req, owned); err != nil {
		return nil, fmt.Errorf("%s: %w", abi.ExportPrompt, err)
	}
	res, err := c.prompt(&Env{Host: h, c: c}, &req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", abi.ExportPrompt, err)
	}
	out, err := appendPromptResponse(dst[:0], &res)
	if err != nil {
		return nil, fmt.Errorf("%s: encode output: %w", abi.ExportPrompt, err)
	}
	return out, nil
}

func decodePromptRequest(in []byte, r *abi.PromptRequest, owned bool) error {
	return decodeInput(in, r, owned, fastPromptRequest)
}

// decodeInput decodes the JSON input of an export into v: with fast when it
// can, else with encoding/json (the same result, see json.go). Unknown
// fields are ignored so that a newer host can add optional fields within
// ABI v1.
func decodeInput[T any](in []byte, v *T, owned bool, fast func([]byte, *T, bool) bool) error {
	if fast(in, v, owned) {
		return nil
	}
	var zero T
	*v = zero
	if len(bytes.TrimSpace(in)) == 0 {
		return errors.New("empty input: want a JSON object")
	}
	if err := json.Unmarshal(in, v); err != nil {
		return fmt.Errorf("decode input: %w", err)
	}
	return nil
}

// panicSite returns " at FUNC (FILE:LINE)" for the frame that panicked, or
// "" when the stack cannot be read.
func panicSite() string {
	lines := strings.Split(string(debug.Stack()), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "panic(") && i+3 < len(lines) {
			fn := strings.TrimSpace(lines[i+2])
			if j := strings.LastIndexByte(fn, '('); j > 0 {
				fn = fn[:j]
			}
			loc := strings.TrimSpace(lines[i+3])
			if j := strings.LastIndex(loc, " +0x"); j > 0 {
				loc = loc[:j]
			}
			return " at " + fn + " (" + loc + ")"
		}
	}
	return ""
}
