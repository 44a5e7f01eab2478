package instrument

import (
	"fmt"
	"math"
)

// Immediate layouts of the one-byte opcodes.
const (
	kBad     = iota // not an instruction Yields supports
	kNone           // no immediate
	kBlock          // block type (block, if)
	kLoop           // block type; the countdown goes after it
	kIndex          // one u32 (labels, locals, globals, tables, memory.size/grow's reserved byte)
	kIndex2         // two u32 (call_indirect, return_call_indirect: type, table)
	kBrTable        // vec(u32) u32
	kFunc           // function index (call, return_call, ref.func)
	kSelectT        // vec(value type)
	kMemarg         // align u32, offset u32
	kI32            // signed LEB128, 32 bits
	kI64            // signed LEB128, 64 bits
	kF32            // 4 bytes
	kF64            // 8 bytes
	kMisc           // 0xFC prefix
	kVec            // 0xFD prefix
	kAtomic         // 0xFE prefix
	kEnd            // end
	kGlobal         // global index (global.get, global.set)
)

var opKinds = func() (t [256]uint8) {
	set := func(lo, hi int, k uint8) {
		for i := lo; i <= hi; i++ {
			t[i] = k
		}
	}
	set(0x00, 0x01, kNone) // unreachable, nop
	set(0x02, 0x02, kBlock)
	set(0x03, 0x03, kLoop)
	set(0x04, 0x04, kBlock)
	set(0x05, 0x05, kNone) // else
	set(0x0b, 0x0b, kEnd)
	set(0x0c, 0x0d, kIndex)
	set(0x0e, 0x0e, kBrTable)
	set(0x0f, 0x0f, kNone) // return
	set(0x10, 0x10, kFunc)
	set(0x11, 0x11, kIndex2)
	set(0x12, 0x12, kFunc)   // return_call
	set(0x13, 0x13, kIndex2) // return_call_indirect
	set(0x1a, 0x1b, kNone)   // drop, select
	set(0x1c, 0x1c, kSelectT)
	set(0x20, 0x26, kIndex) // local.*, table.get/set
	set(0x23, 0x24, kGlobal)
	set(0x28, 0x3e, kMemarg)
	set(0x3f, 0x40, kIndex) // memory.size/grow
	set(0x41, 0x41, kI32)
	set(0x42, 0x42, kI64)
	set(0x43, 0x43, kF32)
	set(0x44, 0x44, kF64)
	set(0x45, 0xc4, kNone)  // numeric, including sign extension
	set(0xd0, 0xd0, kIndex) // ref.null heap type (as wazero reads it: u32)
	set(0xd1, 0xd1, kNone)  // ref.is_null
	set(0xd2, 0xd2, kFunc)  // ref.func
	set(0xfc, 0xfc, kMisc)
	set(0xfd, 0xfd, kVec)
	set(0xfe, 0xfe, kAtomic)
	return t
}()

// Immediate layouts of the SIMD (0xFD) opcodes.
const (
	vBad     = iota
	vNone    // no immediate
	vMemarg  // loads, stores
	vMemLane // memarg and a lane byte (load/store lane)
	vLane    // a lane byte (extract/replace lane)
	vBytes16 // 16 bytes (v128.const, i8x16.shuffle)
)

var vecKinds = func() (t [256]uint8) {
	set := func(lo, hi int, k uint8) {
		for i := lo; i <= hi; i++ {
			t[i] = k
		}
	}
	set(0x00, 0xff, vNone)
	set(0x00, 0x0b, vMemarg)
	set(0x0c, 0x0d, vBytes16)
	set(0x15, 0x22, vLane)
	set(0x54, 0x5b, vMemLane)
	set(0x5c, 0x5d, vMemarg)
	// Unassigned in the SIMD proposal as wazero implements it.
	for _, op := range []int{0x9a, 0xa2, 0xa5, 0xa6, 0xaf, 0xb0, 0xb2, 0xb3, 0xb4, 0xbb, 0xc2, 0xc5, 0xc6, 0xcf, 0xd0, 0xd2, 0xd3, 0xd4, 0xe2, 0xee} {
		t[op] = vBad
	}
	return t
}()

// body copies the instructions of one function body, b[p:end], to out,
// inserting the countdown after each loop's block type and shifting function
// indices. It decodes every instruction's immediates the way wazero does, so
// it finds the same instruction boundaries wazero's validator and compiler
// find. Runs of unchanged input are copied in one append.
//
// The caller has opened the block that wraps the body (see stack.go): body
// turns return into a branch to it, puts the stack decrement before tail
// calls and after the wrapper's end, and follows the operand stack height
// in m.h; m.leaves gets where the decrements' frame estimates are, to be
// patched.
func (m *module) body(b []byte, p, end int, out []byte) ([]byte, error) {
	last := p
	depth := 0 // open blocks, loops and ifs
	closed := false
	m.leaves = m.leaves[:0] // the decrements' positions (stackLeave)
	var err error
	h := &m.h
	for p < end {
		at := p
		op := b[p]
		p++
		switch opKinds[op] {
		case kNone:
			switch op {
			case 0x00: // unreachable
				h.unreachable()
			case 0x05: // else
				h.elseBranch()
			case 0x0f: // return: a branch to the wrapper block
				out = append(out, b[last:at]...)
				out = appendU32(append(out, 0x0c), uint32(depth))
				last = p
				h.unreachable()
			default:
				h.op(opEffects[op])
			}
		case kEnd:
			h.end()
			if depth == 0 {
				if p != end {
					return nil, &Error{Offset: p, Msg: "bytes after the end of the function body"}
				}
				closed = true
				// End the wrapper, leave, end the function.
				out = append(out, b[last:p]...)
				out = append(m.stackLeave(out), 0x0b)
				last = p
			}
			depth--
		case kIndex:
			if p < end && b[p] < 0x80 { // the common one-byte index, inline
				p++
			} else {
				p, err = skipU32(b, p, end, at)
			}
			if op == 0x0c { // br
				h.unreachable()
			} else {
				h.op(opEffects[op])
			}
		case kMemarg:
			if p+1 < end && b[p] < 0x80 && b[p+1] < 0x80 {
				p += 2
			} else {
				p, err = memarg(b, p, end, at)
			}
			h.op(opEffects[op])
		case kI32:
			p, err = skipSLEB(b, p, end, at, 5)
			h.op(opEffects[op])
		case kLoop, kBlock:
			if depth++; depth > m.shape.Nesting {
				m.shape.Nesting = depth
				if err := over("nesting of blocks in one function", depth, m.budget.Nesting); err != nil {
					return nil, err
				}
			}
			var params, results int
			if params, results, p, err = m.blockSig(b, p, end, at); err == nil {
				h.enter(params, results, op == 0x04)
				if op == 0x03 {
					out = append(out, b[last:p]...)
					out = append(out, m.prologue...)
					last = p
				}
			}
		case kGlobal:
			var v uint32
			if v, p, err = u32At(b, p, end, at); err == nil && v >= m.counter {
				// The countdown global would make the reference valid.
				return nil, &Error{Offset: at, Msg: fmt.Sprintf("global index %d out of range", v)}
			}
			h.op(opEffects[op])
		case kFunc:
			var v uint32
			var q int
			if v, q, err = u32At(b, p, end, at); err == nil {
				if uint64(v) >= m.numFuncsT {
					return nil, &Error{Offset: at, Msg: fmt.Sprintf("function index %d out of range", v)}
				}
				if op == 0x12 { // return_call: leave first
					out = append(out, b[last:at]...)
					out = m.stackLeave(out)
					last = at
				}
				if m.nAdd > 0 && v >= m.shiftFrom {
					if v > math.MaxUint32-m.nAdd {
						return nil, &Error{Offset: at, Msg: fmt.Sprintf("function index %d cannot be shifted", v)}
					}
					out = append(out, b[last:p]...)
					out = appendU32(out, v+m.nAdd)
					last = q
				}
				p = q
				switch op {
				case 0x10: // call
					s := m.sigs[m.funcTypes[v]]
					h.apply(int(s.params), int(s.results))
				case 0x12:
					h.unreachable()
				default: // ref.func
					h.op(opEffects[op])
				}
			}
		case kIndex2:
			var t uint32
			if t, p, err = u32At(b, p, end, at); err == nil {
				p, err = skipU32(b, p, end, at)
			}
			if err == nil && t >= m.numTypes {
				return nil, &Error{Offset: at, Msg: fmt.Sprintf("type index %d out of range", t)}
			}
			if err == nil {
				if op == 0x13 { // return_call_indirect: leave first
					out = append(out, b[last:at]...)
					out = m.stackLeave(out)
					last = at
					h.unreachable()
				} else {
					s := m.sigs[t]
					h.apply(1+int(s.params), int(s.results))
				}
			}
		case kI64:
			p, err = skipSLEB(b, p, end, at, 10)
			h.op(opEffects[op])
		case kF32:
			p, err = skipN(b, p, end, at, 4)
			h.op(opEffects[op])
		case kF64:
			p, err = skipN(b, p, end, at, 8)
			h.op(opEffects[op])
		case kBrTable:
			var n uint32
			if n, p, err = u32At(b, p, end, at); err == nil {
				if int64(n) > int64(end-p) {
					return nil, &Error{Offset: at, Msg: "br_table label count runs past the end of the body"}
				}
				m.shape.BrTableTargets += int(n) + 1
				if err := over("br_table targets", m.shape.BrTableTargets, m.budget.BrTableTargets); err != nil {
					return nil, err
				}
				for i := uint32(0); i <= n && err == nil; i++ { // n labels and the default
					p, err = skipU32(b, p, end, at)
				}
			}
			h.unreachable()
		case kSelectT:
			var n uint32
			if n, p, err = u32At(b, p, end, at); err == nil {
				if int64(n) > int64(end-p) {
					return nil, &Error{Offset: at, Msg: "select type count runs past the end of the body"}
				}
				r := reader{b: b, pos: p, end: end}
				for i := uint32(0); i < n && err == nil; i++ {
					err = r.valType("select type")
				}
				p = r.pos
			}
			h.op(opEffects[op])
		case kMisc:
			var sub uint32
			if p, sub, err = m.misc(b, p, end, at); err == nil {
				if isBulk(sub) {
					out = append(out, b[last:at]...) // up to the operation
					out = append(out, m.bulk...)
					last = at
				}
				h.op(miscEffect(sub))
			}
		case kVec:
			p, err = skipVec(b, p, end, at)
			if err == nil {
				h.op(vecEffects[b[at+1]])
			}
		case kAtomic:
			p, err = skipAtomic(b, p, end, at)
			if err == nil {
				h.op(atomicEffect(b[at+1]))
			}
		default:
			return nil, &Error{Offset: at, Msg: fmt.Sprintf("unsupported opcode 0x%02x%s", op, opName(op))}
		}
		if err != nil {
			return nil, err
		}
	}
	if !closed {
		return nil, &Error{Offset: end, Msg: "function body ends inside a block (missing end)"}
	}
	return append(out, b[last:end]...), nil
}

// blockSig reads a block type at b[p:end] and returns the block's parameter
// and result counts.
func (m *module) blockSig(b []byte, p, end, at int) (params, results, next int, err error) {
	if p < end && b[p] < 0x80 && b[p] != 0x63 && b[p] != 0x64 { // one byte
		switch c := b[p]; {
		case c == 0x40:
			return 0, 0, p + 1, nil
		case c >= 0x40: // a value type (negative)
			return 0, 1, p + 1, nil
		default: // a type index below 64
			if uint32(c) >= m.numTypes {
				return 0, 0, p, &Error{Offset: at, Msg: fmt.Sprintf("block type index %d out of range", c)}
			}
			s := m.sigs[c]
			return int(s.params), int(s.results), p + 1, nil
		}
	}
	v, q, err := s33(b, p, end, at)
	if err != nil {
		return 0, 0, q, err
	}
	switch {
	case v == -29 || v == -28: // (ref null ht), (ref ht): a heap type follows
		_, q, err = s33(b, q, end, at)
		return 0, 1, q, err
	case v == -64:
		return 0, 0, q, nil
	case v < 0:
		return 0, 1, q, nil
	case v >= int64(m.numTypes):
		return 0, 0, q, &Error{Offset: at, Msg: fmt.Sprintf("block type index %d out of range", v)}
	}
	s := m.sigs[v]
	return int(s.params), int(s.results), q, nil
}

// opName names the unsupported opcodes that come from known proposals.
func opName(op byte) string {
	switch op {
	case 0x06, 0x07, 0x08, 0x09, 0x0a, 0x18, 0x19, 0x1f:
		return " (exception handling)"
	case 0x14, 0x15, 0xd3, 0xd4, 0xd5, 0xd6:
		return " (typed function references)"
	case 0xfb:
		return " (garbage collection)"
	}
	return ""
}

func truncated(at int) error {
	return &Error{Offset: at, Msg: "truncated instruction immediate"}
}

// u32At decodes an unsigned 32-bit LEB128 at b[p:end].
func u32At(b []byte, p, end, at int) (uint32, int, error) {
	if p < end && b[p] < 0x80 {
		return uint32(b[p]), p + 1, nil
	}
	v, n, ok := decodeU32(b[p:end])
	if !ok {
		if n == 0 {
			return 0, p, truncated(at)
		}
		return 0, p, &Error{Offset: at, Msg: "instruction immediate overflows 32 bits"}
	}
	return v, p + n, nil
}

func skipU32(b []byte, p, end, at int) (int, error) {
	if p < end && b[p] < 0x80 {
		return p + 1, nil
	}
	_, q, err := u32At(b, p, end, at)
	return q, err
}

// skipSLEB skips a signed LEB128 of at most max bytes.
func skipSLEB(b []byte, p, end, at, max int) (int, error) {
	for i := 0; i < max; i++ {
		if p >= end {
			return p, truncated(at)
		}
		c := b[p]
		p++
		if c < 0x80 {
			return p, nil
		}
	}
	return p, &Error{Offset: at, Msg: "signed immediate is too long"}
}

// skipS33 skips a block type: a signed 33-bit LEB128 as wazero reads it. The
// values -29 and -28 (0x63 and 0x64, (ref null ht) and (ref ht)) are followed
// by a heap type.
func skipS33(b []byte, p, end, at int) (int, error) {
	if p < end && b[p] < 0x80 && b[p] != 0x63 && b[p] != 0x64 {
		return p + 1, nil
	}
	v, p, err := s33(b, p, end, at)
	if err != nil || (v != -29 && v != -28) {
		return p, err
	}
	_, p, err = s33(b, p, end, at)
	return p, err
}

// s33 decodes a signed 33-bit LEB128 the way wazero's DecodeInt33AsInt64
// does: at most 5 bytes, and the fifth byte ends the number whatever its
// continuation bit. Its overflow checks are left out: they reject input
// wazero rejects too, and leaving them out does not move a boundary.
func s33(b []byte, p, end, at int) (int64, int, error) {
	var v int64
	var shift uint
	var c byte
	for i := 0; i < 5; i++ {
		if p >= end {
			return 0, p, truncated(at)
		}
		c = b[p]
		p++
		v |= int64(c&0x7f) << shift
		shift += 7
		if c < 0x80 {
			break
		}
	}
	if shift < 33 && c&0x40 != 0 {
		v |= -1 << shift
	}
	v &= 1<<33 - 1
	if v&(1<<32) != 0 {
		v -= 1 << 33
	}
	return v, p, nil
}

func skipN(b []byte, p, end, at, n int) (int, error) {
	if end-p < n {
		return p, truncated(at)
	}
	return p + n, nil
}

// isBulk reports the 0xFC operations whose cost grows with an operand
// (memory.init/copy/fill, table.init/copy/fill).
func isBulk(sub uint32) bool {
	return sub == 0x08 || sub == 0x0a || sub == 0x0b || sub == 0x0c || sub == 0x0e || sub == 0x11
}

// misc skips a 0xFC instruction: the sub-opcode is a u32 LEB128 and must
// fit a byte, as in wazero. It returns the sub-opcode.
func (m *module) misc(b []byte, p, end, at int) (next int, sub uint32, err error) {
	sub, p, err = u32At(b, p, end, at)
	if err != nil {
		return p, sub, err
	}
	switch {
	case sub <= 0x07: // saturating truncations
		return p, sub, nil
	case sub == 0x09 || sub == 0x0b || sub == 0x0d || (sub >= 0x0f && sub <= 0x11):
		// data.drop, memory.fill, elem.drop, table.grow/size/fill: one index
		p, err = skipU32(b, p, end, at)
		return p, sub, err
	case sub == 0x08 || sub == 0x0a || sub == 0x0c || sub == 0x0e:
		// memory.init, memory.copy, table.init, table.copy: two indices
		if p, err = skipU32(b, p, end, at); err != nil {
			return p, sub, err
		}
		p, err = skipU32(b, p, end, at)
		return p, sub, err
	}
	return p, sub, &Error{Offset: at, Msg: fmt.Sprintf("unsupported opcode 0xfc 0x%02x", sub)}
}

// skipVec skips a 0xFD (SIMD) instruction. wazero reads the sub-opcode as one
// byte, not as a LEB128; the canonical two-byte encodings of sub-opcodes
// 0x80-0xff end in 0x01, which both readings then treat the same way (wazero
// sees a nop), so reading one byte keeps Yields in step with wazero.
func skipVec(b []byte, p, end, at int) (int, error) {
	if p >= end {
		return p, truncated(at)
	}
	sub := b[p]
	p++
	switch vecKinds[sub] {
	case vNone:
		return p, nil
	case vMemarg:
		return memarg(b, p, end, at)
	case vMemLane:
		p, err := memarg(b, p, end, at)
		if err != nil {
			return p, err
		}
		return skipN(b, p, end, at, 1)
	case vLane:
		return skipN(b, p, end, at, 1)
	case vBytes16:
		return skipN(b, p, end, at, 16)
	}
	return p, &Error{Offset: at, Msg: fmt.Sprintf("unsupported opcode 0xfd 0x%02x", sub)}
}

// skipAtomic skips a 0xFE (threads) instruction; wazero reads its sub-opcode as
// one byte.
func skipAtomic(b []byte, p, end, at int) (int, error) {
	if p >= end {
		return p, truncated(at)
	}
	sub := b[p]
	p++
	switch {
	case sub == 0x03: // atomic.fence: one reserved byte
		return skipN(b, p, end, at, 1)
	case sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e):
		return memarg(b, p, end, at)
	}
	return p, &Error{Offset: at, Msg: fmt.Sprintf("unsupported opcode 0xfe 0x%02x", sub)}
}

func memarg(b []byte, p, end, at int) (int, error) {
	p, err := skipU32(b, p, end, at)
	if err != nil {
		return p, err
	}
	return skipU32(b, p, end, at)
}
