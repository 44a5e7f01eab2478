package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/hardware"
)

// hwReport is the JSON of `mdsa hw --json`: the detected hardware with the
// recommendations next to it.
type hwReport struct {
	hardware.Info
	Recommendations hardware.Recommendation `json:"recommendations"`
}

func (a *app) hwCmd() *cobra.Command {
	var asJSON, cpuOnly bool
	cmd := &cobra.Command{
		Use:   "hw",
		Short: "Show the CPU, memory and GPUs, and the model settings they allow",
		Long: "Detects CPU cores and instruction sets, available RAM (within any cgroup limit), NUMA nodes and\n" +
			"GPUs with their VRAM (NVML, nvidia-smi or amdgpu sysfs), then recommends for each model of the\n" +
			"configuration's [models] catalog the best quantization that fits, the threads and the GPU layers.\n" +
			"Sizes come from the catalog or the local file when known, else from the parameter count in the\n" +
			"model's name (an estimate).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, cerr := a.loadConfig()
			if cerr != nil {
				fmt.Fprintf(a.errw, "warning: no recommendations for the catalog: %v\n", cerr)
			}
			info, err := hardware.Detect(cmd.Context(), hardware.Options{Logger: a.logger(cfg)})
			if err != nil {
				return fmt.Errorf("hardware detection: %w", err)
			}
			var catalog []hardware.CatalogModel
			if cerr == nil {
				catalog = hwCatalog(cfg)
			}
			rec := hardware.Recommend(info, catalog, hardware.RecommendOptions{
				ContextSize: cfg.Engine.ContextSize,
				Parallel:    cfg.Engine.Parallel,
				CPUOnly:     cpuOnly,
			})
			if asJSON {
				return writeJSON(a.out, hwReport{Info: info, Recommendations: rec})
			}
			return printHW(a.out, info, rec, cfg.Engine.Model)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&cpuOnly, "cpu-only", false, "recommend without offloading to a GPU")
	return cmd
}

// hwCatalog turns the configuration's [models] into Recommend's input, in
// name order. A variant's size is the catalog's, else its local file's.
func hwCatalog(cfg config.Config) []hardware.CatalogModel {
	names := make([]string, 0, len(cfg.Models))
	for n := range cfg.Models {
		names = append(names, n)
	}
	slices.Sort(names)
	modelsDir := cfg.Resolve(cfg.Host.ModelsDir)
	var out []hardware.CatalogModel
	for _, n := range names {
		m := cfg.Models[n]
		cm := hardware.CatalogModel{Name: n, Params: hardware.ParamsFromName(n), ContextLength: m.ContextLength,
			Variants: map[string]int64{}}
		for q, v := range m.Variants {
			size := v.Size
			if size <= 0 {
				p := v.Path
				if p == "" {
					p = v.File
				}
				if p != "" {
					if !filepath.IsAbs(p) {
						p = filepath.Join(modelsDir, p)
					}
					if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
						size = st.Size()
					}
				}
			}
			cm.Variants[q] = size
		}
		out = append(out, cm)
	}
	return out
}

func printHW(w io.Writer, info hardware.Info, rec hardware.Recommendation, engineModel string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	c := info.CPU
	cpu := fmt.Sprintf("%s (%s): %d cores, %d threads", orDash(c.Model), orDash(c.Vendor), c.Cores, c.Threads)
	if c.QuotaCPUs > 0 {
		cpu += fmt.Sprintf(", cgroup quota %.2g CPUs", c.QuotaCPUs)
	}
	fmt.Fprintf(tw, "CPU\t%s\n", cpu)
	fmt.Fprintf(tw, "Flags\t%s\n", orDash(strings.Join(c.Flags, " ")))
	m := info.Memory
	mem := fmt.Sprintf("%s total, %s available", hardware.FormatBytes(m.TotalBytes), hardware.FormatBytes(m.AvailableBytes))
	if m.CgroupLimitBytes > 0 {
		mem += fmt.Sprintf(" (cgroup v%d limit %s, %s used)", m.CgroupVersion,
			hardware.FormatBytes(m.CgroupLimitBytes), hardware.FormatBytes(m.CgroupUsageBytes))
	}
	fmt.Fprintf(tw, "Memory\t%s\n", mem)
	fmt.Fprintf(tw, "NUMA\t%d node(s)\n", len(info.NUMA))
	if len(info.GPUs) == 0 {
		fmt.Fprintf(tw, "GPUs\tnone\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(info.GPUs) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GPU\tVENDOR\tNAME\tVRAM TOTAL\tVRAM FREE\tDRIVER\tSOURCE")
		for _, g := range info.GPUs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Index, g.Vendor, g.Name,
				hardware.FormatBytes(g.VRAMTotalBytes), hardware.FormatBytes(g.VRAMFreeBytes), orDash(g.Driver), g.Source)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\nBudget: RAM %s", hardware.FormatBytes(rec.MemoryBudgetBytes))
	if rec.VRAMBudgetBytes > 0 {
		fmt.Fprintf(w, ", VRAM %s on %s GPU(s) %v", hardware.FormatBytes(rec.VRAMBudgetBytes), rec.GPUVendor, rec.GPUs)
	}
	fmt.Fprintf(w, "; threads %d\n", rec.Threads)

	if len(rec.Models) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MODEL\tQUANT\tNEEDS\tGPU LAYERS\tNOTE")
		for _, f := range rec.Models {
			quant, layers := f.Quant, gpuLayers(f)
			if !f.Fits {
				quant, layers = "-", "-"
			}
			needs := hardware.FormatBytes(f.NeededBytes)
			if f.WeightsEstimated {
				needs = "~" + needs
			}
			if f.NeededBytes == 0 {
				needs = "?"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Model, quant, needs, layers, f.Reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, f := range rec.Models {
			if f.Model == engineModel && f.Fits {
				fmt.Fprintf(w, "\nFor engine.model %q: quant = %q, threads = %d, gpu_layers = %d\n",
					f.Model, f.Quant, rec.Threads, f.GPULayers)
			}
		}
	}

	if len(info.Warnings) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, msg := range info.Warnings {
			fmt.Fprintf(w, "  - %s\n", msg)
		}
	}
	return nil
}

func gpuLayers(f hardware.ModelFit) string {
	switch f.Offload {
	case hardware.OffloadAll:
		return "all"
	case hardware.OffloadPartial:
		return fmt.Sprintf("%d/%d", f.GPULayers, f.Layers)
	}
	return "0"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
