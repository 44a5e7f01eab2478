// Package hostile makes WebAssembly modules built to hurt a host that
// compiles them: the compile-bomb classes of MDSA's adversarial suite (see
// docs/SECURITY.md), for the tests and for mdsa bench hostile. Each module
// is valid WebAssembly (a compiler would accept it given time and memory)
// and small to send.
package hostile

import "strconv"

// Bomb is one compile-bomb module.
type Bomb struct {
	// Name is the class, e.g. "compile-locals".
	Name string
	// What says what the module does to a compiler.
	What string
	// Shape is the shape budget that refuses it (the text the error
	// contains), or "" for a module within every shape budget, which only
	// the compile limits (time, memory) can stop.
	Shape string
	// Wasm is the module.
	Wasm []byte
}

// Bombs returns every compile-bomb class.
func Bombs() []Bomb {
	body := func(b []byte) [][]byte { return [][]byte{b} }
	return []Bomb{
		{Name: "compile-locals", What: "40 functions of 20,000 locals each (800,000 locals)",
			Shape: "locals in all functions", Wasm: Module(repeat(40, localsBody(20_000)))},
		{Name: "compile-nesting", What: "5,000 nested blocks in one function",
			Shape: "nesting of blocks in one function", Wasm: Module(body(nestedBody(5000)))},
		{Name: "compile-brtable", What: "one br_table of 600,000 targets",
			Shape: "br_table targets", Wasm: Module(body(brTableBody(600_000)))},
		{Name: "compile-functions", What: "100,000 empty functions",
			Shape: "functions", Wasm: Module(repeat(100_000, []byte{0, 0x0b}))},
		{Name: "compile-bigbody", What: "one function of 3 MiB of arithmetic",
			Shape: "bytes in one function body", Wasm: Module(body(arithmeticBody(3 << 20)))},
		{Name: "compile-globals", What: "100,000 globals",
			Shape: "globals", Wasm: withGlobals(100_000)},
		{Name: "compile-exports", What: "100,000 exports of one function",
			Shape: "exports", Wasm: withExports(100_000)},
		// Measured in process (wazero 1.12, 2 cores): one such function
		// compiles in 13 s at a 550 MB heap, four in 40 s at 860 MB.
		{Name: "compile-underbudget", What: "4 functions of 40,000 locals, each a loop of 2,000 blocks of 20 conditional branches over them, inside every shape budget",
			Wasm: Module(repeat(4, branchyBody(40_000, 2000, 20)))},
	}
}

// Module is a module of functions of type () -> (), one per body (each a
// complete function body: locals, code, end), with no imports or exports.
func Module(bodies [][]byte) []byte {
	funcs := Uleb(nil, uint32(len(bodies)))
	code := Uleb(nil, uint32(len(bodies)))
	for _, b := range bodies {
		funcs = append(funcs, 0)
		code = Uleb(code, uint32(len(b)))
		code = append(code, b...)
	}
	mod := []byte("\x00asm\x01\x00\x00\x00")
	mod = Section(mod, 1, []byte{1, 0x60, 0, 0})
	mod = Section(mod, 3, funcs)
	return Section(mod, 10, code)
}

// Uleb appends v as unsigned LEB128.
func Uleb(b []byte, v uint32) []byte {
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

// Section appends a section of id with body.
func Section(b []byte, id byte, body []byte) []byte {
	b = append(b, id)
	b = Uleb(b, uint32(len(body)))
	return append(b, body...)
}

func repeat(n int, body []byte) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = body
	}
	return out
}

// localsBody declares n i32 locals and does nothing.
func localsBody(n uint32) []byte {
	return append(Uleb([]byte{1}, n), 0x7f, 0x0b)
}

// nestedBody nests n empty blocks.
func nestedBody(n int) []byte {
	b := []byte{0}
	for range n {
		b = append(b, 0x02, 0x40)
	}
	for range n + 1 {
		b = append(b, 0x0b)
	}
	return b
}

// brTableBody is one br_table of n targets.
func brTableBody(n uint32) []byte {
	b := []byte{0, 0x02, 0x40, 0x41, 0x00, 0x0e}
	b = Uleb(b, n)
	for range n + 1 {
		b = append(b, 0)
	}
	return append(b, 0x0b, 0x0b)
}

// arithmeticBody is about size bytes of i32 arithmetic on one local.
func arithmeticBody(size int) []byte {
	b := []byte{1, 1, 0x7f}                         // one i32 local
	step := []byte{0x20, 0, 0x41, 7, 0x6a, 0x21, 0} // local.get 0; i32.const 7; i32.add; local.set 0
	for len(b) < size {
		b = append(b, step...)
	}
	return append(b, 0x0b)
}

// branchyBody declares locals i32 locals and loops over blocks blocks,
// each of per conditional branches on pseudo-random locals followed by an
// update of two others: SSA construction and register allocation over many
// values live across many blocks, the costliest shape found for wazero's
// compiler within the budgets.
func branchyBody(locals uint32, blocks, per int) []byte {
	b := append(Uleb([]byte{1}, locals), 0x7f)
	b = append(b, 0x03, 0x40) // loop
	x := uint32(1)
	for range blocks {
		b = append(b, 0x02, 0x40) // block
		for range per {
			x = (x*1103515245 + 12345) % locals
			b = append(b, 0x20)
			b = Uleb(b, x)
			b = append(b, 0x0d, 0) // br_if 0
			b = append(b, 0x20)
			b = Uleb(b, (x+1)%locals)
			b = append(b, 0x41, 1, 0x6a, 0x21) // i32.const 1; i32.add; local.set
			b = Uleb(b, (x+2)%locals)
		}
		b = append(b, 0x0b)
	}
	return append(b, 0x20, 0, 0x0d, 0, 0x0b, 0x0b) // local.get 0; br_if 0 (the loop); end; end
}

// withGlobals is a module of n mutable i32 globals.
func withGlobals(n uint32) []byte {
	g := Uleb(nil, n)
	for range n {
		g = append(g, 0x7f, 1, 0x41, 0, 0x0b)
	}
	mod := []byte("\x00asm\x01\x00\x00\x00")
	return Section(mod, 6, g)
}

// withExports is a module of one function exported under n names.
func withExports(n uint32) []byte {
	mod := []byte("\x00asm\x01\x00\x00\x00")
	mod = Section(mod, 1, []byte{1, 0x60, 0, 0})
	mod = Section(mod, 3, []byte{1, 0})
	e := Uleb(nil, n)
	for i := range n {
		name := strconv.AppendUint([]byte{'e'}, uint64(i), 10)
		e = Uleb(e, uint32(len(name)))
		e = append(e, name...)
		e = append(e, 0, 0)
	}
	mod = Section(mod, 7, e)
	return Section(mod, 10, []byte{1, 2, 0, 0x0b})
}
