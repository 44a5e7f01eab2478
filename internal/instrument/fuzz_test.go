package instrument

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// FuzzYields checks that Yields never panics, that its errors are *Error
// with an offset inside the input, and that whenever wazero compiles the
// input, Yields accepts it and wazero compiles the output too.
//
// wazero v1.12's decoder allocates vectors as large as their declared counts
// before reading them (a 15-byte import section can make it allocate 14 GB),
// so the fuzzer only hands wazero inputs whose structure checkStructure (or
// Yields itself) has bounded, with custom sections stripped (they do not
// affect validity, and the name section is another such allocation).
func FuzzYields(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.wasm")
	// The example plugins, where built, give the fuzzer real compiler output.
	files = append(files, findPlugins(f, false)...)
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint32(3))
	}
	f.Add([]byte("\x00asm\x01\x00\x00\x00"), uint32(0))
	ctx := context.Background()
	features := api.CoreFeaturesV2 | experimental.CoreFeaturesThreads | experimental.CoreFeaturesTailCall
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().
		WithCoreFeatures(features).WithDebugInfoEnabled(false))
	f.Cleanup(func() { rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, in []byte, interval uint32) {
		out, err := Yields(in, interval)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Offset < 0 || e.Offset > len(in) {
				t.Fatalf("bad error: %v", err)
			}
			if refusedOnPurpose(err) || checkStructure(in) != nil {
				return
			}
		}
		if !compiles(ctx, rt, stripCustom(t, in)) {
			return
		}
		if err != nil {
			t.Fatalf("wazero compiles the module but Yields refused it: %v", err)
		}
		if cm, cerr := rt.CompileModule(ctx, out); cerr != nil {
			t.Fatalf("wazero compiles the module but not Yields' output: %v", cerr)
		} else {
			cm.Close(ctx)
		}
	})
}

// stripCustom returns the module without its custom sections.
func stripCustom(t *testing.T, in []byte) []byte {
	secs, err := frame(in)
	if err != nil {
		t.Fatalf("frame failed after checkStructure passed: %v", err)
	}
	out := append([]byte(nil), in[:8]...)
	for _, s := range secs {
		if s.id != secCustom {
			out = append(out, in[s.at:s.end]...)
		}
	}
	return out
}

// compiles reports whether wazero compiles b. A panic inside wazero (its own
// bug, not this package's) counts as not compiling.
func compiles(ctx context.Context, rt wazero.Runtime, b []byte) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	cm, err := rt.CompileModule(ctx, b)
	if err != nil {
		return false
	}
	cm.Close(ctx)
	return true
}

// refusedOnPurpose tells the refusals of modules wazero compiles that are by
// design: relocatable objects, clashes with the yield import, and functions
// with more than MaxLocals locals.
func refusedOnPurpose(err error) bool {
	for _, s := range []string{"relocatable", "already imports", "locals"} {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}
