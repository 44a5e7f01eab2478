// Package host is MDSA's embeddable host: it loads the domain plugins,
// routes each query to one of them, runs the model and returns the
// validated answer with per-stage timings.
//
//	cfg, err := config.Load("mdsa.toml")
//	h, err := host.New(ctx, cfg)
//	defer h.Close()
//	res, err := h.Process(ctx, host.Request{Query: "How do I reset my password?"})
//	fmt.Println(res.Status, res.Domain, res.Response, res.Timings.Total)
//
// Stream is Process with the model's text passed on as it is generated;
// Route only routes. With [[tenants]] configured, h.Tenant(name) is one
// tenant's view (its plugins, router and models) with the same calls.
// Reload, InstallPlugin, RemovePlugin and Watch swap plugins under live
// traffic. A Host is safe for concurrent use.
package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/hardware"
	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/internal/knowledge"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Host answers queries through domain plugins and a language model.
type Host struct {
	cfg    config.Config
	log    *slog.Logger
	rt     *plugin.Runtime
	state  atomic.Pointer[state]
	models *models.Registry
	// pinned, when set, is the model every request uses (WithModelFile or
	// WithEngine); otherwise models are picked by tier and preference.
	pinned string
	closed atomic.Bool
	tracer trace.Tracer
	// kb holds the tenants' knowledge bases ([knowledge]); nil when off.
	kb knowledge.Store
	// remotes are the remote engines the registry has opened, by model
	// name, for their backends' status (the latest one of each name).
	remotes remoteEngines
	// cache keeps answers for requests asked again; nil when off.
	cache *responseCache

	// swapMu serialises plugin swaps (Reload, InstallPlugin,
	// RemovePlugin); requests never take it.
	swapMu   sync.Mutex
	retiring sync.WaitGroup       // drains of swapped-out versions
	stamps   map[string]fileStamp // size and time of each plugin file, under swapMu
	checker  PluginChecker

	// threads is the decode thread count the llama.cpp models get:
	// engine.threads, or the hardware recommendation when that is 0.
	threads int
	// gpuAuto resolves engine.gpu_layers = "auto" per model; nil when
	// gpu_layers is a fixed count.
	gpuAuto *gpuAuto

	loadErr error
}

// state is what a request sees: for each tenant an immutable set of
// plugins and the router built from them. Swapping it is atomic.
type state struct {
	spaces map[string]*space
	// refs counts the requests running on this state, plus one while it is
	// the current state; drained is closed when it falls to zero, after a
	// swap: the plugin versions it replaced may then close. Unlike a
	// lock, a new request never waits for the old state's slowest
	// request: it takes the new state.
	refs    atomic.Int64
	drained chan struct{}
}

// newState makes a state of spaces, holding the current-state reference.
func newState(spaces map[string]*space) *state {
	st := &state{spaces: spaces, drained: make(chan struct{})}
	st.refs.Store(1)
	return st
}

// ref takes a reference unless the state has drained.
func (st *state) ref() bool {
	for {
		n := st.refs.Load()
		if n == 0 {
			return false
		}
		if st.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// unref drops a reference; the last one closes drained.
func (st *state) unref() {
	if st.refs.Add(-1) == 0 {
		close(st.drained)
	}
}

// space is one tenant's view: its own plugin instances (with its plugin
// config) and a router over its domains only. The space named "" holds
// every plugin with no tenant config; the CLI and library callers that
// give no tenant use it.
type space struct {
	tenant  string
	plugins map[string]*plugin.Plugin
	router  router.Router
	models  []string // allowed catalog models; nil = all
	// fingerprint identifies the domains router was trained on, so a swap
	// that keeps them keeps the router.
	fingerprint string
}

func (st *state) space(tenant string) (*space, error) {
	sp, ok := st.spaces[tenant]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTenant, tenant)
	}
	return sp, nil
}

// Option changes how New builds a Host.
type Option func(*options)

type options struct {
	check     PluginChecker
	tracer    trace.TracerProvider
	logger    *slog.Logger
	engine    engine.Engine
	modelFile string
	hardware  *hardware.Info
	compile   []string
}

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithTracerProvider makes the host record an OpenTelemetry span per
// request (mdsa.request) and per stage (mdsa.route, mdsa.prompt,
// mdsa.generate, mdsa.validate, mdsa.handle). Default: no tracing.
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tracer = tp } }

// WithEngine makes the host use e instead of opening the configured model.
// The host does not close e.
func WithEngine(e engine.Engine) Option { return func(o *options) { o.engine = e } }

// WithModelFile makes the host open this GGUF file instead of the model the
// configuration names.
func WithModelFile(path string) Option { return func(o *options) { o.modelFile = path } }

// WithHardware makes the host use info instead of detecting this machine
// where settings derive from the hardware: the model memory budget
// (engine.memory_budget_mb = 0), the decode threads (engine.threads = 0)
// and the layers offloaded to a GPU (engine.gpu_layers = "auto").
func WithHardware(info hardware.Info) Option { return func(o *options) { o.hardware = &info } }

// WithCompileCommand makes the host compile each new plugin module in a
// child process running argv plus plugin.CompileChildArg, watched for
// plugins.compile_memory_mb and plugins.compile_timeout (see
// plugin.Options.CompileCommand), unless plugins.compile_in_child is false.
// The program must call plugin.ServeCompileChild when it sees that
// argument; without this option modules compile in the host's process.
func WithCompileCommand(argv ...string) Option {
	return func(o *options) { o.compile = slices.Clone(argv) }
}

// ErrUnknownDomain is returned when a request forces a domain no plugin serves.
var ErrUnknownDomain = errors.New("host: unknown domain")

// ErrUnknownTenant is returned for a tenant the configuration doesn't name.
var ErrUnknownTenant = errors.New("host: unknown tenant")

// ErrClosed is returned by a Host used after Close.
var ErrClosed = errors.New("host: closed")

// New loads the plugins named by cfg, builds the router and registers the
// model catalog. Models are loaded on the first request that needs them. A plugin that fails to load is
// logged and left out (see LoadErrors); the others serve.
func New(ctx context.Context, cfg config.Config, opts ...Option) (*Host, error) {
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.tracer == nil {
		o.tracer = noop.NewTracerProvider()
	}
	h := &Host{cfg: cfg, log: o.logger, tracer: o.tracer.Tracer("github.com/mdsa-go/mdsa/host"), checker: o.check,
		stamps: map[string]fileStamp{}}
	if err := h.openRegistry(ctx, o); err != nil {
		return nil, err
	}
	rc, err := newResponseCache(cfg)
	if err != nil {
		h.models.Close()
		return nil, err
	}
	h.cache = rc

	rt, err := plugin.NewRuntime(ctx, plugin.Options{
		CacheDir: cfg.Resolve(cfg.Host.CacheDir),
		Limits: plugin.Limits{
			CallTimeout:    cfg.Plugins.Timeout.Duration,
			MaxMemoryBytes: uint64(cfg.Plugins.MemoryMB) << 20,
			MaxOutputBytes: cfg.Plugins.MaxOutputBytes,
			MaxHostCalls:   cfg.Plugins.MaxHostCalls,
			MaxTokens:      cfg.Plugins.MaxTokens,
			MaxWorkTokens:  cfg.Plugins.MaxWorkTokens,
			MaxHostTime:    cfg.Plugins.MaxHostTime.Duration,
			ThrottleAfter:  cfg.Plugins.ThrottleAfter.Duration,
			ThrottleShare:  cfg.Plugins.ThrottleShare,
		},
		PoolSize:            cfg.Plugins.PoolSize,
		Services:            services{h},
		Logger:              o.logger,
		CompileCommand:      compileCommand(cfg, o.compile),
		CompileTimeout:      cfg.Plugins.CompileTimeout.Duration,
		CompileMemoryBytes:  uint64(cfg.Plugins.CompileMemoryMB) << 20,
		MaxTotalMemoryBytes: uint64(cfg.Plugins.TotalMemoryMB) << 20,
		MaxStackBytes:       cfg.Plugins.StackKB << 10,
		Shape:               shapeBudget(cfg.Plugins.Shape),
	})
	if err != nil {
		h.models.Close()
		return nil, fmt.Errorf("host: plugin runtime: %w", err)
	}
	h.rt = rt

	dir := cfg.Resolve(cfg.Host.PluginsDir)
	if _, err := os.Stat(dir); err != nil {
		rt.Close(ctx)
		h.models.Close()
		return nil, fmt.Errorf("host: plugins directory (host.plugins_dir in %s): %w", cfg.File, err)
	}
	loaded, loadErr := rt.LoadDir(ctx, dir, plugin.WithConfigFor(func(path string) map[string]string {
		return h.pluginConfig(nil, "", path)
	}))
	if loadErr != nil {
		h.log.Warn("some plugins did not load", "dir", dir, "err", loadErr)
		h.loadErr = loadErr
	}
	for _, p := range loaded {
		if fi, err := os.Stat(p.Path()); err == nil {
			h.stamps[p.Path()] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
		}
	}
	spaces := map[string][]*plugin.Plugin{"": loaded}
	closeAll := func() {
		for _, ps := range spaces {
			for _, p := range ps {
				p.Close(ctx)
			}
		}
	}
	for _, t := range cfg.Tenants {
		ps, err := h.loadTenant(ctx, t, loaded)
		spaces[t.Name] = ps
		if err != nil {
			closeAll()
			rt.Close(ctx)
			h.models.Close()
			return nil, err
		}
	}
	if err := h.install(ctx, spaces); err != nil {
		closeAll()
		rt.Close(ctx)
		h.models.Close()
		return nil, err
	}
	if err := h.openKnowledge(ctx); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// compileCommand is the child compile command the runtime uses: argv
// unless the configuration turns child compiles off.
func compileCommand(cfg config.Config, argv []string) []string {
	if !cfg.Plugins.CompileInChild {
		return nil
	}
	return argv
}

// loadTenant loads the tenant's own instances of the plugins it may use,
// each with the tenant's config for it. Compiled code is shared with the
// other tenants (the runtime compiles a module once).
func (h *Host) loadTenant(ctx context.Context, t config.Tenant, base []*plugin.Plugin) ([]*plugin.Plugin, error) {
	have := map[string]bool{}
	var out []*plugin.Plugin
	for _, b := range base {
		have[b.Name()] = true
		if !t.Allows(b.Name()) {
			continue
		}
		p, err := h.rt.Load(ctx, b.Path(), plugin.WithConfig(h.pluginConfig(&t, b.Name(), b.Path())))
		if err != nil {
			return out, fmt.Errorf("host: tenant %q: plugin %s: %w", t.Name, b.Name(), err)
		}
		out = append(out, p)
	}
	for _, name := range t.Plugins {
		if !have[name] && !config.IsPattern(name) {
			h.log.Warn("a tenant names a plugin that is not loaded", "tenant", t.Name, "plugin", name, "file", h.cfg.File)
		}
	}
	return out, nil
}

// pluginConfig is the Extism config of plugin name (loaded from path) for
// tenant t, or for the untenanted set when t is nil: the default of
// [plugins.config], found by name or else by the file's name without
// ".wasm", with the tenant's plugin_config laid over it key by key.
func (h *Host) pluginConfig(t *config.Tenant, name, path string) map[string]string {
	def, ok := h.cfg.Plugins.Config[name]
	if !ok || name == "" {
		def = h.cfg.Plugins.Config[strings.TrimSuffix(filepath.Base(path), ".wasm")]
	}
	if t == nil || len(t.PluginConfig[name]) == 0 {
		return def
	}
	out := maps.Clone(def)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, t.PluginConfig[name])
	return out
}

// install builds a router per tenant and makes the whole state current.
func (h *Host) install(ctx context.Context, spaces map[string][]*plugin.Plugin) error {
	st := newState(make(map[string]*space, len(spaces)))
	// The untenanted space first: the others learn from what it has.
	for _, tenant := range slices.Sorted(maps.Keys(spaces)) {
		plugins := spaces[tenant]
		sp := &space{tenant: tenant, plugins: make(map[string]*plugin.Plugin, len(plugins))}
		for _, t := range h.cfg.Tenants {
			if t.Name == tenant && len(t.Models) > 0 {
				sp.models = t.Models
			}
		}
		for _, p := range plugins {
			m := p.Manifest()
			if _, dup := sp.plugins[m.Name]; dup {
				return fmt.Errorf("host: two plugins are named %q (%s and %s)", m.Name, sp.plugins[m.Name].Path(), p.Path())
			}
			sp.plugins[m.Name] = p
		}
		all := sp.plugins
		if base, ok := st.spaces[""]; ok {
			all = base.plugins
		}
		r, err := h.routerFor(ctx, sp, nil, all)
		if err != nil {
			return err
		}
		sp.router = r
		st.spaces[tenant] = sp
	}
	h.state.Store(st)
	return nil
}

// emptyRouter routes everything out of scope: a tenant with no plugins.
type emptyRouter struct{}

func (emptyRouter) Route(context.Context, string) router.Decision {
	return router.Decision{OutOfScope: true, Alternatives: []router.Scored{}}
}
func (emptyRouter) Domains() []string { return nil }

// LoadErrors reports the plugins that failed to load at New, joined; nil if
// every plugin loaded.
func (h *Host) LoadErrors() error { return h.loadErr }

// PluginInfo describes a loaded plugin.
type PluginInfo struct {
	Name         string         `json:"name"`
	Version      string         `json:"version"`
	Description  string         `json:"description"`
	Path         string         `json:"path"`
	SHA256       string         `json:"sha256"`
	Keywords     []string       `json:"keywords"`
	Examples     []string       `json:"examples"`
	Capabilities []string       `json:"capabilities"`
	Model        abi.ModelPref  `json:"model"`
	Generation   abi.Generation `json:"generation"`
	HasHandle    bool           `json:"has_handle"`
	// Language is the source language of the module ("Go", "Rust",
	// "AssemblyScript", ...; see plugin.Language), told from its bytes at
	// load; empty when they do not say.
	Language string `json:"language,omitempty"`
}

// Plugins lists the plugins loaded from the plugins directory, sorted by
// name.
func (h *Host) Plugins() []PluginInfo { return h.plugins("") }

// plugins lists the plugins of a tenant's space, sorted by name.
func (h *Host) plugins(tenant string) []PluginInfo {
	sp, err := h.state.Load().space(tenant)
	if err != nil {
		return nil
	}
	out := make([]PluginInfo, 0, len(sp.plugins))
	for _, p := range sp.plugins {
		m := p.Manifest()
		out = append(out, PluginInfo{
			Name: m.Name, Version: m.Version, Description: m.Description, Path: p.Path(), SHA256: p.Hash(),
			Keywords: m.Keywords, Examples: m.Examples, Capabilities: m.Capabilities, Model: m.Model,
			Generation: m.Generation, HasHandle: p.HasHandle(), Language: p.Language(),
		})
	}
	slices.SortFunc(out, func(a, b PluginInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Tenants lists the configured tenants' names, sorted.
func (h *Host) Tenants() []string {
	var out []string
	for n := range h.state.Load().spaces {
		if n != "" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// routerOptions maps the [router] configuration onto the plugins of st.
// Thresholds for domains that are not loaded are ignored with a warning.
// others join the built-in background (utterances out of st's scope).
func (h *Host) routerOptions(st *space, others []string) router.Options {
	rc := h.cfg.Router
	o := router.Options{Threshold: rc.Threshold, TopK: rc.TopK, Logger: h.log}
	if rc.Background {
		o.Background = append(router.DefaultBackground(), others...)
	}
	for d, t := range rc.Thresholds {
		if _, ok := st.plugins[d]; !ok {
			if st.tenant == "" {
				h.log.Warn("router.thresholds names a domain no plugin provides", "domain", d, "file", h.cfg.File)
			}
			continue
		}
		if o.DomainThresholds == nil {
			o.DomainThresholds = map[string]float64{}
		}
		o.DomainThresholds[d] = t
	}
	if rc.EmbedModel != "" {
		o.Embedder = modelEmbedder{h: h, model: rc.EmbedModel}
	}
	return o
}

// modelEmbedder embeds through a catalog model leased from the registry.
type modelEmbedder struct {
	h     *Host
	model string
}

func (e modelEmbedder) Embed(ctx context.Context, inputs []string) ([][]float32, error) {
	l, err := e.h.models.Get(ctx, e.model)
	if err != nil {
		return nil, fmt.Errorf("router.embed_model %q: %w", e.model, err)
	}
	defer l.Release()
	return l.Engine().Embed(ctx, inputs)
}

// Route tells which domain query would go to, without running anything
// else, among all the plugins.
func (h *Host) Route(ctx context.Context, query string) router.Decision {
	d, _ := h.route(ctx, "", query)
	return d
}

func (h *Host) route(ctx context.Context, tenant, query string) (router.Decision, error) {
	sp, err := h.state.Load().space(tenant)
	if err != nil {
		return router.Decision{}, err
	}
	return sp.router.Route(ctx, query), nil
}

// Explain is Route with the reasons: which words and keywords counted, and
// how each alternative scored (see router.Explanation). A router that
// cannot explain itself gives just its Decision.
func (h *Host) Explain(ctx context.Context, query string) (router.Explanation, error) {
	return h.explain(ctx, "", query)
}

func (h *Host) explain(ctx context.Context, tenant, query string) (router.Explanation, error) {
	sp, err := h.state.Load().space(tenant)
	if err != nil {
		return router.Explanation{}, err
	}
	if e, ok := sp.router.(router.Explainer); ok {
		return e.Explain(ctx, query), nil
	}
	return router.Explanation{Decision: sp.router.Route(ctx, query)}, nil
}

// Close unloads the plugins (waiting for in-flight calls) and the model.
func (h *Host) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	ctx := context.Background()
	var errs []error
	h.swapMu.Lock() // no swap starts after this
	defer h.swapMu.Unlock()
	h.retiring.Wait()
	for _, sp := range h.state.Load().spaces {
		for _, p := range sp.plugins {
			errs = append(errs, p.Close(ctx))
		}
	}
	errs = append(errs, h.rt.Close(ctx), h.models.Close(), h.cache.close())
	if h.kb != nil {
		errs = append(errs, h.kb.Close())
	}
	return errors.Join(errs...)
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Version is the version of MDSA.
const Version = "0.1.0-dev"

// shapeBudget maps [plugins.shape] onto the runtime's.
func shapeBudget(s config.Shape) plugin.ShapeBudget {
	return plugin.ShapeBudget{
		Functions: s.Functions, LocalsTotal: s.LocalsTotal, BodyBytes: s.BodyKB << 10, Nesting: s.Nesting,
		BrTableTargets: s.BrTableTargets, Globals: s.Globals, DataSegments: s.DataSegments,
		ElemSegments: s.ElemSegments, Exports: s.Exports,
	}
}
