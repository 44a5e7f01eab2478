package plugin

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// testPlugins are the Go programs under testdata/ built for the tests: a
// well-behaved plugin, and one whose misbehaviour is picked by config (see
// testdata/bad and loadBad).
var testPlugins = []string{"good", "bad"}

// Fixtures made once by TestMain and shared by every test.
var (
	wasmDir  string // holds <name>.wasm for each of testPlugins
	cacheDir string // wazero compilation cache shared by the tests' runtimes, so each module compiles once per run
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == CompileChildArg {
		// The compile child of TestCompileChild*: this test binary is its
		// CompileCommand.
		os.Exit(ServeCompileChild(context.Background(), os.Stdin, os.Stdout))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse()
	tmp, err := os.MkdirTemp("", "mdsa-plugin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "plugin tests:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	wasmDir = filepath.Join(tmp, "wasm")
	cacheDir = filepath.Join(tmp, "cache")
	start := time.Now()
	if err := buildPlugins(wasmDir); err != nil {
		fmt.Fprintln(os.Stderr, "plugin tests: building test plugins:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "built %d test plugins in %v\n", len(testPlugins), time.Since(start).Round(time.Millisecond))
	}
	code := m.Run()
	if shared.rt != nil {
		_ = shared.rt.Close(context.Background())
	}
	return code
}

// buildPlugins builds every test plugin with the Go toolchain running the
// tests (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared), reusing Go's build
// cache, two at a time.
func buildPlugins(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, serr := os.Stat(goTool); serr != nil {
			return fmt.Errorf("no go tool on PATH or in $GOROOT/bin: %w", err)
		}
	}
	env := append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	errs := make([]error, len(testPlugins))
	for i, name := range testPlugins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cmd := exec.Command(goTool, "build", "-buildmode=c-shared", "-o", filepath.Join(dir, name+".wasm"), "./testdata/"+name)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("%s: %w\n%s", name, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func wasmPath(name string) string { return filepath.Join(wasmDir, name+".wasm") }

func wasmBytes(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(wasmPath(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeServices answers host calls without a model and records them.
type fakeServices struct {
	mu       sync.Mutex
	calls    []fakeCall
	inflight atomic.Int32
	maxSeen  atomic.Int32
	delay    atomic.Int64 // nanoseconds Generate sleeps
	embedded int          // tokens Embed reports per input
	block    chan struct{}
	entered  chan struct{} // if set, Generate sends on it when it starts
}

type fakeCall struct {
	Fn   string
	Call Call
	Gen  abi.GenerateRequest
}

func (f *fakeServices) record(fn string, c Call, g abi.GenerateRequest) {
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{fn, c, g})
	f.mu.Unlock()
}

func (f *fakeServices) callsFor(plugin string) []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeCall
	for _, c := range f.calls {
		if c.Call.Plugin == plugin {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeServices) Generate(ctx context.Context, c Call, req abi.GenerateRequest) (abi.GenerateResponse, error) {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		old := f.maxSeen.Load()
		if n <= old || f.maxSeen.CompareAndSwap(old, n) {
			break
		}
	}
	f.record("generate", c, req)
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return abi.GenerateResponse{}, ctx.Err()
		}
	}
	if d := time.Duration(f.delay.Load()); d > 0 {
		time.Sleep(d)
	}
	if c.Tenant == "denied" {
		return abi.GenerateResponse{}, &CodedError{Code: abi.ErrModelDenied, Err: fmt.Errorf("tenant %q may not use model fake", c.Tenant)}
	}
	text := req.Prompt
	if len(req.Messages) > 0 {
		text = req.Messages[len(req.Messages)-1].Content
	}
	out := min(5, req.MaxTokens)
	return abi.GenerateResponse{Text: "echo: " + text, Model: "fake", TokensIn: len(strings.Fields(text)), TokensOut: out, FinishReason: "stop"}, nil
}

func (f *fakeServices) Embed(ctx context.Context, c Call, req abi.EmbedRequest) (abi.EmbedResponse, error) {
	f.record("embed", c, abi.GenerateRequest{})
	v := make([][]float32, len(req.Input))
	for i := range v {
		v[i] = []float32{float32(len(req.Input[i])), 1}
	}
	return abi.EmbedResponse{Model: "fake-embed", Vectors: v, Tokens: f.embedded * len(req.Input)}, nil
}

func (f *fakeServices) CountTokens(ctx context.Context, c Call, req abi.CountTokensRequest) (abi.CountTokensResponse, error) {
	f.record("count_tokens", c, abi.GenerateRequest{})
	return abi.CountTokensResponse{Count: len(strings.Fields(req.Text))}, nil
}

// shared is the runtime most tests use, with the good plugin loaded once.
var shared struct {
	once sync.Once
	err  error
	rt   *Runtime
	svc  *fakeServices
	good *Plugin
	cold time.Duration // the good plugin's load into an empty compilation cache
}

const sharedPoolSize = 4

func sharedRuntime(t testing.TB) (*Runtime, *fakeServices, *Plugin) {
	t.Helper()
	shared.once.Do(func() {
		shared.svc = &fakeServices{}
		shared.rt, shared.err = NewRuntime(context.Background(), Options{
			CacheDir: cacheDir,
			Services: shared.svc,
			PoolSize: sharedPoolSize,
		})
		if shared.err != nil {
			return
		}
		start := time.Now()
		shared.good, shared.err = shared.rt.Load(context.Background(), wasmPath("good"))
		shared.cold = time.Since(start)
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.rt, shared.svc, shared.good
}

// newRuntime makes a runtime for one test, sharing the compilation cache.
func newRuntime(t testing.TB, opts Options) *Runtime {
	t.Helper()
	if opts.CacheDir == "" {
		opts.CacheDir = cacheDir
	}
	rt, err := NewRuntime(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Close(ctx); err != nil {
			t.Errorf("close runtime: %v", err)
		}
	})
	return rt
}

// loadBad loads testdata/bad with the given misbehaviour (see the files of
// testdata/bad); the plugin is named after it.
func loadBad(t testing.TB, rt *Runtime, mode string, opts ...LoadOption) (*Plugin, error) {
	t.Helper()
	opts = append([]LoadOption{WithConfig(map[string]string{"mode": mode})}, opts...)
	return rt.Load(context.Background(), wasmPath("bad"), opts...)
}
