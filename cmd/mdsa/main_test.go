package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/internal/gguf"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// The CLI is tested in process against one real plugin (support) and a tiny
// synthetic model: compiling a Go plugin under -race takes seconds.
var fix struct {
	dir, config, model string
	// shippedLimits is config with the shipped compile limits, for the
	// tests that measure them (built without the race detector).
	shippedLimits string
}

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == plugin.CompileChildArg {
		// This test binary is the CLI's compile child (compileCommand).
		os.Exit(plugin.ServeCompileChild(context.Background(), os.Stdin, os.Stdout))
	}
	dir, err := os.MkdirTemp("", "mdsa-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		fix.dir = dir
		plugins := filepath.Join(dir, "plugins")
		if err := testutil.BuildPlugin("plugins/support", filepath.Join(plugins, "support.wasm")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fix.model = filepath.Join(dir, "synthetic.gguf")
		if _, err := gguf.WriteSynth(fix.model, gguf.SynthOptions{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cache, err := testutil.CompileCacheDir()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fix.config = filepath.Join(dir, "mdsa.toml")
		conf := fmt.Sprintf("[host]\nplugins_dir = %q\ncache_dir = %q\nlog_level = \"error\"\n\n[engine]\nthreads = 1\ncontext_size = 1024\n",
			plugins, cache)
		// The CLI compiles plugins in a child process that is this test
		// binary: under the race detector a Go plugin's compile takes 10 s
		// or more and several times the memory, past the shipped limits.
		limits := "\n[plugins]\ncompile_timeout = \"10m\"\ncompile_memory_mb = 8192\n"
		fix.shippedLimits = filepath.Join(dir, "shipped-limits.toml")
		for file, text := range map[string]string{fix.config: conf + limits, fix.shippedLimits: conf} {
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// run executes the CLI in process and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	root, a := newRootApp(&out, &errw)
	root.SetArgs(args)
	err := a.execute(context.Background(), root)
	return out.String(), errw.String(), err
}

// Every command with --json reports a failure in one JSON shape on stdout.
func TestJSONErrors(t *testing.T) {
	for _, args := range [][]string{
		{"models", "info", "--json", "no-such-model"},
		{"plugins", "test", "--json", "/no/such/plugin.wasm"},
		{"hw", "--json", "--bogus-never"},
		{"ask", "--json", ""},
	} {
		out, _, err := run(t, append([]string{"--config", fix.config}, args...)...)
		if err == nil {
			t.Errorf("%v: no error", args)
			continue
		}
		if strings.Contains(strings.Join(args, " "), "--bogus-never") {
			continue // a flag error happens before the command runs: no JSON
		}
		var e struct{ Status, Error string }
		if json.Unmarshal([]byte(out), &e) != nil || e.Status != "error" || e.Error == "" {
			t.Errorf("%v: stdout %q is not {\"status\":\"error\",\"error\":...}", args, out)
		}
	}
}

func TestAskJSON(t *testing.T) {
	t.Setenv("MDSA_LLAMA_LIB", testutil.LlamaLibDir(t))
	out, stderr, err := run(t, "--config", fix.config, "ask", "--json", "--model-file", fix.model,
		"I was charged twice for my order, can I get a refund?")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var res struct {
		Status     string   `json:"status"`
		Domain     string   `json:"domain"`
		Confidence *float64 `json:"confidence"`
		Response   string   `json:"response"`
		Validation struct {
			OK     *bool            `json:"ok"`
			Score  *float64         `json:"score"`
			Issues []map[string]any `json:"issues"`
		} `json:"validation"`
		Model  string `json:"model"`
		Tokens struct {
			Prompt, Completion int
		} `json:"tokens"`
		Timings map[string]float64 `json:"timings_ms"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if res.Status != "ok" || res.Domain != "support" || res.Confidence == nil || res.Response != gguf.SynthReply {
		t.Fatalf("result: %+v", res)
	}
	if res.Validation.OK == nil || res.Validation.Score == nil || res.Validation.Issues == nil {
		t.Fatalf("validation fields missing: %s", out)
	}
	if res.Model == "" || res.Tokens.Prompt == 0 || res.Tokens.Completion == 0 {
		t.Fatalf("model/tokens: %s", out)
	}
	for _, k := range []string{"route", "prompt", "generate", "validate", "total"} {
		if _, ok := res.Timings[k]; !ok {
			t.Fatalf("timings_ms.%s missing: %s", k, out)
		}
	}
}

func TestAskOutOfScopeAndErrors(t *testing.T) {
	out, _, err := run(t, "--config", fix.config, "ask", "--json", "Write me a poem about the sea")
	if err != nil || !strings.Contains(out, `"status": "out_of_scope"`) {
		t.Fatalf("out of scope: %v %s", err, out)
	}
	// An error with --json is JSON on stdout too, and a non-nil error.
	out, _, err = run(t, "--config", fix.config, "ask", "--json", "--domain", "astrology", "x")
	if err == nil || !strings.Contains(out, `"status": "error"`) || !strings.Contains(out, "astrology") {
		t.Fatalf("error as JSON: %v %s", err, out)
	}
}

func TestPluginsListAndInspect(t *testing.T) {
	out, _, err := run(t, "--config", fix.config, "plugins", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct {
		Name     string   `json:"name"`
		Version  string   `json:"version"`
		Keywords []string `json:"keywords"`
		Examples []string `json:"examples"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].Name != "support" ||
		len(list[0].Keywords) < 15 || len(list[0].Examples) < 25 {
		t.Fatalf("plugins list: %v %s", err, out)
	}
	out, _, err = run(t, "--config", fix.config, "plugins", "inspect", "support")
	if err != nil || !strings.Contains(out, "sha256:") || !strings.Contains(out, "capabilities:  generate") {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	if _, _, err = run(t, "--config", fix.config, "plugins", "inspect", "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("inspect unknown: %v", err)
	}
}

func TestModelsSynthAndVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "m.gguf")
	out, _, err := run(t, "models", "synth", "--json", path)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Params int64  `json:"params"`
		Reply  string `json:"reply"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Params == 0 || info.Reply != gguf.SynthReply {
		t.Fatalf("synth: %v %s", err, out)
	}
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Fatalf("model file: %v", err)
	}
	out, _, err = run(t, "models", "info", "--json", path)
	if err != nil || !strings.Contains(out, `"architecture": "llama"`) || !strings.Contains(out, `"total":`) {
		t.Fatalf("models info: %v %s", err, out)
	}
	out, _, err = run(t, "version", "--json")
	if err != nil || !strings.Contains(out, `"abi": 1`) {
		t.Fatalf("version: %v %s", err, out)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[engine]\n\nparallel = 0\n"), 0o644)
	_, _, err := run(t, "config", "validate", bad)
	if err == nil || !strings.Contains(err.Error(), "bad.toml:3") || !strings.Contains(err.Error(), "engine.parallel") {
		t.Fatalf("got %v", err)
	}
	out, _, err := run(t, "config", "validate", fix.config)
	if err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("good config: %v %s", err, out)
	}
}

func TestHardwareJSON(t *testing.T) {
	out, _, err := run(t, "--config", fix.config, "hw", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var hw struct {
		CPU struct {
			Cores, Threads int
		} `json:"cpu"`
		Memory struct {
			Total     int64 `json:"total_bytes"`
			Available int64 `json:"available_bytes"`
		} `json:"memory"`
		GPUs            []any          `json:"gpus"`
		Recommendations map[string]any `json:"recommendations"`
		Llama           *struct {
			GPUBackends []string `json:"gpu_backends"`
		} `json:"llama"`
		Engine *struct {
			Threads   int    `json:"threads"`
			GPULayers string `json:"gpu_layers"`
		} `json:"engine"`
	}
	if err := json.Unmarshal([]byte(out), &hw); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if hw.CPU.Cores < 1 || hw.CPU.Threads < hw.CPU.Cores || hw.Memory.Total <= 0 ||
		hw.Memory.Available <= 0 || hw.Memory.Available > hw.Memory.Total || hw.GPUs == nil || hw.Recommendations == nil {
		t.Fatalf("hw: %s", out)
	}
	// The test configuration sets threads = 1 and leaves gpu_layers "auto".
	if hw.Llama == nil || hw.Llama.GPUBackends == nil || hw.Engine == nil || hw.Engine.Threads != 1 || hw.Engine.GPULayers != "auto" {
		t.Fatalf("hw: llama or engine settings missing: %s", out)
	}
}

func TestRouteJSON(t *testing.T) {
	out, stderr, err := run(t, "--config", fix.config, "route", "--json", "I was charged twice for my order, can I get a refund?")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var d struct {
		Domain       *string  `json:"domain"`
		Confidence   *float64 `json:"confidence"`
		OutOfScope   *bool    `json:"out_of_scope"`
		LatencyUS    *float64 `json:"latency_us"`
		Alternatives []struct {
			Domain string  `json:"domain"`
			Score  float64 `json:"score"`
		} `json:"alternatives"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if d.Domain == nil || *d.Domain != "support" || d.Confidence == nil || d.OutOfScope == nil || *d.OutOfScope ||
		d.LatencyUS == nil || *d.LatencyUS <= 0 || len(d.Alternatives) == 0 || d.Alternatives[0].Domain != "support" {
		t.Fatalf("route --json: %s", out)
	}
}

func TestBenchRoute(t *testing.T) {
	out, stderr, err := run(t, "bench", "route", "--synthetic", "20", "--examples", "10", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"in_scope_accuracy", "oos_recall", "oos_precision", "macro_f1", "p50_us", "p99_us", "train_ms"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("bench route --json lacks %s: %s", k, out)
		}
	}
	if _, _, err := run(t, "bench", "route"); err == nil {
		t.Error("bench route without a dataset succeeded")
	}
	if _, _, err := run(t, "bench", "route", "--clinc", t.TempDir()); err == nil || !strings.Contains(err.Error(), "data_full.json") {
		t.Errorf("missing CLINC files: %v", err)
	}
}

func TestBenchHotswap(t *testing.T) {
	t.Setenv("MDSA_LLAMA_LIB", testutil.LlamaLibDir(t))
	out, stderr, err := run(t, "--config", fix.config, "bench", "hotswap", "--swaps", "3", "--clients", "2",
		"--interval", "1ms", "--model-file", fix.model, "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep struct {
		Requests, Failed int64
		Swaps            int
		SwapMSP50        float64 `json:"swap_ms_p50"`
		SwapMSMax        float64 `json:"swap_ms_max"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Swaps != 3 || rep.Failed != 0 || rep.SwapMSP50 <= 0 || rep.SwapMSMax < rep.SwapMSP50 {
		t.Fatalf("bench hotswap: %s", out)
	}
}

func TestWithCustomSectionKeepsTheModuleValid(t *testing.T) {
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	got := withCustomSection(wasm, "x")
	want := append(append([]byte{}, wasm...), 0, 12, 10, 'm', 'd', 's', 'a', '-', 'b', 'e', 'n', 'c', 'h', 'x')
	if !bytes.Equal(got, want) {
		t.Fatalf("custom section % x, want % x", got, want)
	}
}
