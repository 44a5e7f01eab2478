package main

import (
	"context"
	"fmt"
	"github.com/mdsa-go/mdsa/host/config"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/server"
	"github.com/mdsa-go/mdsa/internal/telemetry"
)

// tracerFlushTimeout bounds flushing the spans left at exit.
const tracerFlushTimeout = 5 * time.Second

func (a *app) serveCmd() *cobra.Command {
	var listen, model string
	watch := true
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Serve the HTTP API (OpenAI-compatible and native) until interrupted",
		Long: "serve answers /v1/chat/completions (model \"mdsa\" routes, \"mdsa/<domain>\" picks a domain), " +
			"/v1/embeddings, /v1/models, /v1/query and /v1/route, with /healthz, /readyz and /metrics, " +
			"until SIGINT or SIGTERM; then it stops accepting and lets requests in flight finish " +
			"(server.shutdown_grace). Tenants and their API keys come from [[tenants]] in the configuration; " +
			"with none, anyone may use the server.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			a.extraGrace.Store(int64(cfg.Server.ShutdownGrace.Duration))
			if listen != "" {
				cfg.Server.Listen = listen
			}
			log := a.logger(cfg)

			tp, flush, err := telemetry.NewTracerProvider(ctx, cfg.Server.OTLPEndpoint, "mdsa", host.Version)
			if err != nil {
				return fmt.Errorf("server.otlp_endpoint in %s: %w", cfg.File, err)
			}
			defer func() {
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracerFlushTimeout)
				defer cancel()
				if err := flush(fctx); err != nil {
					log.Warn("flushing traces", "err", err)
				}
			}()

			opts := []host.Option{host.WithTracerProvider(tp)}
			var warnings []string
			if model == "" {
				var notice string
				if model, notice, err = modelFallback(cfg); err != nil {
					return err
				}
				if notice != "" {
					log.Warn("SERVING THE SYNTHETIC TEST MODEL: " + notice)
					warnings = append(warnings, notice)
				}
			}
			if model != "" {
				opts = append(opts, host.WithModelFile(absPath(model)))
			}
			h, srv, err := a.openServer(ctx, cfg, log, warnings, opts...)
			if err != nil {
				return err
			}
			defer h.Close()
			// Plugins from OCI registries: pulled before serving, then
			// watched (a tag that moves is swapped in).
			rw, err := registryWatcher(cfg, h, log)
			if err != nil {
				return err
			}
			if rw != nil {
				n := rw.Sync(ctx)
				log.Info("plugins from registries", "refs", len(rw.Refs), "installed", n)
				rctx, stopRegistry := context.WithCancel(ctx)
				defer stopRegistry()
				go rw.Run(rctx)
			}
			var lc net.ListenConfig
			ln, err := lc.Listen(ctx, "tcp", cfg.Server.Listen)
			if err != nil {
				return fmt.Errorf("server.listen %q: %w", cfg.Server.Listen, err)
			}
			addr := ln.Addr().String()
			fmt.Fprintf(a.errw, "mdsa: serving on http://%s (%d plugins, %s)\n", addr, len(h.Plugins()), tenantsLine(h))
			if cfg.Console.Enabled {
				fmt.Fprintf(a.errw, "mdsa: operator console on http://%s/console/ (log in with the admin key or a tenant's key)\n", addr)
			}
			log.Info("serving", "addr", addr, "tenants", len(cfg.Tenants))
			if len(cfg.Tenants) == 0 && !loopback(ln.Addr()) {
				fmt.Fprintf(a.errw, "warning: serving OPEN (no [[tenants]] in %s, so no API key is needed) on %s, which is reachable from other machines\n", cfg.File, addr)
			}
			if watch {
				// Hot swap: a .wasm written, replaced or removed in the
				// plugins directory is checked and swapped in (or refused).
				wctx, stopWatch := context.WithCancel(ctx)
				defer stopWatch()
				go func() {
					if err := h.Watch(wctx, nil); err != nil {
						log.Error("not watching the plugins directory", "err", err)
					}
				}()
			}
			if err := srv.Serve(ctx, ln); err != nil {
				return err
			}
			fmt.Fprintln(a.errw, "mdsa: stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "address to listen on (default: server.listen, 127.0.0.1:8080)")
	f.StringVar(&model, "model-file", "", "GGUF model file to use instead of the configured model")
	f.BoolVar(&watch, "watch", true, "hot-swap plugins when files in the plugins directory change")
	return cmd
}

// openServer builds the host and its HTTP server; the caller closes the
// host.
func (a *app) openServer(ctx context.Context, cfg config.Config, log *slog.Logger, warnings []string, opts ...host.Option) (*host.Host, *server.Server, error) {
	h, err := host.New(ctx, cfg, append([]host.Option{host.WithLogger(log), compileOption()}, opts...)...)
	if err != nil {
		return nil, nil, err
	}
	// Plugins that did not load are in the log already (host.New warns).
	srv, err := server.New(h, cfg, server.WithLogger(log), server.WithWarnings(warnings...))
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return h, srv, nil
}

// tenantsLine says who may use the server.
func tenantsLine(h *host.Host) string {
	switch n := len(h.Tenants()); n {
	case 0:
		return "open: no API key needed"
	case 1:
		return "1 tenant"
	default:
		return fmt.Sprintf("%d tenants", n)
	}
}

// loopback reports whether addr only accepts local connections.
func loopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
