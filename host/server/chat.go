package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/internal/tenant"
	"github.com/mdsa-go/mdsa/internal/wire"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// modelAuto is the model id that routes each query to a domain; modelPrefix
// + domain forces one.
const (
	modelAuto   = "mdsa"
	modelPrefix = "mdsa/"
)

// chatCompletion is OpenAI's chat.completion object plus an "mdsa" member.
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
	MDSA    mdsaInfo     `json:"mdsa"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	FinishReason string      `json:"finish_reason"`
	Logprobs     *struct{}   `json:"logprobs"`
}

type chatMessage struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	Refusal   *string    `json:"refusal"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

// toolCall is OpenAI's tool call object; Index is set in stream deltas.
type toolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// toolCallsOf maps the model's calls; stream deltas carry an index.
func toolCallsOf(calls []structured.Call, indexed bool) []toolCall {
	out := make([]toolCall, len(calls))
	for i, c := range calls {
		out[i] = toolCall{ID: c.ID, Type: "function", Function: toolFunction{Name: c.Name, Arguments: c.Arguments}}
		if indexed {
			out[i].Index = &i
		}
	}
	return out
}

type chatUsage struct {
	PromptTokens        int                 `json:"prompt_tokens"`
	CompletionTokens    int                 `json:"completion_tokens"`
	TotalTokens         int                 `json:"total_tokens"`
	PromptTokensDetails promptTokensDetails `json:"prompt_tokens_details"`
}

// promptTokensDetails is OpenAI's breakdown of the prompt tokens:
// cached_tokens were reused from the engine's cache, not evaluated.
type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// mdsaInfo is what MDSA adds to a completion: how the query was routed and
// validated, and the stage timings.
type mdsaInfo struct {
	RequestID string `json:"request_id"`
	Domain    string `json:"domain"`
	// Cache is "hit" (the answer was kept from an identical request),
	// "miss" or absent (not a request the response cache keeps).
	Cache      string         `json:"cache,omitempty"`
	Confidence float64        `json:"confidence"`
	Status     string         `json:"status"`
	Validation abi.Validation `json:"validation"`
	TimingsMS  wire.Timings   `json:"timings_ms"`
	// Conversation says how the earlier user turns weighed in routing;
	// HistoryDropped counts the oldest messages left out of the prompt to
	// fit the model's context.
	Conversation   *router.Conversation `json:"conversation,omitempty"`
	HistoryDropped int                  `json:"history_dropped,omitempty"`
	// ToolSteps are the domain's own tools the host ran while answering.
	ToolSteps []host.ToolStep `json:"tool_steps,omitempty"`
	// Citations are the knowledge-base passages the prompt was given.
	Citations []host.Citation `json:"citations,omitempty"`
	// Response is the final (validated) text; sent in the last chunk of a
	// stream only, since validation may revise what was streamed.
	Response *string `json:"response,omitempty"`
}

// chatChunk is OpenAI's chat.completion.chunk.
type chatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []chunkChoice `json:"choices"`
	Usage   *chatUsage    `json:"usage,omitempty"`
	MDSA    *mdsaInfo     `json:"mdsa,omitempty"`
}

type chunkChoice struct {
	Index        int        `json:"index"`
	Delta        chunkDelta `json:"delta"`
	FinishReason *string    `json:"finish_reason"`
	Logprobs     *struct{}  `json:"logprobs"`
}

type chunkDelta struct {
	Role      string     `json:"role,omitempty"`
	Content   string     `json:"content,omitempty"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

// chat serves POST /v1/chat/completions.
func (s *Server) chat(c *call) *apiError {
	data, aerr := c.body()
	if aerr != nil {
		return aerr
	}
	req, aerr := decodeChat(data)
	if aerr != nil {
		return aerr
	}
	raw, aerr := c.catalogModel(req.Model)
	if aerr != nil {
		return aerr
	}
	domain := ""
	if !raw {
		if domain, aerr = c.chatDomain(req.Model); aerr != nil {
			return aerr
		}
	}
	maxTokens, aerr := c.maxTokens(req.MaxTokens, req.MaxTokensParam)
	if aerr != nil {
		return aerr
	}
	if raw {
		if req.ConversationID != "" {
			return badRequest("conversation_id", "unsupported_value",
				"conversation_id: a kept conversation is answered by a domain (model \"mdsa\" or a domain's name), not by the raw model %q", clip(req.Model, 80))
		}
		return c.chatModel(req, maxTokens)
	}
	history, aerr := c.withConversation(req.ConversationID, req.History)
	if aerr != nil {
		return aerr
	}
	req.History = history
	c.query, c.forced = req.Query, domain != ""
	hreq := host.Request{Query: req.Query, History: req.History, Domain: domain,
		Generation: req.generation(maxTokens), RequestID: c.id, OnCache: c.setCacheHeader,
		Format: req.Format, Tools: req.Tools, Turns: req.Turns}
	if req.System != "" {
		hreq.Context = map[string]string{"system": req.System}
	}
	if req.Stream {
		return c.chatStream(req, hreq)
	}
	res, err := c.ht.Process(c.r.Context(), hreq)
	c.record(res)
	if err != nil {
		return c.hostError(err)
	}
	out := chatCompletion{
		ID: "chatcmpl-" + c.id, Object: "chat.completion", Created: c.start.Unix(), Model: modelID(res.Domain),
		Choices: []chatChoice{{Message: chatMessage{Role: abi.RoleAssistant, Content: res.Response, ToolCalls: toolCallsOf(res.ToolCalls, false)},
			FinishReason: finishReason(res)}},
		Usage: usageOf(res),
		MDSA:  info(res),
	}
	if len(res.ToolCalls) == 0 && len(req.Turns) == 0 {
		// A kept conversation holds the user's and the assistant's words;
		// rounds of the client's tools stay with the client.
		c.keepTurn(req.Query, res.Response)
	}
	c.json(http.StatusOK, out)
	return nil
}

// chatDomain maps a model id to the domain to force ("" routes).
func (c *call) chatDomain(model string) (string, *apiError) {
	if model == modelAuto {
		return "", nil
	}
	if d, ok := strings.CutPrefix(model, modelPrefix); ok && d != "" {
		if !c.t.AllowsPlugin(d) && c.s.pluginExists(d) {
			return "", forbidden("model", "this API key may not use the domain %q (model %q); GET /v1/models lists what it may use", d, clip(model, 80))
		}
		if c.tenantHasPlugin(d) {
			return d, nil
		}
	}
	return "", modelNotFound("model", "the model %q does not exist; use one of: %s", clip(model, 80), strings.Join(c.chatModelIDs(), ", "))
}

// catalogModel reports whether model names a catalog model (the raw
// model, no routing and no plugin), refusing one the tenant may not use.
func (c *call) catalogModel(model string) (bool, *apiError) {
	if model == modelAuto || strings.HasPrefix(model, modelPrefix) {
		return false, nil
	}
	for _, m := range c.ht.Models() {
		if m.Name != model {
			continue
		}
		if !c.t.AllowsModel(model) {
			return false, forbidden("model", "this API key may not use the model %q; GET /v1/models lists what it may use", clip(model, 80))
		}
		return true, nil
	}
	return false, nil
}

// chatModel answers a chat completion from a catalog model as it is: the
// messages go to the model, its text comes back (streamed when asked).
func (c *call) chatModel(req chatRequest, maxTokens int) *apiError {
	var msgs []abi.Message
	if req.System != "" {
		msgs = append(msgs, abi.Message{Role: abi.RoleSystem, Content: req.System})
	}
	msgs = append(msgs, req.History...)
	msgs = append(msgs, abi.Message{Role: abi.RoleUser, Content: req.Query})
	gen := req.generation(maxTokens)
	var formatInstr string
	if req.Format != nil {
		formatInstr = req.Format.Instruction()
	}
	msgs = structured.Instruct(msgs, formatInstr, req.Tools.Instruction())
	msgs = append(msgs, structured.Messages(req.Turns)...)
	grammar, err := structured.Grammar(req.Tools, req.Format)
	if err != nil {
		return structuredError("tools", err)
	}
	ctx := c.r.Context()
	var sse *sseStream
	var onToken engine.TokenFunc
	if req.Stream {
		sse = &sseStream{w: c.w, base: chatChunk{ID: "chatcmpl-" + c.id, Object: "chat.completion.chunk",
			Created: c.start.Unix(), Model: req.Model}}
		onToken = func(piece string) error {
			if piece == "" {
				return nil
			}
			return sse.delta(chunkDelta{Content: piece})
		}
		if req.Tools.Active() {
			onToken = structured.AnswerOnly(onToken)
		}
	}
	emsgs := make([]engine.Message, len(msgs))
	for i, m := range msgs {
		emsgs[i] = engine.Message{Role: m.Role, Content: m.Content}
	}
	t0 := time.Now()
	res, err := c.ht.GenerateConstrained(ctx, req.Model, emsgs, gen,
		host.Constraint{Grammar: grammar, Schema: structured.Schema(req.Tools, req.Format)}, onToken)
	c.tokens = host.Tokens{Prompt: res.TokensIn, Completion: res.TokensOut, Cached: res.TokensCached}
	c.timings = host.Timings{Generate: time.Since(t0)}
	hres := host.Result{Response: res.Text, FinishReason: res.FinishReason, Status: host.StatusOK, RequestID: c.id,
		Tokens: c.tokens, Timings: c.timings, Validation: abi.Validation{OK: true, Score: 1, Issues: []abi.Issue{}}}
	if err != nil {
		aerr := c.hostError(err)
		if sse == nil || !sse.started {
			return aerr
		}
		c.err = aerr
		if aerr.Status != statusClientClosed {
			sse.event(aerr.body())
		}
		return nil
	}
	if req.Tools.Active() && structured.IsCall(res.Text) {
		hres.Response = ""
		if calls, ok := structured.Parse(res.Text); ok {
			hres.ToolCalls, hres.FinishReason = calls, host.FinishToolCalls
		}
	}
	c.status = host.StatusOK
	if sse == nil {
		c.json(http.StatusOK, chatCompletion{
			ID: "chatcmpl-" + c.id, Object: "chat.completion", Created: c.start.Unix(), Model: req.Model,
			Choices: []chatChoice{{Message: chatMessage{Role: abi.RoleAssistant, Content: hres.Response, ToolCalls: toolCallsOf(hres.ToolCalls, false)},
				FinishReason: finishReason(hres)}},
			Usage: usageOf(hres),
			MDSA:  info(hres),
		})
		return nil
	}
	if len(hres.ToolCalls) > 0 {
		if err := sse.delta(chunkDelta{ToolCalls: toolCallsOf(hres.ToolCalls, true)}); err != nil {
			c.err = hostError(c.id, fmt.Errorf("%w: %w", errClientGone, err))
			return nil
		}
	}
	sse.finish(hres, info(hres), req.IncludeUsage)
	return nil
}

// pluginExists reports whether any tenant's host space serves domain d.
func (s *Server) pluginExists(d string) bool {
	for _, p := range s.h.Plugins() {
		if p.Name == d {
			return true
		}
	}
	return false
}

func (c *call) tenantHasPlugin(d string) bool {
	for _, p := range c.ht.Plugins() {
		if p.Name == d && c.t.AllowsPlugin(d) {
			return true
		}
	}
	return false
}

// chatModelIDs lists the chat model ids this tenant may use.
func (c *call) chatModelIDs() []string {
	ids := []string{modelAuto}
	for _, p := range c.ht.Plugins() {
		if c.t.AllowsPlugin(p.Name) {
			ids = append(ids, modelPrefix+p.Name)
		}
	}
	for _, m := range c.ht.Models() {
		if c.t.AllowsModel(m.Name) {
			ids = append(ids, m.Name)
		}
	}
	return ids
}

// maxTokens resolves a requested max_tokens (0: not given) against the
// tenant's limit.
func (c *call) maxTokens(requested int, param string) (int, *apiError) {
	n, err := c.t.MaxTokens(requested)
	if err != nil {
		var le *tenant.LimitError
		if errors.As(err, &le) {
			return 0, limitError(le, param)
		}
		return 0, badRequest(param, "invalid_value", "%s: %v", param, err)
	}
	return n, nil
}

// hostError maps a host error; a forced domain the tenant's space lacks is
// a 404 for the model.
func (c *call) hostError(err error) *apiError {
	if errors.Is(err, host.ErrUnknownDomain) {
		return modelNotFound("model", "no such domain; use one of: %s", strings.Join(c.chatModelIDs(), ", "))
	}
	return hostError(c.id, err)
}

func modelID(domain string) string {
	if domain == "" {
		return modelAuto
	}
	return modelPrefix + domain
}

func finishReason(res host.Result) string {
	switch res.FinishReason {
	case engine.FinishLength:
		return "length"
	case host.FinishToolCalls:
		return "tool_calls"
	}
	return "stop"
}

func usageOf(res host.Result) chatUsage {
	return chatUsage{PromptTokens: res.Tokens.Prompt, CompletionTokens: res.Tokens.Completion,
		TotalTokens:         res.Tokens.Prompt + res.Tokens.Completion,
		PromptTokensDetails: promptTokensDetails{CachedTokens: res.Tokens.Cached}}
}

func info(res host.Result) mdsaInfo {
	return mdsaInfo{RequestID: res.RequestID, Domain: res.Domain, Cache: res.Cache, Confidence: res.Confidence, Status: string(res.Status),
		Validation: res.Validation, TimingsMS: wire.FromTimings(res.Timings), Conversation: res.Conversation,
		HistoryDropped: res.HistoryDropped, ToolSteps: res.ToolSteps, Citations: res.Citations}
}

// chatStream answers with server-sent events: a chunk per piece of text as
// the model makes it, then one with the rest of the validated answer if
// validation extended it, a final chunk with finish_reason (and the mdsa
// object and, when asked, usage), and "data: [DONE]". The query is routed
// before generation so that every chunk names the domain. When validation
// changed the text otherwise than by extending it (a redaction), the
// streamed text stays as it was and only mdsa.response in the final chunk
// has the validated text. The request's context ends when the client goes
// away, which stops the generation.
func (c *call) chatStream(req chatRequest, hreq host.Request) *apiError {
	ctx := c.r.Context()
	sse := &sseStream{w: c.w, base: chatChunk{ID: "chatcmpl-" + c.id, Object: "chat.completion.chunk",
		Created: c.start.Unix(), Model: modelID(hreq.Domain)}}
	// Every chunk names the domain: the host says which before the first
	// token.
	hreq.OnRoute = func(d router.Decision) error {
		if !d.OutOfScope {
			sse.base.Model = modelID(d.Domain)
		}
		return nil
	}
	var streamed strings.Builder
	res, err := c.ht.Stream(ctx, hreq, func(piece string) error {
		if piece == "" {
			return nil
		}
		streamed.WriteString(piece)
		return sse.delta(chunkDelta{Content: piece})
	})
	c.record(res)
	if err != nil {
		aerr := c.hostError(err)
		if !sse.started {
			return aerr
		}
		// Mid-stream: the status is sent already; say it in the stream.
		c.err = aerr
		if aerr.Status != statusClientClosed {
			sse.event(aerr.body())
		}
		return nil
	}
	if rest, rewritten := res.Revision(streamed.String()); !rewritten && rest != "" {
		if err := sse.delta(chunkDelta{Content: rest}); err != nil {
			c.err = hostError(c.id, fmt.Errorf("%w: %w", errClientGone, err))
			return nil
		}
	}
	if len(res.ToolCalls) > 0 {
		if err := sse.delta(chunkDelta{ToolCalls: toolCallsOf(res.ToolCalls, true)}); err != nil {
			c.err = hostError(c.id, fmt.Errorf("%w: %w", errClientGone, err))
			return nil
		}
	}
	mi := info(res)
	mi.Response = &res.Response
	if len(res.ToolCalls) == 0 && len(req.Turns) == 0 {
		c.keepTurn(req.Query, res.Response)
	}
	sse.finish(res, mi, req.IncludeUsage)
	return nil
}

// finish ends a stream: the chunk with the finish reason and the mdsa
// object, the usage chunk when asked, and [DONE]. A failed write ends it
// early (the client is gone).
func (s *sseStream) finish(res host.Result, mi mdsaInfo, includeUsage bool) {
	if !s.started {
		s.start()
	}
	fin := finishReason(res)
	last := s.base
	last.Choices = []chunkChoice{{Delta: chunkDelta{}, FinishReason: &fin}}
	last.MDSA = &mi
	if s.event(last) != nil {
		return
	}
	if includeUsage {
		// As OpenAI sends it: a chunk of its own, with no choices.
		u := usageOf(res)
		usage := s.base
		usage.Choices, usage.Usage = []chunkChoice{}, &u
		if s.event(usage) != nil {
			return
		}
	}
	s.done()
}

// errClientGone wraps a failed write to a client.
var errClientGone = errors.New("writing to the client")

// sseStream writes chat chunks as server-sent events, flushing each.
type sseStream struct {
	w       *responseWriter
	base    chatChunk
	started bool
	err     error
}

// start sends the headers and the first chunk, which carries the role.
func (s *sseStream) start() error {
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	first := s.base
	first.Choices = []chunkChoice{{Delta: chunkDelta{Role: abi.RoleAssistant}}}
	return s.event(first)
}

// delta sends one piece of text.
func (s *sseStream) delta(d chunkDelta) error {
	if !s.started {
		if err := s.start(); err != nil {
			return err
		}
	}
	ch := s.base
	ch.Choices = []chunkChoice{{Delta: d}}
	return s.event(ch)
}

// event sends v as one "data:" event and flushes it.
func (s *sseStream) event(v any) error {
	if s.err != nil {
		return s.err
	}
	b, err := json.Marshal(v)
	if err != nil {
		s.err = err
		return err
	}
	return s.raw(b)
}

func (s *sseStream) raw(b []byte) error {
	buf := make([]byte, 0, len(b)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, b...)
	buf = append(buf, "\n\n"...)
	if _, err := s.w.Write(buf); err != nil {
		s.err = err
		return err
	}
	if err := http.NewResponseController(s.w).Flush(); err != nil {
		s.err = err
		return err
	}
	return nil
}

// done ends the stream.
func (s *sseStream) done() { s.raw([]byte("[DONE]")) }

// headerCache says whether the response cache answered: hit or miss.
const headerCache = "X-MDSA-Cache"

// setCacheHeader is host.Request.OnCache: it sets X-MDSA-Cache (before
// any text of a stream is written) and counts the lookup per tenant.
func (c *call) setCacheHeader(result string) {
	c.w.Header().Set(headerCache, result)
	c.s.metrics.ObserveCache(c.label, result)
}
