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
	"sync"
	"sync/atomic"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
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
	model  *lazyEngine
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

// New loads the plugins named by cfg and builds the router. The model is
// opened on the first request that needs it. A plugin that fails to load is
// logged and left out (see LoadErrors); the others serve.
func New(ctx context.Context, cfg config.Config, opts ...Option) (*Host, error) {
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	h := &Host{cfg: cfg, log: o.logger}
	h.model = newLazyEngine(o.engine, func(ctx context.Context) (engine.Engine, error) {
		return h.openEngine(ctx, o.modelFile)
	})

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
		return nil, fmt.Errorf("host: plugin runtime: %w", err)
	}
	h.rt = rt

	dir := cfg.Resolve(cfg.Host.PluginsDir)
	if _, err := os.Stat(dir); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("host: plugins directory (host.plugins_dir in %s): %w", cfg.File, err)
	}
	loaded, loadErr := rt.LoadDir(ctx, dir)
	if loadErr != nil {
		h.log.Warn("some plugins did not load", "dir", dir, "err", loadErr)
		h.loadErr = loadErr
	}
	if err := h.install(loaded); err != nil {
		for _, p := range loaded {
			p.Close(ctx)
		}
		rt.Close(ctx)
		return nil, err
	}
	return h, nil
}

// install builds a router for plugins and makes both current.
func (h *Host) install(plugins []*plugin.Plugin) error {
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
	r, err := router.New(domains, router.Options{Threshold: h.cfg.Router.Threshold})
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

// Route tells which domain query would go to, without running anything else.
func (h *Host) Route(query string) router.Decision {
	return h.state.Load().router.Route(query)
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
	errs = append(errs, h.rt.Close(ctx), h.model.close())
	return errors.Join(errs...)
}

func (h *Host) openEngine(ctx context.Context, file string) (engine.Engine, error) {
	name := ""
	if file == "" {
		p, n, _, err := h.cfg.ModelPath()
		if err != nil {
			return nil, fmt.Errorf("host: %w", err)
		}
		file, name = p, n
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf("host: model %q: file %s is not here (download it, or make a synthetic one with `mdsa models synth`): %w", name, file, err)
		}
	}
	h.log.Info("loading model", "file", file, "catalog_name", name)
	e, err := llamacpp.Open(ctx, file, llamacpp.Options{
		LibDir:      h.cfg.Resolve(h.cfg.Engine.LibDir),
		Threads:     h.cfg.EffectiveThreads(),
		ContextSize: h.cfg.Engine.ContextSize,
		Parallel:    h.cfg.Engine.Parallel,
		GPULayers:   h.cfg.Engine.GPULayers,
		Logger:      h.log,
	})
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	return e, nil
}

// Engine returns the model engine, opening it if needed.
func (h *Host) Engine(ctx context.Context) (engine.Engine, error) { return h.model.get(ctx) }

// lazyEngine opens the engine once, on first use, without holding a lock
// while the model loads: the first caller loads, later callers wait on a
// channel (or their context).
type lazyEngine struct {
	mu     sync.Mutex
	open   func(context.Context) (engine.Engine, error)
	owned  bool
	e      engine.Engine
	done   chan struct{} // closed when a load attempt ends
	err    error
	closed bool
}

func newLazyEngine(e engine.Engine, open func(context.Context) (engine.Engine, error)) *lazyEngine {
	l := &lazyEngine{open: open, e: e, owned: e == nil}
	if e != nil {
		l.done = make(chan struct{})
		close(l.done)
	}
	return l
}

func (l *lazyEngine) get(ctx context.Context) (engine.Engine, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if l.done == nil || (l.err != nil && isDone(l.done)) {
		// First use, or the last attempt failed: start a load.
		l.done, l.err = make(chan struct{}), nil
		done := l.done
		l.mu.Unlock()
		// The load outlives the caller's cancellation: others may be waiting.
		e, err := l.open(context.WithoutCancel(ctx))
		l.mu.Lock()
		l.e, l.err = e, err
		if l.closed && e != nil {
			e.Close()
			l.e, l.err = nil, ErrClosed
		}
		close(done)
		l.mu.Unlock()
		return e, err
	}
	done := l.done
	l.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e, l.err
}

func (l *lazyEngine) close() error {
	l.mu.Lock()
	l.closed = true
	e := l.e
	l.e = nil
	l.mu.Unlock()
	if e != nil && l.owned {
		return e.Close()
	}
	return nil
}

func isDone(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Version is the version of MDSA.
const Version = "0.1.0-dev"
