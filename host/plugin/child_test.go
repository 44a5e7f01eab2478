package plugin

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// childRuntime is a runtime that compiles in a child process (this test
// binary, see TestMain) into a cache of its own, so every module really
// compiles in the child.
func childRuntime(t *testing.T, timeout time.Duration, memory uint64) *Runtime {
	t.Helper()
	return newRuntime(t, Options{
		CacheDir:           t.TempDir(),
		CompileCommand:     []string{os.Args[0]},
		CompileTimeout:     timeout,
		CompileMemoryBytes: memory,
	})
}

// A module compiled in a child loads and serves, and the child left its
// machine code in the cache for the host. Under the race detector the
// child shares the tests' warm cache: compiling a Go plugin in a
// race-built child takes over a minute on a loaded machine.
func TestCompileChild(t *testing.T) {
	rt := childRuntime(t, 10*time.Minute, 8<<30)
	if raceOn {
		sharedRuntime(t) // the good plugin is then in the shared cache
		rt = newRuntime(t, Options{CompileCommand: []string{os.Args[0]}, CompileTimeout: 10 * time.Minute, CompileMemoryBytes: 8 << 30})
	}
	p, err := rt.Load(context.Background(), wasmPath("good"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if _, err := p.Prompt(context.Background(), abi.PromptRequest{Query: "hello"}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(rt.cacheDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("the child left nothing in the cache %s: %v", rt.cacheDir, err)
	}
}

// A compile that goes past the memory or the time limit is refused with an
// error naming the limit's key, and nothing is loaded.
func TestCompileChildLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		memory  uint64
		limit   string
		key     string
	}{
		// The good plugin's compile takes well over 16 MB (about 170 MB
		// for a Go plugin), the child's own baseline less.
		{"memory", time.Minute, 16 << 20, "memory", "plugins.compile_memory_mb"},
		{"time", time.Nanosecond, 4 << 30, "time", "plugins.compile_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := childRuntime(t, tc.timeout, tc.memory)
			_, err := rt.Load(context.Background(), wasmPath("good"))
			var le *CompileLimitError
			if !errors.As(err, &le) {
				t.Fatalf("load past the %s limit: %v, want a CompileLimitError", tc.name, err)
			}
			if le.Limit != tc.limit || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %q does not name the %s limit %s", err, tc.limit, tc.key)
			}
			t.Log(err)
		})
	}
}

// A module the compiler rejects is reported with the compiler's reason.
func TestCompileChildError(t *testing.T) {
	// One function whose body adds two i32 with an empty stack.
	body := []byte{0, 0x6a, 0x0b}
	mod := []byte("\x00asm\x01\x00\x00\x00")
	mod = section(mod, 1, []byte{1, 0x60, 0, 0})
	mod = section(mod, 3, []byte{1, 0})
	code := append(uleb([]byte{1}, uint32(len(body))), body...)
	mod = section(mod, 10, code)
	rt := childRuntime(t, time.Minute, 4<<30)
	_, err := rt.LoadBytes(context.Background(), "invalid.wasm", mod)
	if err == nil || !strings.Contains(err.Error(), "compile:") {
		t.Fatalf("an invalid module: %v", err)
	}
	var le *CompileLimitError
	if errors.As(err, &le) {
		t.Fatalf("an invalid module reported as over a limit: %v", err)
	}
	t.Log(err)
}

// A command that cannot start fails the load with a message that names it.
func TestCompileChildMissingCommand(t *testing.T) {
	rt := newRuntime(t, Options{CacheDir: t.TempDir(), CompileCommand: []string{"/nonexistent/mdsa"}})
	_, err := rt.Load(context.Background(), wasmPath("good"))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/mdsa") {
		t.Fatalf("load with a missing compile command: %v", err)
	}
}
