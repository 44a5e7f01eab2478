package host

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Request is one query.
type Request struct {
	// Query is the user's question.
	Query string `json:"query"`
	// History holds earlier turns of the conversation, oldest first.
	History []abi.Message `json:"history,omitempty"`
	// Context is passed to the plugin's prompt template.
	Context map[string]string `json:"context,omitempty"`
	// Domain forces a domain; empty means route.
	Domain string `json:"domain,omitempty"`
	// Generation overrides sampling settings (applied last, capped by the
	// host's engine.max_tokens).
	Generation abi.Generation `json:"generation,omitempty"`
	// RequestID identifies the request in logs; one is made up when empty.
	RequestID string `json:"request_id,omitempty"`
	// OnRoute, when set, is called once with the routing decision (for a
	// forced Domain: that domain, confidence 1), before the plugin builds
	// the prompt or, out of scope, before the refusal is returned. An
	// error it returns ends the request with that error. A streaming
	// caller uses it to name the domain before the first token.
	OnRoute func(router.Decision) error `json:"-"`
	// Format, when set, constrains the answer to JSON (structured outputs):
	// the model can only write JSON of the format (json_schema, strict:
	// valid by construction), and a validator's revision that breaks it is
	// dropped.
	Format *structured.Format `json:"-"`
	// Tools are the client's tools the model may call, and how (nil:
	// none); the calls it makes are the answer (Result.ToolCalls). The
	// routed domain's own tools (ABI 1.1) are added; the host runs those.
	Tools *structured.Toolset `json:"-"`
	// Turns are the rounds of tool calls and their results that followed
	// Query: the client ran its tools and sends the results back.
	Turns []structured.Turn `json:"-"`
	// OnCache, when set, is called with CacheHit or CacheMiss as soon as
	// the response cache has looked the request up (before any text of a
	// hit is passed on); not called for requests the cache does not keep.
	// A server sets its X-MDSA-Cache header there.
	OnCache func(result string) `json:"-"`
}

// Status says how a request was answered.
type Status string

// Result statuses.
const (
	StatusOK         Status = "ok"           // answered, validation passed
	StatusFlagged    Status = "flagged"      // answered, but validation found errors
	StatusOutOfScope Status = "out_of_scope" // no domain fits; Response is the refusal
)

// Tokens counts prompt and completion tokens.
type Tokens struct {
	Prompt     int `json:"prompt"`
	Completion int `json:"completion"`
	// Cached is how many of the Prompt tokens the engine reused from its
	// cache of earlier prompts (a shared prefix, such as the domain's system
	// prompt) instead of evaluating them; Prompt - Cached were evaluated.
	Cached int `json:"cached"`
	// Embedded is how many input tokens the plugin's mdsa_embed calls
	// embedded while serving the request.
	Embedded int `json:"embedded,omitempty"`
}

// Revision says what validation changed in an answer whose model text was
// streamed: the text appended after it (a disclaimer, say), or, when the
// plugin rewrote the answer, rewritten true (Response is then the whole new
// answer). Streaming callers (the HTTP server, the CLI) show it after the
// streamed tokens so that no revision is lost.
func (r Result) Revision(streamed string) (appended string, rewritten bool) {
	if rest, ok := strings.CutPrefix(r.Response, streamed); ok {
		return rest, false
	}
	return "", true
}

// Charged is the tokens a request counts against its tenant's tokens per
// minute: prompt, completion and embedded.
func (t Tokens) Charged() int { return t.Prompt + t.Completion + t.Embedded }

// Timings are per-stage wall times. Prompt and Generate are zero for a
// plugin that drives its own host calls (handle); Total covers the whole
// request.
type Timings struct {
	Route, Prompt, Generate, Validate, Total time.Duration
	// Retrieve is the knowledge-base search of a domain that declares
	// one (part of Prompt's stage before the plugin runs).
	Retrieve time.Duration
}

// Result is the answer to a Request. (The HTTP API and the CLI's --json
// write it with timings in milliseconds, "timings_ms".)
type Result struct {
	RequestID string
	Status    Status
	// Domain is the plugin that answered ("" when out of scope) and
	// Confidence the router's confidence in it; Alternatives are the
	// runners-up.
	Domain       string
	Confidence   float64
	Alternatives []router.Scored
	// Response is the final answer, after validation.
	Response   string
	Validation abi.Validation
	// Model is the catalog model that generated the answer, and
	// FinishReason why generation stopped ("stop", "length").
	Model        string
	FinishReason string
	Tokens       Tokens
	Timings      Timings
	// Conversation, for a routed query with earlier user turns, says how
	// they weighed in the routing (router.conversation_switch).
	Conversation *router.Conversation
	// HistoryDropped counts the oldest history messages left out of the
	// prompt so that it fit the model's context.
	HistoryDropped int
	// ToolCalls are the calls of the client's tools the model made: the
	// answer is these calls (Response is empty, FinishReason
	// FinishToolCalls).
	ToolCalls []structured.Call
	// ToolSteps are the calls of the domain's own tools the host ran while
	// answering, in order.
	ToolSteps []ToolStep
	// Citations are the passages of the domain's knowledge base the prompt
	// was given (numbered in its context as [1], [2], ...).
	Citations []Citation
	// Cache is CacheHit when the answer came from the response cache (no
	// plugin or model ran; Tokens are 0), CacheMiss when it was computed
	// and kept, "" when the request is not one the cache keeps.
	Cache string
}

// Process answers req.
func (h *Host) Process(ctx context.Context, req Request) (Result, error) {
	return h.Stream(ctx, req, nil)
}

// Stream answers req and passes the model's text to onToken as it is
// generated. The plugin's validator runs on the whole answer afterwards and
// may revise it (for example to add a disclaimer or redact personal data):
// Result.Response is the final text, which can differ from the streamed one.
// For a plugin with its own handle export nothing is streamed.
func (h *Host) Stream(ctx context.Context, req Request, onToken engine.TokenFunc) (Result, error) {
	return h.serve(ctx, "", req, onToken)
}

// serve answers req for tenant ("" for the default space).
func (h *Host) serve(ctx context.Context, tenant string, req Request, onToken engine.TokenFunc) (Result, error) {
	if h.closed.Load() {
		return Result{}, ErrClosed
	}
	if req.RequestID == "" {
		req.RequestID = newRequestID()
	}
	ctx, span := h.tracer.Start(ctx, "mdsa.request", trace.WithAttributes(
		attribute.String("mdsa.request_id", req.RequestID), attribute.String("mdsa.tenant", tenant)))
	res, err := h.stream(ctx, tenant, req, onToken)
	span.SetAttributes(attribute.String("mdsa.domain", res.Domain), attribute.String("mdsa.status", string(res.Status)),
		attribute.Int("mdsa.tokens.prompt", res.Tokens.Prompt), attribute.Int("mdsa.tokens.completion", res.Tokens.Completion))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return res, err
}

// stage starts the span of one stage; end closes it, recording err.
func (h *Host) stage(ctx context.Context, name string) (context.Context, func(error)) {
	ctx, span := h.tracer.Start(ctx, name)
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

func (h *Host) stream(ctx context.Context, tenant string, req Request, onToken engine.TokenFunc) (Result, error) {
	start := time.Now()
	res := Result{RequestID: req.RequestID}
	log := h.log.With("request_id", req.RequestID)
	if tenant != "" {
		log = log.With("tenant", tenant)
	}
	pinned, release := h.acquire()
	defer release()
	st, err := pinned.space(tenant)
	if err != nil {
		return res, err
	}

	// Route, or take the forced domain.
	t := time.Now()
	if req.Domain != "" {
		if _, ok := st.plugins[req.Domain]; !ok {
			return res, fmt.Errorf("%w %q (have: %v)", ErrUnknownDomain, req.Domain, st.router.Domains())
		}
		res.Domain, res.Confidence = req.Domain, 1
		if req.OnRoute != nil {
			if err := req.OnRoute(router.Decision{Domain: req.Domain, Confidence: 1}); err != nil {
				return res, err
			}
		}
	} else {
		rctx, end := h.stage(ctx, "mdsa.route")
		d, conv := h.routeRequest(rctx, st.router, req)
		end(nil)
		res.Domain, res.Confidence, res.Alternatives, res.Conversation = d.Domain, d.Confidence, d.Alternatives, conv
		if req.OnRoute != nil {
			if err := req.OnRoute(d); err != nil {
				return res, err
			}
		}
		if d.OutOfScope {
			res.Timings.Route = time.Since(t)
			res.Status = StatusOutOfScope
			res.Response = h.cfg.Router.OutOfScopeMessage
			res.Validation = abi.Validation{OK: true, Score: 1, Issues: []abi.Issue{}}
			res.Timings.Total = time.Since(start)
			log.Info("out of scope", "confidence", d.Confidence)
			return res, nil
		}
	}
	res.Timings.Route = time.Since(t)
	p := st.plugins[res.Domain]
	var cacheKey cacheKeys
	if h.cache != nil {
		cacheKey = h.cache.keys(tenant, h.cacheModel(p), p, res.Domain, req)
	}
	var queryVec []float32
	if cacheKey.exact != "" {
		a, ok := h.cache.get(ctx, cacheKey.exact)
		if !ok {
			a, queryVec, ok = h.similar(ctx, tenant, cacheKey, req.Query)
		}
		if ok {
			if req.OnCache != nil {
				req.OnCache(CacheHit)
			}
			err := answerFromCache(&res, a, onToken)
			res.Timings.Total = time.Since(start)
			log.Info("answered from the cache", "domain", res.Domain, "total_ms", res.Timings.Total)
			return res, err
		}
		res.Cache = CacheMiss
		if req.OnCache != nil {
			req.OnCache(CacheMiss)
		}
	}
	preq := abi.PromptRequest{Query: req.Query, History: req.History, Context: req.Context, ResponseFormat: abiFormat(req.Format)}
	retrievalTokens := 0 // embedding the query for the knowledge base
	if spec := p.Manifest().Knowledge; spec != nil && h.kb != nil {
		t = time.Now()
		kctx, end := h.stage(ctx, "mdsa.retrieve")
		passages, cites, embedded, err := h.retrieve(kctx, tenant, spec, req.Query)
		end(err)
		res.Timings.Retrieve = time.Since(t)
		retrievalTokens = embedded
		if err != nil {
			// The answer goes on without the knowledge base.
			log.Warn("knowledge base search failed", "domain", res.Domain, "kb", spec.KB, "err", err)
		} else if passages != "" {
			ctxMap := make(map[string]string, len(req.Context)+1)
			for k, v := range req.Context {
				ctxMap[k] = v
			}
			ctxMap[abi.ContextKnowledge] = passages
			preq.Context, res.Citations = ctxMap, cites
		}
	}
	// The request's max_tokens (already resolved against its tenant's
	// limit) bounds what the plugin's own generations may produce too.
	ctx = plugin.WithRequestInfo(ctx, plugin.RequestInfo{ID: req.RequestID, Tenant: tenant, MaxTokens: req.Generation.MaxTokens})

	if p.HasHandle() {
		if req.Tools != nil && len(req.Tools.Tools) > 0 {
			return res, fmt.Errorf("host: request %s: domain %s: %w", req.RequestID, res.Domain, ErrToolsUnsupported)
		}
		u := &usage{}
		t = time.Now()
		hctx, end := h.stage(ctx, "mdsa.handle")
		hr, err := p.Handle(withUsage(hctx, u), preq)
		end(err)
		// What the plugin's host calls spent is charged even when it fails.
		res.Tokens = Tokens{Prompt: u.in, Completion: u.out, Cached: u.cached, Embedded: u.embedded}
		if err != nil {
			return res, fmt.Errorf("host: request %s: plugin %s: handle: %w", req.RequestID, p.Name(), err)
		}
		res.Timings.Generate = time.Since(t)
		res.Response, res.Validation = hr.Response, hr.Validation
		res.Model, res.FinishReason = u.model, u.finish
		if req.Format != nil {
			res.Response = checkFormat(req.Format, hr.Response, &res.Validation, u.finish)
		}
	} else {
		ts, err := h.requestTools(req, p)
		if err != nil {
			return res, fmt.Errorf("host: request %s: %w", req.RequestID, err)
		}
		var formatInstr string
		if req.Format != nil {
			formatInstr = req.Format.Instruction()
		}
		var tr turnResult
		// A conversation longer than the model's context loses its oldest
		// turns rather than failing (each pass drops at least one).
		for {
			t = time.Now()
			pctx, end := h.stage(ctx, "mdsa.prompt")
			pr, err := p.Prompt(pctx, preq)
			end(err)
			if err != nil {
				return res, fmt.Errorf("host: request %s: plugin %s: prompt: %w", req.RequestID, p.Name(), err)
			}
			res.Timings.Prompt += time.Since(t)

			man := p.Manifest()
			lease, err := h.lease(ctx, man.Model, st.models)
			if err != nil {
				return res, fmt.Errorf("host: request %s: model for plugin %s: %w", req.RequestID, p.Name(), err)
			}
			params := h.params(man.Generation, pr.Generation, req.Generation)
			msgs := pr.Messages
			if req.Format != nil || ts.Active() {
				// The plugin's stop strings could cut JSON or a call short;
				// only the client's own apply.
				params.Stop = req.Generation.Stop
				msgs = structured.Instruct(msgs, formatInstr, ts.Instruction())
			}
			msgs = append(msgs, structured.Messages(req.Turns)...)
			t = time.Now()
			gctx, end := h.stage(ctx, "mdsa.generate")
			tr, err = h.generateTurns(gctx, lease.Engine(), p, req.Query, msgs, params, ts, req.Format, onToken)
			end(err)
			var cle *engine.ContextLengthError
			if err != nil && len(preq.History) > 0 && tr.gen.TokensOut == 0 && len(tr.steps) == 0 && errors.As(err, &cle) {
				drop := dropForContext(ctx, lease.Engine(), preq.History, cle, params.MaxTokens)
				lease.Release()
				preq.History = preq.History[drop:]
				res.HistoryDropped += drop
				log.Info("conversation over the model's context: oldest turns left out",
					"dropped", drop, "kept", len(preq.History), "tokens", cle.Tokens, "context", cle.Context)
				continue
			}
			lease.Release()
			res.ToolSteps = tr.steps
			if err != nil {
				res.Tokens = Tokens{Prompt: tr.gen.TokensIn, Completion: tr.gen.TokensOut, Cached: tr.gen.TokensCached}
				return res, fmt.Errorf("host: request %s: generate: %w", req.RequestID, err)
			}
			res.Timings.Generate = time.Since(t)
			break
		}
		gen := tr.gen
		res.Model, res.FinishReason = gen.Model, gen.FinishReason
		res.Tokens = Tokens{Prompt: gen.TokensIn, Completion: gen.TokensOut, Cached: gen.TokensCached}

		if len(tr.calls) > 0 {
			// The answer is calls of the client's tools: nothing to validate.
			res.ToolCalls = tr.calls
			res.Validation = abi.Validation{OK: true, Score: 1, Issues: []abi.Issue{}}
		} else {
			t = time.Now()
			vctx, end := h.stage(ctx, "mdsa.validate")
			v, err := p.Validate(vctx, abi.ValidateRequest{Query: req.Query, Response: gen.Text, Domain: res.Domain, ResponseFormat: preq.ResponseFormat})
			end(err)
			if err != nil {
				return res, fmt.Errorf("host: request %s: plugin %s: validate: %w", req.RequestID, p.Name(), err)
			}
			res.Timings.Validate = time.Since(t)
			res.Response = gen.Text
			if req.Format != nil {
				res.Response = checkFormat(req.Format, gen.Text, &v, gen.FinishReason)
			} else if v.Response != nil {
				res.Response = *v.Response
				v.Response = nil
			}
			res.Validation = v
		}
	}
	res.Tokens.Embedded += retrievalTokens
	if res.Validation.Issues == nil {
		res.Validation.Issues = []abi.Issue{}
	}
	res.Status = StatusOK
	if !res.Validation.OK {
		res.Status = StatusFlagged
	}
	if cacheKey.exact != "" {
		h.cache.put(ctx, cacheKey, queryVec, res)
	}
	res.Timings.Total = time.Since(start)
	log.Info("answered", "domain", res.Domain, "status", res.Status, "tokens", res.Tokens.Completion,
		"total_ms", res.Timings.Total)
	return res, nil
}

// dropForContext says how many of the oldest history messages to leave
// out so that a prompt of cle.Tokens tokens leaves room for maxTokens of
// answer (or, at worst, half the context): the messages' own token counts
// when the engine knew the prompt's, else half of them. At least one.
func dropForContext(ctx context.Context, e engine.Engine, history []abi.Message, cle *engine.ContextLengthError, maxTokens int) int {
	if cle.Tokens <= 0 || cle.Context <= 0 {
		return max(len(history)/2, 1)
	}
	target := max(cle.Context-maxTokens, cle.Context/2)
	excess := cle.Tokens - target
	drop := 0
	for drop < len(history) && excess > 0 {
		n, err := e.CountTokens(ctx, history[drop].Content)
		if err != nil {
			n = len(history[drop].Content) / 4 // an estimate beats giving up
		}
		excess -= n + messageOverhead
		drop++
	}
	// Whole turns: what is kept starts with a user message.
	for drop < len(history) && history[drop].Role != abi.RoleUser {
		drop++
	}
	return max(drop, 1)
}

// messageOverhead is about what a chat template adds per message (role
// markers, separators), in tokens.
const messageOverhead = 4

// routeRequest routes req's query, reading it with the conversation's
// earlier user turns when it has some (router.conversation_switch > 0).
func (h *Host) routeRequest(ctx context.Context, r router.Router, req Request) (router.Decision, *router.Conversation) {
	sw := h.cfg.Router.ConversationSwitch
	if sw <= 0 || len(req.History) == 0 {
		return r.Route(ctx, req.Query), nil
	}
	var turns []string
	for _, m := range req.History {
		if m.Role == abi.RoleUser {
			turns = append(turns, m.Content)
		}
	}
	if len(turns) == 0 {
		return r.Route(ctx, req.Query), nil
	}
	d, conv := router.RouteConversation(ctx, r, req.Query, turns, router.ConversationOptions{Switch: sw})
	return d, &conv
}

// Host sampling defaults, used where neither plugin nor request sets a value.
const (
	defaultTemperature   = 0.7
	defaultTopP          = 0.9
	defaultTopK          = 40
	defaultRepeatPenalty = 1.1
)

// params merges sampling settings: host defaults, then each layer in order
// (plugin manifest, prompt response, request); max_tokens is capped by the
// host's engine.max_tokens.
func (h *Host) params(layers ...abi.Generation) engine.Params {
	p := engine.Params{
		MaxTokens: h.cfg.Engine.MaxTokens, Temperature: defaultTemperature, TopP: defaultTopP,
		TopK: defaultTopK, RepeatPenalty: defaultRepeatPenalty,
	}
	for _, g := range layers {
		if g.MaxTokens > 0 {
			p.MaxTokens = g.MaxTokens
		}
		if g.Temperature != nil {
			p.Temperature = *g.Temperature
		}
		if g.TopP != nil {
			p.TopP = *g.TopP
		}
		if g.TopK > 0 {
			p.TopK = g.TopK
		}
		if g.RepeatPenalty != nil {
			p.RepeatPenalty = *g.RepeatPenalty
		}
		if len(g.Stop) > 0 {
			p.Stop = g.Stop
		}
		if g.Seed != nil {
			p.Seed = *g.Seed
		}
	}
	p.MaxTokens = min(p.MaxTokens, h.cfg.Engine.MaxTokens)
	return p
}

func toEngineMessages(ms []abi.Message) []engine.Message {
	out := make([]engine.Message, len(ms))
	for i, m := range ms {
		out[i] = engine.Message{Role: m.Role, Content: m.Content}
	}
	return out
}

type ctxKey int

const usageKey ctxKey = 0

// usage collects what a plugin's own host calls consumed (the handle path).
type usage struct {
	in, out, cached int
	embedded        int // input tokens of mdsa_embed calls
	model, finish   string
}

func withUsage(ctx context.Context, u *usage) context.Context {
	return context.WithValue(ctx, usageKey, u)
}
