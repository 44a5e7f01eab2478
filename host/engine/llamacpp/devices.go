package llamacpp

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ebitengine/purego"
	"github.com/hybridgroup/yzma/pkg/llama"
)

// Device is a compute device that llama.cpp's loaded back-ends offer.
type Device struct {
	// Name is llama.cpp's name for it: "CPU", "CUDA0", "Vulkan0".
	Name string `json:"name"`
	// Description is the hardware's name, e.g. "NVIDIA H100 80GB HBM3".
	Description string `json:"description"`
	// Kind is "cpu", "gpu", "igpu" (integrated GPU) or "accel".
	Kind string `json:"kind"`
	// Backend is the back-end that registered it: "CPU", "CUDA", "Vulkan".
	Backend string `json:"backend"`
	// FreeBytes and TotalBytes are the device's memory as its back-end
	// reports it when asked (system memory for the CPU).
	FreeBytes  uint64 `json:"free_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
}

// GPU reports whether layers can be offloaded to d.
func (d Device) GPU() bool { return d.Kind == "gpu" || d.Kind == "igpu" }

// BackendFailure is a GPU back-end library installed in the library
// directory that llama.cpp did not bring up. llama.cpp's release builds skip
// such a library without a word; without this record a model asked to run
// on a GPU would run on the CPU and nobody would know why.
type BackendFailure struct {
	// Library is the file, e.g. "libggml-cuda.so".
	Library string `json:"library"`
	// Reason says why, e.g. the loader's "libcudart.so.13: cannot open
	// shared object file: No such file or directory".
	Reason string `json:"reason"`
}

// Backends describes what the llama.cpp libraries loaded in this process
// offer.
type Backends struct {
	// Dir is the directory the libraries were loaded from.
	Dir string `json:"dir"`
	// Devices are the devices of every registered back-end.
	Devices []Device `json:"devices"`
	// Failures are the GPU back-end libraries in Dir that did not come up.
	Failures []BackendFailure `json:"failures,omitempty"`
}

// GPUs returns the devices that layers can be offloaded to.
func (b Backends) GPUs() []Device {
	var out []Device
	for _, d := range b.Devices {
		if d.GPU() {
			out = append(out, d)
		}
	}
	return out
}

// Explain says, in one sentence, why no layer can be offloaded; "" when a
// GPU device is there.
func (b Backends) Explain() string {
	if len(b.GPUs()) > 0 {
		return ""
	}
	if len(b.Failures) == 0 {
		return fmt.Sprintf("the llama.cpp libraries in %s have no GPU back-end (a CPU-only build: `make setup LLAMA_BACKEND=cuda` or `vulkan` installs one)", b.Dir)
	}
	parts := make([]string, len(b.Failures))
	for i, f := range b.Failures {
		parts[i] = f.Library + ": " + f.Reason
	}
	return "llama.cpp's GPU back-end did not come up: " + strings.Join(parts, "; ")
}

// gpuBackendLibs maps the GPU back-end libraries that `make setup` can
// install to the name their back-end registers under.
var gpuBackendLibs = []struct{ file, reg string }{
	{"libggml-cuda.so", "CUDA"},
	{"libggml-vulkan.so", "Vulkan"},
}

// LoadBackends loads the llama.cpp libraries from dir as Open does (dir ""
// means $MDSA_LLAMA_LIB; a process loads one directory) and reports their
// devices and the GPU back-ends that failed to come up.
func LoadBackends(dir string, logger *slog.Logger) (Backends, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := loadLibrary(dir, logger); err != nil {
		return Backends{}, err
	}
	return currentBackends(), nil
}

// currentBackends reads the devices of the loaded libraries; their free
// memory is read anew each time.
func currentBackends() Backends {
	runtimeLib.mu.Lock()
	b := Backends{Dir: runtimeLib.dir, Failures: slices.Clone(runtimeLib.failures)}
	runtimeLib.mu.Unlock()
	b.Devices = listDevices()
	return b
}

// listDevices asks ggml for every registered device.
func listDevices() []Device {
	var out []Device
	n := llama.GGMLBackendDeviceCount()
	for i := uint64(0); i < n; i++ {
		dev := llama.GGMLBackendDeviceGet(i)
		if dev == 0 {
			continue
		}
		free, total := llama.GGMLBackendDeviceMemory(dev)
		out = append(out, Device{
			Name:        llama.GGMLBackendDeviceName(dev),
			Description: llama.GGMLBackendDeviceDescription(dev),
			Kind:        deviceKind(llama.GGMLBackendDevType(dev)),
			Backend:     llama.GGMLBackendRegName(llama.GGMLBackendDeviceBackendReg(dev)),
			FreeBytes:   free,
			TotalBytes:  total,
		})
	}
	return out
}

func deviceKind(t llama.GGMLBackendDeviceType) string {
	switch t {
	case llama.GGMLBackendDeviceTypeCPU:
		return "cpu"
	case llama.GGMLBackendDeviceTypeGPU:
		return "gpu"
	case llama.GGMLBackendDeviceTypeIGPU:
		return "igpu"
	case llama.GGMLBackendDeviceTypeACCEL:
		return "accel"
	default:
		return "other"
	}
}

// registeredBackends returns the names of the back-ends llama.cpp
// registered, each with its count of devices.
func registeredBackends() map[string]int {
	regs := map[string]int{}
	n := llama.GGMLBackendRegCount()
	for i := uint64(0); i < n; i++ {
		if reg := llama.GGMLBackendRegGet(i); reg != 0 {
			regs[llama.GGMLBackendRegName(reg)] = 0
		}
	}
	for _, d := range listDevices() {
		regs[d.Backend]++
	}
	return regs
}

// backendFailures checks each GPU back-end library in dir against the
// back-ends that registered (name -> device count) and says why those that
// did not come up failed: the dynamic loader's own message when the library
// cannot be loaded (a missing CUDA runtime, say), else that it found no
// device.
func backendFailures(dir string, registered map[string]int) []BackendFailure {
	var out []BackendFailure
	for _, lib := range gpuBackendLibs {
		path := filepath.Join(dir, lib.file)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		n, ok := registered[lib.reg]
		switch {
		case ok && n > 0:
			continue
		case ok:
			out = append(out, BackendFailure{Library: lib.file, Reason: "its back-end found no usable device (no GPU, or its driver is missing or too old)"})
			continue
		}
		if err := probeLibrary(path); err != nil {
			out = append(out, BackendFailure{Library: lib.file, Reason: err.Error()})
			continue
		}
		out = append(out, BackendFailure{Library: lib.file, Reason: "it loads, but llama.cpp registered no back-end from it (no usable device, or a build that does not match the other libraries)"})
	}
	return out
}

// rtldLocal keeps a probed library's symbols out of the global namespace.
const rtldLocal = 0x0

// probeLibrary loads path the way llama.cpp's back-end loader does and
// unloads it again, returning the loader's message when it cannot.
func probeLibrary(path string) error {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|rtldLocal)
	if err != nil {
		msg := err.Error()
		if msg == "" {
			return errors.New("cannot be loaded")
		}
		return fmt.Errorf("cannot be loaded: %s", msg)
	}
	purego.Dlclose(h)
	return nil
}
