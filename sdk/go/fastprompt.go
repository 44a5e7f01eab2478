package sdk

import (
	"math/bits"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// The default prompt export without decoding: the strings of the input are
// copied into the output as they are, still JSON-escaped. A JSON string
// that was valid in the input is valid in the output and decodes to the
// same text, so the host sees exactly what the decoding path produces (see
// FuzzFastPrompt). Inside the sandbox this saves the allocations, the
// decoding and the re-encoding of every string, and all the per-string
// loops that go with them.
//
// fastPrompt accepts only the form the host sends: one object with the keys
// "query", "history" and "context", each at most once, string values, no
// nulls, valid UTF-8, history entries with "role" and "content" only.
// Anything else (and an empty or blank-looking query, whose error message
// the decoding path words) returns false, and the caller decodes the input
// normally.

// span is the text of a JSON string in the input, between its quotes.
type span struct{ start, end int32 }

// Roles of history entries that the default prompt passes on.
const (
	roleDropped uint8 = iota
	roleUser
	roleAssistant
)

type msgSpan struct {
	content span
	role    uint8
}

type ctxSpan struct{ key, value span }

// Limits of the fast path; larger inputs take the decoding path.
const (
	fastMaxHistory = 64
	fastMaxContext = 16
)

// scanString checks the JSON string whose text starts at b[i] (after the
// opening quote) and returns the index of its closing quote and whether it
// holds escapes. It refuses (ok false) what the host could not decode back
// to the same text: control bytes, invalid UTF-8, unknown escapes. Each
// iteration examines 32 bytes without a branch (see nextSpecial); a short
// plain string costs one.
func scanString(b []byte, i int) (end int, esc, ok bool) {
	n := len(b)
	if n < 8 {
		return scanStringSlow(b, i)
	}
	p, lim := bytesPtr(b), n-8
	for {
		t0 := bits.TrailingZeros64(special8(loadAt(p, i, lim))) >> 3
		t1 := bits.TrailingZeros64(special8(loadAt(p, i+8, lim))) >> 3
		t2 := bits.TrailingZeros64(special8(loadAt(p, i+16, lim))) >> 3
		t3 := bits.TrailingZeros64(special8(loadAt(p, i+24, lim))) >> 3
		i += t0 + t0>>3*(t1+t1>>3*(t2+t2>>3*t3))
		if i >= n {
			return 0, false, false // bytes past the end read as 0: stop
		}
		switch c := b[i]; {
		case c == '"':
			return i, esc, true
		case c < 0x20:
			return 0, false, false
		case c != '\\' && c < utf8.RuneSelf:
			continue // after 32 plain bytes
		}
		var e bool
		if i, e, ok = specialByte(b, i); !ok {
			return 0, false, false
		}
		esc = esc || e
	}
}

// specialByte validates the escape or the non-ASCII rune at b[i] and
// returns the index after it and whether it was an escape.
func specialByte(b []byte, i int) (next int, esc, ok bool) {
	if b[i] == '\\' {
		if i+1 >= len(b) {
			return 0, false, false
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			return i + 2, true, true
		case 'u':
			// Any \uXXXX decodes the same on both sides (a lone
			// surrogate becomes U+FFFD either way).
			if _, ok := hex4(b, i+2); !ok {
				return 0, false, false
			}
			return i + 6, true, true
		}
		return 0, false, false
	}
	if b[i] < 0x20 {
		return 0, false, false
	}
	r, size := utf8.DecodeRune(b[i:])
	if r == utf8.RuneError && size <= 1 {
		return 0, false, false
	}
	return i + size, false, true
}

// scanStringSlow is scanString for inputs of fewer than 8 bytes.
func scanStringSlow(b []byte, i int) (end int, esc, ok bool) {
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			return i, esc, true
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			var e bool
			if i, e, ok = specialByte(b, i); !ok {
				return 0, false, false
			}
			esc = esc || e
		default:
			i++
		}
	}
	return 0, false, false
}

// Object keys as little-endian words, compared without a call (a string
// switch calls memequal, whose loop costs termination checks).
var (
	keyQuery    = keyConst("query")
	keyHistory  = keyConst("history")
	keyContext  = keyConst("context")
	keyRole     = keyConst("role")
	keyContent  = keyConst("content")
	keyResponse = keyConst("response")
	keyDomain   = keyConst("domain")
	valUser     = keyConst("user")
	valAsst     = keyConst("assistant"[:8]) // with the length, see keyIs
)

func keyConst(k string) uint64 {
	var v uint64
	for i := len(k) - 1; i >= 0; i-- {
		v = v<<8 | uint64(k[i])
	}
	return v
}

// keyWord returns the text of s (at most 8 bytes) as a little-endian word,
// or 0 when it is longer or b is too short to read it that way.
func keyWord(b []byte, s span) uint64 {
	n := int(s.end - s.start)
	if n > 8 || len(b) < 8 {
		return 0
	}
	return loadAt(bytesPtr(b), int(s.start), len(b)-8) & lowBytes(n)
}

// skipWS skips JSON white space. Callers test b[i] <= ' ' first so that
// the common compact input costs no loop.
func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// ws skips white space at b[i], if any.
func ws(b []byte, i int) int {
	if i < len(b) && b[i] <= ' ' {
		return skipWS(b, i)
	}
	return i
}

// stringAt scans the JSON string that must start at b[i] (its opening
// quote) and returns its text and the index after the closing quote.
func stringAt(b []byte, i int) (s span, next int, esc, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return span{}, 0, false, false
	}
	end, esc, ok := scanString(b, i+1)
	return span{int32(i + 1), int32(end)}, end + 1, esc, ok
}

// promptInput is the located strings of a prompt input.
type promptInput struct {
	query   span
	history [fastMaxHistory]msgSpan
	context [fastMaxContext]ctxSpan
	nhist   int
	nctx    int
}

// parsePromptInput locates the strings of a prompt input (see fastPrompt
// for the accepted form).
func parsePromptInput(b []byte, in *promptInput) bool {
	i := ws(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = ws(b, i+1)
	var seen uint8
	for {
		key, next, esc, ok := stringAt(b, i)
		if !ok || esc {
			return false
		}
		i = ws(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = ws(b, i+1)
		switch keyWord(b, key) {
		case keyQuery:
			if seen&1 != 0 {
				return false
			}
			seen |= 1
			if in.query, i, _, ok = stringAt(b, i); !ok {
				return false
			}
		case keyHistory:
			if seen&2 != 0 {
				return false
			}
			seen |= 2
			if i, ok = parseHistory(b, i, in); !ok {
				return false
			}
		case keyContext:
			if seen&4 != 0 {
				return false
			}
			seen |= 4
			if i, ok = parseContext(b, i, in); !ok {
				return false
			}
		default:
			return false
		}
		i = ws(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == ',' {
			i = ws(b, i+1)
			continue
		}
		if b[i] != '}' {
			return false
		}
		return seen&1 != 0 && ws(b, i+1) == len(b)
	}
}

// parseHistory reads the history array at b[i].
func parseHistory(b []byte, i int, in *promptInput) (int, bool) {
	if i >= len(b) || b[i] != '[' {
		return 0, false
	}
	i = ws(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		if in.nhist == fastMaxHistory || i >= len(b) || b[i] != '{' {
			return 0, false
		}
		m := &in.history[in.nhist]
		*m = msgSpan{}
		in.nhist++
		i = ws(b, i+1)
		var seen uint8
		for {
			key, next, esc, ok := stringAt(b, i)
			if !ok || esc {
				return 0, false
			}
			i = ws(b, next)
			if i >= len(b) || b[i] != ':' {
				return 0, false
			}
			i = ws(b, i+1)
			var val span
			switch keyWord(b, key) {
			case keyRole:
				if seen&1 != 0 {
					return 0, false
				}
				seen |= 1
				if val, i, esc, ok = stringAt(b, i); !ok || esc {
					return 0, false
				}
				switch {
				case keyWord(b, val) == valUser && val.end-val.start == 4:
					m.role = roleUser
				case val.end-val.start == 9 && keyWord(b, span{val.start, val.start + 8}) == valAsst && b[val.start+8] == 't':
					m.role = roleAssistant
				}
			case keyContent:
				if seen&2 != 0 {
					return 0, false
				}
				seen |= 2
				if m.content, i, _, ok = stringAt(b, i); !ok {
					return 0, false
				}
			default:
				return 0, false
			}
			i = ws(b, i)
			if i >= len(b) {
				return 0, false
			}
			if b[i] == ',' {
				i = ws(b, i+1)
				continue
			}
			if b[i] != '}' {
				return 0, false
			}
			i = ws(b, i+1)
			break
		}
		if i >= len(b) {
			return 0, false
		}
		if b[i] == ',' {
			i = ws(b, i+1)
			continue
		}
		if b[i] != ']' {
			return 0, false
		}
		return i + 1, true
	}
}

// parseContext reads the context object at b[i]. Keys must be unescaped;
// a repeated key is kept twice and the last one wins, as in encoding/json.
func parseContext(b []byte, i int, in *promptInput) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = ws(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if in.nctx == fastMaxContext {
			return 0, false
		}
		kv := &in.context[in.nctx]
		in.nctx++
		var next int
		var esc, ok bool
		if kv.key, next, esc, ok = stringAt(b, i); !ok || esc {
			return 0, false
		}
		i = ws(b, next)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		if kv.value, i, _, ok = stringAt(b, ws(b, i+1)); !ok {
			return 0, false
		}
		i = ws(b, i)
		if i >= len(b) {
			return 0, false
		}
		if b[i] == ',' {
			i = ws(b, i+1)
			continue
		}
		if b[i] != '}' {
			return 0, false
		}
		return i + 1, true
	}
}

// appendJSON appends the rendering of t, JSON-escaped, taking the query
// and context values from the input b.
func (t template) appendJSON(out, b []byte, in *promptInput) []byte {
	for k := range t {
		s := &t[k]
		switch s.kind {
		case segText:
			out = append(out, s.json...)
		case segQuery:
			out = append(out, b[in.query.start:in.query.end]...)
		case segContext:
			if v, ok := in.lookup(b, s.key); ok {
				out = append(out, b[v.start:v.end]...)
			} else {
				out = append(out, s.json...)
			}
		}
	}
	return out
}

// lookup returns the non-empty value of context key key.
func (in *promptInput) lookup(b []byte, key string) (span, bool) {
	for k := in.nctx - 1; k >= 0; k-- {
		kv := &in.context[k]
		if string(b[kv.key.start:kv.key.end]) == key {
			return kv.value, kv.value.end > kv.value.start
		}
	}
	return span{}, false
}

// nonBlank reports whether the JSON string text q surely holds something
// other than white space (strings.TrimSpace would not empty it). It looks
// only as far as the first such character; an escape before it gives up
// (false), leaving the decision to the decoding path.
func nonBlank(q []byte) bool {
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			i++
		case c == '\\':
			return false
		case c < utf8.RuneSelf:
			return true
		default:
			r, size := utf8.DecodeRune(q[i:])
			if !unicode.IsSpace(r) {
				return true
			}
			i += size
		}
	}
	return false
}

// fastPrompt runs the default prompt export on the raw input b, appending
// the JSON output to dst. It returns false when the input needs the
// decoding path.
func (c *Compiled) fastPrompt(b, dst []byte) ([]byte, bool) {
	var in promptInput
	if !parsePromptInput(b, &in) {
		return nil, false
	}
	// A blank query is an error, which the decoding path words.
	if !nonBlank(b[in.query.start:in.query.end]) {
		return nil, false
	}
	hist := in.history[:in.nhist]
	if c.p.MaxHistory > 0 && len(hist) > c.p.MaxHistory {
		hist = hist[len(hist)-c.p.MaxHistory:]
	}
	n := 64 + c.jsonSize + len(b) + 40*len(hist)
	out := dst[:0]
	if cap(out) < n {
		out = make([]byte, 0, n)
	}
	out = append(out, `{"messages":[`...)
	if len(c.system) > 0 {
		mark := len(out)
		out = append(out, `{"role":"system","content":"`...)
		body := len(out)
		out = c.system.appendJSON(out, b, &in)
		if len(out) == body {
			out = out[:mark] // the system prompt rendered empty
		} else {
			out = append(out, `"},`...)
		}
	}
	for k := range hist {
		m := &hist[k]
		if m.role == roleDropped || m.content.end == m.content.start {
			continue
		}
		if m.role == roleUser {
			out = append(out, `{"role":"user","content":"`...)
		} else {
			out = append(out, `{"role":"assistant","content":"`...)
		}
		out = append(out, b[m.content.start:m.content.end]...)
		out = append(out, `"},`...)
	}
	out = append(out, `{"role":"user","content":"`...)
	out = c.user.appendJSON(out, b, &in)
	out = append(out, `"}],"generation":{}}`...)
	return out, true
}

// fastValidateSpans decodes a validate input of the form the host sends
// (see fastPrompt) by locating its strings: unescaped ones need no
// decoding (and no copy when the buffer is owned), escaped ones go through
// jdec. It returns false for anything else; the caller then decodes with
// fastValidateRequest or encoding/json.
func fastValidateSpans(b []byte, r *abi.ValidateRequest, owned bool) bool {
	i := ws(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = ws(b, i+1)
	var seen uint8
	for {
		key, next, esc, ok := stringAt(b, i)
		if !ok || esc {
			return false
		}
		i = ws(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = ws(b, i+1)
		var bit uint8
		var dst *string
		switch keyWord(b, key) {
		case keyQuery:
			bit, dst = 1, &r.Query
		case keyResponse:
			bit, dst = 2, &r.Response
		case keyDomain:
			bit, dst = 4, &r.Domain
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		val, next, esc, ok := stringAt(b, i)
		switch {
		case !ok:
			return false
		case esc:
			d := jdec{b: b, i: i, owned: owned}
			if *dst, ok = d.str(); !ok {
				return false
			}
		case owned && val.end > val.start:
			*dst = unsafe.String(&b[val.start], int(val.end-val.start))
		default:
			*dst = string(b[val.start:val.end])
		}
		i = ws(b, next)
		if i >= len(b) {
			return false
		}
		if b[i] == ',' {
			i = ws(b, i+1)
			continue
		}
		return b[i] == '}' && ws(b, i+1) == len(b)
	}
}
