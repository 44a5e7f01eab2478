package instrument

import (
	"math"
)

// The stack bound.
//
// wazero runs a guest on a stack of its own that it doubles whenever a call
// needs more, up to about 50 MB before it reports a stack overflow; the last
// doubling allocates 100 MB more, all of it outside the memory the host
// budgets for plugins, once per concurrent call. Yields therefore keeps a
// count of the stack a call holds: every function adds an estimate of its
// frame to an added global on entry and takes it off on the way out, and
// calls ImportModule.StackImportName when the count passes
// Budget.StackBytes.
//
// The estimate of a frame, in units of 16 bytes (the widest wasm value), is
// 2 (return address, frame pointer) plus the function's parameters and
// locals plus the most operand stack values it can hold at once: what the
// compiler may have to spill around a call. The operand stack height comes
// from each instruction's pops and pushes, tracked through blocks the way
// the validator tracks them.
//
// Every way out of a function passes the decrement: the body is wrapped in a
// block of the function's results, so that a branch to the function's own
// label lands at the decrement, return becomes a branch to that block, and a
// tail call decrements first. A trap leaves the count high, which does not
// matter to MDSA: an instance whose call failed is never called again.

// stackUnit is the size in bytes of one unit of the stack estimate.
const stackUnit = 16

// maxStackUnits keeps the count and a frame's estimate inside a signed
// 32-bit constant.
const maxStackUnits = 1 << 30

// sig is what Yields needs of a function type: parameter and result counts,
// and where the results' encoding is (a vector's elements, after its count).
type sig struct {
	params, results uint32
	resAt, resEnd   int
}

// addType appends the function type () -> results (results: the encoding
// of the result types, count first) unless an identical one was added
// before, and returns its index.
func (m *module) addType(results []byte) (uint32, error) {
	enc := append([]byte{0x60, 0}, results...)
	if len(results) == 0 {
		enc = append(enc, 0)
	}
	if i, ok := m.added[string(enc)]; ok {
		return i, nil
	}
	if uint64(m.numTypes)+uint64(m.numNew) >= math.MaxUint32 {
		return 0, &Error{Msg: "too many types to add one"}
	}
	idx := m.numTypes + m.numNew
	if m.added == nil {
		m.added = make(map[string]uint32)
	}
	m.added[string(enc)] = idx
	m.newTypes = append(m.newTypes, enc...)
	m.numNew++
	return idx, nil
}

// blockTypes picks, for the type of every defined function, the block type
// of the block Yields wraps its body in: the function's results without its
// parameters. A function with two or more results and parameters needs a
// type () -> results, which is found among the module's types or added.
func (m *module) blockTypes() error {
	m.blockType = make(map[uint32][]byte)
	var noParams map[string]int64 // results encoding -> type index
	for _, t := range m.funcTypes[m.numFuncImps:] {
		if _, ok := m.blockType[t]; ok {
			continue
		}
		s := m.sigs[t]
		res := m.b[s.resAt:s.resEnd]
		switch {
		case s.results == 0:
			m.blockType[t] = []byte{0x40}
		case s.results == 1:
			m.blockType[t] = res
		case s.params == 0:
			m.blockType[t] = appendS64(nil, int64(t))
		default:
			// A type of the module with these results and no parameters,
			// found through a map built once: a hostile module may have
			// tens of thousands of types and functions.
			if noParams == nil {
				noParams = make(map[string]int64)
				for j, o := range m.sigs {
					if o.params != 0 || o.results < 2 {
						continue
					}
					if k := string(m.b[o.resAt:o.resEnd]); noParams[k] == 0 {
						noParams[k] = int64(j) + 1 // 0: none
					}
				}
			}
			idx := noParams[string(res)] - 1
			if idx < 0 {
				enc := appendU32(nil, s.results)
				added, err := m.addType(append(enc, res...))
				if err != nil {
					return err
				}
				idx = int64(added)
			}
			m.blockType[t] = appendS64(nil, idx)
		}
	}
	return nil
}

// appendS64 appends the signed LEB128 encoding of v (a block type's type
// index is a signed 33-bit number).
func appendS64(out []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

// appendConst5 appends i32.const v with v in a 5-byte signed LEB128 (valid,
// if not minimal), to be patched with putConst5 once v is known.
func appendConst5(out []byte, v int32) []byte {
	out = append(out, 0x41, 0, 0, 0, 0, 0)
	putConst5(out[len(out)-5:], v)
	return out
}

func putConst5(dst []byte, v int32) {
	u := uint32(v)
	for i := 0; i < 4; i++ {
		dst[i] = byte(u&0x7f) | 0x80
		u >>= 7
	}
	dst[4] = byte(u & 0x7f) // v >= 0 here, so bits 28-31 fill the last byte
}

// stackEnter appends the depth increment and check that starts every
// function, with a placeholder for the frame's estimate; it returns where
// the estimate's five bytes are.
func (m *module) stackEnter(out []byte) ([]byte, int) {
	out = append(out, 0x23) // global.get $d
	out = appendU32(out, m.depth)
	out = appendConst5(out, 0)
	at := len(out) - 5
	out = append(out, 0x6a, 0x24) // i32.add; global.set $d
	out = appendU32(out, m.depth)
	out = append(out, 0x23) // global.get $d
	out = appendU32(out, m.depth)
	out = append(out, 0x41) // i32.const max
	out = appendS32(out, m.stackMax)
	out = append(out, 0x4b, 0x04, 0x40, 0x10) // i32.gt_u; if; call $stack_exhausted
	out = appendU32(out, m.stackIdx)
	return append(out, 0x00, 0x0b), at // unreachable; end
}

// stackLeave appends the depth decrement, with a placeholder for the
// frame's estimate whose position it records in m.leaves, to be patched
// once the body has been read.
func (m *module) stackLeave(out []byte) []byte {
	out = append(out, 0x23) // global.get $d
	out = appendU32(out, m.depth)
	out = appendConst5(out, 0)
	m.leaves = append(m.leaves, len(out)-5)
	out = append(out, 0x6b, 0x24) // i32.sub; global.set $d
	return appendU32(out, m.depth)
}

// effect is an instruction's pops and pushes of operand stack values.
type effect struct{ pop, push int8 }

// opEffects are the effects of the one-byte opcodes whose effect does not
// depend on an immediate; control instructions and calls are handled
// apart.
var opEffects = func() (t [256]effect) {
	set := func(lo, hi int, pop, push int8) {
		for i := lo; i <= hi; i++ {
			t[i] = effect{pop, push}
		}
	}
	set(0x0d, 0x0d, 1, 0) // br_if
	set(0x1a, 0x1a, 1, 0) // drop
	set(0x1b, 0x1c, 3, 1) // select
	set(0x20, 0x20, 0, 1) // local.get
	set(0x21, 0x21, 1, 0) // local.set
	set(0x22, 0x22, 1, 1) // local.tee
	set(0x23, 0x23, 0, 1) // global.get
	set(0x24, 0x24, 1, 0) // global.set
	set(0x25, 0x25, 1, 1) // table.get
	set(0x26, 0x26, 2, 0) // table.set
	set(0x28, 0x35, 1, 1) // loads
	set(0x36, 0x3e, 2, 0) // stores
	set(0x3f, 0x3f, 0, 1) // memory.size
	set(0x40, 0x40, 1, 1) // memory.grow
	set(0x41, 0x44, 0, 1) // constants
	set(0x45, 0xc4, 2, 1) // binary numeric and comparisons, then the unary ones:
	set(0x45, 0x45, 1, 1) // i32.eqz
	set(0x50, 0x50, 1, 1) // i64.eqz
	set(0x67, 0x69, 1, 1) // i32.clz, ctz, popcnt
	set(0x79, 0x7b, 1, 1) // i64.clz, ctz, popcnt
	set(0x8b, 0x91, 1, 1) // f32 unary
	set(0x99, 0x9f, 1, 1) // f64 unary
	set(0xa7, 0xc4, 1, 1) // conversions, reinterpretations, sign extension
	set(0xd0, 0xd0, 0, 1) // ref.null
	set(0xd1, 0xd1, 1, 1) // ref.is_null
	set(0xd2, 0xd2, 0, 1) // ref.func
	return t
}()

// vecEffects are the effects of the SIMD (0xFD) instructions.
var vecEffects = func() (t [256]effect) {
	for i := range t {
		t[i] = effect{2, 1} // most are binary
	}
	un := effect{1, 1}
	for _, r := range [][2]int{
		{0x00, 0x0a}, {0x0f, 0x16}, {0x18, 0x19}, {0x1b, 0x1b}, {0x1d, 0x1d}, {0x1f, 0x1f}, {0x21, 0x21},
		{0x4d, 0x4d}, {0x53, 0x53}, {0x5c, 0x64}, {0x67, 0x6a}, {0x74, 0x75}, {0x7a, 0x7a}, {0x7c, 0x81},
		{0x83, 0x84}, {0x87, 0x8a}, {0x94, 0x94}, {0xa0, 0xa1}, {0xa3, 0xa4}, {0xa7, 0xaa}, {0xc0, 0xc1},
		{0xc3, 0xc4}, {0xc7, 0xca}, {0xe0, 0xe1}, {0xe3, 0xe3}, {0xec, 0xed}, {0xef, 0xef}, {0xf8, 0xff},
	} {
		for i := r[0]; i <= r[1]; i++ {
			t[i] = un
		}
	}
	t[0x0b] = effect{2, 0} // v128.store
	t[0x0c] = effect{0, 1} // v128.const
	t[0x52] = effect{3, 1} // v128.bitselect
	for i := 0x58; i <= 0x5b; i++ {
		t[i] = effect{2, 0} // store lane
	}
	return t
}()

// miscEffect is the effect of the 0xFC instruction sub.
func miscEffect(sub uint32) effect {
	switch {
	case sub <= 0x07: // saturating truncations
		return effect{1, 1}
	case sub == 0x09 || sub == 0x0d: // data.drop, elem.drop
		return effect{}
	case sub == 0x0f: // table.grow
		return effect{2, 1}
	case sub == 0x10: // table.size
		return effect{0, 1}
	}
	return effect{3, 0} // memory.init/copy/fill, table.init/copy/fill
}

// atomicEffect is the effect of the 0xFE instruction sub.
func atomicEffect(sub byte) effect {
	switch {
	case sub == 0x00: // memory.atomic.notify
		return effect{2, 1}
	case sub <= 0x02: // memory.atomic.wait32/64
		return effect{3, 1}
	case sub == 0x03: // atomic.fence
		return effect{}
	case sub <= 0x16: // loads
		return effect{1, 1}
	case sub <= 0x1d: // stores
		return effect{2, 0}
	case sub <= 0x47: // read-modify-write
		return effect{2, 1}
	}
	return effect{3, 1} // compare-exchange
}

// heights follows the operand stack height through a function body, as the
// validator does, and keeps the highest: an upper bound, since where an
// instruction is not known exactly it assumes fewer pops.
type heights struct {
	h, max int
	frames []hframe
}

// hframe is an open block: the height below it, its parameter and result
// counts.
type hframe struct{ base, params, results int }

func (t *heights) reset(results int) {
	t.h, t.max = 0, 0
	t.frames = append(t.frames[:0], hframe{results: results})
}

func (t *heights) op(e effect) { t.apply(int(e.pop), int(e.push)) }

// apply pops pop values (not below the innermost block) and pushes push.
func (t *heights) apply(pop, push int) {
	t.h = max(t.frames[len(t.frames)-1].base, t.h-pop) + push
	t.max = max(t.max, t.h)
}

// unreachable: the rest of the block is not reached; its stack is
// polymorphic, so start again from the block's base.
func (t *heights) unreachable() { t.h = t.frames[len(t.frames)-1].base }

// enter opens a block, loop or if (cond: pop the condition first).
func (t *heights) enter(params, results int, cond bool) {
	if cond {
		t.apply(1, 0)
	}
	base := max(t.frames[len(t.frames)-1].base, t.h-params)
	t.frames = append(t.frames, hframe{base: base, params: params, results: results})
	t.h = base + params
	t.max = max(t.max, t.h)
}

func (t *heights) elseBranch() {
	f := t.frames[len(t.frames)-1]
	t.h = f.base + f.params
}

// end closes the innermost block.
func (t *heights) end() {
	f := t.frames[len(t.frames)-1]
	if len(t.frames) > 1 {
		t.frames = t.frames[:len(t.frames)-1]
	}
	t.h = f.base + f.results
	t.max = max(t.max, t.h)
}
