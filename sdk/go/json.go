package sdk

import (
	"encoding/json"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// A small JSON codec for the export inputs and outputs. Inside the sandbox
// encoding/json's reflection costs about 100 us per small request (wazero's
// termination checks make every Go call and loop iteration expensive); this
// codec scans strings 8 bytes at a time and calls nothing per byte.
//
// The decoders accept only the common, unambiguous form of each input:
// exactly the documented keys, each at most once, string values, no nulls.
// Anything else (unknown or differently-cased keys, duplicates, nulls,
// invalid UTF-8, odd escapes) returns false and the caller falls back to
// encoding/json, so the result is always what encoding/json would decode.
// FuzzDecodeInput checks that equivalence.

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special8 returns a mask with the top bit set in each byte of v that needs
// attention inside a JSON string ('"', '\\', a control byte, a byte >=
// 0x80). Borrows can also set bits above a flagged byte, so only the lowest
// set bit is exact; a zero result is always exact.
func special8(v uint64) uint64 {
	quote := v ^ (lsb * '"')
	bslash := v ^ (lsb * '\\')
	return (((quote - lsb) &^ quote) | ((bslash - lsb) &^ bslash) | (v - lsb*0x20) | v) & msb
}

// load8 reads 8 bytes at p+i, little-endian; the caller guarantees they
// exist. The sandbox allows unaligned loads.
func load8(p unsafe.Pointer, i int) uint64 { return *(*uint64)(unsafe.Add(p, i)) }

// load8Tail reads the n-i < 8 bytes at p+i, zero-padded; n >= 8 or the
// bytes are read one at a time.
func load8Tail(p unsafe.Pointer, i, n int) uint64 {
	if n >= 8 {
		return load8(p, n-8) >> (8 * uint(8-(n-i)))
	}
	var v uint64
	for k := n - 1; k >= i; k-- {
		v = v<<8 | uint64(*(*byte)(unsafe.Add(p, k)))
	}
	return v
}

// nextSpecial returns the index of the first byte at or after i in the n
// bytes at p that needs attention inside a JSON string, or n. In the
// sandbox every loop iteration and taken branch costs a termination check,
// far more than the arithmetic: the loop steps 32 bytes at a time, and the
// last (at most 32) bytes are examined without a loop or a branch.
func nextSpecial(p unsafe.Pointer, i, n int) int {
	if n < 8 {
		return nextSpecialShort(p, i, n)
	}
	for i+32 <= n && special8(load8(p, i))|special8(load8(p, i+8))|special8(load8(p, i+16))|special8(load8(p, i+24)) == 0 {
		i += 32
	}
	// Reads past n are shifted in as 0, a control byte, so they stop the
	// scan.
	lim := n - 8
	t0 := bits.TrailingZeros64(special8(loadAt(p, i, lim))) >> 3
	t1 := bits.TrailingZeros64(special8(loadAt(p, i+8, lim))) >> 3
	t2 := bits.TrailingZeros64(special8(loadAt(p, i+16, lim))) >> 3
	t3 := bits.TrailingZeros64(special8(loadAt(p, i+24, lim))) >> 3
	// t = 8 means no special byte in that chunk: add the next one.
	return min(n, i+t0+t0>>3*(t1+t1>>3*(t2+t2>>3*t3)))
}

// nextSpecialShort is nextSpecial for fewer than 8 bytes: they are read
// from a zero-padded copy.
func nextSpecialShort(p unsafe.Pointer, i, n int) int {
	var buf [8]byte
	copy(buf[:], unsafe.Slice((*byte)(p), n))
	v := load8(unsafe.Pointer(&buf), 0) >> (8 * uint(i))
	return min(n, i+bits.TrailingZeros64(special8(v))>>3)
}

// bytesPtr returns the address of b's first byte (nil for an empty b).
func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// stringPtr returns the address of s's first byte.
func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

type jdec struct {
	b []byte
	i int
	// owned: b is an immutable buffer owned by the call (the wasm layer's
	// input copy), so strings may point into it instead of being copied.
	owned bool
}

func (d *jdec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next skips white space and returns the next byte (0 at the end).
func (d *jdec) next() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *jdec) eat(c byte) bool {
	if d.next() == c {
		d.i++
		return true
	}
	return false
}

// str reads a string. It fails (false) on anything it does not handle
// exactly like encoding/json: invalid UTF-8 and lone surrogates.
func (d *jdec) str() (string, bool) {
	if !d.eat('"') {
		return "", false
	}
	b := d.b
	start := d.i
	i := start
	for {
		i = nextSpecial(bytesPtr(b), i, len(b))
		if i >= len(b) {
			return "", false
		}
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			if d.owned && i > start {
				return unsafe.String(&b[start], i-start), true
			}
			return string(b[start:i]), true
		case c == '\\':
			return d.strEscaped(start, i)
		case c < 0x20:
			return "", false
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return "", false
			}
			i += size
		}
	}
}

// strEscaped continues str after the first backslash at i.
func (d *jdec) strEscaped(start, i int) (string, bool) {
	b := d.b
	out := make([]byte, 0, i-start+32)
	out = append(out, b[start:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			return string(out), true
		case c == '\\':
			if i+1 >= len(b) {
				return "", false
			}
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
				i += 2
			case 'b':
				out, i = append(out, '\b'), i+2
			case 'f':
				out, i = append(out, '\f'), i+2
			case 'n':
				out, i = append(out, '\n'), i+2
			case 'r':
				out, i = append(out, '\r'), i+2
			case 't':
				out, i = append(out, '\t'), i+2
			case 'u':
				r, ok := hex4(b, i+2)
				if !ok {
					return "", false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
						return "", false
					}
					r2, ok := hex4(b, i+2)
					if !ok {
						return "", false
					}
					r = utf16.DecodeRune(r, r2)
					if r == utf8.RuneError {
						return "", false
					}
					i += 6
				}
				out = utf8.AppendRune(out, r)
			default:
				return "", false
			}
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			// After an escape: copy the plain run up to the next byte
			// that needs attention at once (a byte at a time would cost a
			// termination check each in the sandbox).
			j := nextSpecial(bytesPtr(b), i, len(b))
			out = append(out, b[i:j]...)
			i = j
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return "", false
			}
			out = append(out, b[i:i+size]...)
			i += size
		}
	}
	return "", false
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// object calls field for each key of an object; field returns false to
// give up. Duplicate keys are the caller's business.
func (d *jdec) object(field func(key string) bool) bool {
	if !d.eat('{') {
		return false
	}
	if d.eat('}') {
		return true
	}
	for {
		key, ok := d.str()
		if !ok || !d.eat(':') || !field(key) {
			return false
		}
		if d.eat(',') {
			continue
		}
		return d.eat('}')
	}
}

// end reports whether only white space is left.
func (d *jdec) end() bool {
	d.ws()
	return d.i == len(d.b)
}

// fastPromptRequest decodes the common form of a prompt/handle input.
func fastPromptRequest(b []byte, r *abi.PromptRequest, owned bool) bool {
	d := jdec{b: b, owned: owned}
	var seen uint8
	ok := d.object(func(key string) bool {
		switch key {
		case "query":
			if seen&1 != 0 {
				return false
			}
			seen |= 1
			var ok bool
			r.Query, ok = d.str()
			return ok
		case "history":
			if seen&2 != 0 || !d.eat('[') {
				return false
			}
			seen |= 2
			r.History = []abi.Message{}
			if d.eat(']') {
				return true
			}
			for {
				var m abi.Message
				var ms uint8
				if !d.object(func(k string) bool {
					var ok bool
					switch {
					case k == "role" && ms&1 == 0:
						ms |= 1
						m.Role, ok = d.str()
					case k == "content" && ms&2 == 0:
						ms |= 2
						m.Content, ok = d.str()
					}
					return ok
				}) {
					return false
				}
				r.History = append(r.History, m)
				if d.eat(',') {
					continue
				}
				return d.eat(']')
			}
		case "context":
			if seen&4 != 0 || d.next() != '{' {
				return false
			}
			seen |= 4
			r.Context = map[string]string{}
			return d.object(func(k string) bool {
				if _, dup := r.Context[k]; dup {
					return false
				}
				v, ok := d.str()
				r.Context[k] = v
				return ok
			})
		}
		return false
	})
	return ok && d.end()
}

// fastValidateRequest decodes the common form of a validate input.
func fastValidateRequest(b []byte, r *abi.ValidateRequest, owned bool) bool {
	if fastValidateSpans(b, r, owned) {
		return true
	}
	*r = abi.ValidateRequest{}
	d := jdec{b: b, owned: owned}
	var seen uint8
	ok := d.object(func(key string) bool {
		var bit uint8
		var dst *string
		switch key {
		case "query":
			bit, dst = 1, &r.Query
		case "response":
			bit, dst = 2, &r.Response
		case "domain":
			bit, dst = 4, &r.Domain
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		var ok bool
		*dst, ok = d.str()
		return ok
	})
	return ok && d.end()
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as with encoding/json.
func appendString(b []byte, s string) []byte {
	var i int
	if n := len(s); n >= 8 && n <= 32 {
		// Short strings (codes, severities, messages) in one branch-free
		// step: reads past n are shifted in as 0, which stops the scan.
		p, lim := stringPtr(s), n-8
		t0 := bits.TrailingZeros64(special8(loadAt(p, 0, lim))) >> 3
		t1 := bits.TrailingZeros64(special8(loadAt(p, 8, lim))) >> 3
		t2 := bits.TrailingZeros64(special8(loadAt(p, 16, lim))) >> 3
		t3 := bits.TrailingZeros64(special8(loadAt(p, 24, lim))) >> 3
		i = min(n, t0+t0>>3*(t1+t1>>3*(t2+t2>>3*t3)))
	} else {
		i = nextSpecial(stringPtr(s), 0, len(s))
	}
	b = append(b, '"')
	if i == len(s) {
		b = append(b, s...) // the common case: nothing to escape
		return append(b, '"')
	}
	return appendEscaped(b, s, i)
}

// appendEscaped continues appendString at i, the first byte of s that needs
// attention, and closes the string.
func appendEscaped(b []byte, s string, i int) []byte {
	start := 0
	for {
		if i >= len(s) {
			break
		}
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size > 1 {
				i = nextSpecial(stringPtr(s), i+size, len(s))
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			i = nextSpecial(stringPtr(s), i, len(s))
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		i++
		start = i
		i = nextSpecial(stringPtr(s), i, len(s))
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

func appendMessages(b []byte, ms []abi.Message) []byte {
	b = append(b, '[')
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"role":`...)
		b = appendString(b, m.Role)
		b = append(b, `,"content":`...)
		b = appendString(b, m.Content)
		b = append(b, '}')
	}
	return append(b, ']')
}

func isZeroGeneration(g *abi.Generation) bool {
	return g.MaxTokens == 0 && g.Temperature == nil && g.TopP == nil && g.TopK == 0 &&
		g.RepeatPenalty == nil && g.Stop == nil && g.Seed == nil
}

// encodePromptResponse encodes the output of the prompt export.
func encodePromptResponse(r *abi.PromptResponse) ([]byte, error) {
	return appendPromptResponse(nil, r)
}

// appendPromptResponse appends the output of the prompt export to b.
func appendPromptResponse(b []byte, r *abi.PromptResponse) ([]byte, error) {
	n := 64
	for _, m := range r.Messages {
		n += len(m.Content) + len(m.Role) + 32
	}
	if cap(b)-len(b) < n {
		b = append(make([]byte, 0, len(b)+n), b...)
	}
	b = append(b, `{"messages":`...)
	b = appendMessages(b, r.Messages)
	b = append(b, `,"generation":`...)
	if isZeroGeneration(&r.Generation) {
		b = append(b, "{}"...)
	} else {
		g, err := json.Marshal(r.Generation)
		if err != nil {
			return nil, err
		}
		b = append(b, g...)
	}
	return append(b, '}'), nil
}

func appendValidation(b []byte, v *abi.Validation) []byte {
	if n := validationSize(v); cap(b)-len(b) < n {
		b = append(make([]byte, 0, len(b)+n), b...)
	}
	b = append(b, `{"ok":`...)
	b = strconv.AppendBool(b, v.OK)
	b = append(b, `,"score":`...)
	score := v.Score
	if math.IsNaN(score) || math.IsInf(score, 0) {
		score = 0
	}
	b = appendScore(b, score)
	b = append(b, `,"issues":[`...)
	for i, is := range v.Issues {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"code":`...)
		b = appendString(b, is.Code)
		b = append(b, `,"severity":`...)
		b = appendString(b, is.Severity)
		b = append(b, `,"message":`...)
		b = appendString(b, is.Message)
		b = append(b, '}')
	}
	b = append(b, ']')
	if v.Response != nil {
		b = append(b, `,"response":`...)
		b = appendString(b, *v.Response)
	}
	return append(b, '}')
}

// appendScore appends score as strconv.AppendFloat(b, score, 'g', -1, 64)
// does; the usual values (no issue, one warning, one error) are constants,
// since formatting a float costs dozens of termination checks in the
// sandbox.
func appendScore(b []byte, score float64) []byte {
	switch score {
	case 1:
		return append(b, '1')
	case 0:
		if math.Signbit(score) {
			break // -0
		}
		return append(b, '0')
	case 0.85:
		return append(b, "0.85"...)
	case 0.5:
		return append(b, "0.5"...)
	}
	return strconv.AppendFloat(b, score, 'g', -1, 64)
}

func validationSize(v *abi.Validation) int {
	n := 64
	for _, is := range v.Issues {
		n += len(is.Code) + len(is.Severity) + len(is.Message) + 40
	}
	if v.Response != nil {
		n += len(*v.Response) + 16
	}
	return n
}

// encodeValidation encodes the output of the validate export.
func encodeValidation(v *abi.Validation) []byte {
	return appendValidation(nil, v)
}

// encodeHandleResponse encodes the output of the handle export.
func encodeHandleResponse(r *abi.HandleResponse) []byte {
	b := make([]byte, 0, len(r.Response)+validationSize(&r.Validation)+32)
	b = append(b, `{"response":`...)
	b = appendString(b, r.Response)
	b = append(b, `,"validation":`...)
	b = appendValidation(b, &r.Validation)
	return append(b, '}')
}
