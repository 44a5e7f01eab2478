package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/host/plugin/conformance"
	"github.com/mdsa-go/mdsa/internal/bytesize"
)

func (a *app) pluginsTestCmd() *cobra.Command {
	var (
		asJSON     bool
		kvs        []string
		maxLatency time.Duration
	)
	cmd := &cobra.Command{
		Use:   "test FILE.wasm",
		Short: "Run the conformance kit on a plugin module",
		Long: "Loads FILE.wasm with the configured sandbox limits and compilation cache, checks that it keeps the\n" +
			"plugin contract (sdk/ABI.md): its manifest, prompt and validate (and handle) on awkward inputs, its\n" +
			"tools on arguments made from their schemas (and an unknown tool name), a clean failure on malformed\n" +
			"input, determinism and call latency. No model is used: host calls get a fixed generation. Exits\n" +
			"non-zero if any check fails.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pluginConfig, err := parseKVs(kvs)
			if err != nil {
				return err
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			rep, err := a.runConformance(cmd.Context(), cfg, args[0], conformance.Options{
				Config:         pluginConfig,
				MaxCallLatency: maxLatency,
			})
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(a.out, rep); err != nil {
					return err
				}
			} else if err := printConformance(a.out, rep); err != nil {
				return err
			}
			if !rep.Passed {
				return silentError{fmt.Errorf("plugin %s failed %d of %d checks", rep.Plugin, len(rep.Failed()), len(rep.Checks))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringArrayVar(&kvs, "config-kv", nil, "plugin configuration value KEY=VALUE (repeatable)")
	cmd.Flags().DurationVar(&maxLatency, "max-latency", conformance.DefaultMaxCallLatency, "budget of the median prompt+validate call pair")
	return cmd
}

// parseKVs turns KEY=VALUE flags into a map.
func parseKVs(kvs []string) (map[string]string, error) {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--config-kv %q: want KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// runConformance makes a plugin runtime the way the host does (the
// configured limits, pool size and compilation cache) but with the kit's
// fake inference services, and checks the module at path. opts gives the
// plugin's config and the latency budget; the limits and cache are set here.
func (a *app) runConformance(ctx context.Context, cfg config.Config, path string, opts conformance.Options) (conformance.Report, error) {
	limits := plugin.Limits{
		CallTimeout:    cfg.Plugins.Timeout.Duration,
		MaxMemoryBytes: uint64(cfg.Plugins.MemoryMB) << 20,
		MaxOutputBytes: cfg.Plugins.MaxOutputBytes,
		MaxHostCalls:   cfg.Plugins.MaxHostCalls,
		MaxTokens:      cfg.Plugins.MaxTokens,
	}
	maxModule := int64(plugin.DefaultMaxModuleBytes)
	wasm, err := plugin.ReadModule(path, maxModule)
	if err != nil {
		return conformance.Report{}, fmt.Errorf("plugins test: %w", err)
	}
	cacheDir := cfg.Resolve(cfg.Host.CacheDir)
	// Failing calls are the kit's business and end up in the report; the
	// runtime's own warnings about them only go to stderr on request.
	logger := slog.New(slog.DiscardHandler)
	if a.logLevel != "" {
		logger = a.logger(cfg)
	}
	ropts := plugin.Options{
		CacheDir: cacheDir,
		Limits:   limits,
		PoolSize: cfg.Plugins.PoolSize,
		Services: conformance.FakeServices{},
		Logger:   logger,
	}
	if cfg.Plugins.CompileInChild {
		ropts.CompileCommand = compileCommand()
		ropts.CompileTimeout = cfg.Plugins.CompileTimeout.Duration
		ropts.CompileMemoryBytes = uint64(cfg.Plugins.CompileMemoryMB) << 20
	}
	rt, err := plugin.NewRuntime(ctx, ropts)
	if err != nil {
		return conformance.Report{}, fmt.Errorf("plugins test: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = rt.Close(cctx)
	}()
	opts.Limits, opts.CacheDir = limits, cacheDir
	return conformance.Check(ctx, rt, filepath.Base(path), wasm, opts), nil
}

// printConformance writes the report for humans: one line per check, the
// failures' details, then the figures.
func printConformance(w io.Writer, rep conformance.Report) error {
	ident := rep.Plugin
	if rep.Version != "" {
		ident += " " + rep.Version
	}
	sha := rep.SHA256
	if len(sha) > 12 {
		sha = sha[:12]
	}
	fmt.Fprintf(w, "plugin %s (%s, sha256 %s)\n\n", ident, bytesize.Format(int64(rep.Size)), sha)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range rep.Checks {
		status := "PASS"
		if !c.Passed {
			status = "FAIL"
		}
		note := c.Detail
		if !c.Passed {
			note = ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", status, c.Name, fmtDuration(c.Duration), note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed := rep.Failed(); len(failed) > 0 {
		fmt.Fprintln(w)
		for _, c := range failed {
			fmt.Fprintf(w, "  %s\n", c.Detail)
		}
	}
	fmt.Fprintf(w, "\ncompile %.1f ms, instantiate %.1f ms", rep.CompileMS, rep.InstantiateMS)
	if len(rep.CallUS) > 0 {
		keys := sortedKeys(rep.CallUS)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s %.0f us", k, rep.CallUS[k])
		}
		fmt.Fprintf(w, "; p50 calls: %s", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
	if rep.Passed {
		_, err := fmt.Fprintf(w, "PASS: %d checks\n", len(rep.Checks))
		return err
	}
	_, err := fmt.Fprintf(w, "FAIL: %d of %d checks failed\n", len(rep.Failed()), len(rep.Checks))
	return err
}

// fmtDuration rounds d for a report line.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
