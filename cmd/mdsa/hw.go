package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/hardware"
	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/internal/bytesize"
	"github.com/mdsa-go/mdsa/internal/engineconf"
)

// hwReport is the JSON of `mdsa hw --json`: the detected hardware with the
// recommendations next to it, and (with a configuration) the llama.cpp
// build installed and what the engine settings come to.
type hwReport struct {
	hardware.Info
	Recommendations hardware.Recommendation `json:"recommendations"`
	Llama           *hwLlama                `json:"llama,omitempty"`
	Engine          *hwEngine               `json:"engine,omitempty"`
}

// hwLlama describes the llama.cpp libraries in engine.lib_dir.
type hwLlama struct {
	LibDir string `json:"lib_dir"`
	// Installed is true when libllama.so is there.
	Installed bool `json:"installed"`
	// GPUBackends lists the GPU back-ends of the build: "cuda", "vulkan";
	// empty for a CPU-only build.
	GPUBackends []string `json:"gpu_backends"`
}

// hwEngine is what the configuration's engine settings come to on this
// machine for engine.model.
type hwEngine struct {
	Model string `json:"model"`
	// Threads is engine.threads, or the recommendation when that is 0.
	Threads int `json:"threads"`
	// ThreadsFrom is "engine.threads" or "recommendation".
	ThreadsFrom string `json:"threads_from"`
	// GPULayers is engine.gpu_layers as configured: "auto" or a count.
	GPULayers string `json:"gpu_layers"`
	// GPULayersResolved is the count the engine gets: the configured one,
	// or for "auto" the recommendation for the model's file (0 when the
	// installed llama.cpp build has no back-end for the GPUs).
	GPULayersResolved int `json:"gpu_layers_resolved"`
	// GPULayersWhy explains an "auto" resolution.
	GPULayersWhy string `json:"gpu_layers_why,omitempty"`
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
				catalog = engineconf.HardwareCatalog(cfg)
			}
			ropts := hardware.RecommendOptions{
				ContextSize: cfg.Engine.ContextSize,
				Parallel:    cfg.Engine.Parallel,
				CPUOnly:     cpuOnly,
			}
			rec := hardware.Recommend(info, catalog, ropts)
			report := hwReport{Info: info, Recommendations: rec}
			if cerr == nil {
				report.Llama = hwLlamaBuild(cfg)
				report.Engine = hwEngineSettings(cfg, info, rec, report.Llama, ropts)
			}
			if asJSON {
				return writeJSON(a.out, report)
			}
			return printHW(a.out, report, cfg.Engine.Model)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&cpuOnly, "cpu-only", false, "recommend without offloading to a GPU")
	return cmd
}

// hwLlamaBuild looks at the llama.cpp libraries in engine.lib_dir.
func hwLlamaBuild(cfg config.Config) *hwLlama {
	dir := cfg.Resolve(cfg.Engine.LibDir)
	if dir == "" {
		dir = os.Getenv(llamacpp.EnvLibDir)
	}
	l := &hwLlama{LibDir: dir, GPUBackends: models.LlamaGPUBackends(dir)}
	if dir != "" {
		_, err := os.Stat(filepath.Join(dir, "libllama.so"))
		l.Installed = err == nil
	}
	return l
}

// hwEngineSettings resolves engine.threads and engine.gpu_layers for
// engine.model as the host will when it loads the model.
func hwEngineSettings(cfg config.Config, info hardware.Info, rec hardware.Recommendation, llama *hwLlama, ropts hardware.RecommendOptions) *hwEngine {
	e := &hwEngine{Model: cfg.Engine.Model, Threads: cfg.EffectiveThreads(rec.Threads), ThreadsFrom: "engine.threads",
		GPULayers: cfg.Engine.GPULayers.String(), GPULayersResolved: cfg.Engine.GPULayers.Count}
	if cfg.Engine.Threads == 0 {
		e.ThreadsFrom = "recommendation"
	}
	if !cfg.Engine.GPULayers.Auto {
		return e
	}
	if len(info.GPUs) == 0 {
		e.GPULayersWhy = "no GPU detected"
		return e
	}
	path, name, _, err := cfg.ModelPath()
	if err != nil {
		e.GPULayersWhy = fmt.Sprintf("no engine.model file to fit: %v", err)
		return e
	}
	if _, err := os.Stat(path); err == nil {
		e.GPULayersResolved, e.GPULayersWhy = models.AutoGPULayers(info, llama.LibDir, name, path, ropts)
		return e
	}
	// Not downloaded yet: size it from the catalog.
	gpus, note := hardware.OffloadGPUs(info.GPUs, llama.GPUBackends)
	if len(gpus) == 0 {
		e.GPULayersWhy = "no GPU detected"
		if note != "" {
			e.GPULayersWhy = note
		}
		return e
	}
	m, ok := hwEngineModel(cfg)
	if !ok {
		e.GPULayersWhy = fmt.Sprintf("engine.model %q: no file or size to fit to the GPU", cfg.Engine.Model)
		return e
	}
	usable := info
	usable.GPUs = gpus
	e.GPULayersResolved, e.GPULayersWhy = hardware.AutoGPULayers(usable, m, ropts)
	if note != "" {
		e.GPULayersWhy += "; " + note
	}
	return e
}

// hwEngineModel describes engine.model's configured variant from the
// catalog: its size, or the parameter count in its name.
func hwEngineModel(cfg config.Config) (hardware.CatalogModel, bool) {
	_, name, quant, err := cfg.ModelPath()
	if err != nil {
		return hardware.CatalogModel{}, false
	}
	entry := cfg.Models[name]
	v := entry.Variants[quant]
	m := hardware.CatalogModel{Name: name, Params: hardware.ParamsFromName(name), ContextLength: entry.ContextLength,
		Variants: map[string]int64{quant: v.Size}}
	return m, v.Size > 0 || m.Params > 0
}

func printHW(w io.Writer, report hwReport, engineModel string) error {
	info, rec := report.Info, report.Recommendations
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	c := info.CPU
	cpu := fmt.Sprintf("%s (%s): %d cores, %d threads", orDash(c.Model), orDash(c.Vendor), c.Cores, c.Threads)
	if c.QuotaCPUs > 0 {
		cpu += fmt.Sprintf(", cgroup quota %.2g CPUs", c.QuotaCPUs)
	}
	fmt.Fprintf(tw, "CPU\t%s\n", cpu)
	fmt.Fprintf(tw, "Flags\t%s\n", orDash(strings.Join(c.Flags, " ")))
	m := info.Memory
	mem := fmt.Sprintf("%s total, %s available", bytesize.Format(m.TotalBytes), bytesize.Format(m.AvailableBytes))
	if m.CgroupLimitBytes > 0 {
		mem += fmt.Sprintf(" (cgroup v%d limit %s, %s used)", m.CgroupVersion,
			bytesize.Format(m.CgroupLimitBytes), bytesize.Format(m.CgroupUsageBytes))
	}
	fmt.Fprintf(tw, "Memory\t%s\n", mem)
	fmt.Fprintf(tw, "NUMA\t%d node(s)\n", len(info.NUMA))
	if len(info.GPUs) == 0 {
		fmt.Fprintf(tw, "GPUs\tnone\n")
	}
	if l := report.Llama; l != nil {
		fmt.Fprintf(tw, "llama.cpp\t%s\n", describeLlama(l))
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
				bytesize.Format(g.VRAMTotalBytes), bytesize.Format(g.VRAMFreeBytes), orDash(g.Driver), g.Source)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\nBudget: RAM %s", bytesize.Format(rec.MemoryBudgetBytes))
	if rec.VRAMBudgetBytes > 0 {
		fmt.Fprintf(w, ", VRAM %s on %s GPU(s) %v", bytesize.Format(rec.VRAMBudgetBytes), rec.GPUVendor, rec.GPUs)
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
			needs := bytesize.Format(f.NeededBytes)
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
	if e := report.Engine; e != nil {
		threads := fmt.Sprintf("threads %d (engine.threads)", e.Threads)
		if e.ThreadsFrom == "recommendation" {
			threads = fmt.Sprintf("threads %d (engine.threads = 0: the recommendation)", e.Threads)
		}
		layers := fmt.Sprintf("gpu_layers %d", e.GPULayersResolved)
		if e.GPULayers == "auto" {
			layers = fmt.Sprintf("gpu_layers \"auto\" = %d (%s)", e.GPULayersResolved, e.GPULayersWhy)
		}
		fmt.Fprintf(w, "\nThis configuration: %s, %s\n", threads, layers)
	}

	if len(info.Warnings) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, msg := range info.Warnings {
			fmt.Fprintf(w, "  - %s\n", msg)
		}
	}
	return nil
}

// describeLlama says which llama.cpp build is installed.
func describeLlama(l *hwLlama) string {
	switch {
	case l.LibDir == "":
		return "no library directory configured (engine.lib_dir)"
	case !l.Installed:
		return fmt.Sprintf("not installed in %s (run `make setup`)", l.LibDir)
	case len(l.GPUBackends) == 0:
		return fmt.Sprintf("CPU-only build in %s", l.LibDir)
	}
	return fmt.Sprintf("%s build in %s", strings.ToUpper(strings.Join(l.GPUBackends, "+")), l.LibDir)
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
