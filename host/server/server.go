// Package server is MDSA's HTTP API: an OpenAI-compatible surface
// (/v1/chat/completions with SSE streaming, /v1/embeddings, /v1/models), a
// native one (/v1/query, /v1/route), health and readiness probes and
// Prometheus metrics, in front of a *host.Host.
//
//	s, err := server.New(h, cfg)
//	err = s.Serve(ctx, ln) // until ctx is done, then a graceful shutdown
//
// Every /v1 request is authenticated (Authorization: Bearer KEY, or an
// api-key header) against the configured tenants, admitted by the tenant's
// limits before any work, and accounted (tokens, metrics, one log line)
// when it finishes. Errors use OpenAI's format,
// {"error":{"message","type","param","code"}}, and every response carries
// an X-Request-Id header.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/internal/convstore"
	"github.com/mdsa-go/mdsa/internal/redislimits"
	"github.com/mdsa-go/mdsa/internal/telemetry"
	"github.com/mdsa-go/mdsa/internal/tenant"
)

// Server serves the HTTP API of one host. It is safe for concurrent use.
type Server struct {
	h        *host.Host
	cfg      config.Config
	log      *slog.Logger
	metrics  *telemetry.Metrics
	tenants  *tenant.Set
	handler  http.Handler
	drain    time.Duration
	draining atomic.Bool
	now      func() time.Time
	created  time.Time // when New ran: the "created" of /v1/models
	// adminKeys may use /admin/plugins; none: the admin API is off.
	adminKeys adminKeys
	// pace holds 429 answers back (server.refusal_delay).
	pace *pacer
	// bodyTimeout and uploadTimeout bound reading a request body and an
	// uploaded plugin (bodyReadTimeout, pluginUploadTimeout; tests shorten
	// them).
	bodyTimeout, uploadTimeout time.Duration
	// warnings are served on /readyz and /v1/models (WithWarnings).
	warnings []string
	// shared keeps tenants' limits in Redis (server.limits = "redis").
	shared *redislimits.Store
	// console is the operator console's state; nil when it is off.
	console *consoleState
	// convs keeps conversations ([conversations]); nil when off.
	convs     convstore.Store
	convClose sync.Once
}

// Option changes how New builds a Server.
type Option func(*options)

type options struct {
	logger   *slog.Logger
	tenants  *tenant.Set
	drain    time.Duration
	getenv   func(string) string
	warnings []string
}

// WithWarnings makes /readyz and /v1/models carry warnings an operator
// must see, such as "serving the synthetic test model" (a "warnings" list
// next to the usual fields, which OpenAI clients ignore).
func WithWarnings(w ...string) Option {
	return func(o *options) { o.warnings = append(o.warnings, w...) }
}

// WithLogger sets the logger for request and error logs (default:
// slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// withTenants replaces the tenant set New would build from cfg.Tenants,
// for tests (a fake clock). Its tenant names must be the host's
// (cfg.Tenants), or none for an open server.
func withTenants(s *tenant.Set) Option { return func(o *options) { o.tenants = s } }

// WithDrainDelay makes Serve, once its ctx is done, keep accepting requests
// for d with /readyz answering 503 before it stops listening, so that load
// balancers polling readiness take the instance out of rotation before new
// connections are refused. Default 0: stop listening at once.
func WithDrainDelay(d time.Duration) Option { return func(o *options) { o.drain = max(d, 0) } }

// WithGetenv replaces os.Getenv for reading server.admin_key_env (tests).
func WithGetenv(getenv func(string) string) Option { return func(o *options) { o.getenv = getenv } }

// New builds the server for h, which must have been made from the same
// cfg. It builds the tenant set from cfg.Tenants (none: the server is open,
// any or no key is accepted) unless a test gives one.
func New(h *host.Host, cfg config.Config, opts ...Option) (*Server, error) {
	if h == nil {
		return nil, errors.New("server: nil host")
	}
	o := options{logger: slog.Default(), getenv: os.Getenv}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	var shared *redislimits.Store
	if o.tenants == nil {
		var topts []tenant.Option
		if cfg.Server.Limits == "redis" && len(cfg.Tenants) > 0 {
			st, mode, err := redisLimits(cfg, o.getenv, o.logger)
			if err != nil {
				return nil, err
			}
			shared = st
			topts = append(topts, tenant.WithShared(st, mode))
		}
		set, err := tenant.New(cfg.Tenants, topts...)
		if err != nil {
			if shared != nil {
				shared.Close()
			}
			return nil, fmt.Errorf("server: tenants in %s: %w", cfg.File, err)
		}
		o.tenants = set
	}
	if !o.tenants.Open() {
		known := map[string]bool{}
		for _, n := range h.Tenants() {
			known[n] = true
		}
		for _, t := range o.tenants.All() {
			if !known[t.Name] {
				return nil, fmt.Errorf("server: tenant %q is not configured in the host (%s)", t.Name, cfg.File)
			}
		}
	}
	if cfg.Server.MaxBodyBytes <= 0 {
		cfg.Server.MaxBodyBytes = config.Default().Server.MaxBodyBytes
	}
	keys, err := loadAdminKeys(cfg.Server.AdminKeys, cfg.Server.AdminKeyEnv, o.getenv)
	if err != nil {
		return nil, fmt.Errorf("server: %s: %w", cfg.File, err)
	}
	s := &Server{
		h: h, cfg: cfg, log: o.logger, metrics: telemetry.NewMetrics(metricsSource{h}), tenants: o.tenants, shared: shared,
		drain: o.drain, now: time.Now, created: time.Now(), adminKeys: keys,
		bodyTimeout: bodyReadTimeout, uploadTimeout: pluginUploadTimeout, warnings: o.warnings,
	}
	var names []string
	for _, t := range o.tenants.All() {
		names = append(names, t.Name)
	}
	s.pace = newPacer(cfg.Server.RefusalDelay.Duration, names)
	if s.convs, err = openConversations(cfg, o.getenv); err != nil {
		if shared != nil {
			shared.Close()
		}
		return nil, err
	}
	if cc := cfg.Console; cc.Enabled {
		s.console = newConsoleState(cc.Recent, cc.MaxSessions, cc.MaxStreams, cc.SessionTTL.Duration)
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the HTTP handler of the whole API, for use with any
// http.Server (Serve uses it too).
func (s *Server) Handler() http.Handler { return s.handler }

// Ready reports whether the server is serving (true) or shutting down.
func (s *Server) Ready() bool { return !s.draining.Load() }

// Serve serves on ln until ctx is done, then shuts down gracefully:
// /readyz answers 503, the listener stays open for the drain delay (see
// WithDrainDelay) and is then closed, and requests in flight (streams
// included) get cfg.Server.ShutdownGrace to finish; after that their
// connections are closed, which cancels them. Serve closes ln and returns
// nil after a clean shutdown; the caller closes the host.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No ReadTimeout or WriteTimeout: a streamed completion may take
		// long, and a connection read deadline that expires while a
		// handler runs cancels its request. Bodies get a deadline of
		// their own (bodyReadTimeout). Requests do not inherit ctx, whose
		// end starts the shutdown rather than cancelling the work in
		// flight.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if s.convs != nil {
		go s.sweepConversations(ctx)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("server: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.pace.shutdown()
	if s.console != nil {
		s.console.shutdown()
	}
	s.log.Info("shutting down", "addr", ln.Addr().String(), "drain", s.drain, "grace", s.cfg.Server.ShutdownGrace.Duration)
	if s.drain > 0 {
		t := time.NewTimer(s.drain)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			return fmt.Errorf("server: serving on %s: %w", ln.Addr(), err)
		}
	}
	grace := s.cfg.Server.ShutdownGrace.Duration
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		// Grace is over: close the remaining connections, which cancels
		// their requests' contexts and so their generations.
		srv.Close()
		err = fmt.Errorf("server: requests still in flight after server.shutdown_grace (%s) were cut off: %w", grace, err)
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("server: serving on %s: %w", ln.Addr(), serr)
	}
	s.Close()
	return err
}

// Close frees what the server holds besides its listener (the connections
// to Redis); Serve calls it when it returns. It is safe to call twice.
func (s *Server) Close() error {
	var errs []error
	if s.shared != nil {
		errs = append(errs, s.shared.Close())
	}
	if s.convs != nil {
		s.convClose.Do(func() { errs = append(errs, s.convs.Close()) })
	}
	return errors.Join(errs...)
}

// redisLimits connects the shared limit state of server.limits = "redis".
// An unreachable Redis is not an error here (server.limits_fail decides
// what requests get); it is logged.
func redisLimits(cfg config.Config, getenv func(string) string, log *slog.Logger) (*redislimits.Store, tenant.FailMode, error) {
	url, err := cfg.Redis.Address(getenv)
	if err != nil {
		return nil, 0, fmt.Errorf("server: %s: %w", cfg.File, err)
	}
	st, err := redislimits.New(redislimits.Options{URL: url, Prefix: cfg.Redis.KeyPrefix, Timeout: cfg.Redis.Timeout.Duration})
	if err != nil {
		return nil, 0, fmt.Errorf("server: [redis] in %s: %w", cfg.File, err)
	}
	mode := tenant.FailOpen
	if cfg.Server.LimitsFail == "closed" {
		mode = tenant.FailClosed
	}
	if err := st.Ping(context.Background()); err != nil {
		log.Warn("redis for shared limits does not answer; requests follow server.limits_fail until it does",
			"limits_fail", cfg.Server.LimitsFail, "err", err)
	}
	return st, mode, nil
}

// metricsSource is the host as the metrics read it.
type metricsSource struct{ *host.Host }

// PluginStats reports the plugin counters of a tenant ("" for the default
// space).
func (m metricsSource) PluginStats(tenant string) (map[string]plugin.Stats, error) {
	t, err := m.Tenant(tenant)
	if err != nil {
		return nil, err
	}
	return t.PluginStats(), nil
}
