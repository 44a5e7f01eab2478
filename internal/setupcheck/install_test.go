package setupcheck

import (
	"archive/tar"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tools links the programs the script's install path runs into a
// directory, so that PATH can hold them without the rest of the real
// machine's programs.
func tools(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"cat", "cp", "cut", "dirname", "gzip", "id", "ln", "mkdir", "mktemp", "mv", "rm", "rmdir", "sed", "tail", "tar", "tr"} {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("%s not installed", name)
		}
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// registry is a fake npm: `npm pack --silent PKG@VERSION` copies
// DIR/<last part of PKG>-VERSION.tgz into the current directory under the
// name npm gives it (node-llama-cpp-linux-x64-3.22.1.tgz), or fails like
// npm does for a package it cannot get. Each call is logged.
type registry struct {
	t   *testing.T
	dir string
	log string
}

func newRegistry(t *testing.T, m *machine) *registry {
	t.Helper()
	r := &registry{t: t, dir: t.TempDir(), log: filepath.Join(t.TempDir(), "npm.log")}
	m.program("npm", `echo "$*" >> "`+r.log+`"
[ "$1" = pack ] || { echo "fake npm: unexpected: $*" >&2; exit 1; }
for a; do spec=$a; done
pkg=${spec%@*} ver=${spec##*@}
f="`+r.dir+`/${pkg##*/}-$ver.tgz"
if [ ! -f "$f" ]; then echo "npm error 404 Not Found - GET https://registry.example/$pkg - Not found" >&2; exit 1; fi
out="$(echo "${pkg#@}" | tr / -)-$ver.tgz"
cp "$f" "./$out" && echo "$out"`)
	return r
}

// publish writes the tarball of package name (without scope) holding files
// (paths below package/) at version 3.22.1.
func (r *registry) publish(name string, files map[string]string) {
	r.t.Helper()
	f, err := os.Create(filepath.Join(r.dir, name+"-3.22.1.tgz"))
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for p, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "package/" + p, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			r.t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		r.t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		r.t.Fatal(err)
	}
}

// calls returns the logged npm command lines.
func (r *registry) calls() []string {
	data, err := os.ReadFile(r.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(data), "pack --silent ", ""))
}

// publishAll publishes stand-ins of the four linux-x64 packages, laid out
// like the real ones; skip names files to leave out ("cuda/libggml-cuda.so").
func (r *registry) publishAll(skip ...string) {
	pkg := func(name, bins, flavour string, extra ...string) {
		files := map[string]string{"package.json": `{"name": "@node-llama-cpp/` + name + `"}`}
		for _, f := range append([]string{"libllama." + flavour + "v0.5.0.so", "libggml." + flavour + "v0.5.0.so",
			"libggml-base.so", "libggml-cpu-x64.so", "libggml-cpu-haswell.so", "libllama-common.so", "llama-addon.node"}, extra...) {
			files["bins/"+bins+"/"+f] = name + ":" + f
		}
		for _, s := range skip {
			if k, f, _ := strings.Cut(s, "/"); k == name {
				delete(files, "bins/"+bins+"/"+f)
			}
		}
		r.publish(name, files)
	}
	pkg("linux-x64", "linux-x64", "")
	pkg("linux-x64-vulkan", "linux-x64-vulkan", "vulkan.", "libggml-vulkan.so")
	pkg("linux-x64-cuda", "linux-x64-cuda", "cuda.", "libggml-cuda.so")
	r.publish("linux-x64-cuda-ext", map[string]string{"bins/linux-x64-cuda/fallback/libggml-cuda.so": "linux-x64-cuda-ext:libggml-cuda.so"})
}

// setup runs the install into DEST (below a temporary directory) and
// returns the result; env adds variables.
func setup(t *testing.T, m *machine, dest string, env ...string) result {
	t.Helper()
	return m.run(env, tools(t), dest)
}

// installedFiles lists DEST: names, with " -> target" for links.
func installedFiles(t *testing.T, dest string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dest)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		p := filepath.Join(dest, e.Name())
		if target, err := os.Readlink(p); err == nil {
			out[e.Name()] = "-> " + target
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(data)
	}
	return out
}

func TestInstallCPUIsIdempotent(t *testing.T) {
	m := newMachine(t)
	npm := newRegistry(t, m)
	npm.publishAll()
	dest := filepath.Join(t.TempDir(), ".deps", "llama")
	// A stale install of the old layout (stamp without backend, a GPU
	// back-end) is replaced.
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{".installed-3.22.1", "libggml-vulkan.so"} {
		if err := os.WriteFile(filepath.Join(dest, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	r := setup(t, m, dest)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"setup-llama: cpu build (LLAMA_BACKEND=auto): no GPU build of llama.cpp fits this machine",
		"setup-llama:   not cuda: no NVIDIA driver",
		"setup-llama:   not vulkan: no Vulkan loader",
		"llama.cpp libraries 3.22.1 (cpu) installed in " + dest,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	got := installedFiles(t, dest)
	if got["libllama.so"] != "-> libllama.v0.5.0.so" || got["libggml.so"] != "-> libggml.v0.5.0.so" ||
		got["libggml-base.so"] != "linux-x64:libggml-base.so" || got["libggml-cpu-haswell.so"] == "" {
		t.Errorf("installed: %v", got)
	}
	if _, ok := got["libggml-vulkan.so"]; ok {
		t.Error("the stale Vulkan back-end was kept")
	}
	if _, ok := got[".installed-3.22.1"]; ok {
		t.Error("the old stamp was kept")
	}
	if stamp := got[".installed-3.22.1-cpu"]; !strings.Contains(stamp, "version=3.22.1\nbackend=cpu\n") {
		t.Errorf("stamp = %q", stamp)
	}
	if len(npm.calls()) != 1 {
		t.Errorf("npm calls: %q", npm.calls())
	}

	r = setup(t, m, dest)
	if r.code != 0 || !strings.Contains(r.stdout, "llama.cpp libraries 3.22.1 (cpu) already in "+dest) {
		t.Errorf("second run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if calls := npm.calls(); len(calls) != 1 {
		t.Errorf("the second run fetched again: %q", calls)
	}
}

func TestInstallSwitchesBackend(t *testing.T) {
	m := newMachine(t).nvidiaDriver("580.65.06", "9.0")
	toolkit := "usr/local/cuda/targets/x86_64-linux/lib"
	m.cudaRuntime(toolkit, "13")
	npm := newRegistry(t, m)
	npm.publishAll()
	dest := filepath.Join(t.TempDir(), "llama")

	r := setup(t, m, dest)
	if r.code != 0 || !strings.Contains(r.stdout, "setup-llama: CUDA 13 build (LLAMA_BACKEND=auto): 1 NVIDIA GPU(s)") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got := installedFiles(t, dest)
	if got["libllama.so"] != "-> libllama.cuda.v0.5.0.so" || got["libggml.so"] != "-> libggml.cuda.v0.5.0.so" ||
		got["libggml-cuda.so"] != "linux-x64-cuda:libggml-cuda.so" {
		t.Errorf("cuda: %v", got)
	}
	// The runtime lives outside the loader's path: linked beside the
	// back-end, whose RUNPATH is $ORIGIN.
	if got["libcudart.so.13"] != "-> "+filepath.Join(m.root, toolkit, "libcudart.so.13") || got["libcublasLt.so.13"] == "" {
		t.Errorf("runtime links: %v", got)
	}
	if stamp := got[".installed-3.22.1-cuda-13"]; !strings.Contains(stamp, "backend=cuda\ncuda=13\n") {
		t.Errorf("stamp = %q (files %v)", stamp, got)
	}

	r = setup(t, m, dest, "LLAMA_BACKEND=vulkan")
	if r.code != 0 || !strings.Contains(r.stdout, "(vulkan) installed") || !strings.Contains(r.stderr, "warning: ") {
		t.Fatalf("vulkan: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got = installedFiles(t, dest)
	if got["libllama.so"] != "-> libllama.vulkan.v0.5.0.so" || got["libggml-vulkan.so"] == "" {
		t.Errorf("vulkan: %v", got)
	}
	for _, gone := range []string{"libggml-cuda.so", "libcudart.so.13", "libllama.cuda.v0.5.0.so", ".installed-3.22.1-cuda-13"} {
		if _, ok := got[gone]; ok {
			t.Errorf("%s left from the CUDA build: %v", gone, got)
		}
	}

	r = setup(t, m, dest, "LLAMA_BACKEND=cpu")
	if r.code != 0 || !strings.Contains(r.stdout, "setup-llama: cpu build (LLAMA_BACKEND=cpu): LLAMA_BACKEND=cpu") {
		t.Fatalf("cpu: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got = installedFiles(t, dest)
	if _, ok := got["libggml-vulkan.so"]; ok || got["libllama.so"] != "-> libllama.v0.5.0.so" || got[".installed-3.22.1-cpu"] == "" {
		t.Errorf("cpu: %v", got)
	}
	if calls := npm.calls(); len(calls) != 3 {
		t.Errorf("npm calls: %q", calls)
	}
}

func TestInstallCUDA12(t *testing.T) {
	m := newMachine(t).nvidiaDriver("550.54.15", "8.6").cudaRuntime(sysLib, "12")
	npm := newRegistry(t, m)
	npm.publishAll()
	dest := filepath.Join(t.TempDir(), "llama")
	r := setup(t, m, dest)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got := installedFiles(t, dest)
	if got["libggml-cuda.so"] != "linux-x64-cuda-ext:libggml-cuda.so" || got["libllama.so"] != "-> libllama.cuda.v0.5.0.so" {
		t.Errorf("want the CUDA 12 back-end of -cuda-ext over the CUDA 13 one: %v", got)
	}
	if _, ok := got["libcudart.so.12"]; ok {
		t.Error("a runtime on the loader's path needs no link")
	}
	if !strings.Contains(got[".installed-3.22.1-cuda-12"], "cuda=12") {
		t.Errorf("files: %v", got)
	}
	want := []string{"@node-llama-cpp/linux-x64-cuda@3.22.1", "@node-llama-cpp/linux-x64-cuda-ext@3.22.1"}
	if calls := npm.calls(); strings.Join(calls, " ") != strings.Join(want, " ") {
		t.Errorf("npm calls %q, want %q", calls, want)
	}
}

func TestInstallGPUFailureFallsBackToCPU(t *testing.T) {
	cases := []struct {
		name string
		skip string // file left out of the packages; "" = the CUDA package is not published at all
		why  string
	}{
		{"download fails", "", "npm pack @node-llama-cpp/linux-x64-cuda@3.22.1 failed: npm error 404"},
		{"package lacks the back-end", "linux-x64-cuda/libggml-cuda.so", "lack libggml-cuda.so"},
		{"package lacks libllama", "linux-x64-cuda/libllama.cuda.v0.5.0.so", "lack libllama.so"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newMachine(t).nvidiaDriver("580.65.06", "9.0").cudaRuntime(sysLib, "13")
			npm := newRegistry(t, m)
			npm.publishAll(c.skip)
			if c.skip == "" {
				if err := os.Remove(filepath.Join(npm.dir, "linux-x64-cuda-3.22.1.tgz")); err != nil {
					t.Fatal(err)
				}
			}
			dest := filepath.Join(t.TempDir(), "llama")

			r := setup(t, m, dest)
			if r.code != 0 {
				t.Fatalf("auto: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, "could not install the CUDA 13 build (") || !strings.Contains(r.stderr, c.why) ||
				!strings.Contains(r.stderr, "falling back to the CPU build") || !strings.Contains(r.stdout, "(cpu) installed in") {
				t.Errorf("auto: no clear fallback message:\n%s\n%s", r.stdout, r.stderr)
			}
			got := installedFiles(t, dest)
			if got["libllama.so"] != "-> libllama.v0.5.0.so" || !strings.Contains(got[".installed-3.22.1-cpu"], "reason=fallback: the CUDA 13 build could not be installed") {
				t.Errorf("auto: %v", got)
			}
			// A second auto run tries CUDA again, and keeps the CPU build
			// without fetching it again.
			r = setup(t, m, dest)
			if r.code != 0 || !strings.Contains(r.stdout, "(cpu) already in") {
				t.Errorf("auto again: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}

			// Named explicitly, the failure is an error and the CPU build stays.
			r = setup(t, m, dest, "LLAMA_BACKEND=cuda")
			if r.code != 1 || !strings.Contains(r.stderr, "setup-llama: could not install the CUDA 13 build: ") ||
				!strings.Contains(r.stderr, c.why) || strings.Contains(r.stderr, "falling back") {
				t.Errorf("explicit: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if after := installedFiles(t, dest); after["libllama.so"] != "-> libllama.v0.5.0.so" || after[".installed-3.22.1-cpu"] == "" || len(after) != len(got) {
				t.Errorf("a failed install changed %s: %v", dest, after)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".llama-stage.*")); len(leftovers) != 0 {
				t.Errorf("staging directories left: %v", leftovers)
			}
		})
	}
}

func TestInstallWithoutNPM(t *testing.T) {
	m := newMachine(t)
	r := setup(t, m, filepath.Join(t.TempDir(), "llama"))
	if r.code != 1 || !strings.Contains(r.stderr, "setup-llama: npm is needed to fetch @node-llama-cpp/linux-x64") {
		t.Errorf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestInstallFromPackagesDir(t *testing.T) {
	// Fetch the tarballs with --download where npm works ...
	online := newMachine(t)
	npm := newRegistry(t, online)
	npm.publishAll()
	pkgs := filepath.Join(t.TempDir(), "packages")
	r := online.run(nil, tools(t), "--download", pkgs)
	if r.code != 0 || !strings.Contains(r.stdout, "setup-llama: downloaded "+pkgs+"/node-llama-cpp-linux-x64-3.22.1.tgz") {
		t.Fatalf("download: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = online.run([]string{"LLAMA_BACKEND=cuda"}, tools(t), "--download", pkgs)
	if r.code != 0 || !strings.Contains(r.stdout, "node-llama-cpp-linux-x64-cuda-3.22.1.tgz") ||
		!strings.Contains(r.stdout, "LLAMA_BACKEND=cuda make setup") {
		t.Fatalf("download cuda: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := online.run(nil, tools(t), "--download"); r.code != 2 || !strings.Contains(r.stderr, "--download needs a folder") {
		t.Errorf("--download without a folder: exit %d\n%s", r.code, r.stderr)
	}

	// ... and install from them on a machine without npm.
	offline := newMachine(t)
	dest := filepath.Join(t.TempDir(), "llama")
	r = setup(t, offline, dest, "LLAMA_PACKAGES_DIR="+pkgs)
	if r.code != 0 || !strings.Contains(r.stdout, "llama.cpp libraries 3.22.1 (cpu) installed in "+dest) {
		t.Fatalf("offline install: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if got := installedFiles(t, dest); got["libggml-base.so"] != "linux-x64:libggml-base.so" {
		t.Errorf("installed: %v", got)
	}
	r = setup(t, offline, dest, "LLAMA_PACKAGES_DIR="+pkgs, "LLAMA_BACKEND=cuda")
	if r.code != 0 || installedFiles(t, dest)["libggml-cuda.so"] != "linux-x64-cuda:libggml-cuda.so" {
		t.Fatalf("offline CUDA install: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// A tarball that is not there is named, and the install is left as it was.
	if err := os.Remove(filepath.Join(pkgs, "node-llama-cpp-linux-x64-vulkan-3.22.1.tgz")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	r = setup(t, offline, dest, "LLAMA_PACKAGES_DIR="+pkgs, "LLAMA_BACKEND=vulkan")
	if r.code != 1 || !strings.Contains(r.stderr, "LLAMA_PACKAGES_DIR has no "+pkgs+"/node-llama-cpp-linux-x64-vulkan-3.22.1.tgz") {
		t.Errorf("missing tarball: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if installedFiles(t, dest)["libggml-cuda.so"] == "" {
		t.Error("a failed install changed the installed libraries")
	}
	r = setup(t, offline, filepath.Join(t.TempDir(), "llama"), "LLAMA_PACKAGES_DIR="+filepath.Join(pkgs, "nope"))
	if r.code != 1 || !strings.Contains(r.stderr, "is not a folder") {
		t.Errorf("packages folder missing: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
