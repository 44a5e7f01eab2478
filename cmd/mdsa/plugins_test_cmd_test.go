package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

// conformanceJSON is the part of `plugins test --json` the tests read.
type conformanceJSON struct {
	Plugin  string `json:"plugin"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	Passed  *bool  `json:"passed"`
	Checks  []struct {
		Name     string `json:"name"`
		Passed   bool   `json:"passed"`
		Detail   string `json:"detail"`
		Duration int64  `json:"duration_ns"`
	} `json:"checks"`
	CompileMS *float64           `json:"compile_ms"`
	CallUS    map[string]float64 `json:"call_us"`
}

// latencyBudget is --max-latency in these tests: generous, because the race
// detector slows the host side of every plugin call about tenfold and this
// machine may be busy; the conformance package tests the default budget.
const latencyBudget = "250ms"

func decodeConformance(t *testing.T, out string) conformanceJSON {
	t.Helper()
	var rep conformanceJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	return rep
}

func TestPluginsTestSupport(t *testing.T) {
	wasm := filepath.Join(fix.dir, "plugins", "support.wasm")
	out, stderr, err := run(t, "--config", fix.config, "plugins", "test", "--json", "--max-latency", latencyBudget, wasm)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, stderr)
	}
	rep := decodeConformance(t, out)
	if rep.Plugin != "support" || rep.Passed == nil || !*rep.Passed || len(rep.Checks) != 7 || rep.CompileMS == nil ||
		rep.CallUS["prompt"] <= 0 || rep.CallUS["validate"] <= 0 || len(rep.SHA256) != 64 {
		t.Fatalf("report: %s", out)
	}
	for _, c := range rep.Checks {
		if !c.Passed || c.Duration < 0 {
			t.Fatalf("check %+v", c)
		}
	}

	out, _, err = run(t, "--config", fix.config, "plugins", "test", "--max-latency", latencyBudget, wasm)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"plugin support 1.0.0 (", "PASS  describe", "PASS  tools", "no tools (nothing to check)", "PASS  latency",
		"p50 prompt+validate", "compile ", "PASS: 7 checks"} {
		if !strings.Contains(out, want) {
			t.Fatalf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestPluginsTestFailure(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "junk.wasm")
	if err := os.WriteFile(junk, []byte("not a module"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "--config", fix.config, "plugins", "test", "--json", junk)
	var quiet silentError
	if err == nil || !errors.As(err, &quiet) {
		t.Fatalf("want a silent error (exit status 1), got %v", err)
	}
	rep := decodeConformance(t, out)
	if rep.Passed == nil || *rep.Passed || len(rep.Checks) != 1 || rep.Checks[0].Name != "describe" ||
		!strings.Contains(rep.Checks[0].Detail, "not a WebAssembly module") {
		t.Fatalf("report: %s", out)
	}
	out, _, err = run(t, "--config", fix.config, "plugins", "test", junk)
	if !errors.As(err, &quiet) || !strings.Contains(out, "FAIL  describe") || !strings.Contains(out, "FAIL: 1 of 1 checks failed") {
		t.Fatalf("text: %v\n%s", err, out)
	}
}

func TestPluginsTestArgs(t *testing.T) {
	wasm := filepath.Join(fix.dir, "plugins", "support.wasm")
	if _, _, err := run(t, "--config", fix.config, "plugins", "test", "--config-kv", "novalue", wasm); err == nil ||
		!strings.Contains(err.Error(), "want KEY=VALUE") {
		t.Fatalf("bad --config-kv: %v", err)
	}
	if _, _, err := run(t, "--config", fix.config, "plugins", "test", filepath.Join(t.TempDir(), "missing.wasm")); err == nil ||
		errors.As(err, new(silentError)) || !strings.Contains(err.Error(), "missing.wasm") {
		t.Fatalf("missing file: %v", err)
	}
	kv, err := parseKVs([]string{"mode=a=b", "empty="})
	if err != nil || kv["mode"] != "a=b" || kv["empty"] != "" || len(kv) != 2 {
		t.Fatalf("parseKVs: %v %v", kv, err)
	}
}

// TestPluginsTestTools runs the kit on the finance plugin, which declares a
// tool: the tools check runs it and the figures include its calls.
func TestPluginsTestTools(t *testing.T) {
	wasm := filepath.Join(t.TempDir(), "finance.wasm")
	if err := testutil.BuildPlugin("plugins/finance", wasm); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "--config", fix.config, "plugins", "test", "--max-latency", latencyBudget, wasm)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"plugin finance 1.0.0 (", "PASS  tools", "1 tool(s), 6 calls", "an unknown tool name and malformed input fail cleanly",
		"us, tool ", "PASS: 7 checks"} {
		if !strings.Contains(out, want) {
			t.Fatalf("text report lacks %q:\n%s", want, out)
		}
	}
}
