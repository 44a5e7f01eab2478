package llamacpp

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadBackends(t *testing.T) {
	b, err := LoadBackends(testLibDir(t), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var cpu *Device
	for i, d := range b.Devices {
		if d.Kind == "cpu" {
			cpu = &b.Devices[i]
		}
	}
	if cpu == nil {
		t.Fatalf("no CPU device among %+v", b.Devices)
	}
	if cpu.Name == "" || cpu.Backend != "CPU" || cpu.TotalBytes == 0 {
		t.Errorf("CPU device = %+v, want a name, back-end CPU and its memory", *cpu)
	}
	if len(b.GPUs()) == 0 && b.Explain() == "" {
		t.Errorf("no GPU device, but Explain says nothing (devices %+v)", b.Devices)
	}
	for _, f := range b.Failures {
		t.Logf("GPU back-end failure here: %s: %s", f.Library, f.Reason)
	}
}

func TestBackendFailures(t *testing.T) {
	dir := t.TempDir()
	if got := backendFailures(dir, map[string]int{"CPU": 1}); len(got) != 0 {
		t.Fatalf("no GPU library installed: failures %+v, want none", got)
	}

	// Not a shared library at all: the loader's message is quoted.
	if err := os.WriteFile(filepath.Join(dir, "libggml-cuda.so"), []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := backendFailures(dir, map[string]int{"CPU": 1})
	if len(got) != 1 || got[0].Library != "libggml-cuda.so" || !strings.HasPrefix(got[0].Reason, "cannot be loaded: ") || !strings.Contains(got[0].Reason, "libggml-cuda.so") {
		t.Fatalf("unloadable library: failures %+v, want one quoting the loader about libggml-cuda.so", got)
	}

	// Registered without devices, and registered with one.
	got = backendFailures(dir, map[string]int{"CPU": 1, "CUDA": 0})
	if len(got) != 1 || !strings.Contains(got[0].Reason, "no usable device") {
		t.Fatalf("back-end without devices: failures %+v", got)
	}
	if got := backendFailures(dir, map[string]int{"CPU": 1, "CUDA": 1}); len(got) != 0 {
		t.Fatalf("back-end with a device: failures %+v, want none", got)
	}

	// A real library that loads but registered nothing.
	base, err := filepath.EvalSymlinks(filepath.Join(testLibDir(t), "libggml-base.so"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(base, filepath.Join(dir, "libggml-vulkan.so")); err != nil {
		t.Fatal(err)
	}
	got = backendFailures(dir, map[string]int{"CPU": 1, "CUDA": 1})
	if len(got) != 1 || got[0].Library != "libggml-vulkan.so" || !strings.Contains(got[0].Reason, "registered no back-end") {
		t.Fatalf("loadable but unregistered library: failures %+v", got)
	}
	b := Backends{Dir: dir, Devices: []Device{{Name: "CPU", Kind: "cpu"}}, Failures: got}
	if why := b.Explain(); !strings.Contains(why, "libggml-vulkan.so: it loads") {
		t.Errorf("Explain = %q, want the failure named", why)
	}
}

// TestBackendFailureNamesMissingRuntime builds the case users meet: a GPU
// back-end whose runtime library (libcudart.so.13, say) is not on the
// machine. The reason must name the missing file.
func TestBackendFailureNamesMissingRuntime(t *testing.T) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	build := func(args ...string) {
		t.Helper()
		cmd := exec.Command(cc, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("gcc %v: %v\n%s", args, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "rt.c"), []byte("int rt_version(void) { return 13; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "be.c"), []byte("int rt_version(void);\nint be_init(void) { return rt_version(); }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build("-shared", "-fPIC", "-o", "libmdsatestrt.so.13", "-Wl,-soname,libmdsatestrt.so.13", "rt.c")
	build("-shared", "-fPIC", "-o", "libggml-cuda.so", "be.c", "-L.", "-l:libmdsatestrt.so.13")
	if err := os.Remove(filepath.Join(dir, "libmdsatestrt.so.13")); err != nil {
		t.Fatal(err)
	}
	got := backendFailures(dir, map[string]int{"CPU": 1})
	if len(got) != 1 || !strings.Contains(got[0].Reason, "libmdsatestrt.so.13") {
		t.Fatalf("failures %+v, want the missing libmdsatestrt.so.13 named", got)
	}
	b := Backends{Dir: dir, Failures: got}
	if why := b.Explain(); !strings.Contains(why, "libggml-cuda.so: cannot be loaded: ") || !strings.Contains(why, "libmdsatestrt.so.13") {
		t.Errorf("Explain = %q", why)
	}
}

// TestGPUOffload runs where llama.cpp drives a GPU (scripts/gpu-check.sh
// runs it on one; Mesa's software Vulkan device with the Vulkan build and
// GGML_VK_VISIBLE_DEVICES=0 stands in for one) and is skipped elsewhere: a
// model with every layer offloaded puts them all on the GPU, takes its
// memory and answers.
func TestGPUOffload(t *testing.T) {
	b, err := LoadBackends(testLibDir(t), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	gpus := b.GPUs()
	if len(gpus) == 0 {
		t.Skipf("no GPU device: %s", b.Explain())
	}
	for _, g := range gpus {
		t.Logf("GPU device %s: %s, %d of %d MiB free", g.Name, g.Description, g.FreeBytes>>20, g.TotalBytes>>20)
	}
	path := synthModel(t, 20_000_000, "Q4_0")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	free := func() uint64 {
		var n uint64
		for _, g := range currentBackends().GPUs() {
			n += g.FreeBytes
		}
		return n
	}
	answer := func(layers int) string {
		t.Helper()
		before := free()
		e, err := Open(context.Background(), path, Options{LibDir: testLibDir(t), Logger: testLogger(t), GPULayers: layers, ContextSize: 1024})
		if err != nil {
			t.Fatalf("Open with gpu_layers %d: %v", layers, err)
		}
		defer e.Close()
		took := int64(before) - int64(free())
		info := e.Info()
		t.Logf("gpu_layers %d: %d of %d layers offloaded, GPU memory taken %d MiB (model file %d MiB)", layers, info.GPULayers, info.Layers, took>>20, st.Size()>>20)
		// The count is derived as llama.cpp derives it (offloadedLayers);
		// this checks that a GPU device made the engine report one.
		switch {
		case info.Layers == 0:
			t.Errorf("gpu_layers %d: no layer count although a GPU device is there", layers)
		case layers < 0 && info.GPULayers != info.Layers, layers == 0 && info.GPULayers != 0:
			t.Errorf("gpu_layers %d: %d of %d layers offloaded", layers, info.GPULayers, info.Layers)
		}
		// Some devices report their whole heap as free whatever is
		// allocated (Mesa's llvmpipe): a drop is checked where there is one.
		if layers != 0 && took != 0 && took < st.Size()/2 {
			t.Errorf("gpu_layers %d took %d MiB of GPU memory, want at least half the model's %d MiB", layers, took>>20, st.Size()>>20)
		}
		res, err := e.Generate(context.Background(), chatReq(32), nil)
		if err != nil {
			t.Fatalf("Generate with gpu_layers %d: %v", layers, err)
		}
		if res.TokensOut == 0 {
			t.Errorf("gpu_layers %d: no tokens generated", layers)
		}
		return res.Text
	}
	gpu, cpu := answer(-1), answer(0)
	// Greedy answers of a random model may part where two logits are
	// nearly equal and the GPU's kernels round differently: logged only.
	t.Logf("same greedy answer on GPU and CPU: %v", gpu == cpu)
}

func TestOffloadedLayers(t *testing.T) {
	for _, c := range []struct {
		asked, nLayer int32
		gpu, layers   int
	}{
		{999, 12, 13, 13}, // gpu_layers -1: every layer and the output
		{13, 12, 13, 13},
		{0, 24, 0, 25},
		{14, 12, 13, 13}, // more than there are
		{5, 12, 5, 13},
		{-3, 12, 0, 13},
	} {
		if gpu, layers := offloadedLayers(c.asked, c.nLayer); gpu != c.gpu || layers != c.layers {
			t.Errorf("offloadedLayers(%d, %d) = %d of %d, want %d of %d", c.asked, c.nLayer, gpu, layers, c.gpu, c.layers)
		}
	}
}

// vulkanLibRelDir is where `make setup-vulkan` installs the Vulkan build of
// the libraries beside the CPU one.
const vulkanLibRelDir = ".deps/llama-vulkan"

// TestGPUOffloadSoftwareVulkan runs TestGPUOffload in a process of its own
// (a process loads one library directory) on the Vulkan build, with Mesa's
// software Vulkan device (lavapipe) made visible: the GPU path, from device
// listing to offloaded layers and an answer, on a machine without a GPU.
// `make setup-vulkan` installs both; without them it skips (under CI it
// fails).
func TestGPUOffloadSoftwareVulkan(t *testing.T) {
	if testing.Short() {
		t.Skip("a model on a software GPU: not in -short")
	}
	if os.Getenv("MDSA_TEST_VULKAN_CHILD") != "" {
		t.Skip("already the child")
	}
	missing := func(what string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (run `make setup-vulkan`)", what)
		}
		t.Skipf("%s (`make setup-vulkan` installs it)", what)
	}
	cpuDir := testLibDir(t)
	dir := filepath.Join(filepath.Dir(filepath.Dir(cpuDir)), vulkanLibRelDir)
	if _, err := os.Stat(filepath.Join(dir, "libggml-vulkan.so")); err != nil {
		missing("no Vulkan build of llama.cpp in " + dir)
	}
	icds, _ := filepath.Glob("/usr/share/vulkan/icd.d/lvp_icd*.json")
	if len(icds) == 0 {
		missing("no Mesa software Vulkan driver (lavapipe: Debian's mesa-vulkan-drivers)")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestGPUOffload$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "MDSA_TEST_VULKAN_CHILD=1", EnvLibDir+"="+dir,
		"GGML_VK_VISIBLE_DEVICES=0", "VK_ICD_FILENAMES="+icds[0])
	out, err := cmd.CombinedOutput()
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.Contains(l, "level=DEBUG") {
			keep = append(keep, l)
		}
	}
	t.Logf("child:\n%s", strings.Join(keep, "\n"))
	if err != nil {
		t.Fatalf("TestGPUOffload on the software Vulkan device: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestGPUOffload ") {
		t.Fatal("TestGPUOffload did not run on the software Vulkan device (skipped?)")
	}
}
