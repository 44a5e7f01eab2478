package main

import (
	"fmt"
	"io"
	"log/slog"
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
	// Devices are the devices llama.cpp's back-ends registered when the
	// libraries were loaded (the CPU, and each GPU a GPU back-end drives).
	Devices []llamacpp.Device `json:"devices,omitempty"`
	// Failures are GPU back-end libraries that did not come up, with the
	// reason (a missing CUDA runtime, no device).
	Failures []llamacpp.BackendFailure `json:"failures,omitempty"`
	// LoadError says why the libraries could not be loaded.
	LoadError string `json:"load_error,omitempty"`
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
				// The report lists back-ends that did not come up; their
				// load-time warnings would only repeat it.
				lg := a.logger(cfg)
				if !lg.Enabled(cmd.Context(), slog.LevelDebug) {
					lg = slog.New(slog.DiscardHandler)
				}
				report.Llama = hwLlamaBuild(cfg, lg)
				report.Engine = hwEngineSettings(cfg, info, rec, report.Llama, ropts)
				noteNoGPUDevice(report.Engine, report.Llama)
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

// hwLlamaBuild looks at the llama.cpp libraries in engine.lib_dir and,
// when they are installed, loads them to list the devices their back-ends
// find.
func hwLlamaBuild(cfg config.Config, logger *slog.Logger) *hwLlama {
	dir := cfg.Resolve(cfg.Engine.LibDir)
	if dir == "" {
		dir = os.Getenv(llamacpp.EnvLibDir)
	}
	l := &hwLlama{LibDir: dir, GPUBackends: models.LlamaGPUBackends(dir)}
	if dir == "" {
		return l
	}
	_, err := os.Stat(filepath.Join(dir, "libllama.so"))
	l.Installed = err == nil
	if !l.Installed {
		return l
	}
	b, err := llamacpp.LoadBackends(dir, logger)
	if err != nil {
		l.LoadError = err.Error()
		return l
	}
	l.Devices, l.Failures = b.Devices, b.Failures
	return l
}

// gpuDevices counts the GPU devices of the loaded libraries; ok is
// false when they were not loaded.
func (l *hwLlama) gpuDevices() (n int, ok bool) {
	if l == nil || len(l.Devices) == 0 {
		return 0, false
	}
	for _, d := range l.Devices {
		if d.GPU() {
			n++
		}
	}
	return n, true
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

// noteNoGPUDevice adds to e's explanation that the layers it offloads will
// stay on the CPU because llama.cpp's GPU back-end did not come up.
func noteNoGPUDevice(e *hwEngine, l *hwLlama) {
	if e == nil || e.GPULayersResolved == 0 {
		return
	}
	if n, ok := l.gpuDevices(); !ok || n > 0 {
		return
	}
	why := "llama.cpp has no GPU device, so every layer stays on the CPU"
	if len(l.Failures) > 0 {
		why += " (" + l.Failures[0].Library + ": " + l.Failures[0].Reason + ")"
	}
	if e.GPULayersWhy != "" {
		why = e.GPULayersWhy + "; but " + why
	}
	e.GPULayersWhy = why
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
		if len(l.Devices) > 0 {
			fmt.Fprintf(tw, "Devices\t%s\n", describeDevices(l.Devices))
		}
		for _, f := range l.Failures {
			fmt.Fprintf(tw, "Not used\t%s: %s\n", f.Library, f.Reason)
		}
		if l.LoadError != "" {
			fmt.Fprintf(tw, "Not loaded\t%s\n", l.LoadError)
		}
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

// describeDevices lists llama.cpp's devices: "CPU (AMD EPYC), CUDA0 (NVIDIA
// H100 80GB HBM3, 79.1 GiB free of 79.6 GiB)".
func describeDevices(devs []llamacpp.Device) string {
	parts := make([]string, len(devs))
	for i, d := range devs {
		desc := d.Name
		if d.Description != "" && d.Description != d.Name {
			desc += " (" + d.Description
			if d.GPU() && d.TotalBytes > 0 {
				desc += fmt.Sprintf(", %s free of %s", bytesize.Format(int64(d.FreeBytes)), bytesize.Format(int64(d.TotalBytes)))
			}
			desc += ")"
		}
		parts[i] = desc
	}
	return strings.Join(parts, ", ")
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
