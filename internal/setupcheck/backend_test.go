package setupcheck

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// script is the path of scripts/setup-llama.sh, found from the test's
// directory.
func script(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "scripts", "setup-llama.sh")
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = up
	}
}

// bash is the bash the script runs under; tests skip without one.
func bash(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	return p
}

// machine is a fixture machine: root stands for / (LLAMA_PROBE_ROOT) and
// bin is the whole PATH, so that no program of the real machine (its
// nvidia-smi above all) is found.
type machine struct {
	t    *testing.T
	root string
	bin  string
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	m := &machine{t: t, root: t.TempDir(), bin: t.TempDir()}
	return m
}

// file writes content to the file at rel (a path below root).
func (m *machine) file(rel, content string) *machine {
	m.t.Helper()
	p := filepath.Join(m.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		m.t.Fatal(err)
	}
	return m
}

// libs puts stand-ins for the named shared libraries in dir (below root).
func (m *machine) libs(dir string, names ...string) *machine {
	for _, n := range names {
		m.file(filepath.Join(dir, n), "ELF stand-in")
	}
	return m
}

// program installs an executable shell script named name in PATH.
func (m *machine) program(name, body string) *machine {
	m.t.Helper()
	if err := os.WriteFile(filepath.Join(m.bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		m.t.Fatal(err)
	}
	return m
}

const sysLib = "usr/lib/x86_64-linux-gnu"

// nvidiaDriver: the kernel module, its device nodes and the driver's
// libcuda.so.1; nvidia-smi lists one GPU of compute capability cc.
func (m *machine) nvidiaDriver(driver, cc string) *machine {
	m.file("proc/driver/nvidia/version",
		"NVRM version: NVIDIA UNIX x86_64 Kernel Module  "+driver+"  Release Build  (dvs-builder@U16-I3-C02-1)  Wed Jul  9 17:42:37 UTC 2025\n"+
			"GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
	m.file("dev/nvidia0", "").file("dev/nvidiactl", "")
	m.libs(sysLib, "libcuda.so.1", "libnvidia-ml.so.1")
	return m.program("nvidia-smi", `case "$*" in
*--query-gpu=*) echo "NVIDIA H100 80GB HBM3, `+driver+`, `+cc+`" ;;
*) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)" ;;
esac`)
}

// cudaRuntime installs libcudart, libcublas and libcublasLt of a major
// version in dir.
func (m *machine) cudaRuntime(dir, major string) *machine {
	return m.libs(dir, "libcudart.so."+major, "libcublas.so."+major, "libcublasLt.so."+major)
}

func (m *machine) vulkan(icd string) *machine {
	m.libs(sysLib, "libvulkan.so.1")
	if icd != "" {
		m.file("usr/share/vulkan/icd.d/"+icd, `{"file_format_version": "1.0.0"}`)
	}
	return m
}

// result is what one run of the script did.
type result struct {
	stdout, stderr string
	code           int
	// keys holds the key=value lines of --print-backend, in order per key.
	keys map[string][]string
}

func (r result) one(t *testing.T, key string) string {
	t.Helper()
	v := r.keys[key]
	if len(v) != 1 {
		t.Fatalf("want one %s= line, got %q\nstdout:\n%s\nstderr:\n%s", key, v, r.stdout, r.stderr)
	}
	return v[0]
}

// has reports whether some value of key contains every part.
func (r result) has(key string, parts ...string) bool {
	return slices.ContainsFunc(r.keys[key], func(v string) bool {
		for _, p := range parts {
			if !strings.Contains(v, p) {
				return false
			}
		}
		return true
	})
}

// run runs the script on m with env (NAME=value) and args. PATH is m.bin
// and, after it, extraPath.
func (m *machine) run(env []string, extraPath string, args ...string) result {
	m.t.Helper()
	path := m.bin
	if extraPath != "" {
		path += ":" + extraPath
	}
	cmd := exec.Command(bash(m.t), append([]string{script(m.t)}, args...)...)
	cmd.Env = append([]string{"PATH=" + path, "HOME=" + m.t.TempDir(), "LLAMA_PROBE_ROOT=" + m.root, "LLAMA_PROBE_ARCH=x86_64"}, env...)
	cmd.Dir = m.t.TempDir()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), keys: map[string][]string{}}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		m.t.Fatal(err)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			r.keys[k] = append(r.keys[k], v)
		}
	}
	return r
}

// decide runs --print-backend and fails the test on a non-zero exit.
func (m *machine) decide(env ...string) result {
	m.t.Helper()
	r := m.run(env, "", "--print-backend")
	if r.code != 0 {
		m.t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// The fixture machines of the decision tests.
var machines = map[string]func(t *testing.T) *machine{
	"nothing": func(t *testing.T) *machine { return newMachine(t) },
	"nvidia driver and CUDA 13 runtime": func(t *testing.T) *machine {
		return newMachine(t).nvidiaDriver("580.65.06", "9.0").cudaRuntime(sysLib, "13")
	},
	"nvidia driver only": func(t *testing.T) *machine {
		return newMachine(t).nvidiaDriver("580.65.06", "9.0")
	},
	"nvidia device node, failing nvidia-smi": func(t *testing.T) *machine {
		m := newMachine(t).nvidiaDriver("580.65.06", "9.0").cudaRuntime(sysLib, "13")
		return m.program("nvidia-smi", `echo "Failed to initialize NVML: Driver/library version mismatch"
echo "NVML library version: 580.95"
exit 9`)
	},
	"vulkan only": func(t *testing.T) *machine {
		return newMachine(t).vulkan("radeon_icd.x86_64.json").file("dev/dri/renderD128", "")
	},
}

func TestBackendNothing(t *testing.T) {
	r := machines["nothing"](t).decide()
	if r.one(t, "backend") != "cpu" || r.one(t, "packages") != "@node-llama-cpp/linux-x64" || r.one(t, "requested") != "auto" {
		t.Fatalf("got %s", r.stdout)
	}
	if !r.has("skip", "cuda: no NVIDIA driver", "no nvidia-smi in PATH") || !r.has("skip", "vulkan: no Vulkan loader libvulkan.so.1") {
		t.Errorf("skips do not say why: %s", r.stdout)
	}
	if r.one(t, "reason") != "no GPU build of llama.cpp fits this machine" || len(r.keys["warning"]) != 0 {
		t.Errorf("got %s", r.stdout)
	}
}

func TestBackendNvidiaDriverAndRuntime(t *testing.T) {
	r := machines["nvidia driver and CUDA 13 runtime"](t).decide()
	if r.one(t, "backend") != "cuda" || r.one(t, "cuda") != "13" || r.one(t, "packages") != "@node-llama-cpp/linux-x64-cuda" {
		t.Fatalf("got %s", r.stdout)
	}
	if !r.has("reason", "NVIDIA H100 80GB HBM3", "driver 580.65.06", "nvidia-smi", "CUDA 13 runtime", "libcudart.so.13", "libcublasLt.so.13") {
		t.Errorf("reason: %s", r.stdout)
	}
	if len(r.keys["link"]) != 0 {
		t.Errorf("a runtime in the system library folder needs no link: %s", r.stdout)
	}
}

// TestBackendNvidiaDriverOnly: a driver without the CUDA runtime cannot
// run the CUDA build (libggml-cuda.so needs libcudart and libcublas, which
// no NVIDIA driver ships), so auto takes the CPU build, or Vulkan when its
// loader and the NVIDIA Vulkan driver are there.
func TestBackendNvidiaDriverOnly(t *testing.T) {
	m := machines["nvidia driver only"](t)
	r := m.decide()
	if r.one(t, "backend") != "cpu" {
		t.Fatalf("got %s", r.stdout)
	}
	if !r.has("skip", "cuda: 1 NVIDIA GPU(s) (NVIDIA H100 80GB HBM3)", "no CUDA 13 runtime (libcudart.so.13, libcublas.so.13, libcublasLt.so.13)",
		"no CUDA 12 runtime", "The driver alone does not ship these libraries") {
		t.Errorf("skip does not explain the missing runtime: %s", r.stdout)
	}

	m.vulkan("nvidia_icd.json")
	r = m.decide()
	if r.one(t, "backend") != "vulkan" || r.one(t, "packages") != "@node-llama-cpp/linux-x64-vulkan" ||
		!r.has("reason", "nvidia_icd.json", "the NVIDIA GPU") || !r.has("skip", "cuda:", "no CUDA 13 runtime") {
		t.Errorf("driver + Vulkan: %s", r.stdout)
	}
}

func TestBackendFailingNvidiaSMI(t *testing.T) {
	r := machines["nvidia device node, failing nvidia-smi"](t).decide()
	if r.one(t, "backend") != "cpu" {
		t.Fatalf("got %s", r.stdout)
	}
	if !r.has("skip", "cuda: nvidia-smi failed (exit 9: Failed to initialize NVML: Driver/library version mismatch) although /dev/nvidia0 exists") {
		t.Errorf("skip: %s", r.stdout)
	}
}

func TestBackendVulkanOnly(t *testing.T) {
	r := machines["vulkan only"](t).decide()
	if r.one(t, "backend") != "vulkan" || r.one(t, "packages") != "@node-llama-cpp/linux-x64-vulkan" {
		t.Fatalf("got %s", r.stdout)
	}
	if !r.has("reason", "libvulkan.so.1", "radeon_icd.x86_64.json", "render node /dev/dri/renderD128") || !r.has("skip", "cuda: no NVIDIA driver") {
		t.Errorf("got %s", r.stdout)
	}
}

func TestBackendVulkanNeedsAGPU(t *testing.T) {
	m := newMachine(t).vulkan("lvp_icd.x86_64.json").file("dev/dri/renderD128", "")
	if r := m.decide(); r.one(t, "backend") != "cpu" || !r.has("skip", "vulkan:", "no GPU driver manifest", "llvmpipe") {
		t.Errorf("llvmpipe only: %s", r.stdout)
	}
	m = newMachine(t).vulkan("intel_icd.x86_64.json")
	if r := m.decide(); r.one(t, "backend") != "cpu" || !r.has("skip", "vulkan:", "no GPU render node") {
		t.Errorf("no render node: %s", r.stdout)
	}
	// An ICD named by the environment counts too.
	m = newMachine(t).vulkan("").file("dev/dri/renderD129", "")
	icd := filepath.Join(m.root, "opt", "my_icd.json")
	m.file("opt/my_icd.json", "{}")
	if r := m.decide("VK_DRIVER_FILES=" + icd); r.one(t, "backend") != "vulkan" || !r.has("reason", "my_icd.json", "renderD129") {
		t.Errorf("VK_DRIVER_FILES: %s", r.stdout)
	}
}

func TestBackendCUDAVersions(t *testing.T) {
	t.Run("CUDA 12 runtime only", func(t *testing.T) {
		r := newMachine(t).nvidiaDriver("550.54.15", "8.6").cudaRuntime(sysLib, "12").decide()
		if r.one(t, "backend") != "cuda" || r.one(t, "cuda") != "12" ||
			r.one(t, "packages") != "@node-llama-cpp/linux-x64-cuda @node-llama-cpp/linux-x64-cuda-ext" {
			t.Fatalf("got %s", r.stdout)
		}
	})
	t.Run("driver too old for CUDA 13", func(t *testing.T) {
		m := newMachine(t).nvidiaDriver("550.54.15", "8.6").cudaRuntime(sysLib, "13").cudaRuntime(sysLib, "12")
		if r := m.decide(); r.one(t, "cuda") != "12" {
			t.Errorf("got %s", r.stdout)
		}
		m = newMachine(t).nvidiaDriver("550.54.15", "8.6").cudaRuntime(sysLib, "13")
		if r := m.decide(); r.one(t, "backend") != "cpu" || !r.has("skip", "driver 550 is older than 580") {
			t.Errorf("got %s", r.stdout)
		}
	})
	t.Run("GPU too old for CUDA 13", func(t *testing.T) {
		m := newMachine(t).nvidiaDriver("580.65.06", "6.1").cudaRuntime(sysLib, "13").cudaRuntime(sysLib, "12")
		if r := m.decide(); r.one(t, "cuda") != "12" {
			t.Errorf("got %s", r.stdout)
		}
	})
	t.Run("runtime in the CUDA toolkit folder", func(t *testing.T) {
		dir := "usr/local/cuda-13.0/targets/x86_64-linux/lib"
		m := newMachine(t).nvidiaDriver("580.65.06", "9.0").cudaRuntime(dir, "13")
		r := m.decide()
		if r.one(t, "backend") != "cuda" || r.one(t, "cuda") != "13" {
			t.Fatalf("got %s", r.stdout)
		}
		// Not on the loader's path: linked next to libggml-cuda.so, whose
		// RUNPATH is $ORIGIN.
		var want []string
		for _, n := range []string{"libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"} {
			want = append(want, filepath.Join(m.root, dir, n))
		}
		if !slices.Equal(r.keys["link"], want) {
			t.Errorf("links = %q, want %q", r.keys["link"], want)
		}
	})
	t.Run("runtime on LD_LIBRARY_PATH, stub libcuda ignored", func(t *testing.T) {
		m := newMachine(t).nvidiaDriver("580.65.06", "9.0")
		if err := os.Remove(filepath.Join(m.root, sysLib, "libcuda.so.1")); err != nil {
			t.Fatal(err)
		}
		m.libs("usr/local/cuda/targets/x86_64-linux/lib/stubs", "libcuda.so.1")
		m.cudaRuntime("opt/rt", "13")
		env := "LD_LIBRARY_PATH=" + filepath.Join(m.root, "opt/rt")
		if r := m.decide(env); r.one(t, "backend") != "cpu" || !r.has("skip", "libcuda.so.1 is not in the library path") {
			t.Errorf("stub only: %s", r.stdout)
		}
		m.libs(sysLib, "libcuda.so.1")
		if r := m.decide(env); r.one(t, "backend") != "cuda" || len(r.keys["link"]) != 3 {
			t.Errorf("LD_LIBRARY_PATH: %s", r.stdout)
		}
	})
	t.Run("no nvidia-smi: the driver's /proc listing", func(t *testing.T) {
		m := newMachine(t).nvidiaDriver("580.65.06", "9.0").cudaRuntime(sysLib, "13")
		if err := os.Remove(filepath.Join(m.bin, "nvidia-smi")); err != nil {
			t.Fatal(err)
		}
		if r := m.decide(); r.one(t, "backend") != "cpu" || !r.has("skip", "lists no GPU") {
			t.Errorf("no GPU listed: %s", r.stdout)
		}
		m.file("proc/driver/nvidia/gpus/0000:01:00.0/information", "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   150\n")
		if r := m.decide(); r.one(t, "backend") != "cuda" || !r.has("reason", "NVIDIA H100 80GB HBM3", "driver 580.65.06", "/proc/driver/nvidia") {
			t.Errorf("listed: %s", r.stdout)
		}
		for _, n := range []string{"nvidia0", "nvidiactl"} {
			if err := os.Remove(filepath.Join(m.root, "dev", n)); err != nil {
				t.Fatal(err)
			}
		}
		if r := m.decide(); r.one(t, "backend") != "cpu" || !r.has("skip", "no", "/dev/nvidiaN device node") {
			t.Errorf("no device node: %s", r.stdout)
		}
	})
}

func TestBackendOverrides(t *testing.T) {
	cases := []struct {
		machine, value string
		backend        string
		reason         string
		warning        string // in some warning= line; "" = none
	}{
		{"nvidia driver and CUDA 13 runtime", "cpu", "cpu", "LLAMA_BACKEND=cpu", ""},
		{"nvidia driver and CUDA 13 runtime", "vulkan", "vulkan", "LLAMA_BACKEND=vulkan", "no Vulkan loader"},
		{"nvidia driver and CUDA 13 runtime", "cuda", "cuda", "LLAMA_BACKEND=cuda; 1 NVIDIA GPU(s)", ""},
		{"nvidia driver and CUDA 13 runtime", "auto", "cuda", "NVIDIA H100", ""},
		{"nvidia driver and CUDA 13 runtime", "", "cuda", "NVIDIA H100", ""},
		{"nothing", "cuda", "cuda", "LLAMA_BACKEND=cuda", "no usable NVIDIA GPU: no NVIDIA driver"},
		{"nothing", "vulkan", "vulkan", "LLAMA_BACKEND=vulkan", "no Vulkan loader"},
		{"nothing", "CPU", "cpu", "LLAMA_BACKEND=cpu", ""},
		{"nvidia driver only", "cuda", "cuda", "LLAMA_BACKEND=cuda", "but no CUDA 13 runtime"},
		{"vulkan only", "Vulkan", "vulkan", "LLAMA_BACKEND=vulkan; Vulkan loader", ""},
		{"vulkan only", "cpu", "cpu", "LLAMA_BACKEND=cpu", ""},
	}
	for _, c := range cases {
		t.Run(c.machine+"/"+c.value, func(t *testing.T) {
			r := machines[c.machine](t).decide("LLAMA_BACKEND=" + c.value)
			if r.one(t, "backend") != c.backend || !r.has("reason", c.reason) {
				t.Fatalf("got %s", r.stdout)
			}
			if c.warning == "" && len(r.keys["warning"]) > 0 || c.warning != "" && !r.has("warning", c.warning) {
				t.Errorf("warnings %q, want one with %q", r.keys["warning"], c.warning)
			}
			if c.backend == "cuda" && c.value == "cuda" && c.warning != "" && !r.has("warning", "runs on the CPU until") {
				t.Errorf("no word on what happens at run time: %s", r.stdout)
			}
		})
	}
}

func TestBackendInvalid(t *testing.T) {
	m := machines["nothing"](t)
	for _, v := range []string{"rocm", "gpu", "cuda12"} {
		r := m.run([]string{"LLAMA_BACKEND=" + v}, "", "--print-backend")
		if r.code != 2 || r.stdout != "" ||
			!strings.Contains(r.stderr, "LLAMA_BACKEND="+v+" is not a backend: use auto (the default), cpu, cuda or vulkan") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", v, r.code, r.stdout, r.stderr)
		}
	}
	if r := m.run(nil, "", "--print-backends"); r.code != 2 || !strings.Contains(r.stderr, "unknown option --print-backends") {
		t.Errorf("unknown option: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestBackendARM64(t *testing.T) {
	m := machines["nvidia driver and CUDA 13 runtime"](t)
	r := m.decide("LLAMA_PROBE_ARCH=aarch64")
	if r.one(t, "backend") != "cpu" || r.one(t, "packages") != "@node-llama-cpp/linux-arm64" || !r.has("reason", "x86-64 only") {
		t.Errorf("got %s", r.stdout)
	}
	for _, b := range []string{"cuda", "vulkan"} {
		r = m.run([]string{"LLAMA_PROBE_ARCH=aarch64", "LLAMA_BACKEND=" + b}, "", "--print-backend")
		if r.code != 1 || !strings.Contains(r.stderr, "no "+b+" build of llama.cpp for linux-arm64") {
			t.Errorf("%s on arm64: exit %d, stderr %q", b, r.code, r.stderr)
		}
	}
}
