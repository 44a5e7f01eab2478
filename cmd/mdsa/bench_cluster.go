package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/internal/clusterbench"
)

func (a *app) benchClusterCmd() *cobra.Command {
	var (
		js       bool
		duration time.Duration
		requests int
		redisURL string
	)
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Measure MDSA as a gateway in front of inference servers",
		Long: `Start OpenAI-compatible benchmark servers of fixed latency and capacity on loopback (not models:
what is measured is the gateway) and MDSA gateways in front of them, in this process, and report:

  overhead  one server called directly and through the gateway, requests interleaved: the p50
            latency of whole answers and of the first token of streams, and what the gateway adds
  affinity  4 servers that each keep one system prompt warm, 16 clients over 4 domains at random:
            the share of requests that found their prompt warm and the busiest server's requests
            over the mean, with balance = least-outstanding and with balance = prefix
  scaling   1, 2 and 4 servers (4 requests at once each, 40 ms per request), 32 clients:
            requests per second through the gateway and the ratio to one server
  failover  3 servers under 12 streaming clients; one is killed at a third of the run and
            restarted at two thirds: requests failed before their first token, streams cut (with
            and without an error event), and when the gateway's metrics showed the server down,
            up again, and when it served again
  shared    with --redis: two replicas sharing tenants' limits in that Redis, 8 clients of one
            tenant limited to 20 requests/s: the rate admitted over the run and how far off 20 it is`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if duration <= 0 || requests < 1 {
				return fmt.Errorf("bench cluster: --duration %s --requests %d: want both > 0", duration, requests)
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			var progress io.Writer
			if !js {
				progress = a.errw
			}
			rep, err := clusterbench.Run(cmd.Context(), clusterbench.Options{Duration: duration, Requests: requests, Config: cfg, Log: progress, RedisURL: redisURL})
			if err != nil {
				return fmt.Errorf("bench cluster: %w", err)
			}
			if js {
				return writeJSON(a.out, rep)
			}
			printCluster(a.out, rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&duration, "duration", 3*time.Second, "length of each load phase (failover: at least 3s)")
	f.IntVar(&requests, "requests", 300, "requests of the overhead phase, each way")
	f.StringVar(&redisURL, "redis", "", "a Redis (redis://HOST:PORT or unix:///PATH) for the shared-limits phase")
	f.BoolVar(&js, "json", false, "print JSON")
	return cmd
}

func printCluster(w io.Writer, r clusterbench.Report) {
	o := r.Overhead
	fmt.Fprintf(w, "overhead (%d requests each way, interleaved)\n", o.Requests)
	fmt.Fprintf(w, "  whole answer p50:  direct %.3f ms, through MDSA %.3f ms, added %.3f ms\n", o.DirectP50MS, o.GatewayP50MS, o.AddedP50MS)
	fmt.Fprintf(w, "  first token p50:   direct %.3f ms, through MDSA %.3f ms, added %.3f ms\n\n", o.DirectTTFTMS, o.GatewayTTFTMS, o.AddedTTFTMS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "affinity (4 servers, 4 domains)\trequests\twarm\tbusiest / mean")
	for _, a := range r.Affinity {
		fmt.Fprintf(tw, "  %s\t%d\t%.1f%%\t%.2fx\n", a.Balance, a.Requests, a.WarmPct, a.MaxOverMean)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scaling\trequests/s\tratio\tceiling/s\terrors")
	for _, s := range r.Scaling {
		fmt.Fprintf(tw, "  %d server(s)\t%.1f\t%.2fx\t%.0f\t%d\n", s.Backends, s.RequestsPerS, s.Ratio, s.CeilingPerSec, s.Errors)
	}
	tw.Flush()
	f := r.Failover
	fmt.Fprintf(w, "\nfailover (%d streams): %d failed before the first token, %d cut with an error event, %d cut without one\n",
		f.Requests, f.FailedBeforeFirstToken, f.CutStreams, f.CutWithoutError)
	fmt.Fprintf(w, "  the killed server shown down after %.0f ms; restarted, shown up after %.0f ms, serving after %.0f ms (-1: not seen)\n",
		f.EjectedAfterMS, f.ReadmittedAfterMS, f.ServedAfterMS)
	if sh := r.Shared; sh != nil {
		fmt.Fprintf(w, "\nshared limits (%d replicas, one Redis): %.0f requests/s allowed, %.1f admitted (%+.1f%%), %d refused with 429, %d errors\n",
			sh.Replicas, sh.LimitPerSec, sh.AdmittedPerS, sh.WithinPercent, sh.Refused, sh.Errors)
	}
}
