package instrument

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/mdsa-go/mdsa/internal/testutil"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// findPlugins lists the example plugins built on this machine (Rust,
// AssemblyScript, C; they are build outputs, absent in a fresh checkout)
// and, with withGo, one Go domain plugin.
func findPlugins(t testing.TB, withGo bool) []string {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "examples", "plugins", "*", "*.wasm"))
	if withGo {
		// One Go plugin is enough: they all come from the same SDK and
		// compiler, and each takes seconds to load under the race detector.
		more, _ := filepath.Glob(filepath.Join(root, "plugins", "*", "*.wasm"))
		if len(more) > 0 {
			files = append(files, more[0])
		}
	}
	return files
}

// realPlugins is findPlugins, skipping the test when there are none.
func realPlugins(t testing.TB, withGo bool) []string {
	t.Helper()
	files := findPlugins(t, withGo)
	if len(files) == 0 {
		t.Skip("no plugin builds under examples/plugins (run their build.sh)")
	}
	return files
}

// extismCall runs the MDSA exports of an Extism plugin and returns what each
// returned, with user host functions stubbed to return zeros.
func extismCall(t *testing.T, wasm []byte, interp bool, yields *atomic.Int64) []string {
	t.Helper()
	ctx := context.Background()
	cfg := wazero.NewRuntimeConfigCompiler()
	if interp {
		cfg = wazero.NewRuntimeConfigInterpreter()
	}
	// Stub every host function the plugin imports from extism:host/user.
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	var fns []extism.HostFunction
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != "extism:host/user" {
			continue
		}
		results := len(f.ResultTypes())
		fns = append(fns, extism.NewHostFunctionWithStack(name, func(_ context.Context, _ *extism.CurrentPlugin, stack []uint64) {
			for i := 0; i < results; i++ {
				stack[i] = 0
			}
		}, f.ParamTypes(), f.ResultTypes()))
	}
	rt.Close(ctx)
	y := extism.NewHostFunctionWithStack(ImportName, func(context.Context, *extism.CurrentPlugin, []uint64) {
		yields.Add(1)
	}, nil, nil)
	y.SetNamespace(ImportModule)
	st := extism.NewHostFunctionWithStack(StackImportName, func(context.Context, *extism.CurrentPlugin, []uint64) {
		panic(errStackExhausted)
	}, nil, nil)
	st.SetNamespace(ImportModule)
	fns = append(fns, y, st)
	// The guarded kernel functions, forwarded as go-sdk's env module does.
	for name, params := range map[string][]extism.ValueType{
		"output_set": {extism.ValueTypeI64, extism.ValueTypeI64},
		"error_set":  {extism.ValueTypeI64},
	} {
		f := extism.NewHostFunctionWithStack(name, func(ctx context.Context, _ *extism.CurrentPlugin, stack []uint64) {
			kernel := ctx.Value(extism.PluginCtxKey("extism")).(api.Module)
			if err := kernel.ExportedFunction(name).CallWithStack(ctx, stack); err != nil {
				panic(err)
			}
		}, params, nil)
		f.SetNamespace(GuardModule)
		fns = append(fns, f)
	}

	p, err := extism.NewPlugin(ctx, extism.Manifest{Wasm: []extism.Wasm{extism.WasmData{Data: wasm}}},
		extism.PluginConfig{EnableWasi: true, RuntimeConfig: cfg.WithCloseOnContextDone(true)}, fns)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer p.Close(ctx)
	inputs := []struct{ export, input string }{
		{"describe", ""},
		{"prompt", `{"query":"How many days of annual leave do I get, and can I book a flight to Lisbon?"}`},
		{"validate", `{"query":"q","response":"You may be entitled to 20 days.","domain":"hr"}`},
	}
	var out []string
	for _, in := range inputs {
		rc, res, err := p.Call(in.export, []byte(in.input))
		out = append(out, fmt.Sprintf("%s: rc=%d err=%v out=%s", in.export, rc, err, res))
	}
	return out
}

// TestRealPlugins instruments the example plugins and checks that their
// exports return exactly what they returned before.
func TestRealPlugins(t *testing.T) {
	for _, f := range realPlugins(t, !testing.Short()) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			orig, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out := mustYields(t, orig, 64)
			t.Logf("%s: %d -> %d bytes (%+.1f%%)", f, len(orig), len(out), 100*float64(len(out)-len(orig))/float64(len(orig)))
			// Go plugins are 4 MB: the interpreter compiles them far faster
			// than the compiler does under the race detector.
			interp := len(orig) > 1<<20
			var before, after atomic.Int64
			want := extismCall(t, orig, interp, &before)
			got := extismCall(t, out, interp, &after)
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("instrumented\n%.300s\noriginal\n%.300s", got[i], want[i])
				}
			}
			if after.Load() == 0 {
				t.Error("the instrumented plugin never yielded")
			}
		})
	}
}

var goPlugin struct {
	once sync.Once
	wasm []byte
	err  error
}

// buildGoPlugin builds testdata/goplugin once per test binary (Go's build
// cache makes later builds cheap).
func buildGoPlugin(t testing.TB) []byte {
	t.Helper()
	goPlugin.once.Do(func() {
		dir, err := os.MkdirTemp("", "instrument-goplugin")
		if err != nil {
			goPlugin.err = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "goplugin.wasm")
		if goPlugin.err = testutil.BuildPlugin("internal/instrument/testdata/goplugin", out); goPlugin.err == nil {
			goPlugin.wasm, goPlugin.err = os.ReadFile(out)
		}
	})
	if goPlugin.err != nil {
		t.Fatal(goPlugin.err)
	}
	return goPlugin.wasm
}

// goRuntime is a compiler runtime with WASI, the yield host module and the
// shared test compilation cache (a Go module takes seconds to compile under
// the race detector; the cache makes later runs cheap).
func goRuntime(t testing.TB) (wazero.Runtime, *atomic.Int64) {
	t.Helper()
	ctx := context.Background()
	cfg := wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(true)
	if dir, err := testutil.CompileCacheDir(); err == nil {
		if cache, err := wazero.NewCompilationCacheWithDir(dir); err == nil {
			cfg = cfg.WithCompilationCache(cache)
		}
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	t.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	calls := new(atomic.Int64)
	err := schedModule(ctx, rt, func() { calls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	return rt, calls
}

func instantiateGo(t testing.TB, rt wazero.Runtime, b []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	mod, err := rt.InstantiateWithConfig(ctx, b, wazero.NewModuleConfig().
		WithName(fmt.Sprintf("go%d", instanceSeq.Add(1))).WithStartFunctions("_initialize"))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	t.Cleanup(func() { mod.Close(ctx) })
	return mod
}

// TestGoPlugin instruments a Go-compiled module (whose functions are
// resumable state machines with a dispatch loop) and runs it.
func TestGoPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and compiles a Go module")
	}
	orig := buildGoPlugin(t)
	out := mustYields(t, orig, 0)
	if bytes.Equal(orig, out) {
		t.Fatal("nothing changed")
	}
	rt, calls := goRuntime(t)
	a, b := instantiateGo(t, rt, orig), instantiateGo(t, rt, out)
	for _, c := range []struct {
		name string
		arg  uint64
	}{{"sum", 1_000_000}, {"fib", 22}, {"words", 1000}} {
		x, y := call(t, a, c.name, c.arg), call(t, b, c.name, c.arg)
		if x != y {
			t.Errorf("%s(%d): original %d, instrumented %d", c.name, c.arg, x, y)
		}
	}
	if want := uint64(999_999 * 1_000_000 / 2); call(t, b, "sum", 1_000_000) != want {
		t.Errorf("sum is wrong")
	}
	if calls.Load() == 0 {
		t.Error("no yields")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	before := calls.Load()
	if _, err := b.ExportedFunction("spin").Call(ctx); err == nil {
		t.Fatal("spin returned")
	}
	if calls.Load() == before {
		t.Error("spin never yielded")
	}
}
