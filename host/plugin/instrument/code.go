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
func (m *module) body(b []byte, p, end int, out []byte) ([]byte, error) {
	last := p
	depth := 0 // open blocks, loops and ifs
	closed := false
	var err error
	for p < end {
		at := p
		op := b[p]
		p++
		switch opKinds[op] {
		case kNone:
		case kEnd:
			if depth == 0 {
				if p != end {
					return nil, &Error{Offset: p, Msg: "bytes after the end of the function body"}
				}
				closed = true
			}
			depth--
		case kIndex:
			if p < end && b[p] < 0x80 { // the common one-byte index, inline
				p++
			} else {
				p, err = skipU32(b, p, end, at)
			}
		case kMemarg:
			if p+1 < end && b[p] < 0x80 && b[p+1] < 0x80 {
				p += 2
			} else {
				p, err = memarg(b, p, end, at)
			}
		case kI32:
			p, err = skipSLEB(b, p, end, at, 5)
		case kLoop:
			if depth++; depth > m.shape.Nesting {
				m.shape.Nesting = depth
				if err := over("nesting of blocks in one function", depth, m.budget.Nesting); err != nil {
					return nil, err
				}
			}
			if p, err = skipS33(b, p, end, at); err == nil {
				out = append(out, b[last:p]...)
				out = append(out, m.prologue...)
				last = p
			}
		case kBlock:
			if depth++; depth > m.shape.Nesting {
				m.shape.Nesting = depth
				if err := over("nesting of blocks in one function", depth, m.budget.Nesting); err != nil {
					return nil, err
				}
			}
			p, err = skipS33(b, p, end, at)
		case kGlobal:
			var v uint32
			if v, p, err = u32At(b, p, end, at); err == nil && v >= m.counter {
				// The countdown global would make the reference valid.
				return nil, &Error{Offset: at, Msg: fmt.Sprintf("global index %d out of range", v)}
			}
		case kFunc:
			var v uint32
			var q int
			if v, q, err = u32At(b, p, end, at); err == nil {
				if uint64(v) >= m.numFuncsT {
					return nil, &Error{Offset: at, Msg: fmt.Sprintf("function index %d out of range", v)}
				}
				if m.addImport && v >= m.shiftFrom {
					if v == math.MaxUint32 {
						return nil, &Error{Offset: at, Msg: "function index 4294967295 cannot be shifted"}
					}
					out = append(out, b[last:p]...)
					out = appendU32(out, v+1)
					last = q
				}
				p = q
			}
		case kIndex2:
			if p, err = skipU32(b, p, end, at); err == nil {
				p, err = skipU32(b, p, end, at)
			}
		case kI64:
			p, err = skipSLEB(b, p, end, at, 10)
		case kF32:
			p, err = skipN(b, p, end, at, 4)
		case kF64:
			p, err = skipN(b, p, end, at, 8)
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
		case kMisc:
			var bulk bool
			if p, bulk, err = m.misc(b, p, end, at); err == nil && bulk {
				out = append(out, b[last:at]...) // up to the operation
				out = append(out, m.bulk...)
				last = at
			}
		case kVec:
			p, err = skipVec(b, p, end, at)
		case kAtomic:
			p, err = skipAtomic(b, p, end, at)
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

// misc skips a 0xFC instruction: the sub-opcode is a u32 LEB128 and must
// fit a byte, as in wazero. bulk reports the operations whose cost grows
// with an operand (memory.init/copy/fill, table.init/copy/fill).
func (m *module) misc(b []byte, p, end, at int) (next int, bulk bool, err error) {
	sub, p, err := u32At(b, p, end, at)
	if err != nil {
		return p, false, err
	}
	bulk = sub == 0x08 || sub == 0x0a || sub == 0x0b || sub == 0x0c || sub == 0x0e || sub == 0x11
	switch {
	case sub <= 0x07: // saturating truncations
		return p, false, nil
	case sub == 0x09 || sub == 0x0b || sub == 0x0d || (sub >= 0x0f && sub <= 0x11):
		// data.drop, memory.fill, elem.drop, table.grow/size/fill: one index
		p, err = skipU32(b, p, end, at)
		return p, bulk, err
	case sub == 0x08 || sub == 0x0a || sub == 0x0c || sub == 0x0e:
		// memory.init, memory.copy, table.init, table.copy: two indices
		if p, err = skipU32(b, p, end, at); err != nil {
			return p, false, err
		}
		p, err = skipU32(b, p, end, at)
		return p, bulk, err
	}
	return p, false, &Error{Offset: at, Msg: fmt.Sprintf("unsupported opcode 0xfc 0x%02x", sub)}
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
