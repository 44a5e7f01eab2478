package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// checkScaffold runs `plugins test` on a built scaffold and wants a pass.
func checkScaffold(t *testing.T, wasm, name string) {
	t.Helper()
	out, stderr, err := run(t, "--config", fix.config, "plugins", "test", "--json", "--max-latency", latencyBudget, wasm)
	if err != nil {
		t.Fatalf("the scaffold does not pass the kit: %v\n%s\n%s", err, out, stderr)
	}
	if rep := decodeConformance(t, out); rep.Plugin != name || rep.Version != "0.1.0" {
		t.Fatalf("report: %s", out)
	}
}

// TestPluginsNewGo scaffolds a Go plugin outside the MDSA module, builds it
// with the standard toolchain and checks it with the kit.
func TestPluginsNewGo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "garden")
	out, _, err := run(t, "plugins", "new", "--lang", "go", "--dir", dir, "--sdk", moduleRoot(t), "home-gardening")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"main.go", "README.md", ".gitignore", "go.mod", "go.sum"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil || !strings.Contains(out, "  "+f+"\n") {
			t.Fatalf("%s: %v\n%s", f, err, out)
		}
	}
	main, _ := os.ReadFile(filepath.Join(dir, "main.go"))
	for _, want := range []string{`Name:         "home-gardening"`, `"How do I get started with home gardening?"`, `Template:   "{{query}}"`} {
		if !strings.Contains(string(main), want) {
			t.Fatalf("main.go lacks %s:\n%s", want, main)
		}
	}
	if gofmt, err := exec.Command("gofmt", "-l", dir).CombinedOutput(); err == nil && len(gofmt) > 0 {
		t.Fatalf("not gofmt-clean: %s", gofmt)
	}
	gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	if !strings.Contains(string(gomod), "replace github.com/mdsa-go/mdsa => ../") {
		t.Fatalf("go.mod:\n%s", gomod)
	}

	wasm := filepath.Join(dir, "home-gardening.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s", "-o", wasm, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the scaffold does not build: %v\n%s", err, b)
	}
	checkScaffold(t, wasm, "home-gardening")
}

// TestPluginsNewOtherLangs scaffolds, builds and checks the C, Rust and
// AssemblyScript projects where their toolchains are installed.
func TestPluginsNewOtherLangs(t *testing.T) {
	root := moduleRoot(t)
	have := map[string]func() bool{
		"c": func() bool {
			_, err1 := exec.LookPath("clang")
			_, err2 := exec.LookPath("wasm-ld")
			return err1 == nil && err2 == nil
		},
		"rust": func() bool {
			rustc := os.Getenv("RUSTC")
			if rustc == "" {
				rustc = "/usr/bin/rustc"
			}
			sysroot, err := exec.Command(rustc, "--print", "sysroot").Output()
			if err != nil {
				return false
			}
			_, err = os.Stat(filepath.Join(strings.TrimSpace(string(sysroot)), "lib", "rustlib", "wasm32-unknown-unknown"))
			return err == nil
		},
		"assemblyscript": func() bool {
			_, err1 := exec.LookPath("node")
			_, err2 := os.Stat(filepath.Join(root, "sdk", "assemblyscript", "node_modules", ".bin", "asc"))
			return err1 == nil && err2 == nil
		},
	}
	for _, lang := range []string{"c", "rust", "assemblyscript"} {
		t.Run(lang, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(root, "sdk", lang)); err != nil {
				t.Skipf("the %s SDK is not in this tree", lang)
			}
			name := "demo-" + lang[:1]
			dir := filepath.Join(t.TempDir(), name)
			if _, _, err := run(t, "plugins", "new", "--lang", lang, "--dir", dir, "--sdk", root, name); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(filepath.Join(dir, "build.sh")); err != nil || fi.Mode()&0o111 == 0 {
				t.Fatalf("build.sh missing or not executable: %v", err)
			}
			if !have[lang]() {
				t.Skipf("no %s toolchain here (see sdk/%s/setup.sh)", lang, lang)
			}
			if b, err := exec.Command(filepath.Join(dir, "build.sh")).CombinedOutput(); err != nil {
				t.Fatalf("build.sh: %v\n%s", err, b)
			}
			checkScaffold(t, filepath.Join(dir, name+".wasm"), name)
		})
	}
}

// TestPluginsNewInsideTree: a Go plugin inside the MDSA module is one of its
// packages (no go.mod), and every language refers to the SDK by relative
// path.
func TestPluginsNewInsideTree(t *testing.T) {
	tree := t.TempDir()
	for f, body := range map[string]string{
		"go.mod":                               "module github.com/mdsa-go/mdsa\n\ngo 1.26.0\n",
		"sdk/go/plugin.go":                     "package sdk\n",
		"sdk/c/mdsa.h":                         "",
		"sdk/rust/mdsa.rs":                     "",
		"sdk/assemblyscript/assembly/index.ts": "",
	} {
		p := filepath.Join(tree, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Found by walking up from --dir, without --sdk.
	dir := filepath.Join(tree, "plugins", "cooking")
	if _, _, err := run(t, "plugins", "new", "--lang", "go", "--dir", dir, "cooking"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
		t.Fatal("a plugin inside the MDSA module got its own go.mod")
	}
	readme, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	if !strings.Contains(string(readme), "`../../sdk/go/README.md`") {
		t.Fatalf("README:\n%s", readme)
	}
	cases := map[string]struct{ file, want string }{
		"c":              {"travel.c", `#include "../../sdk/c/mdsa.h"`},
		"rust":           {"main.rs", `#[path = "../../sdk/rust/mdsa.rs"]`},
		"assemblyscript": {"travel.ts", `from "../../sdk/assemblyscript/assembly/index"`},
	}
	for lang, c := range cases {
		dir := filepath.Join(tree, "examples", "travel-"+lang)
		if _, _, err := run(t, "plugins", "new", "--lang", lang, "--dir", dir, "travel"); err != nil {
			t.Fatalf("%s: %v", lang, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, c.file))
		if err != nil || !strings.Contains(string(b), c.want) {
			t.Fatalf("%s: %s lacks %s: %v\n%s", lang, c.file, c.want, err, b)
		}
	}
}

func TestPluginsNewRefusals(t *testing.T) {
	root := moduleRoot(t)
	existing := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--lang", "go", "--sdk", root, "Bad_Name"}, `invalid plugin name "Bad_Name"`},
		{[]string{"--lang", "go", "--sdk", root, "9lives"}, "starting with a letter"},
		{[]string{"--lang", "go", "--sdk", root, strings.Repeat("a", 65)}, "invalid plugin name"},
		{[]string{"--lang", "go", "--sdk", root, "--dir", existing, "ok"}, "already exists"},
		{[]string{"--lang", "cobol", "--sdk", root, "ok"}, `unknown --lang "cobol"`},
		{[]string{"--lang", "go", "--sdk", t.TempDir(), "--dir", filepath.Join(existing, "x"), "ok"}, "is not the MDSA source tree"},
		{[]string{"--sdk", root, "ok"}, `required flag(s) "lang" not set`},
	}
	for _, c := range cases {
		_, _, err := run(t, append([]string{"plugins", "new"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("plugins new %v: %v, want an error with %q", c.args, err, c.want)
		}
	}
	if entries, _ := os.ReadDir(existing); len(entries) != 0 {
		t.Fatalf("a refused scaffold left files: %v", entries)
	}
}
