package instrument

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// testdata reads a module from testdata.
func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustYields instruments b and fails the test on error.
func mustYields(t testing.TB, b []byte, interval uint32) []byte {
	t.Helper()
	out, err := Yields(b, interval)
	if err != nil {
		t.Fatalf("Yields: %v", err)
	}
	return out
}

// newRuntime returns a wazero runtime (compiler engine unless interp) that
// closes modules when their context is done, with a "mdsa:sched" host
// module whose yield counts its calls.
func newRuntime(t testing.TB, interp bool, features api.CoreFeatures) (wazero.Runtime, *atomic.Int64) {
	t.Helper()
	ctx := context.Background()
	cfg := wazero.NewRuntimeConfigCompiler()
	if interp {
		cfg = wazero.NewRuntimeConfigInterpreter()
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg.WithCoreFeatures(features).WithCloseOnContextDone(true))
	t.Cleanup(func() { rt.Close(ctx) })
	calls := new(atomic.Int64)
	if err := schedModule(ctx, rt, func() { calls.Add(1) }); err != nil {
		t.Fatal(err)
	}
	return rt, calls
}

// errStackExhausted is what the test hosts' stack import panics with.
var errStackExhausted = errors.New("stack exhausted")

// schedModule instantiates the ImportModule host module in rt: yield runs
// yield, the stack import panics with errStackExhausted.
func schedModule(ctx context.Context, rt wazero.Runtime, yield func()) error {
	_, err := rt.NewHostModuleBuilder(ImportModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) { yield() }), nil, nil).
		Export(ImportName).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) { panic(errStackExhausted) }), nil, nil).
		Export(StackImportName).
		Instantiate(ctx)
	return err
}

var instanceSeq atomic.Int64

// instantiate instantiates b under a fresh name.
func instantiate(t testing.TB, rt wazero.Runtime, b []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("m%d", instanceSeq.Add(1))
	mod, err := rt.InstantiateWithConfig(ctx, b, wazero.NewModuleConfig().WithName(name))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	t.Cleanup(func() { mod.Close(ctx) })
	return mod
}

// call calls an export and returns its first result.
func call(t testing.TB, mod api.Module, name string, args ...uint64) uint64 {
	t.Helper()
	f := mod.ExportedFunction(name)
	if f == nil {
		t.Fatalf("no export %q", name)
	}
	res, err := f.Call(context.Background(), args...)
	if err != nil {
		t.Fatalf("%s%v: %v", name, args, err)
	}
	if len(res) == 0 {
		return 0
	}
	return res[0]
}

// Binary builders for hand-made modules.

func uleb(v uint64) []byte {
	var out []byte
	for v >= 0x80 {
		out = append(out, byte(v)|0x80)
		v >>= 7
	}
	return append(out, byte(v))
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func sec(id byte, content ...[]byte) []byte {
	c := cat(content...)
	return cat([]byte{id}, uleb(uint64(len(c))), c)
}

func vector(items ...[]byte) []byte {
	return cat(uleb(uint64(len(items))), cat(items...))
}

func str(s string) []byte { return cat(uleb(uint64(len(s))), []byte(s)) }

func wasmModule(sections ...[]byte) []byte {
	return cat([]byte("\x00asm\x01\x00\x00\x00"), cat(sections...))
}

// body encodes a function body without locals.
func body(code ...byte) []byte {
	b := cat([]byte{0}, code)
	return cat(uleb(uint64(len(b))), b)
}

// rawSection is a section as the tests' own parser sees it.
type rawSection struct {
	id      byte
	name    string // custom sections
	content []byte
}

// sections splits a module into sections, independently of the package's
// own decoder.
func sections(t testing.TB, b []byte) []rawSection {
	t.Helper()
	var out []rawSection
	p := 8
	for p < len(b) {
		id := b[p]
		p++
		size, n, err := readU32(b[p:])
		if err != nil {
			t.Fatalf("section size at %d: %v", p, err)
		}
		p += n
		content := b[p : p+int(size)]
		p += int(size)
		s := rawSection{id: id, content: content}
		if id == 0 {
			l, n, _ := readU32(content)
			s.name = string(content[n : n+int(l)])
			s.content = content[n+int(l):]
		}
		out = append(out, s)
	}
	return out
}

func readU32(b []byte) (uint32, int, error) {
	var v uint32
	for i := 0; i < 5 && i < len(b); i++ {
		v |= uint32(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errors.New("bad LEB128")
}

// sectionCount returns the vector count at the start of the section with id,
// or -1 when the module has no such section.
func sectionCount(t testing.TB, b []byte, id byte) int {
	t.Helper()
	for _, s := range sections(t, b) {
		if s.id == id && id != 0 {
			n, _, err := readU32(s.content)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	return -1
}

// functionNames parses subsection 1 of the "name" section.
func functionNames(t testing.TB, b []byte) map[uint32]string {
	t.Helper()
	for _, s := range sections(t, b) {
		if s.id != 0 || s.name != "name" {
			continue
		}
		c := s.content
		for len(c) > 0 {
			id := c[0]
			size, n, err := readU32(c[1:])
			if err != nil {
				t.Fatal(err)
			}
			sub := c[1+n : 1+n+int(size)]
			c = c[1+n+int(size):]
			if id != 1 {
				continue
			}
			names := map[uint32]string{}
			count, n, _ := readU32(sub)
			sub = sub[n:]
			for i := uint32(0); i < count; i++ {
				idx, n, _ := readU32(sub)
				sub = sub[n:]
				l, n, _ := readU32(sub)
				names[idx] = string(sub[n : n+int(l)])
				sub = sub[n+int(l):]
			}
			if len(sub) != 0 {
				t.Fatalf("%d bytes left over in the function names", len(sub))
			}
			return names
		}
	}
	return nil
}

// localNames parses subsection 2 of the "name" section: function index ->
// local index -> name.
func localNames(t testing.TB, b []byte) map[uint32]map[uint32]string {
	t.Helper()
	for _, s := range sections(t, b) {
		if s.id != 0 || s.name != "name" {
			continue
		}
		c := s.content
		for len(c) > 0 {
			id := c[0]
			size, n, _ := readU32(c[1:])
			sub := c[1+n : 1+n+int(size)]
			c = c[1+n+int(size):]
			if id != 2 {
				continue
			}
			out := map[uint32]map[uint32]string{}
			count, n, _ := readU32(sub)
			sub = sub[n:]
			for i := uint32(0); i < count; i++ {
				fn, n, _ := readU32(sub)
				sub = sub[n:]
				k, n, _ := readU32(sub)
				sub = sub[n:]
				out[fn] = map[uint32]string{}
				for j := uint32(0); j < k; j++ {
					li, n, _ := readU32(sub)
					sub = sub[n:]
					l, n, _ := readU32(sub)
					out[fn][li] = string(sub[n : n+int(l)])
					sub = sub[n+int(l):]
				}
			}
			return out
		}
	}
	return nil
}
