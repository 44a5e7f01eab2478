package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/host/hardware"
	"github.com/mdsa-go/mdsa/host/models"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

const gib = int64(1) << 30

// openRegistryWith opens only the model registry of a host for cfg on the
// given hardware, and returns the host.
func openRegistryWith(t *testing.T, cfg config.Config, info hardware.Info) *Host {
	t.Helper()
	h := &Host{cfg: cfg, log: quietLogger()}
	if err := h.openRegistry(context.Background(), options{hardware: &info}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.models.Close() })
	return h
}

// machine is 8 physical cores (16 threads) under a cgroup quota of 2.5
// CPUs, 16 GiB of available RAM, and the given GPUs.
func machine(gpus ...hardware.GPU) hardware.Info {
	return hardware.Info{
		CPU:    hardware.CPU{Cores: 8, Threads: 16, QuotaCPUs: 2.5},
		Memory: hardware.Memory{TotalBytes: 32 * gib, AvailableBytes: 16 * gib},
		GPUs:   gpus,
	}
}

func nvidiaGPU(total, free int64) hardware.GPU {
	return hardware.GPU{Index: 0, Vendor: hardware.VendorNVIDIA, Name: "test", VRAMTotalBytes: total, VRAMFreeBytes: free}
}

func TestEngineThreadsFromHardware(t *testing.T) {
	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Engine.Threads = 0
	if h := openRegistryWith(t, cfg, machine()); h.threads != 2 {
		t.Errorf("engine.threads = 0: %d threads, want 2 (8 physical cores capped by a 2.5-CPU quota)", h.threads)
	}
	m := machine()
	m.CPU.QuotaCPUs = 0
	if h := openRegistryWith(t, cfg, m); h.threads != 8 {
		t.Errorf("engine.threads = 0, no quota: %d threads, want the 8 physical cores", h.threads)
	}
	cfg.Engine.Threads = 3
	if h := openRegistryWith(t, cfg, machine()); h.threads != 3 {
		t.Errorf("engine.threads = 3: %d threads", h.threads)
	}
}

// libDir makes a llama.cpp library directory holding the named files.
func libDir(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("stand-in"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestGPULayersAuto(t *testing.T) {
	// A synthetic model with a few layers, so that a partial offload is a
	// whole number of them.
	model := filepath.Join(t.TempDir(), "m.gguf")
	si, err := gguf.WriteSynth(model, gguf.SynthOptions{Params: 5_000_000})
	if err != nil {
		t.Fatal(err)
	}
	spec := models.Spec{Name: "m", Path: model}
	cuda := libDir(t, "libllama.so", "libggml-cuda.so")
	vulkan := libDir(t, "libllama.so", "libggml-vulkan.so")
	cpu := libDir(t, "libllama.so")
	// VRAM free beyond the reserve (512 MiB + 2% of the total): 64 MiB, far
	// less than the model's need (its weights plus at least 256 MiB of
	// runtime overhead), so some of its layers fit.
	small := nvidiaGPU(gib, 512<<20+gib/50+64<<20)
	amd := hardware.GPU{Vendor: hardware.VendorAMD, Name: "rx", VRAMTotalBytes: 24 * gib, VRAMFreeBytes: 23 * gib}

	cases := []struct {
		name   string
		lib    string
		info   hardware.Info
		want   int
		within bool   // want a share: 0 < layers < all
		why    string // in the reason
	}{
		{"no GPU", cuda, machine(), 0, false, "no GPU detected"},
		{"big GPU", cuda, machine(nvidiaGPU(80*gib, 79*gib)), hardware.GPULayersAll, false, "all layers on the GPU"},
		{"small GPU", cuda, machine(small), 0, true, "layers on the GPU"},
		{"GPU but a CPU-only build", cpu, machine(nvidiaGPU(80*gib, 79*gib)), 0, false, "a CPU-only llama.cpp build is installed"},
		{"AMD GPU and a CUDA build", cuda, machine(amd), 0, false, "NVIDIA GPUs only"},
		{"AMD GPU and a Vulkan build", vulkan, machine(amd), hardware.GPULayersAll, false, "all layers on the GPU"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, fixture.pluginsDir)
			cfg.Engine.LibDir = c.lib
			h := openRegistryWith(t, cfg, c.info)
			if h.gpuAuto == nil {
				t.Fatal(`gpu_layers = "auto" (the default) has no resolver`)
			}
			base := llamacpp.Options{ContextSize: 512, Parallel: 1}
			if _, why := h.gpuAuto.resolve(spec, base); !strings.Contains(why, c.why) {
				t.Errorf("reason %q lacks %q", why, c.why)
			}
			got := h.gpuAuto.layers(spec, base)
			if c.within {
				if got <= 0 || got >= si.NLayer {
					t.Errorf("gpu layers = %d, want a share of the %d layers", got, si.NLayer)
				}
				return
			}
			if got != c.want {
				t.Errorf("gpu layers = %d, want %d", got, c.want)
			}
		})
	}

	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Engine.GPULayers = config.FixedGPULayers(7)
	if h := openRegistryWith(t, cfg, machine(nvidiaGPU(80*gib, 79*gib))); h.gpuAuto != nil {
		t.Error("gpu_layers = 7 should not resolve anything")
	}
}
