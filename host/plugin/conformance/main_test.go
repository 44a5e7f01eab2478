package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// Fixtures built once by TestMain: compiling a Go plugin to wasm, and then
// wazero compiling it under -race, takes seconds, so every test shares the
// modules, one Runtime and the on-disk compilation cache.
var fix struct {
	support, bad []byte // plugins/support and host/plugin/testdata/bad
	good         []byte // host/plugin/testdata/good: a thin manifest, but a handle export
	finance      []byte // plugins/finance: a tool (loan_payment)
	tools        []byte // testdata/tools: two tools, misbehaving by config mode
	cacheDir     string
	rt           *plugin.Runtime
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "mdsa-conformance-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance tests:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	pkgs := map[string]*[]byte{
		"plugins/support":                        &fix.support,
		"host/plugin/testdata/bad":               &fix.bad,
		"host/plugin/testdata/good":              &fix.good,
		"plugins/finance":                        &fix.finance,
		"host/plugin/conformance/testdata/tools": &fix.tools,
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 2)
	)
	for pkg, dst := range pkgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out := filepath.Join(tmp, filepath.Base(pkg)+".wasm")
			err := testutil.BuildPlugin(pkg, out)
			if err == nil {
				*dst, err = os.ReadFile(out)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		fmt.Fprintln(os.Stderr, "conformance tests: building plugins:", errs)
		return 1
	}
	if fix.cacheDir, err = testutil.CompileCacheDir(); err != nil {
		fmt.Fprintln(os.Stderr, "conformance tests:", err)
		return 1
	}
	fix.rt, err = plugin.NewRuntime(context.Background(), plugin.Options{
		CacheDir: fix.cacheDir,
		Services: FakeServices{},
		PoolSize: 2,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance tests:", err)
		return 1
	}
	code := m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fix.rt.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "conformance tests: closing the runtime:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// check runs Check on the shared runtime with the shared cache.
func check(t testing.TB, name string, wasm []byte, opts Options) Report {
	t.Helper()
	opts.CacheDir = fix.cacheDir
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return Check(ctx, fix.rt, name, wasm, opts)
}
