package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/internal/wire"
)

func (a *app) askCmd() *cobra.Command {
	var (
		asJSON, stream bool
		domain, model  string
		maxTokens      int
		temperature    float32
	)
	cmd := &cobra.Command{
		Use:   "ask [flags] QUERY (or - to read it from stdin)",
		Short: "Answer a query: route it, run the domain plugin and the model",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			query := strings.Join(args, " ")
			if len(args) == 1 && args[0] == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxStdinQuery+1))
				if err != nil {
					return a.askFailed(asJSON, fmt.Errorf("ask: reading the query from stdin: %w", err))
				}
				if len(b) > maxStdinQuery {
					return a.askFailed(asJSON, fmt.Errorf("ask: the query on stdin is over %d bytes", maxStdinQuery))
				}
				query = string(b)
			}
			switch {
			case strings.TrimSpace(query) == "":
				return a.askFailed(asJSON, errors.New("ask: the query is empty"))
			case maxTokens < 0:
				return a.askFailed(asJSON, fmt.Errorf("ask: --max-tokens %d: want 0 (the configured limit) or more", maxTokens))
			case temperature < 0:
				return a.askFailed(asJSON, fmt.Errorf("ask: --temperature %g: want 0 (greedy) or more", temperature))
			}
			var opts []host.Option
			notice := ""
			cfg, err := a.loadConfig()
			if err != nil {
				return a.askFailed(asJSON, err)
			}
			if model == "" {
				if model, notice, err = modelFallback(cfg); err != nil {
					return a.askFailed(asJSON, err)
				}
				if notice != "" {
					fmt.Fprintln(a.errw, "note:", notice)
				}
			}
			if model != "" {
				opts = append(opts, host.WithModelFile(absPath(model)))
			}
			h, err := a.openHostWith(ctx, cfg, opts...)
			if err != nil {
				return a.askFailed(asJSON, err)
			}
			defer h.Close()
			req := host.Request{Query: query, Domain: domain}
			req.Generation.MaxTokens = maxTokens
			if cmd.Flags().Changed("temperature") {
				req.Generation.Temperature = &temperature
			}
			var res host.Result
			if stream && !asJSON {
				var streamed strings.Builder
				res, err = h.Stream(ctx, req, func(piece string) error {
					streamed.WriteString(piece)
					_, err := fmt.Fprint(a.out, piece)
					return err
				})
				if err == nil {
					a.printRevision(streamed.String(), res)
				}
				fmt.Fprintln(a.out)
			} else {
				res, err = h.Process(ctx, req)
			}
			if err != nil {
				return a.askFailed(asJSON, err)
			}
			if asJSON {
				return writeJSON(a.out, askResult{Result: wire.FromResult(res), Notice: notice})
			}
			if !stream || res.Status == host.StatusOutOfScope {
				fmt.Fprintln(a.out, res.Response)
			}
			a.printSummary(res)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the full result as JSON")
	f.BoolVar(&stream, "stream", false, "print the answer as it is generated (before validation)")
	f.StringVarP(&domain, "domain", "d", "", "skip routing and use this domain")
	f.StringVar(&model, "model-file", "", "GGUF model file to use instead of the configured model")
	f.IntVar(&maxTokens, "max-tokens", 0, "cap the answer's length in tokens")
	f.Float32Var(&temperature, "temperature", 0, "sampling temperature (0 = greedy)")
	return cmd
}

// maxStdinQuery bounds a query read from stdin (ask -).
const maxStdinQuery = 1 << 20

// askResult is ask --json's output: the host's result, and the notice of a
// fallback to the synthetic model when there was one.
type askResult struct {
	wire.Result
	Notice string `json:"notice,omitempty"`
}

// printRevision prints what validation changed in a streamed answer: the
// text it appended (a disclaimer, say), or the whole final answer when it
// rewrote it. The streamed tokens are the model's, before validation.
func (a *app) printRevision(streamed string, res host.Result) {
	if res.Status == host.StatusOutOfScope {
		return
	}
	appended, rewritten := res.Revision(streamed)
	if rewritten {
		fmt.Fprintf(a.out, "\n\n[revised by the %s plugin's validation:]\n%s", res.Domain, res.Response)
		return
	}
	fmt.Fprint(a.out, appended)
}

// askFailed reports err, as JSON on stdout when asked for JSON.
func (a *app) askFailed(asJSON bool, err error) error {
	if !asJSON {
		return err
	}
	return a.jsonFailed(err)
}

func (a *app) printSummary(res host.Result) {
	w := a.errw
	if res.Status == host.StatusOutOfScope {
		fmt.Fprintf(w, "  [out of scope: confidence %.2f below threshold; %.2f ms]\n", res.Confidence, wire.Millis(res.Timings.Total))
		return
	}
	fmt.Fprintf(w, "  [domain %s (confidence %.2f) | model %s | %d+%d tokens, %d of the prompt cached | %s]\n",
		res.Domain, res.Confidence, res.Model, res.Tokens.Prompt, res.Tokens.Completion, res.Tokens.Cached, res.Status)
	t := wire.FromTimings(res.Timings)
	fmt.Fprintf(w, "  [ms: route %.3f, prompt %.3f, generate %.1f, validate %.3f, total %.1f]\n",
		t.Route, t.Prompt, t.Generate, t.Validate, t.Total)
	for _, is := range res.Validation.Issues {
		fmt.Fprintf(w, "  [validation %s %s: %s]\n", is.Severity, is.Code, is.Message)
	}
}

func (a *app) routeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "route [flags] QUERY",
		Short: "Show which domain a query would go to",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.openHost(cmd.Context())
			if err != nil {
				return err
			}
			defer h.Close()
			start := time.Now()
			d := h.Route(cmd.Context(), strings.Join(args, " "))
			us := float64(time.Since(start).Nanoseconds()) / 1e3
			if asJSON {
				return writeJSON(a.out, struct {
					router.Decision
					LatencyUS float64 `json:"latency_us"`
				}{d, us})
			}
			if d.OutOfScope {
				fmt.Fprintf(a.out, "out of scope (confidence %.3f, %.0f us)\n", d.Confidence, us)
			} else {
				fmt.Fprintf(a.out, "%s (confidence %.3f, %.0f us)\n", d.Domain, d.Confidence, us)
			}
			for _, alt := range d.Alternatives {
				fmt.Fprintf(a.out, "  %-12s %.3f\n", alt.Domain, alt.Score)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
