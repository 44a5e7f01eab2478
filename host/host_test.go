package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/internal/gguf"
	"github.com/mdsa-go/mdsa/internal/testutil"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

var shipped = []string{"finance", "medical", "support", "technical"}

// fixture is built once per test binary: the four shipped plugins compiled
// to wasm, a shared compilation cache, and a tiny synthetic model.
var fixture struct {
	pluginsDir string
	supportV2  string // the support plugin built as version 2.0.0 (hot-swap tests)
	cacheDir   string
	modelPath  string
}

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "mdsa-host-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(tmp)
		fixture.pluginsDir = filepath.Join(tmp, "plugins")
		if fixture.cacheDir, err = testutil.CompileCacheDir(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fixture.modelPath = filepath.Join(tmp, "synthetic.gguf")
		if err := os.MkdirAll(fixture.pluginsDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		var wg sync.WaitGroup
		errs := make([]error, len(shipped)+1)
		for i, name := range shipped {
			wg.Go(func() {
				errs[i] = testutil.BuildPlugin("plugins/"+name, filepath.Join(fixture.pluginsDir, name+".wasm"))
			})
		}
		fixture.supportV2 = filepath.Join(tmp, "support-v2.wasm")
		wg.Go(func() {
			errs[len(shipped)] = testutil.BuildPluginVersion("plugins/support", fixture.supportV2, "2.0.0")
		})
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := gguf.WriteSynth(fixture.modelPath, gguf.SynthOptions{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func testConfig(t testing.TB, pluginsDir string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.SetDir(t.TempDir())
	cfg.File = "test.toml"
	cfg.Host.PluginsDir = pluginsDir
	cfg.Host.CacheDir = fixture.cacheDir
	cfg.Engine.ContextSize = 2048 // finance offers its tool: a longer system prompt
	cfg.Engine.Parallel = 2
	cfg.Engine.Threads = 1 // llama.cpp threads spin: 2 on 2 shared cores degrade badly
	return cfg
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(ioDiscard{}, nil)) }

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

func newHost(t testing.TB, opts ...Option) *Host {
	t.Helper()
	return newHostIn(t, fixture.pluginsDir, opts...)
}

func newHostIn(t testing.TB, dir string, opts ...Option) *Host {
	t.Helper()
	cfg := testConfig(t, dir)
	h, err := New(context.Background(), cfg, append([]Option{WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// fakeEngine is a test double recording what the host asks of it.
type fakeEngine struct {
	calls atomic.Int64
	mu    sync.Mutex
	last  engine.Request
	text  string
	err   error
}

func (f *fakeEngine) Model() string { return "fake" }
func (f *fakeEngine) Generate(ctx context.Context, req engine.Request, on engine.TokenFunc) (engine.Result, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.last = req
	f.mu.Unlock()
	if f.err != nil {
		return engine.Result{}, f.err
	}
	for _, w := range strings.SplitAfter(f.text, " ") {
		if on != nil {
			if err := on(w); err != nil {
				return engine.Result{}, err
			}
		}
	}
	return engine.Result{Text: f.text, Model: "fake", TokensIn: 10, TokensOut: len(strings.Fields(f.text)), FinishReason: engine.FinishStop}, nil
}
func (f *fakeEngine) Embed(context.Context, []string) ([][]float32, error) {
	return nil, engine.ErrNotSupported
}
func (f *fakeEngine) CountTokens(_ context.Context, s string) (int, error) {
	return len(strings.Fields(s)), nil
}
func (f *fakeEngine) Close() error { return nil }

// demo holds realistic queries and the domain each must reach.
var demo = []struct{ query, domain string }{
	{"What is a good way to diversify my retirement portfolio?", "finance"},
	{"I have had a headache and a mild fever for two days, what should I do?", "medical"},
	{"I was charged twice for my order, can I get a refund?", "support"},
	{"How do I fix a segmentation fault in my C program?", "technical"},
}

func TestEndToEndWithLlamaCpp(t *testing.T) {
	lib := testutil.LlamaLibDir(t)
	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Engine.LibDir = lib
	h, err := New(context.Background(), cfg, WithLogger(quietLogger()), WithModelFile(fixture.modelPath))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, d := range demo {
		res, err := h.Process(context.Background(), Request{Query: d.query})
		if err != nil {
			t.Fatalf("%q: %v", d.query, err)
		}
		t.Logf("%s: %+v", d.domain, res.Timings)
		if res.Domain != d.domain || res.Status == StatusOutOfScope {
			t.Fatalf("%q routed to %q (%s), want %s", d.query, res.Domain, res.Status, d.domain)
		}
		// The synthetic model answers every chat prompt with SynthReply;
		// validators may only append (a disclaimer), never lose it.
		if !strings.HasPrefix(res.Response, gguf.SynthReply) {
			t.Fatalf("%s: response %q does not start with the model's exact output %q", d.domain, res.Response, gguf.SynthReply)
		}
		if res.FinishReason != engine.FinishStop || res.Tokens.Completion == 0 || res.Tokens.Prompt == 0 {
			t.Fatalf("%s: finish %q tokens %+v", d.domain, res.FinishReason, res.Tokens)
		}
		tm := res.Timings
		if tm.Total <= 0 || tm.Generate <= 0 || tm.Total < tm.Generate {
			t.Fatalf("%s: timings %+v", d.domain, tm)
		}
		if res.RequestID == "" || res.Model == "" {
			t.Fatalf("%s: request id %q model %q", d.domain, res.RequestID, res.Model)
		}
	}
	// Streaming passes the model's exact text on as it is generated.
	var streamed strings.Builder
	res, err := h.Stream(context.Background(), Request{Query: demo[2].query}, func(p string) error {
		streamed.WriteString(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if streamed.String() != gguf.SynthReply || !strings.HasPrefix(res.Response, gguf.SynthReply) {
		t.Fatalf("streamed %q, response %q", streamed.String(), res.Response)
	}
}

func TestOutOfScopeNeverCallsTheModel(t *testing.T) {
	fe := &fakeEngine{text: "x"}
	h := newHost(t, WithEngine(fe))
	for _, q := range []string{"Give me a recipe for banana bread", "Write a poem about autumn leaves", ""} {
		res, err := h.Process(context.Background(), Request{Query: q})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != StatusOutOfScope || res.Domain != "" || res.Response == "" {
			t.Fatalf("%q: %+v", q, res)
		}
	}
	if n := fe.calls.Load(); n != 0 {
		t.Fatalf("engine called %d times for out-of-scope queries", n)
	}
}

func TestForcedAndUnknownDomain(t *testing.T) {
	fe := &fakeEngine{text: "Restart the router and try again."}
	h := newHost(t, WithEngine(fe))
	res, err := h.Process(context.Background(), Request{Query: "anything at all", Domain: "technical"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Domain != "technical" || res.Confidence != 1 {
		t.Fatalf("forced domain: %+v", res)
	}
	_, err = h.Process(context.Background(), Request{Query: "x", Domain: "astrology"})
	if !errors.Is(err, ErrUnknownDomain) || !strings.Contains(err.Error(), "astrology") {
		t.Fatalf("unknown domain: %v", err)
	}
}

func TestPluginBuildsPromptAndParamsLayer(t *testing.T) {
	fe := &fakeEngine{text: "Diversify across asset classes."}
	h := newHost(t, WithEngine(fe))
	temp := float32(0)
	_, err := h.Process(context.Background(), Request{Query: "Should I buy index funds or bonds?", Domain: "finance",
		Generation: abi.Generation{MaxTokens: 100000, Temperature: &temp}})
	if err != nil {
		t.Fatal(err)
	}
	fe.mu.Lock()
	last := fe.last
	fe.mu.Unlock()
	if len(last.Messages) < 2 || last.Messages[0].Role != abi.RoleSystem {
		t.Fatalf("messages: %+v", last.Messages)
	}
	if u := last.Messages[len(last.Messages)-1]; u.Role != abi.RoleUser || !strings.Contains(u.Content, "index funds") {
		t.Fatalf("last message does not carry the query: %+v", u)
	}
	if last.Params.Temperature != 0 {
		t.Fatalf("request temperature override lost: %+v", last.Params)
	}
	if last.Params.MaxTokens != config.Default().Engine.MaxTokens {
		t.Fatalf("max_tokens %d not capped by engine.max_tokens", last.Params.MaxTokens)
	}
}

func TestValidatorsRunOnTheAnswer(t *testing.T) {
	fe := &fakeEngine{text: "Your card 4111 1111 1111 1111 was charged twice; we will refund it."}
	h := newHost(t, WithEngine(fe))
	res, err := h.Process(context.Background(), Request{Query: "refund please", Domain: "support"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(res.Response, "4111 1111 1111 1111") {
		t.Fatalf("support plugin let a card number through: %q", res.Response)
	}
	if len(res.Validation.Issues) == 0 {
		t.Fatalf("no validation issue reported for a card number: %+v", res.Validation)
	}
}

func TestEngineErrorFailsOnlyThatRequest(t *testing.T) {
	fe := &fakeEngine{text: "ok", err: errors.New("out of memory")}
	h := newHost(t, WithEngine(fe))
	_, err := h.Process(context.Background(), Request{Query: "reset my password", Domain: "support", RequestID: "req-42"})
	if err == nil || !strings.Contains(err.Error(), "req-42") || !strings.Contains(err.Error(), "out of memory") {
		t.Fatalf("error %v does not name the request and the cause", err)
	}
	fe.err = nil
	if _, err := h.Process(context.Background(), Request{Query: "reset my password", Domain: "support"}); err != nil {
		t.Fatalf("host did not recover: %v", err)
	}
}

func TestCorruptPluginFileIsLeftOut(t *testing.T) {
	dir := t.TempDir()
	for _, name := range shipped[:2] {
		b, err := os.ReadFile(filepath.Join(fixture.pluginsDir, name+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".wasm"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "broken.wasm"), []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.wasm"), []byte("just text"), 0o644)
	h := newHostIn(t, dir, WithEngine(&fakeEngine{text: "x"}))
	if got := len(h.Plugins()); got != 2 {
		t.Fatalf("%d plugins loaded, want 2", got)
	}
	lerr := h.LoadErrors()
	if lerr == nil || !strings.Contains(lerr.Error(), "broken.wasm") || !strings.Contains(lerr.Error(), "notes.wasm") {
		t.Fatalf("load errors %v do not name the bad files", lerr)
	}
}

func TestMissingPluginsDir(t *testing.T) {
	cfg := testConfig(t, filepath.Join(t.TempDir(), "nope"))
	_, err := New(context.Background(), cfg, WithLogger(quietLogger()))
	if err == nil || !strings.Contains(err.Error(), "plugins_dir") {
		t.Fatalf("got %v", err)
	}
}

func TestMissingModelFileIsAClearError(t *testing.T) {
	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Engine.LibDir = testutil.LlamaLibDir(t)
	h, err := New(context.Background(), cfg, WithLogger(quietLogger()),
		WithModelFile(filepath.Join(t.TempDir(), "absent.gguf")))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Process(context.Background(), Request{Query: "How do I reset my password?", Domain: "support"})
	if err == nil || !strings.Contains(err.Error(), "absent.gguf") {
		t.Fatalf("got %v", err)
	}
}

func TestConcurrentRequests(t *testing.T) {
	fe := &fakeEngine{text: "Try turning it off and on again."}
	h := newHost(t, WithEngine(fe))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			d := demo[i%len(demo)]
			res, err := h.Process(context.Background(), Request{Query: d.query})
			if err == nil && res.Domain != d.domain {
				err = fmt.Errorf("%q -> %s", d.query, res.Domain)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCloseThenProcess(t *testing.T) {
	h := newHost(t, WithEngine(&fakeEngine{text: "x"}))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Process(context.Background(), Request{Query: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v", err)
	}
}

func TestCatalogModelThroughRegistry(t *testing.T) {
	lib := testutil.LlamaLibDir(t)
	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Engine.LibDir = lib
	cfg.Host.ModelsDir = filepath.Dir(fixture.modelPath)
	cfg.Models = map[string]config.Model{"tiny": {Tier: "domain", Variants: map[string]config.Variant{
		"Q4_0": {Path: filepath.Base(fixture.modelPath)}}}}
	cfg.Engine.Model, cfg.Engine.Quant = "tiny", ""
	h, err := New(context.Background(), cfg, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for range 3 {
		res, err := h.Process(context.Background(), Request{Query: demo[3].query})
		if err != nil {
			t.Fatal(err)
		}
		if res.Response != gguf.SynthReply {
			t.Fatalf("response %q", res.Response)
		}
	}
	st := h.ModelStats()
	if st.Loads != 1 || st.Hits < 2 || st.ResidentBytes <= 0 {
		t.Fatalf("registry stats %+v: want one load, then hits", st)
	}
}
