package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/tenant"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

func TestBenchServe(t *testing.T) {
	t.Setenv("MDSA_LLAMA_LIB", testutil.LlamaLibDir(t))
	out, stderr, err := run(t, "--config", fix.config, "bench", "serve", "--json", "--duration", "300ms",
		"--concurrency", "1,2", "--model-file", fix.model)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep struct {
		Results []struct {
			Endpoint    string  `json:"endpoint"`
			Concurrency int     `json:"concurrency"`
			Requests    int64   `json:"requests"`
			Errors      int64   `json:"errors"`
			RPS         float64 `json:"rps"`
			P50MS       float64 `json:"p50_ms"`
			P99MS       float64 `json:"p99_ms"`
		} `json:"results"`
		Cores int    `json:"cores"`
		Model string `json:"model"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Cores < 1 || rep.Model == "" || len(rep.Results) != 4 {
		t.Fatalf("bench serve: %s", out)
	}
	seen := map[string][]int{}
	for _, r := range rep.Results {
		if r.Requests <= 0 || r.Errors != 0 || r.RPS <= 0 || r.P50MS <= 0 || r.P99MS < r.P50MS {
			t.Errorf("%s at %d: %+v\n%s", r.Endpoint, r.Concurrency, r, stderr)
		}
		seen[r.Endpoint] = append(seen[r.Endpoint], r.Concurrency)
	}
	for _, ep := range []string{"/v1/route", "/v1/chat/completions"} {
		if !slices.Equal(seen[ep], []int{1, 2}) {
			t.Errorf("%s measured at %v, want [1 2]: %s", ep, seen[ep], out)
		}
	}

	for _, args := range [][]string{{"--duration", "0s"}, {"--concurrency", "0"}, {"--max-tokens", "0"}} {
		if _, _, err := run(t, append([]string{"--config", fix.config, "bench", "serve"}, args...)...); err == nil {
			t.Errorf("bench serve %v succeeded", args)
		}
	}
}

// TestBenchServeConsole runs the console's cost measurement briefly: both
// phases measured, the live view fed, and every request answered counted.
func TestBenchServeConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: about 10 s")
	}
	t.Setenv("MDSA_LLAMA_LIB", testutil.LlamaLibDir(t))
	out, stderr, err := run(t, "--config", fix.config, "bench", "serve", "--console", "--json", "--duration", "200ms",
		"--concurrency", "1", "--model-file", fix.model)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep struct {
		Console *struct {
			Rounds  int `json:"rounds"`
			Results []struct {
				Endpoint   string    `json:"endpoint"`
				RPSOff     float64   `json:"rps_off"`
				RPSOn      float64   `json:"rps_on"`
				RoundCosts []float64 `json:"round_costs_pct"`
			} `json:"results"`
			Frames   int64 `json:"frames"`
			Served   int64 `json:"served"`
			Recorded int64 `json:"recorded"`
			Listed   int64 `json:"listed"`
		} `json:"console"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Console == nil {
		t.Fatalf("not the console's report (%v): %s", err, out)
	}
	c := rep.Console
	if len(c.Results) != 2 || c.Frames == 0 || c.Served == 0 || c.Recorded != c.Served || c.Listed == 0 || c.Listed > c.Recorded {
		t.Fatalf("console bench: %s", out)
	}
	for _, r := range c.Results {
		if r.RPSOff <= 0 || r.RPSOn <= 0 || len(r.RoundCosts) != c.Rounds {
			t.Fatalf("%s: %+v", r.Endpoint, r)
		}
	}
}

func TestPercentileMS(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := percentileMS(d, 0.5), percentileMS(d, 0.99); p50 != 50 || p99 != 99 {
		t.Fatalf("p50 %v p99 %v, want 50 99", p50, p99)
	}
	if p := percentileMS(d[:1], 0.99); p != 1 {
		t.Fatalf("one sample: %v", p)
	}
	if p := percentileMS(nil, 0.5); p != 0 {
		t.Fatalf("no samples: %v", p)
	}
}

// TestMultiTenantExample checks examples/multi-tenant/mdsa.toml: it
// validates, its paths point at the repository's plugins and models, and
// each tenant's demo key authenticates as that tenant.
func TestMultiTenantExample(t *testing.T) {
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"MDSA_PLUGINS_DIR", "MDSA_MODELS_DIR", "MDSA_CACHE_DIR", "MDSA_LLAMA_LIB", "MDSA_MODEL"} {
		t.Setenv(env, "") // restored after the test
		os.Unsetenv(env)  // so that the file's own values are checked
	}
	cfg, err := config.Load(filepath.Join(root, "examples", "multi-tenant", "mdsa.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ key, got, want string }{
		{"host.plugins_dir", cfg.Host.PluginsDir, "plugins"},
		{"host.models_dir", cfg.Host.ModelsDir, "models"},
		{"host.cache_dir", cfg.Host.CacheDir, ".cache/mdsa"},
		{"engine.lib_dir", cfg.Engine.LibDir, ".deps/llama"},
	} {
		if got, want := cfg.Resolve(c.got), filepath.Join(root, c.want); got != want {
			t.Errorf("%s resolves to %s, want %s", c.key, got, want)
		}
	}
	if p, _, _, err := cfg.ModelPath(); err != nil || p != filepath.Join(root, "models", "synthetic.gguf") {
		t.Errorf("engine model: %s %v, want the repository's models/synthetic.gguf", p, err)
	}

	set, err := tenant.New(cfg.Tenants, tenant.WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]struct {
		name    string
		plugins []string
	}{
		"acme-demo-key":   {"acme", []string{"finance", "support"}},
		"globex-demo-key": {"globex", []string{"medical", "technical", "travel*"}},
	} {
		ten, err := set.Authenticate(key)
		if err != nil || ten.Name != want.name {
			t.Fatalf("key %s: %v %v, want tenant %s", key, ten, err, want.name)
		}
		if !slices.Equal(ten.Plugins(), want.plugins) {
			t.Errorf("%s may use %v, want %v", want.name, ten.Plugins(), want.plugins)
		}
		l := ten.Limits()
		if l.RequestsPerSecond <= 0 || l.Burst <= 0 || l.Concurrent <= 0 || l.TokensPerMinute <= 0 || l.MaxTokens <= 0 {
			t.Errorf("%s: want every limit set, got %+v", want.name, l)
		}
	}
	if _, err := set.Authenticate("acme-wrong-key"); !errors.Is(err, tenant.ErrUnauthorized) {
		t.Errorf("a wrong key: %v", err)
	}
	acme, _ := set.Get("acme")
	if acme.AllowsPlugin("medical") || len(acme.PluginConfig("finance")) == 0 {
		t.Errorf("acme: medical allowed %v, finance config %v", acme.AllowsPlugin("medical"), acme.PluginConfig("finance"))
	}
	for _, k := range cfg.Tenants[0].APIKeys {
		if !strings.HasPrefix(k, "sha256:") {
			t.Errorf("api key %q is not a hash", k)
		}
	}
}

// TestScaleOutExample checks examples/scale-out: both configurations
// validate, the gateway's model runs on the nodes' raw model, limits and
// the cache go through Redis, and the paths point at the repository.
func TestScaleOutExample(t *testing.T) {
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"MDSA_PLUGINS_DIR", "MDSA_MODELS_DIR", "MDSA_CACHE_DIR", "MDSA_LLAMA_LIB", "MDSA_MODEL"} {
		t.Setenv(env, "")
		os.Unsetenv(env)
	}
	node, err := config.Load(filepath.Join(root, "examples", "scale-out", "node.toml"))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := config.Load(filepath.Join(root, "examples", "scale-out", "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if p, _, _, err := node.ModelPath(); err != nil || p != filepath.Join(root, "models", "synthetic.gguf") {
		t.Errorf("the node's model: %s %v", p, err)
	}
	m := gw.Models[gw.Engine.Model]
	b := gw.Backends[m.Backend]
	if m.RemoteModel != node.Engine.Model || len(b.URLs) != 2 || b.APIKeyEnv != node.Tenants[0].APIKeyEnv {
		t.Errorf("the gateway's model %+v on %+v does not reach the nodes' %q", m, b, node.Engine.Model)
	}
	if gw.Server.Limits != "redis" || gw.Cache.Store != "redis" || gw.Redis.URL == "" {
		t.Errorf("limits %q, cache %q, redis %q", gw.Server.Limits, gw.Cache.Store, gw.Redis.URL)
	}
	if got := gw.Resolve(gw.Host.PluginsDir); got != filepath.Join(root, "plugins") {
		t.Errorf("plugins_dir resolves to %s", got)
	}
}
