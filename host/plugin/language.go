package plugin

import "bytes"

// Language names the source language a WebAssembly module was compiled
// from, as far as its bytes tell: "Go", "TinyGo", "Rust", "C", "C++",
// "C/C++" (built by clang or Emscripten, with no more said), "Zig",
// "AssemblyScript", another name the module's producers section gives
// (cleaned and cut to 32 bytes), or "" when it cannot tell.
//
// It reads, in this order of trust:
//
//   - the standard "producers" custom section: its "language" field
//     (DWARF language names, e.g. "Rust", "C11", "C_plus_plus_14"), else
//     its "processed-by" field (e.g. "rustc", "Go cmd/compile", "clang");
//     TinyGo in processed-by wins over a "Go" language;
//   - a "go:buildid" or "go.buildid" custom section, which the Go
//     toolchain writes into every wasip1 module;
//   - markers of a runtime library in the data section, for modules
//     stripped of their custom sections: AssemblyScript's standard
//     library file names ("~lib/….ts" as UTF-16 string literals, also in
//     the "name" section when one is kept) and the Rust standard library's
//     panic locations ("library/core/src/….rs").
//
// wasm is not trusted: every length is checked against what is left,
// LEB128 numbers are read to 5 bytes at most, and the walk stops at the
// first malformed byte with what it has learnt so far. Language never
// panics and allocates only for a name it returns that is not one of its
// own constants. It must be given a module's original bytes: modules
// rewritten by the runtime lose their custom sections.
func Language(wasm []byte) string {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], wasmMagic) || !bytes.Equal(wasm[4:8], wasmVersion1) {
		return ""
	}
	var f langFacts
	rest := wasm[8:]
	for len(rest) > 0 {
		id := rest[0]
		size, n := uleb32(rest[1:])
		if n == 0 || uint64(size) > uint64(len(rest)-1-n) {
			break // malformed or truncated: stop with what is known
		}
		body := rest[1+n : 1+n+int(size)]
		rest = rest[1+n+int(size):]
		switch id {
		case 0:
			nameLen, m := uleb32(body)
			if m == 0 || uint64(nameLen) > uint64(len(body)-m) {
				break // this section is malformed; its size still frames the next
			}
			name, payload := body[m:m+int(nameLen)], body[m+int(nameLen):]
			switch string(name) {
			case "producers":
				f.producers(payload)
			case "go:buildid", "go.buildid":
				f.goBuildID = true
			case "name":
				f.names = payload
			}
		case sectionData:
			f.data = body
		}
	}
	return f.decide()
}

var wasmVersion1 = []byte{1, 0, 0, 0}

const sectionData = 11

// maxLanguageName bounds a language name Language copies out of a module.
const maxLanguageName = 32

// langFacts is what the section walk learnt.
type langFacts struct {
	lang     string // best "language" value seen, canonical
	langRank int
	proc     string // best "processed-by" value seen, canonical
	procRank int
	tinyGo   bool

	goBuildID bool
	data      []byte // the data section's body, scanned only when nothing else tells
	names     []byte // the "name" section's payload, likewise
}

// decide picks the language from the facts, in the documented order.
func (f *langFacts) decide() string {
	switch {
	case f.tinyGo:
		return "TinyGo"
	case f.lang != "":
		return f.lang
	case f.proc != "":
		return f.proc
	case f.goBuildID:
		return "Go"
	case hasASMarker(f.data) || bytes.Contains(f.names, asLibUTF8):
		return "AssemblyScript"
	case hasRustMarker(f.data):
		return "Rust"
	}
	return ""
}

// producers reads a producers section's payload: a vector of fields, each
// a name and a vector of (name, version) string pairs. It stops at the
// first malformed byte, keeping what it read before.
func (f *langFacts) producers(b []byte) {
	fields, n := uleb32(b)
	if n == 0 {
		return
	}
	b = b[n:]
	for range fields {
		field, ok := leString(&b)
		if !ok {
			return
		}
		count, n := uleb32(b)
		if n == 0 {
			return
		}
		b = b[n:]
		for range count {
			value, ok := leString(&b)
			if !ok {
				return
			}
			if _, ok := leString(&b); !ok { // the version
				return
			}
			switch string(field) {
			case "language":
				if l, r := languageName(value); r > f.langRank {
					f.lang, f.langRank = l, r
				}
			case "processed-by":
				if containsFold(value, "tinygo") {
					f.tinyGo = true
				}
				if l, r := toolLanguage(value); r > f.procRank {
					f.proc, f.procRank = l, r
				}
			}
		}
	}
}

// Ranks: when a module names several languages (a Rust crate linking C,
// a C runtime under another language), the more specific one wins; C and
// C++ are most often the runtime.
const (
	rankCorCpp  = 1 // "C/C++": clang said it built the module, nothing said what from
	rankC       = 2
	rankCpp     = 3
	rankOther   = 4 // a name Language does not know
	rankKnown   = 5 // Rust, Zig, AssemblyScript, Swift, ...
	rankGo      = 6
	rankUnknown = 0
)

// languageName maps a producers "language" value to a canonical name and
// its rank.
func languageName(v []byte) (string, int) {
	switch {
	case len(v) == 0:
		return "", rankUnknown
	case string(v) == "Go":
		return "Go", rankGo
	case string(v) == "Rust":
		return "Rust", rankKnown
	case equalFold(v, "zig"):
		return "Zig", rankKnown
	case equalFold(v, "assemblyscript"):
		return "AssemblyScript", rankKnown
	case equalFold(v, "tinygo"):
		return "TinyGo", rankGo
	case string(v) == "Swift":
		return "Swift", rankKnown
	case string(v) == "ObjC":
		return "Objective-C", rankKnown
	case string(v) == "ObjC_plus_plus":
		return "Objective-C++", rankKnown
	case bytes.HasPrefix(v, []byte("C_plus_plus")):
		return "C++", rankCpp
	case v[0] == 'C' && allDigits(v[1:]): // C, C89, C99, C11, C17
		return "C", rankC
	}
	if s := cleanName(v); s != "" {
		return s, rankOther
	}
	return "", rankUnknown
}

// toolLanguage maps a producers "processed-by" tool to the language it
// compiles, or "" for tools that any language's modules pass through
// (wasm-opt, binaryen, walrus).
func toolLanguage(v []byte) (string, int) {
	switch {
	case containsFold(v, "tinygo"):
		return "TinyGo", rankGo
	case containsFold(v, "go cmd/compile"):
		return "Go", rankGo
	case containsFold(v, "rustc"), containsFold(v, "wasm-bindgen"):
		return "Rust", rankKnown
	case containsFold(v, "zig"):
		return "Zig", rankKnown
	case containsFold(v, "assemblyscript"):
		return "AssemblyScript", rankKnown
	case containsFold(v, "swiftc"):
		return "Swift", rankKnown
	case containsFold(v, "clang"), containsFold(v, "emscripten"):
		return "C/C++", rankCorCpp
	}
	return "", rankUnknown
}

// asLibUTF8 starts the names of AssemblyScript's standard library
// functions in a "name" section ("~lib/rt/itcms/__new").
var asLibUTF8 = []byte("~lib/")

// utf16Lib and utf16TS are "~lib/" and ".ts" in UTF-16LE, the encoding of
// AssemblyScript's string literals.
var (
	utf16Lib = []byte("~\x00l\x00i\x00b\x00/\x00")
	utf16TS  = []byte(".\x00t\x00s\x00")
)

// markerWindow is how far after a marker's start the file name's
// extension must follow.
const markerWindow = 256

// hasASMarker reports an AssemblyScript standard library file name
// ("~lib/rt/itcms.ts") as a UTF-16LE literal in b.
func hasASMarker(b []byte) bool {
	return hasPathMarker(b, utf16Lib, utf16TS)
}

var rustStd = [][]byte{[]byte("library/core/src/"), []byte("library/alloc/src/"), []byte("library/std/src/")}

// hasRustMarker reports a Rust standard library source path
// ("library/core/src/str/pattern.rs") in b.
func hasRustMarker(b []byte) bool {
	for _, m := range rustStd {
		if hasPathMarker(b, m, []byte(".rs")) {
			return true
		}
	}
	return false
}

// hasPathMarker reports prefix followed, within markerWindow bytes, by
// suffix. It looks at a bounded number of occurrences of prefix.
func hasPathMarker(b, prefix, suffix []byte) bool {
	for range 64 {
		i := bytes.Index(b, prefix)
		if i < 0 {
			return false
		}
		b = b[i+len(prefix):]
		if bytes.Contains(b[:min(len(b), markerWindow)], suffix) {
			return true
		}
	}
	return false
}

// uleb32 decodes an unsigned LEB128 number of at most 32 bits (5 bytes)
// from the start of b. n is how many bytes it took, 0 when b does not
// start with one (truncated, too long, or over 32 bits).
func uleb32(b []byte) (v uint32, n int) {
	var shift uint
	for i := 0; i < 5; i++ {
		if i >= len(b) {
			return 0, 0
		}
		c := b[i]
		if i == 4 && c&0xf0 != 0 { // continuation or bits past 32
			return 0, 0
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, i + 1
		}
		shift += 7
	}
	return 0, 0
}

// leString reads a length-prefixed string from the start of *b and moves
// *b past it; false when it is malformed (and *b is then unchanged).
func leString(b *[]byte) ([]byte, bool) {
	l, n := uleb32(*b)
	if n == 0 || uint64(l) > uint64(len(*b)-n) {
		return nil, false
	}
	s := (*b)[n : n+int(l)]
	*b = (*b)[n+int(l):]
	return s, true
}

// equalFold reports whether b is lower (lower case ASCII), ignoring
// ASCII case.
func equalFold(b []byte, lower string) bool {
	return len(b) == len(lower) && hasFoldAt(b, lower, 0)
}

// containsFold reports whether b contains lower (lower case ASCII),
// ignoring ASCII case.
func containsFold(b []byte, lower string) bool {
	for i := 0; i+len(lower) <= len(b); i++ {
		if hasFoldAt(b, lower, i) {
			return true
		}
	}
	return false
}

func hasFoldAt(b []byte, lower string, at int) bool {
	for j := 0; j < len(lower); j++ {
		c := b[at+j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[j] {
			return false
		}
	}
	return true
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// cleanName is a language name from a module made safe to show: letters,
// digits and + # . - _ and space, at most maxLanguageName bytes; "" when
// nothing is left.
func cleanName(v []byte) string {
	out := make([]byte, 0, min(len(v), maxLanguageName))
	for _, c := range v {
		if len(out) == maxLanguageName {
			break
		}
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '+' || c == '#' || c == '.' || c == '-' || c == '_' || c == ' ' {
			out = append(out, c)
		}
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return ""
	}
	return string(bytes.TrimSpace(out))
}
