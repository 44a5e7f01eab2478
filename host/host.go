// Package host is MDSA's embeddable host: it loads the domain plugins,
// routes each query to one of them, runs the model and returns the
// validated answer with per-stage timings.
//
//	h, err := host.New(ctx, cfg)
//	defer h.Close()
//	res, err := h.Process(ctx, host.Request{Query: "How do I reset my password?"})
//
// A Host is safe for concurrent use.
package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/host/router"
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

	loadErr error
}

// state is what a request sees: an immutable set of plugins and the router
// built from them. Swapping it is atomic.
type state struct {
	plugins map[string]*plugin.Plugin
	router  router.Router
}

// Option changes how New builds a Host.
type Option func(*options)

type options struct {
	logger    *slog.Logger
	engine    engine.Engine
	modelFile string
}

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithEngine makes the host use e instead of opening the configured model.
// The host does not close e.
func WithEngine(e engine.Engine) Option { return func(o *options) { o.engine = e } }

// WithModelFile makes the host open this GGUF file instead of the model the
// configuration names.
func WithModelFile(path string) Option { return func(o *options) { o.modelFile = path } }

// ErrUnknownDomain is returned when a request forces a domain no plugin serves.
var ErrUnknownDomain = errors.New("host: unknown domain")

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
	h := &Host{cfg: cfg, log: o.logger}
	if err := h.openRegistry(ctx, o); err != nil {
		return nil, err
	}

	rt, err := plugin.NewRuntime(ctx, plugin.Options{
		CacheDir: cfg.Resolve(cfg.Host.CacheDir),
		Limits: plugin.Limits{
			CallTimeout:    cfg.Plugins.Timeout.Duration,
			MaxMemoryBytes: uint64(cfg.Plugins.MemoryMB) << 20,
			MaxOutputBytes: cfg.Plugins.MaxOutputBytes,
			MaxHostCalls:   cfg.Plugins.MaxHostCalls,
			MaxTokens:      cfg.Plugins.MaxTokens,
		},
		PoolSize: cfg.Plugins.PoolSize,
		Services: services{h},
		Logger:   o.logger,
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
	loaded, loadErr := rt.LoadDir(ctx, dir)
	if loadErr != nil {
		h.log.Warn("some plugins did not load", "dir", dir, "err", loadErr)
		h.loadErr = loadErr
	}
	if err := h.install(ctx, loaded); err != nil {
		for _, p := range loaded {
			p.Close(ctx)
		}
		rt.Close(ctx)
		h.models.Close()
		return nil, err
	}
	return h, nil
}

// install builds a router for plugins and makes both current.
func (h *Host) install(ctx context.Context, plugins []*plugin.Plugin) error {
	st := &state{plugins: make(map[string]*plugin.Plugin, len(plugins))}
	domains := make([]router.Domain, 0, len(plugins))
	for _, p := range plugins {
		m := p.Manifest()
		if _, dup := st.plugins[m.Name]; dup {
			return fmt.Errorf("host: two plugins are named %q (%s and %s)", m.Name, st.plugins[m.Name].Path(), p.Path())
		}
		st.plugins[m.Name] = p
		domains = append(domains, router.Domain{Name: m.Name, Keywords: m.Keywords, Examples: m.Examples})
	}
	r, err := router.New(ctx, domains, h.routerOptions(st))
	if err != nil {
		return fmt.Errorf("host: building the router: %w", err)
	}
	st.router = r
	h.state.Store(st)
	return nil
}

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
}

// Plugins lists the loaded plugins sorted by name.
func (h *Host) Plugins() []PluginInfo {
	st := h.state.Load()
	out := make([]PluginInfo, 0, len(st.plugins))
	for _, p := range st.plugins {
		m := p.Manifest()
		out = append(out, PluginInfo{
			Name: m.Name, Version: m.Version, Description: m.Description, Path: p.Path(), SHA256: p.Hash(),
			Keywords: m.Keywords, Examples: m.Examples, Capabilities: m.Capabilities, Model: m.Model,
			Generation: m.Generation, HasHandle: p.HasHandle(),
		})
	}
	slices.SortFunc(out, func(a, b PluginInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// routerOptions maps the [router] configuration onto the plugins of st.
// Thresholds for domains that are not loaded are ignored with a warning.
func (h *Host) routerOptions(st *state) router.Options {
	rc := h.cfg.Router
	o := router.Options{Threshold: rc.Threshold, TopK: rc.TopK, Logger: h.log}
	if rc.Background {
		o.Background = router.DefaultBackground()
	}
	for d, t := range rc.Thresholds {
		if _, ok := st.plugins[d]; !ok {
			h.log.Warn("router.thresholds names a domain no plugin provides", "domain", d, "file", h.cfg.File)
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

// Route tells which domain query would go to, without running anything else.
func (h *Host) Route(ctx context.Context, query string) router.Decision {
	return h.state.Load().router.Route(ctx, query)
}

// Close unloads the plugins (waiting for in-flight calls) and the model.
func (h *Host) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	ctx := context.Background()
	var errs []error
	for _, p := range h.state.Load().plugins {
		errs = append(errs, p.Close(ctx))
	}
	errs = append(errs, h.rt.Close(ctx), h.models.Close())
	return errors.Join(errs...)
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Version is the version of MDSA.
const Version = "0.1.0-dev"
