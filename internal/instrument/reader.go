package instrument

import (
	"fmt"
	"math"
)

// Error reports why Yields refused a module and where: Offset is the byte
// offset into the input module of the construct that could not be handled.
type Error struct {
	Offset int
	Msg    string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("instrument: %s (at byte offset %d)", e.Msg, e.Offset)
}

// reader reads the input module. Every read is bounded by end, the end of
// the region being decoded (a section, a body, a subsection), never by the
// length of the whole input, so a size that lies cannot make one region's
// decoder consume the next one.
type reader struct {
	b   []byte
	pos int
	end int
}

func (r *reader) errf(at int, format string, args ...any) error {
	return &Error{Offset: at, Msg: fmt.Sprintf(format, args...)}
}

// remaining is the number of bytes left in the current region.
func (r *reader) remaining() int { return r.end - r.pos }

func (r *reader) byte(what string) (byte, error) {
	if r.pos >= r.end {
		return 0, r.errf(r.pos, "unexpected end of %s", what)
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

// u32 decodes an unsigned LEB128 of at most 5 bytes whose last byte uses no
// more than the 4 bits that fit 32 bits: the same rule as wazero's decoder.
// Non-canonical (padded) encodings are accepted, as in wazero.
func (r *reader) u32(what string) (uint32, error) {
	v, n, ok := decodeU32(r.b[r.pos:r.end])
	if !ok {
		if n == 0 {
			return 0, r.errf(r.pos, "unexpected end of %s", what)
		}
		return 0, r.errf(r.pos, "%s overflows 32 bits", what)
	}
	r.pos += n
	return v, nil
}

// decodeU32 decodes an unsigned 32-bit LEB128 at the start of b. On failure n
// is 0 for truncated input and non-zero for an overflow.
func decodeU32(b []byte) (v uint32, n int, ok bool) {
	var shift uint
	for i := 0; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, false
		}
		c := b[i]
		if c < 0x80 {
			if i == 4 && c&0xf0 != 0 {
				return 0, 1, false
			}
			return v | uint32(c)<<shift, i + 1, true
		}
		v |= uint32(c&0x7f) << shift
		shift += 7
	}
	return 0, 1, false
}

// skipSigned skips a signed LEB128 of at most maxBytes bytes (5 for i32, 10
// for i64). Its value is never needed: the bytes are copied as they are.
func (r *reader) skipSigned(maxBytes int, what string) error {
	start := r.pos
	for i := 0; i < maxBytes; i++ {
		if r.pos >= r.end {
			return r.errf(start, "unexpected end of %s", what)
		}
		c := r.b[r.pos]
		r.pos++
		if c < 0x80 {
			return nil
		}
	}
	return r.errf(start, "%s is longer than %d bytes", what, maxBytes)
}

// skipS33 skips a signed 33-bit LEB128 (block types, heap types) the way
// wazero reads one: at most 5 bytes, and a fifth byte ends the number even
// when its continuation bit is set.
func (r *reader) skipS33(what string) error {
	start := r.pos
	for i := 0; i < 5; i++ {
		if r.pos >= r.end {
			return r.errf(start, "unexpected end of %s", what)
		}
		c := r.b[r.pos]
		r.pos++
		if c < 0x80 {
			return nil
		}
	}
	return nil
}

func (r *reader) skip(n int, what string) error {
	if n < 0 || n > r.remaining() {
		return r.errf(r.pos, "%s needs %d bytes but only %d remain", what, n, r.remaining())
	}
	r.pos += n
	return nil
}

// name reads a length-prefixed byte string and returns it (a sub-slice of
// the input, not a copy).
func (r *reader) name(what string) ([]byte, error) {
	at := r.pos
	n, k, ok := decodeU32(r.b[r.pos:r.end])
	if !ok {
		if k == 0 {
			return nil, r.errf(at, "unexpected end of %s length", what)
		}
		return nil, r.errf(at, "%s length overflows 32 bits", what)
	}
	r.pos += k
	if int64(n) > int64(r.remaining()) {
		return nil, r.errf(at, "%s of %d bytes runs past the end of its section (%d bytes left)", what, n, r.remaining())
	}
	s := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return s, nil
}

// count reads a vector length and checks that the vector can fit: each
// element takes at least minSize bytes. This caps every loop and allocation
// driven by a count by the input's length.
func (r *reader) count(what string, minSize int) (uint32, error) {
	at := r.pos
	n, err := r.u32(what)
	if err != nil {
		return 0, err
	}
	if int64(n)*int64(minSize) > int64(r.remaining()) {
		return 0, r.errf(at, "%s %d cannot fit in the %d bytes left", what, n, r.remaining())
	}
	return n, nil
}

// valType skips a value type: a one-byte type or a (ref null? ht) type.
func (r *reader) valType(what string) error {
	at := r.pos
	c, err := r.byte(what)
	if err != nil {
		return err
	}
	switch c {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69:
		return nil
	case 0x63, 0x64:
		return r.skipS33(what)
	}
	return r.errf(at, "invalid %s 0x%02x", what, c)
}

// refType skips the reference type of a table or element segment.
func (r *reader) refType(what string) error {
	at := r.pos
	c, err := r.byte(what)
	if err != nil {
		return err
	}
	switch c {
	case 0x70, 0x6f:
		return nil
	case 0x63, 0x64:
		return r.skipS33(what)
	}
	return r.errf(at, "invalid %s 0x%02x", what, c)
}

// limits skips table or memory limits (flags 0-3: min, optional max, shared).
func (r *reader) limits(what string) error {
	at := r.pos
	flags, err := r.byte(what + " flags")
	if err != nil {
		return err
	}
	if flags > 3 {
		return r.errf(at, "unsupported %s flags 0x%02x", what, flags)
	}
	if _, err := r.u32(what + " minimum"); err != nil {
		return err
	}
	if flags&1 != 0 {
		if _, err := r.u32(what + " maximum"); err != nil {
			return err
		}
	}
	return nil
}

// appendU32 appends the canonical unsigned LEB128 encoding of v.
func appendU32(out []byte, v uint32) []byte {
	for v >= 0x80 {
		out = append(out, byte(v)|0x80)
		v >>= 7
	}
	return append(out, byte(v))
}

// appendS32 appends the canonical signed LEB128 encoding of v.
func appendS32(out []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

// putU32 writes the canonical unsigned LEB128 encoding of v at the start of
// dst, which has room for 5 bytes, and returns its length.
func putU32(dst []byte, v uint32) int {
	n := 0
	for v >= 0x80 {
		dst[n] = byte(v) | 0x80
		v >>= 7
		n++
	}
	dst[n] = byte(v)
	return n + 1
}

// reserve is the room left for a size prefix before content whose size is
// not yet known; finish moves the content back to close the gap.
const reserve = 5

// open appends room for a size prefix and returns where it starts.
func open(out []byte) ([]byte, int) {
	return append(out, 0, 0, 0, 0, 0), len(out)
}

// finish writes the canonical size of the content that follows the prefix
// opened at mark and closes the unused part of the prefix.
func finish(out []byte, mark int, at int, what string) ([]byte, error) {
	size := len(out) - mark - reserve
	if size > math.MaxUint32 {
		return nil, &Error{Offset: at, Msg: fmt.Sprintf("rewritten %s is larger than 4 GiB", what)}
	}
	n := putU32(out[mark:mark+reserve], uint32(size))
	if n != reserve {
		copy(out[mark+n:], out[mark+reserve:])
		out = out[:len(out)-(reserve-n)]
	}
	return out, nil
}
