package host

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/hardware"
	"github.com/mdsa-go/mdsa/host/models"
)

// hardwareInfo returns the hardware the engine settings derive from: the
// WithHardware option's, else this machine's, detected once, and only when
// a setting asks for it (engine.memory_budget_mb = 0, engine.threads = 0,
// engine.gpu_layers = "auto"). Otherwise it returns the zero Info.
func (h *Host) hardwareInfo(ctx context.Context, o options) (hardware.Info, error) {
	if o.hardware != nil {
		return *o.hardware, nil
	}
	e := h.cfg.Engine
	var why []string
	if e.MemoryBudgetMB == 0 {
		why = append(why, "engine.memory_budget_mb = 0")
	}
	if e.Threads == 0 {
		why = append(why, "engine.threads = 0")
	}
	if e.GPULayers.Auto {
		why = append(why, `engine.gpu_layers = "auto"`)
	}
	if len(why) == 0 {
		return hardware.Info{}, nil
	}
	info, err := hardware.Detect(ctx, hardware.Options{Logger: h.log})
	if err != nil {
		return hardware.Info{}, fmt.Errorf("host: detecting the hardware for %s in %s (set them explicitly to skip): %w",
			strings.Join(why, ", "), h.cfg.File, err)
	}
	for _, w := range info.Warnings {
		h.log.Debug("host: hardware detection", "warning", w)
	}
	return info, nil
}

// gpuAuto resolves engine.gpu_layers = "auto" for each model file when it
// is first estimated or loaded, against the hardware detected when the
// host opened its registry and the llama.cpp build in libDir, and
// remembers the answer.
type gpuAuto struct {
	info   hardware.Info
	libDir string
	log    *slog.Logger

	mu   sync.Mutex
	done map[string]int // by model name and file
}

func newGPUAuto(info hardware.Info, libDir string, log *slog.Logger) *gpuAuto {
	return &gpuAuto{info: info, libDir: libDir, log: log, done: map[string]int{}}
}

// layers returns the GPU layers for the model of spec, run with base's
// context size and parallelism unless the spec sets its own.
func (a *gpuAuto) layers(spec models.Spec, base llamacpp.Options) int {
	key := spec.Name + "\x00" + spec.Path
	a.mu.Lock()
	n, ok := a.done[key]
	a.mu.Unlock()
	if ok {
		return n
	}
	n, why := a.resolve(spec, base)
	a.mu.Lock()
	if prev, ok := a.done[key]; ok {
		n = prev // a concurrent first call won; keep one answer
	} else {
		a.done[key] = n
		a.log.Info("host: engine.gpu_layers = auto", "model", spec.Name, "gpu_layers", n, "why", why)
	}
	a.mu.Unlock()
	return n
}

func (a *gpuAuto) resolve(spec models.Spec, base llamacpp.Options) (int, string) {
	opts := hardware.RecommendOptions{ContextSize: base.ContextSize, Parallel: base.Parallel}
	if spec.ContextSize > 0 {
		opts.ContextSize = spec.ContextSize
	}
	if spec.Parallel > 0 {
		opts.Parallel = spec.Parallel
	}
	return models.AutoGPULayers(a.info, a.libDir, spec.Name, spec.Path, opts)
}
