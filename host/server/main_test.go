package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/gguf"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

var shipped = []string{"finance", "medical", "support", "technical"}

// fixture is built once per test binary: the four shipped plugins, the
// spinning test plugin (testdata/loop, in a directory of its own), a shared
// wazero compilation cache and a tiny synthetic model.
var fixture struct {
	pluginsDir string // the four shipped plugins
	loopWasm   string // testdata/loop
	cacheDir   string
	modelPath  string
}

// hosts are shared by the tests of a binary (loading plugins under -race
// takes seconds); each is built on first use and closed after the run.
var hosts struct {
	mu   sync.Mutex
	byID map[string]*host.Host
	errs map[string]error
}

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "mdsa-server-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(tmp)
		fixture.pluginsDir = filepath.Join(tmp, "plugins")
		fixture.loopWasm = filepath.Join(tmp, "loop", "loop.wasm")
		fixture.modelPath = filepath.Join(tmp, "synthetic.gguf")
		if fixture.cacheDir, err = testutil.CompileCacheDir(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		builds := map[string]string{"host/server/testdata/loop": fixture.loopWasm}
		for _, name := range shipped {
			builds["plugins/"+name] = filepath.Join(fixture.pluginsDir, name+".wasm")
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		for pkg, out := range builds {
			wg.Go(func() {
				if err := testutil.BuildPlugin(pkg, out); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := gguf.WriteSynth(fixture.modelPath, gguf.SynthOptions{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() {
			for _, h := range hosts.byID {
				h.Close()
			}
		}()
		return m.Run()
	}()
	os.Exit(code)
}

// baseConfig is a configuration for tests: the fixture's plugins and cache,
// llama.cpp on one thread (two spinning threads on two shared cores
// degrade badly), a fixed memory budget (no hardware probe).
func baseConfig(t testing.TB, pluginsDir string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.SetDir(os.TempDir())
	cfg.File = "test.toml"
	cfg.Host.PluginsDir = pluginsDir
	cfg.Host.CacheDir = fixture.cacheDir
	cfg.Engine.LibDir = testutil.LlamaLibDir(t)
	cfg.Engine.ContextSize = 2048 // finance offers its tool: a longer system prompt
	cfg.Engine.Parallel = 2
	cfg.Engine.Threads = 1
	cfg.Engine.MemoryBudgetMB = 1024
	cfg.Server.ShutdownGrace = config.Duration{Duration: 10 * 1e9}
	return cfg
}

// sharedHost returns the host named id, building it with cfg and opts on
// first use. It skips the test when the llama.cpp libraries are missing.
func sharedHost(t testing.TB, id string, cfg func() config.Config, opts ...host.Option) *host.Host {
	t.Helper()
	testutil.LlamaLibDir(t)
	hosts.mu.Lock()
	defer hosts.mu.Unlock()
	if hosts.byID == nil {
		hosts.byID, hosts.errs = map[string]*host.Host{}, map[string]error{}
	}
	if h, ok := hosts.byID[id]; ok {
		return h
	}
	if err, ok := hosts.errs[id]; ok {
		t.Fatalf("host %s: %v", id, err)
	}
	opts = append([]host.Option{host.WithLogger(quietLogger())}, opts...)
	h, err := host.New(context.Background(), cfg(), opts...)
	if err != nil {
		hosts.errs[id] = err
		t.Fatalf("host %s: %v", id, err)
	}
	hosts.byID[id] = h
	return h
}

// openConfig has no tenants: the server is open.
func openConfig(t testing.TB) config.Config { return baseConfig(t, fixture.pluginsDir) }

func openHost(t testing.TB) *host.Host {
	return sharedHost(t, "open", func() config.Config { return openConfig(t) }, host.WithModelFile(fixture.modelPath))
}

// API keys of the multi-tenant configuration.
const (
	acmeKey   = "acme-demo-key"
	globexKey = "globex-demo-key"
	rateKey   = "rate-demo-key"
	singleKey = "single-demo-key"
	tokensKey = "tokens-demo-key"
)

// acmeMaxTokens is acme's max_tokens limit.
const acmeMaxTokens = 64

func keyHash(key string) []string {
	sum := sha256.Sum256([]byte(key))
	return []string{"sha256:" + hex.EncodeToString(sum[:])}
}

// tenantConfig has acme (finance and support, one catalog model, a
// max_tokens limit), globex (medical and technical) and three tenants with
// one limit each, all on the support plugin.
func tenantConfig(t testing.TB) config.Config {
	cfg := baseConfig(t, fixture.pluginsDir)
	variant := map[string]config.Variant{"Q4_0": {Path: fixture.modelPath}}
	cfg.Models = map[string]config.Model{
		"tiny":  {Tier: "domain", Variants: variant},
		"tiny2": {Tier: "domain", Variants: variant},
	}
	cfg.Engine.Model = "tiny"
	cfg.Tenants = []config.Tenant{
		{Name: "acme", APIKeys: keyHash(acmeKey), Plugins: []string{"finance", "support"}, Models: []string{"tiny"},
			Limits: config.TenantLimits{MaxTokens: acmeMaxTokens}},
		{Name: "globex", APIKeys: keyHash(globexKey), Plugins: []string{"medical", "technical"}},
		{Name: "rate", APIKeys: keyHash(rateKey), Plugins: []string{"support"},
			Limits: config.TenantLimits{RequestsPerSecond: 1, Burst: 1}},
		{Name: "single", APIKeys: keyHash(singleKey), Plugins: []string{"support"},
			Limits: config.TenantLimits{Concurrent: 1}},
		{Name: "tokens", APIKeys: keyHash(tokensKey), Plugins: []string{"support"},
			Limits: config.TenantLimits{TokensPerMinute: 100}},
	}
	return cfg
}

func tenantHost(t testing.TB) *host.Host {
	return sharedHost(t, "tenants", func() config.Config { return tenantConfig(t) })
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startServer serves s's handler on a test server closed at cleanup.
func startServer(t testing.TB, s *Server) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func newServer(t testing.TB, h *host.Host, cfg config.Config, opts ...Option) *Server {
	t.Helper()
	s, err := New(h, cfg, append([]Option{WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// response is an HTTP answer read whole.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// errorDoc decodes the OpenAI error document of r, failing the test if r
// does not hold one.
func (r response) errorDoc(t testing.TB) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" || e.Error.Code == "" {
		t.Fatalf("not an OpenAI error document (%v): %s", err, r.body)
	}
	return e
}

// do sends a request with an optional API key and JSON body.
func do(t testing.TB, method, url, key string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: data}
}

// chatBody is a minimal chat completion request.
func chatBody(model, query string) map[string]any {
	return map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": query}}}
}

// Queries that route clearly to each shipped domain.
const (
	qSupport   = "I was charged twice for my order, can I get a refund?"
	qFinance   = "What is a good way to diversify my retirement portfolio?"
	qMedical   = "I've had a fever and a sore throat for three days, what should I take?"
	qTechnical = "How do I fix a segmentation fault in my C program?"
)
