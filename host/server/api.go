package server

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/internal/wire"
)

// embeddingsResponse is OpenAI's embeddings list.
type embeddingsResponse struct {
	Object string          `json:"object"`
	Data   []embeddingItem `json:"data"`
	Model  string          `json:"model"`
	Usage  embeddingsUsage `json:"usage"`
}

type embeddingItem struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string
}

type embeddingsUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// embeddings serves POST /v1/embeddings.
func (s *Server) embeddings(c *call) *apiError {
	data, aerr := c.body()
	if aerr != nil {
		return aerr
	}
	req, aerr := decodeEmbeddings(data)
	if aerr != nil {
		return aerr
	}
	model := req.Model
	if model == modelAuto {
		model = ""
	}
	if model != "" {
		if !s.catalogHas(model) {
			return modelNotFound("model", "no embedding model %q; use %q (the default) or one of the catalog models GET /v1/models lists", clip(model, 80), modelAuto)
		}
		if !c.t.AllowsModel(model) {
			return forbidden("model", "this API key may not use the model %q", clip(model, 80))
		}
	}
	emb, err := c.ht.Embed(c.r.Context(), model, req.Input)
	if err != nil {
		return hostError(c.id, err)
	}
	vecs, used := emb.Vectors, emb.Model
	c.tokens.Prompt = emb.Tokens // counted in the tenant's tokens per minute
	if len(vecs) != len(req.Input) {
		return internalError(c.id, errEmbedCount)
	}
	out := embeddingsResponse{Object: "list", Model: used, Data: make([]embeddingItem, len(vecs)),
		Usage: embeddingsUsage{PromptTokens: emb.Tokens, TotalTokens: emb.Tokens}}
	for i, v := range vecs {
		if req.Dimensions != 0 && req.Dimensions != len(v) {
			return badRequest("dimensions", "invalid_value", "dimensions: the model makes %d-dimensional vectors, not %d", len(v), req.Dimensions)
		}
		item := embeddingItem{Object: "embedding", Index: i, Embedding: v}
		if req.Base64 {
			item.Embedding = floatsBase64(v)
		}
		out.Data[i] = item
	}
	c.json(http.StatusOK, out)
	return nil
}

type constError string

func (e constError) Error() string { return string(e) }

const errEmbedCount = constError("server: the engine returned a different number of vectors than inputs")

// floatsBase64 encodes v as OpenAI does: little-endian float32s in base64.
func floatsBase64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// catalogHas reports whether model is a registered catalog model.
func (s *Server) catalogHas(model string) bool {
	all, err := s.h.Tenant("")
	if err != nil {
		return false
	}
	return slices.ContainsFunc(all.Models(), func(m host.ModelInfo) bool { return m.Name == model })
}

// modelObject is an entry of GET /v1/models: OpenAI's fields plus what
// MDSA knows.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Kind is "router" (mdsa: routes each query), "domain" (mdsa/<domain>,
	// a plugin) or "model" (a catalog model: embeddings, and chat with the
	// model as it is, no routing and no plugin).
	Kind        string `json:"kind"`
	Version     string `json:"version,omitempty"`
	Description string `json:"description,omitempty"`
	Tier        string `json:"tier,omitempty"`
	Quant       string `json:"quant,omitempty"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
	// Warnings are the server's (WithWarnings); OpenAI clients ignore
	// the field.
	Warnings []string `json:"warnings,omitempty"`
}

// readiness is /readyz's answer when ready.
type readiness struct {
	Status   string   `json:"status"`
	Warnings []string `json:"warnings,omitempty"`
}

// models lists what the tenant may use.
func (c *call) models() ([]modelObject, *apiError) {
	s := c.s
	created := s.created.Unix()
	out := []modelObject{{ID: modelAuto, Object: "model", Created: created, OwnedBy: "mdsa", Kind: "router",
		Description: "routes each query to the best domain"}}
	for _, p := range c.ht.Plugins() {
		if c.t.AllowsPlugin(p.Name) {
			out = append(out, modelObject{ID: modelPrefix + p.Name, Object: "model", Created: created, OwnedBy: "mdsa",
				Kind: "domain", Version: p.Version, Description: p.Description})
		}
	}
	for _, m := range c.ht.Models() {
		if c.t.AllowsModel(m.Name) {
			out = append(out, modelObject{ID: m.Name, Object: "model", Created: created, OwnedBy: "mdsa",
				Kind: "model", Tier: m.Tier, Quant: m.Quant})
		}
	}
	return out, nil
}

// listModels serves GET /v1/models.
func (s *Server) listModels(c *call) *apiError {
	ms, aerr := c.models()
	if aerr != nil {
		return aerr
	}
	c.json(http.StatusOK, modelList{Object: "list", Data: ms, Warnings: s.warnings})
	return nil
}

// getModel serves GET /v1/models/{model...}.
func (s *Server) getModel(c *call) *apiError {
	id := c.r.PathValue("model")
	ms, aerr := c.models()
	if aerr != nil {
		return aerr
	}
	for _, m := range ms {
		if m.ID == id {
			c.json(http.StatusOK, m)
			return nil
		}
	}
	return modelNotFound("model", "the model %q does not exist or this API key may not use it", clip(id, 80))
}

// query serves POST /v1/query: the native request, answered with the whole
// host.Result.
func (s *Server) query(c *call) *apiError {
	data, aerr := c.body()
	if aerr != nil {
		return aerr
	}
	hreq, aerr := c.hostRequest(data, true)
	if aerr != nil {
		return aerr
	}
	hreq.OnCache = c.setCacheHeader
	res, err := c.ht.Process(c.r.Context(), hreq)
	c.record(res)
	if err != nil {
		return hostError(c.id, err)
	}
	c.keepTurn(hreq.Query, res.Response)
	c.json(http.StatusOK, wire.FromResult(res))
	return nil
}

// hostRequest decodes a /v1/query body into the host request it asks for,
// checked against the tenant's domains and limits; takeID makes the
// body's request_id the call's (unless the X-Request-Id header gave one).
func (c *call) hostRequest(data []byte, takeID bool) (host.Request, *apiError) {
	req, aerr := decodeQuery(data)
	if aerr != nil {
		return host.Request{}, aerr
	}
	if takeID && req.RequestID != "" && c.r.Header.Get(headerRequestID) == "" {
		c.id = req.RequestID
		c.w.Header().Set(headerRequestID, c.id)
	}
	if aerr := c.checkDomain(req.Domain); aerr != nil {
		return host.Request{}, aerr
	}
	n, aerr := c.maxTokens(req.Generation.MaxTokens, "generation.max_tokens")
	if aerr != nil {
		return host.Request{}, aerr
	}
	hreq := req.Request
	if hreq.History, aerr = c.withConversation(req.ConversationID, hreq.History); aerr != nil {
		return host.Request{}, aerr
	}
	c.query, c.forced = hreq.Query, hreq.Domain != ""
	hreq.Generation.MaxTokens = n
	hreq.RequestID = c.id
	return hreq, nil
}

// checkDomain refuses a forced domain d ("": route) that the tenant may not
// use or that does not exist.
func (c *call) checkDomain(d string) *apiError {
	if d == "" {
		return nil
	}
	if !c.t.AllowsPlugin(d) && c.s.pluginExists(d) {
		return forbidden("domain", "this API key may not use the domain %q", clip(d, 80))
	}
	if !c.tenantHasPlugin(d) {
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "domain_not_found", Param: "domain",
			Message: "no such domain " + quote(d) + "; use one of: " + strings.Join(c.domains(), ", "), Refused: refusedBadRequest}
	}
	return nil
}

func (c *call) domains() []string {
	var out []string
	for _, p := range c.ht.Plugins() {
		if c.t.AllowsPlugin(p.Name) {
			out = append(out, p.Name)
		}
	}
	return out
}

func quote(s string) string { return `"` + clip(s, 80) + `"` }

// routeResponse is a routing decision and how long it took.
type routeResponse struct {
	router.Decision
	LatencyUS float64 `json:"latency_us"`
}

// route serves POST /v1/route.
func (s *Server) route(c *call) *apiError {
	data, aerr := c.body()
	if aerr != nil {
		return aerr
	}
	q, aerr := decodeRoute(data)
	if aerr != nil {
		return aerr
	}
	c.query = q
	t0 := time.Now()
	d, err := c.ht.Route(c.r.Context(), q)
	lat := time.Since(t0)
	if err != nil {
		return hostError(c.id, err)
	}
	c.domain = d.Domain
	c.res.Confidence, c.res.Alternatives = d.Confidence, d.Alternatives
	c.timings.Route = lat
	if d.OutOfScope {
		c.status = host.StatusOutOfScope
	}
	if d.Alternatives == nil {
		d.Alternatives = []router.Scored{}
	}
	c.json(http.StatusOK, routeResponse{Decision: d, LatencyUS: float64(lat.Nanoseconds()) / 1e3})
	return nil
}
