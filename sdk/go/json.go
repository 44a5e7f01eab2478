package sdk

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

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

// plain8 reports whether none of the 8 bytes in v needs attention inside a
// JSON string: no '"', no '\\', no control byte, no byte >= 0x80.
func plain8(v uint64) bool {
	quote := v ^ (lsb * '"')
	bslash := v ^ (lsb * '\\')
	special := ((quote - lsb) &^ quote) | ((bslash - lsb) &^ bslash) | (v - lsb*0x20) | v
	return special&msb == 0
}

type jdec struct {
	b []byte
	i int
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
		for i+8 <= len(b) && plain8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			return "", false
		}
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			return string(b[start:i]), true
		case c == '\\':
			return d.strEscaped(start, i)
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			i++
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
			out = append(out, c)
			i++
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
func fastPromptRequest(b []byte, r *abi.PromptRequest) bool {
	d := jdec{b: b}
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
func fastValidateRequest(b []byte, r *abi.ValidateRequest) bool {
	d := jdec{b: b}
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
	b = append(b, '"')
	start := 0
	i := 0
	for {
		for i+8 <= len(s) && plain8(loadString8(s, i)) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size > 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
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
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

func loadString8(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

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
	n := 64
	for _, m := range r.Messages {
		n += len(m.Content) + len(m.Role) + 32
	}
	b := make([]byte, 0, n)
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
	b = append(b, `{"ok":`...)
	b = strconv.AppendBool(b, v.OK)
	b = append(b, `,"score":`...)
	score := v.Score
	if math.IsNaN(score) || math.IsInf(score, 0) {
		score = 0
	}
	b = strconv.AppendFloat(b, score, 'g', -1, 64)
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
	return appendValidation(make([]byte, 0, validationSize(v)), v)
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
