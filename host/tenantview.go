package host

import (
	"context"
	"encoding/json"

	"github.com/mdsa-go/mdsa/sdk/go/abi"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/host/router"
)

// Tenant is what one configured tenant sees of a Host: the plugins it may
// use, a router over their domains alone, and the models it may use.
// Host.Tenant returns it. The Host's own Process, Stream, Route and Plugins
// serve the default space: every plugin, when no tenants are configured.
// A Tenant is safe for concurrent use and follows hot swaps.
type Tenant struct {
	h    *Host
	name string
}

// Tenant returns the view of tenant name, or ErrUnknownTenant when the
// configuration has no such tenant. "" is the default space.
func (h *Host) Tenant(name string) (*Tenant, error) {
	if _, err := h.state.Load().space(name); err != nil {
		return nil, err
	}
	return &Tenant{h: h, name: name}, nil
}

// Name is the tenant's name.
func (t *Tenant) Name() string { return t.name }

// Process answers req with the tenant's plugins and models.
func (t *Tenant) Process(ctx context.Context, req Request) (Result, error) {
	return t.h.serve(ctx, t.name, req, nil)
}

// Stream is Process passing the model's text to onToken as it is
// generated, as Host.Stream does.
func (t *Tenant) Stream(ctx context.Context, req Request, onToken engine.TokenFunc) (Result, error) {
	return t.h.serve(ctx, t.name, req, onToken)
}

// Route tells which of the tenant's domains query would go to, without
// running anything else.
func (t *Tenant) Route(ctx context.Context, query string) (router.Decision, error) {
	return t.h.route(ctx, t.name, query)
}

// Explain is Route with the reasons, as Host.Explain gives them, over the
// tenant's domains.
func (t *Tenant) Explain(ctx context.Context, query string) (router.Explanation, error) {
	return t.h.explain(ctx, t.name, query)
}

// Plugins lists the plugins the tenant may use, sorted by name.
func (t *Tenant) Plugins() []PluginInfo { return t.h.plugins(t.name) }

// PluginStats reports the call counters of the tenant's plugins (its own
// instances), keyed by plugin name.
func (t *Tenant) PluginStats() map[string]plugin.Stats {
	sp, err := t.h.state.Load().space(t.name)
	if err != nil {
		return nil
	}
	out := make(map[string]plugin.Stats, len(sp.plugins))
	for n, p := range sp.plugins {
		out[n] = p.Stats()
	}
	return out
}

// Models lists the catalog models the tenant may use, in catalog order.
func (t *Tenant) Models() []ModelInfo {
	out, _ := t.h.tenantModels(t.name)
	return out
}

// Embed embeds inputs with model, a catalog model the tenant may use (""
// picks the best allowed model of the router tier, else the domain tier).
func (t *Tenant) Embed(ctx context.Context, model string, inputs []string) (Embeddings, error) {
	return t.h.embed(ctx, t.name, model, inputs)
}

// Generate runs messages on the catalog model named model, as they are: no
// routing, no plugin, no validation (the raw model, for a tenant allowed
// to use it, such as another MDSA gateway using this server as a
// backend). gen's unset fields take the host's defaults; its max_tokens is
// capped by engine.max_tokens. onToken, when set, receives the text as it
// is produced.
func (t *Tenant) Generate(ctx context.Context, model string, messages []engine.Message, gen abi.Generation, onToken engine.TokenFunc) (engine.Result, error) {
	return t.h.generate(ctx, t.name, model, messages, gen, Constraint{}, onToken)
}

// Constraint is what a constrained generation's text must match.
type Constraint struct {
	// Grammar is a GBNF grammar (root rule "root"; "" for none), such as
	// host/structured makes from response formats and tools.
	Grammar string
	// Schema, with Grammar, is the JSON Schema of a response format that
	// alone constrains the answer (structured.Schema): what engines that
	// take a schema rather than a grammar (a remote Ollama) enforce.
	Schema json.RawMessage
}

// GenerateConstrained is Generate under c. A model whose engine can
// enforce neither c's grammar nor its schema fails with an error wrapping
// ErrConstrainedUnsupported.
func (t *Tenant) GenerateConstrained(ctx context.Context, model string, messages []engine.Message, gen abi.Generation, c Constraint, onToken engine.TokenFunc) (engine.Result, error) {
	return t.h.generate(ctx, t.name, model, messages, gen, c, onToken)
}
