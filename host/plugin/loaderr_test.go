package plugin

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/internal/hostile"
)

var (
	uleb    = hostile.Uleb
	section = hostile.Section
)

// A load error quotes the module (here a 200 KB import name) only up to a
// bound: the admin API returns it and the log records it.
func TestLoadErrorBounded(t *testing.T) {
	const envModule = "extism:host/env" // exists, so wazero names the missing function
	name := strings.Repeat("n", 200_000)
	types := []byte{1, 0x60, 0, 0} // one type: () -> ()
	var imports []byte
	imports = uleb(imports, 1)
	imports = uleb(imports, uint32(len(envModule)))
	imports = append(imports, envModule...)
	imports = uleb(imports, uint32(len(name)))
	imports = append(imports, name...)
	imports = append(imports, 0x00, 0x00) // func, type 0
	mod := []byte("\x00asm\x01\x00\x00\x00")
	mod = section(mod, 1, types)
	mod = section(mod, 2, imports)

	rt, _, _ := sharedRuntime(t)
	_, err := rt.LoadBytes(context.Background(), "huge-import.wasm", mod)
	if err == nil {
		t.Fatal("a module importing an unknown function loaded")
	}
	if n := len(err.Error()); n > maxLoadError+200 {
		t.Fatalf("load error of %d bytes", n)
	}
	t.Logf("%.300s", err)
}

// Compile bombs are refused by their shape before any compiler sees them
// (thousands of locals in many functions, deeply nested blocks, a huge
// br_table, ...); the one inside every shape budget is stopped by the
// compile child's limits, and the host never compiles it itself.
func TestCompileBombsRefused(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	child := childRuntime(t, DefaultCompileTimeout, 256<<20)
	for _, b := range hostile.Bombs() {
		t.Run(b.Name, func(t *testing.T) {
			if b.Shape == "" {
				_, err := child.LoadBytes(context.Background(), b.Name+".wasm", b.Wasm)
				var le *CompileLimitError
				if !errors.As(err, &le) {
					t.Fatalf("%s (%d bytes) in a compile child: %v, want a CompileLimitError", b.Name, len(b.Wasm), err)
				}
				t.Log(err)
				return
			}
			_, err := rt.LoadBytes(context.Background(), b.Name+".wasm", b.Wasm)
			if err == nil || !strings.Contains(err.Error(), "module over budget: "+b.Shape) {
				t.Fatalf("%s (%d bytes): %v", b.Name, len(b.Wasm), err)
			}
		})
	}
}
