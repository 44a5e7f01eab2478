package host

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/engine/openai"
	"github.com/mdsa-go/mdsa/host/hardware"
	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/internal/engineconf"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// openRegistry builds the model registry from the catalog, plus the model
// file or engine given as an option, which then serves every request. The
// settings that derive from the hardware (memory budget, threads, GPU
// layers) are computed here, from one detection.
func (h *Host) openRegistry(ctx context.Context, o options) error {
	cfg := h.cfg
	info, err := h.hardwareInfo(ctx, o)
	if err != nil {
		return err
	}
	rec := hardware.Recommend(info, nil, hardware.RecommendOptions{})
	lopts := engineconf.Llama(cfg, info, h.log)
	promptDir := ""
	if cfg.Engine.PersistPromptCache && cfg.Host.CacheDir != "" && lopts.PromptCacheBytes > 0 {
		promptDir = filepath.Join(cfg.Resolve(cfg.Host.CacheDir), "prompts")
	}
	h.threads = lopts.Threads
	// Every model's decodes share the cores, so two models answering at
	// once never run more compute threads than the machine has cores.
	lopts.Cores = llamacpp.NewCores(max(rec.Threads, lopts.Threads))
	from := "engine.threads"
	if cfg.Engine.Threads == 0 {
		from = "hardware recommendation (physical cores within the CPU quota)"
	}
	h.log.Info("host: engine settings", "threads", lopts.Threads, "threads_from", from, "gpu_layers", cfg.Engine.GPULayers.String())
	optsFor := func(models.Spec) llamacpp.Options { return lopts }
	if cfg.Engine.GPULayers.Auto {
		h.gpuAuto = newGPUAuto(info, engineconf.LibDir(lopts), h.log)
		optsFor = func(s models.Spec) llamacpp.Options {
			o := lopts
			o.GPULayers = h.gpuAuto.layers(s, lopts)
			return o
		}
	}
	specs, err := engineconf.Specs(cfg)
	if err != nil {
		return fmt.Errorf("host: %w", err)
	}
	load := func(ctx context.Context, s models.Spec) (engine.Engine, error) {
		if s.Backend != "" {
			ro, err := engineconf.Remote(cfg, s.Name, h.log)
			if err != nil {
				return nil, err
			}
			e, err := openai.Open(ctx, ro)
			if err != nil {
				return nil, err
			}
			h.remotes.put(s.Name, e)
			return e, nil
		}
		o := optsFor(s)
		if promptDir != "" {
			o.PromptCacheDir = filepath.Join(promptDir, fileSafe(s.Name))
		}
		return engineconf.Loader(o)(ctx, s)
	}
	estimate := func(s models.Spec) (int64, error) {
		if s.Backend != "" {
			return 1, nil // runs elsewhere
		}
		return engineconf.Estimator(optsFor(s))(s)
	}
	switch {
	case o.engine != nil:
		// A caller-owned engine: registered under its own name, never closed
		// by the registry, and no file to size.
		h.pinned = "engine:" + o.engine.Model()
		specs = append(specs, models.Spec{Name: h.pinned, Tier: models.TierDomain, MemoryBytes: 1})
		inner := load
		load = func(ctx context.Context, s models.Spec) (engine.Engine, error) {
			if s.Name == h.pinned {
				return unowned{o.engine}, nil
			}
			return inner(ctx, s)
		}
	case o.modelFile != "":
		h.pinned = "file:" + strings.TrimSuffix(filepath.Base(o.modelFile), ".gguf")
		specs = append(specs, models.Spec{Name: h.pinned, Tier: models.TierDomain, Path: o.modelFile,
			ContextSize: cfg.Engine.ContextSize, Parallel: cfg.Engine.Parallel})
	}
	budget := int64(cfg.Engine.MemoryBudgetMB) << 20
	if budget == 0 {
		budget = rec.MemoryBudgetBytes
	}
	reg, err := models.New(models.Options{
		Budget:    budget,
		MaxLoaded: cfg.Engine.MaxLoaded,
		KeepAlive: cfg.Engine.KeepAlive.Duration,
		Load:      load,
		Estimate:  estimate,
		Logger:    h.log,
	})
	if err != nil {
		return fmt.Errorf("host: model registry: %w", err)
	}
	for _, s := range specs {
		if err := reg.Register(s); err != nil {
			reg.Close()
			return fmt.Errorf("host: model registry: %w", err)
		}
	}
	h.models = reg
	return nil
}

// lease returns a leased engine for a plugin's model preferences: the pinned
// model when there is one, else the registry's pick for the plugin's tier
// with engine.model preferred, falling back to the domain tier.
// lease picks and leases a model for a plugin: the pinned one, or the best
// of the plugin's tier and preferences among allowed (nil: any).
func (h *Host) lease(ctx context.Context, pref abi.ModelPref, allowed []string) (*models.Lease, error) {
	name := h.pinned
	if name == "" {
		tier := pref.Tier
		if tier == "" {
			tier = models.TierDomain
		}
		prefer := pref.Prefer
		if m := h.cfg.Engine.Model; m != "" {
			prefer = append([]string{m}, prefer...)
		}
		var err error
		name, err = h.models.PickFrom(tier, prefer, allowed)
		if errors.Is(err, models.ErrNoModel) && tier != models.TierDomain {
			h.log.Warn("no model of the requested tier; using the domain tier", "tier", tier)
			name, err = h.models.PickFrom(models.TierDomain, prefer, allowed)
		}
		if err != nil {
			return nil, err
		}
	}
	return h.models.Get(ctx, name)
}

// ModelStats reports the registry's counters and resident models.
func (h *Host) ModelStats() models.Stats { return h.models.Stats() }

// PluginMemory reports the linear memory of all plugin instances against
// plugins.total_memory_mb.
func (h *Host) PluginMemory() plugin.MemoryStats { return h.rt.MemoryStats() }

// unowned hides Close from the registry for an engine the caller owns.
type unowned struct{ engine.Engine }

func (unowned) Close() error { return nil }

// ModelInfo describes a catalog model a tenant may use.
type ModelInfo struct {
	Name  string `json:"name"`
	Tier  string `json:"tier"`
	Quant string `json:"quant,omitempty"`
}

// tenantModels lists the registered models a tenant may use ("" for all),
// in catalog order.
func (h *Host) tenantModels(tenant string) ([]ModelInfo, error) {
	sp, err := h.state.Load().space(tenant)
	if err != nil {
		return nil, err
	}
	var out []ModelInfo
	for _, s := range h.models.Specs() {
		if sp.models != nil && !slices.Contains(sp.models, s.Name) {
			continue
		}
		out = append(out, ModelInfo{Name: s.Name, Tier: s.Tier, Quant: s.Quant})
	}
	return out, nil
}

// Embeddings are the vectors Embed made.
type Embeddings struct {
	Vectors [][]float32
	// Model is the model that made them.
	Model string
	// Tokens is how many tokens the inputs were.
	Tokens int
}

// embed embeds inputs for a tenant with model (see Tenant.Embed).
func (h *Host) embed(ctx context.Context, tenant, model string, inputs []string) (Embeddings, error) {
	if h.closed.Load() {
		return Embeddings{}, ErrClosed
	}
	sp, err := h.state.Load().space(tenant)
	if err != nil {
		return Embeddings{}, err
	}
	var l *models.Lease
	switch {
	case h.pinned != "":
		l, err = h.models.Get(ctx, h.pinned)
	case model != "":
		if sp.models != nil && !slices.Contains(sp.models, model) {
			return Embeddings{}, fmt.Errorf("%w: %q for tenant %q", ErrModelNotAllowed, model, tenant)
		}
		l, err = h.models.Get(ctx, model)
	default:
		l, err = h.lease(ctx, abi.ModelPref{Tier: models.TierRouter}, sp.models)
	}
	if err != nil {
		return Embeddings{}, err
	}
	defer l.Release()
	e := l.Engine()
	v, err := e.Embed(ctx, inputs)
	if err != nil {
		return Embeddings{}, err
	}
	out := Embeddings{Vectors: v, Model: e.Model()}
	for _, in := range inputs {
		n, err := e.CountTokens(ctx, in)
		if err != nil {
			return Embeddings{}, err
		}
		out.Tokens += n
	}
	return out, nil
}

// ErrModelNotAllowed is returned when a tenant asks for a model outside its
// allow-list.
var ErrModelNotAllowed = errors.New("host: model not allowed")

// fileSafe turns a model name into a file name: every byte outside
// [A-Za-z0-9._-] becomes '_', and a name that could be special ("", ".",
// "..") gets a prefix.
func fileSafe(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if s := string(b); s != "" && s != "." && s != ".." {
		return s
	}
	return "model_" + string(b)
}

// generate runs messages on catalog model name for tenant, as they are: no
// routing, no plugin. The model must be one the tenant may use; gen is
// merged with the host's sampling defaults and engine.max_tokens.
func (h *Host) generate(ctx context.Context, tenant, model string, messages []engine.Message, gen abi.Generation, c Constraint, onToken engine.TokenFunc) (engine.Result, error) {
	if h.closed.Load() {
		return engine.Result{}, ErrClosed
	}
	sp, err := h.state.Load().space(tenant)
	if err != nil {
		return engine.Result{}, err
	}
	if sp.models != nil && !slices.Contains(sp.models, model) {
		return engine.Result{}, fmt.Errorf("%w: %q for tenant %q", ErrModelNotAllowed, model, tenant)
	}
	l, err := h.models.Get(ctx, model)
	if err != nil {
		return engine.Result{}, err
	}
	defer l.Release()
	params := h.params(gen)
	params.Grammar, params.Schema = c.Grammar, c.Schema
	res, err := l.Engine().Generate(ctx, engine.Request{Messages: messages, Params: params}, onToken)
	if err != nil && c.Grammar != "" && errors.Is(err, engine.ErrNotSupported) {
		err = fmt.Errorf("%w: %w", ErrConstrainedUnsupported, err)
	}
	return res, err
}

// remoteEngines holds the remote engines the registry opened.
type remoteEngines struct {
	mu     sync.Mutex
	byName map[string]*openai.Engine
}

func (r *remoteEngines) put(name string, e *openai.Engine) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byName == nil {
		r.byName = map[string]*openai.Engine{}
	}
	r.byName[name] = e
}

// RemoteBackends reports, for each model served by a [backends] group and
// open now, the state of each of its servers (health, ejection, requests
// in flight, counts).
func (h *Host) RemoteBackends() map[string][]openai.BackendStatus {
	h.remotes.mu.Lock()
	defer h.remotes.mu.Unlock()
	out := make(map[string][]openai.BackendStatus, len(h.remotes.byName))
	for name, e := range h.remotes.byName {
		if !e.Closed() {
			out[name] = e.Backends()
		}
	}
	return out
}
