package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/internal/routerbench"
)

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure MDSA components",
	}
	cmd.AddCommand(a.benchRouteCmd(), a.benchHotswapCmd(), a.benchServeCmd(), a.benchEngineCmd(), a.benchHostileCmd(), a.benchClusterCmd(), a.benchRetrievalCmd())
	return cmd
}

func (a *app) benchRouteCmd() *cobra.Command {
	var (
		clinc, calibrate  string
		synthetic, perDom int
		minAcc            float64
		background, js    bool
	)
	cmd := &cobra.Command{
		Use:   "route (--clinc DIR | --synthetic N)",
		Short: "Measure routing accuracy, out-of-scope detection and latency",
		Long: `Measure the router.

--clinc DIR runs CLINC150 (data_full.json and domains.json in DIR): one domain per CLINC150
domain trained on its train split, the out-of-scope threshold tuned on val + oos_val (the best
out-of-scope recall that keeps --min-accuracy), and every figure measured on test + oos_test.

--synthetic N measures N made-up domains (--examples each), for cost at scale.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ds routerbench.Dataset
			switch {
			case clinc != "" && synthetic > 0:
				return fmt.Errorf("bench route: give --clinc or --synthetic, not both")
			case clinc != "":
				var err error
				if ds, err = routerbench.LoadCLINC(clinc); err != nil {
					return err
				}
			case synthetic > 0:
				ds = routerbench.Synthetic(synthetic, perDom, 1)
			default:
				return fmt.Errorf("bench route: give --clinc DIR or --synthetic N")
			}
			cfg := routerbench.Config{MinAccuracy: minAcc}
			switch calibrate {
			case "held-out":
			case "val":
				cfg.CalibrateOnVal = true
			default:
				return fmt.Errorf("bench route: --calibrate %q: want held-out or val", calibrate)
			}
			if background {
				cfg.Background = router.DefaultBackground()
			}
			rep, err := routerbench.Run(cmd.Context(), ds, cfg)
			if err != nil {
				return err
			}
			if js {
				return writeJSON(a.out, rep)
			}
			printRouteReport(a.out, rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&clinc, "clinc", "", "CLINC150 directory (data_full.json, domains.json)")
	f.IntVar(&synthetic, "synthetic", 0, "number of synthetic domains")
	f.IntVar(&perDom, "examples", 20, "examples per synthetic domain")
	f.Float64Var(&minAcc, "min-accuracy", 0.95, "in-scope accuracy on val that the out-of-scope threshold must keep")
	f.StringVar(&calibrate, "calibrate", "held-out", "confidence calibration: held-out (the router's own) or val")
	f.BoolVar(&background, "background", false, "train the router's background class on the built-in corpus")
	f.BoolVar(&js, "json", false, "print JSON")
	return cmd
}

func printRouteReport(w io.Writer, r routerbench.Report) {
	fmt.Fprintf(w, "%s: %d domains, %d examples (+%d background), %d features, %s model, %s calibration\n",
		r.Dataset, r.Domains, r.Examples, r.Background, r.Features, r.Model, r.Calibration)
	fmt.Fprintf(w, "  train               %10.1f ms\n", r.TrainMS)
	fmt.Fprintf(w, "  threshold (val)     %10.3f   val accuracy %.4f, val oos recall %.3f\n", r.Threshold, r.ValInScopeAccuracy, r.ValOOSRecall)
	fmt.Fprintf(w, "  closed-set accuracy %10.4f   (test, nothing refused)\n", r.ClosedSetAccuracy)
	fmt.Fprintf(w, "  in-scope accuracy   %10.4f   (test, at the threshold)\n", r.InScopeAccuracy)
	fmt.Fprintf(w, "  oos recall          %10.4f\n", r.OOSRecall)
	fmt.Fprintf(w, "  oos precision       %10.4f\n", r.OOSPrecision)
	fmt.Fprintf(w, "  macro F1            %10.4f\n", r.MacroF1)
	fmt.Fprintf(w, "  ECE                 %10.4f\n", r.ECE)
	fmt.Fprintf(w, "  latency p50 / p99   %7.1f / %.1f us over %d queries (mean %.1f us)\n", r.P50US, r.P99US, r.TestQueries, r.MeanUS)
}
