package plugin

import (
	"context"
	"strings"
	"testing"
)

// uleb appends v as unsigned LEB128.
func uleb(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// section appends a section of id with body.
func section(b []byte, id byte, body []byte) []byte {
	b = append(b, id)
	b = uleb(b, uint32(len(body)))
	return append(b, body...)
}

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

// Compile bombs are refused by their shape before any compiler sees them:
// thousands of locals in many functions, deeply nested blocks, a huge
// br_table. Each module is a few KB.
func TestCompileBombsRefused(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	module := func(nFuncs int, body []byte) []byte {
		funcs := uleb(nil, uint32(nFuncs))
		code := uleb(nil, uint32(nFuncs))
		for range nFuncs {
			funcs = append(funcs, 0)
			code = uleb(code, uint32(len(body)))
			code = append(code, body...)
		}
		mod := []byte("\x00asm\x01\x00\x00\x00")
		mod = section(mod, 1, []byte{1, 0x60, 0, 0})
		mod = section(mod, 3, funcs)
		return section(mod, 10, code)
	}
	// 40 functions of 20,000 locals each: 800,000 locals.
	locals := append(uleb([]byte{1}, 20_000), 0x7f, 0x0b)
	// 5,000 nested blocks.
	var nested []byte
	nested = append(nested, 0)
	for range 5000 {
		nested = append(nested, 0x02, 0x40)
	}
	for range 5001 {
		nested = append(nested, 0x0b)
	}
	// One br_table of 600,000 targets.
	table := []byte{0, 0x02, 0x40, 0x41, 0x00, 0x0e}
	table = uleb(table, 600_000)
	for range 600_001 {
		table = append(table, 0)
	}
	table = append(table, 0x0b, 0x0b)
	for _, c := range []struct {
		name string
		mod  []byte
		want string
	}{
		{"locals", module(40, locals), "locals in all functions"},
		{"nesting", module(1, nested), "nesting of blocks in one function"},
		{"br_table", module(1, table), "br_table targets"},
	} {
		_, err := rt.LoadBytes(context.Background(), c.name+".wasm", c.mod)
		if err == nil || !strings.Contains(err.Error(), "module over budget: "+c.want) {
			t.Errorf("%s bomb (%d bytes): %v", c.name, len(c.mod), err)
		}
	}
}
