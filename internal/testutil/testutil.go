// Package testutil holds helpers shared by MDSA's tests: finding the module
// root and the llama.cpp libraries, and building Go plugins to WebAssembly.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
)

// ModuleRoot returns the directory holding go.mod, searching upward from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testutil: no go.mod above the working directory")
		}
		dir = parent
	}
}

// LlamaLibDir returns the directory of the llama.cpp shared libraries (see
// llamacpp.FindLibDir) and skips the test when they are not installed.
func LlamaLibDir(tb testing.TB) string {
	tb.Helper()
	dir, err := llamacpp.FindLibDir(".")
	if err != nil {
		tb.Skip(err)
	}
	return dir
}

// BuildPlugin compiles the Go package in pkgDir (relative to the module
// root, e.g. "plugins/finance") to out, a .wasm file, as a wasip1 reactor.
// Go's build cache makes repeated builds cheap.
func BuildPlugin(pkgDir, out string) error {
	return BuildPluginVersion(pkgDir, out, "")
}

// BuildPluginVersion is BuildPlugin stamping the plugin's version variable
// (main.version) when version is not empty, which gives a module with other
// bytes: a new version to hot-swap.
func BuildPluginVersion(pkgDir, out, version string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	ldflags := "-s"
	if version != "" {
		ldflags += " -X main.version=" + version
	}
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags="+ldflags, "-o", out, "./"+pkgDir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testutil: building %s: %w\n%s", pkgDir, err, b)
	}
	return nil
}

// CompileCacheDir is a wazero compilation cache kept across test runs and
// shared by test packages (MDSA_TEST_CACHE, else .cache/test-wazero in the
// module root), so each distinct plugin is compiled once, not once per
// package and run: compiling a Go plugin takes seconds under -race.
func CompileCacheDir() (string, error) {
	if d := os.Getenv("MDSA_TEST_CACHE"); d != "" {
		return d, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "test-wazero"), nil
}
