package plugin

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
)

// Hand-built modules.

func wLEB(v uint64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, c|0x80)
			continue
		}
		return append(out, c)
	}
}

func wstr(s string) []byte { return append(wLEB(uint64(len(s))), s...) }

func wModule(sections ...[]byte) []byte {
	return bytes.Join(append([][]byte{[]byte("\x00asm\x01\x00\x00\x00")}, sections...), nil)
}

func wSection(id byte, body []byte) []byte {
	return append(append([]byte{id}, wLEB(uint64(len(body)))...), body...)
}

func wCustom(name string, payload []byte) []byte {
	return wSection(0, append(wstr(name), payload...))
}

// producers builds a producers payload: field names, each with its
// (name, version) pairs.
func wProducers(fields ...prodField) []byte {
	out := wLEB(uint64(len(fields)))
	for _, f := range fields {
		out = append(out, wstr(f.name)...)
		out = append(out, wLEB(uint64(len(f.values)))...)
		for _, v := range f.values {
			out = append(out, wstr(v)...)
			out = append(out, wstr("1.0")...)
		}
	}
	return out
}

type prodField struct {
	name   string
	values []string
}

func wLang(vs ...string) prodField { return prodField{"language", vs} }
func wTool(vs ...string) prodField { return prodField{"processed-by", vs} }

func utf16LE(s string) []byte {
	var out []byte
	for _, u := range utf16.Encode([]rune(s)) {
		out = append(out, byte(u), byte(u>>8))
	}
	return out
}

// wCode is a type, a function and a code section, for modules that look like modules.
var wCode = [][]byte{wSection(1, []byte{1, 0x60, 0, 0}), wSection(3, []byte{1, 0}), wSection(10, []byte{1, 2, 0, 0x0b})}

func wWithCode(sections ...[]byte) []byte {
	return wModule(append(append([][]byte{}, wCode...), sections...)...)
}

func TestLanguageProducers(t *testing.T) {
	for _, tc := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"rust", wWithCode(wCustom("producers", wProducers(wLang("Rust"), wTool("rustc")))), "Rust"},
		{"go", wWithCode(wCustom("producers", wProducers(wLang("Go"), wTool("Go cmd/compile")))), "Go"},
		{"c99", wWithCode(wCustom("producers", wProducers(wLang("C99"), wTool("Debian clang")))), "C"},
		{"c", wWithCode(wCustom("producers", wProducers(wLang("C")))), "C"},
		{"c++", wWithCode(wCustom("producers", wProducers(wLang("C_plus_plus_14"), wTool("clang")))), "C++"},
		{"clang alone", wWithCode(wCustom("producers", wProducers(wTool("Debian clang")))), "C/C++"},
		{"rust linking c", wWithCode(wCustom("producers", wProducers(wLang("C11", "Rust"), wTool("clang", "rustc")))), "Rust"},
		{"tinygo", wWithCode(wCustom("producers", wProducers(wLang("Go"), wTool("TinyGo")))), "TinyGo"},
		{"zig tool", wWithCode(wCustom("producers", wProducers(wTool("Zig")))), "Zig"},
		{"assemblyscript tool", wWithCode(wCustom("producers", wProducers(wTool("AssemblyScript")))), "AssemblyScript"},
		{"wasm-bindgen", wWithCode(wCustom("producers", wProducers(wTool("wasm-bindgen", "walrus")))), "Rust"},
		{"only optimisers", wWithCode(wCustom("producers", wProducers(wTool("wasm-opt", "binaryen")))), ""},
		{"unknown language", wWithCode(wCustom("producers", wProducers(wLang("Fortran95")))), "Fortran95"},
		{"hostile name", wWithCode(wCustom("producers", wProducers(wLang("\x1b[31mPwn\n"+strings.Repeat("x", 100))))), "31mPwn" + strings.Repeat("x", 26)},
		{"empty language", wWithCode(wCustom("producers", wProducers(wLang("")))), ""},
		{"unknown field", wWithCode(wCustom("producers", wProducers(prodField{"sdk", []string{"Emscripten"}}, wLang("Rust")))), "Rust"},
		{"producers first", wModule(wCustom("producers", wProducers(wLang("Rust"))), wCode[0], wCode[1], wCode[2]), "Rust"},
		{"producers over buildid", wWithCode(wCustom("go:buildid", []byte("x")), wCustom("producers", wProducers(wLang("Rust")))), "Rust"},
	} {
		if got := Language(tc.wasm); got != tc.want {
			t.Errorf("%s: Language = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestLanguageGoBuildID(t *testing.T) {
	id := []byte("\xff Go build ID: \"abc/def\"\n \xff")
	for _, name := range []string{"go:buildid", "go.buildid"} {
		if got := Language(wModule(wCustom(name, id), wCode[0], wCode[1], wCode[2])); got != "Go" {
			t.Errorf("%s section: Language = %q, want Go", name, got)
		}
	}
	if got := Language(wWithCode(wCustom("go:buildidx", id))); got != "" {
		t.Errorf("a look-alike section: Language = %q", got)
	}
}

func TestLanguageMarkers(t *testing.T) {
	asData := wSection(11, append([]byte{1, 0, 0x41, 8, 0x0b, 40}, utf16LE("\x00\x00~lib/rt/itcms.ts\x00index out of range")...))
	if got := Language(wWithCode(asData)); got != "AssemblyScript" {
		t.Errorf("AssemblyScript data: %q", got)
	}
	asNames := wCustom("name", append([]byte{1, 20, 1, 0}, wstr("~lib/rt/itcms/__new")...))
	if got := Language(wWithCode(asNames)); got != "AssemblyScript" {
		t.Errorf("AssemblyScript names: %q", got)
	}
	rustData := wSection(11, []byte("\x01\x00\x41\x08\x0b\x40capacity overflowlibrary/alloc/src/raw_vec.rs"))
	if got := Language(wWithCode(rustData)); got != "Rust" {
		t.Errorf("Rust data: %q", got)
	}
	// Look-alikes: the prefix without the file extension, UTF-8 "~lib/"
	// in data, a marker outside the data section.
	for _, wasm := range [][]byte{
		wWithCode(wSection(11, utf16LE("~lib/"+strings.Repeat(" ", 200)+".ts"))),
		wWithCode(wSection(11, []byte("~lib/rt/itcms.ts"))),
		wWithCode(wSection(11, []byte("see library/core/src/ for more"))),
		wWithCode(wCustom("docs", []byte("library/core/src/lib.rs"))),
	} {
		if got := Language(wasm); got != "" {
			t.Errorf("look-alike %q: Language = %q", wasm, got)
		}
	}
	// A producers section wins over the markers.
	if got := Language(wWithCode(rustData, wCustom("producers", wProducers(wLang("C99"))))); got != "C" {
		t.Errorf("producers and a Rust marker: %q", got)
	}
}

func TestLanguageMalformed(t *testing.T) {
	good := wCustom("go:buildid", []byte("id"))
	for _, tc := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"empty", nil, ""},
		{"magic only", []byte("\x00asm"), ""},
		{"not wasm", []byte("\x7fELF\x01\x00\x00\x00"), ""},
		{"other version", append([]byte("\x00asm\x0d\x00\x01\x00"), good...), ""},
		{"no sections", wModule(), ""},
		// Known facts survive what follows them.
		{"truncated after", append(wModule(good), 0), "Go"},
		{"oversized section after", wModule(good, []byte{10, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2}), "Go"},
		{"size LEB over 5 bytes after", wModule(good, []byte{10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}), "Go"},
		{"size LEB over 32 bits after", wModule(good, []byte{10, 0xff, 0xff, 0xff, 0xff, 0x1f}), "Go"},
		// ...but nothing after the first malformed byte is read.
		{"oversized section before", wModule([]byte{10, 0xff, 0xff, 0xff, 0xff, 0x0f}, good), ""},
		{"section past the end before", wModule([]byte{10, 0x7f, 0, 0}, good), ""},
		{"unterminated LEB before", wModule([]byte{10, 0x80}), ""},
		// A malformed custom section inside a good frame is skipped.
		{"custom name too long", wModule(wSection(0, []byte{0x7f, 'g', 'o'}), good), "Go"},
		{"custom name LEB too long", wModule(wSection(0, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), good), "Go"},
		{"empty custom section", wModule(wSection(0, nil), good), "Go"},
		// Producers: what was read before the malformed byte counts.
		{"producers truncated pair", wWithCode(wCustom("producers", wProducers(wLang("Rust", "C99"))[:22])), "Rust"},
		{"producers huge field count", wWithCode(wCustom("producers", []byte{0xff, 0xff, 0xff, 0xff, 0x0f})), ""},
		{"producers huge value count", wWithCode(wCustom("producers", append(append(wLEB(1), wstr("language")...), 0xff, 0xff, 0xff, 0xff, 0x0f))), ""},
		{"producers string past the end", wWithCode(wCustom("producers", append(append(wLEB(1), wstr("language")...), 1, 0x7f, 'R'))), ""},
		{"producers pair without version", wWithCode(wCustom("producers", append(append(append(wLEB(1), wstr("language")...), 1), wstr("Rust")...))), ""},
	} {
		if got := Language(tc.wasm); got != tc.want {
			t.Errorf("%s: Language = %q, want %q", tc.name, got, tc.want)
		}
	}
	// Every truncation of a module with producers and a data marker.
	full := wWithCode(wSection(11, []byte("library/core/src/str/pattern.rs")), wCustom("producers", wProducers(wLang("Rust"), wTool("rustc"))))
	for n := range len(full) {
		if got := Language(full[:n]); got != "" && got != "Rust" {
			t.Fatalf("truncated to %d bytes: %q", n, got)
		}
	}
}

func TestLanguageULEB(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		v    uint32
		n    int
		what string
	}{
		{[]byte{0}, 0, 1, "zero"},
		{[]byte{0x7f}, 127, 1, "one byte"},
		{[]byte{0x80, 0x01}, 128, 2, "two bytes"},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 0xffffffff, 5, "max"},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x00}, 0, 5, "padded zero"},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x1f}, 0, 0, "over 32 bits"},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 0, 0, "six bytes"},
		{[]byte{0x80}, 0, 0, "truncated"},
		{nil, 0, 0, "empty"},
	} {
		if v, n := uleb32(tc.in); v != tc.v || n != tc.n {
			t.Errorf("%s: uleb32(%x) = %d, %d; want %d, %d", tc.what, tc.in, v, n, tc.v, tc.n)
		}
	}
}

// realModules are the modules this repository builds, where they have
// been built: make plugins (Go) and make examples (AssemblyScript, C,
// Rust), with the language Language tells for each.
func realModules(t testing.TB) map[string]string {
	t.Helper()
	want := map[string]string{
		"../../examples/plugins/legal/legal.wasm":   "AssemblyScript",
		"../../examples/plugins/hr/hr.wasm":         "Rust",
		"../../examples/plugins/travel/travel.wasm": "", // clang -Wl,--strip-all: nothing left to tell
	}
	goPlugins, _ := filepath.Glob("../../plugins/*/*.wasm")
	for _, p := range goPlugins {
		want[p] = "Go"
	}
	out := map[string]string{}
	for p, lang := range want {
		if _, err := os.Stat(p); err == nil {
			out[p] = lang
		}
	}
	return out
}

func TestLanguageRealModules(t *testing.T) {
	// The Go test plugins TestMain built.
	for _, name := range testPlugins {
		if got := Language(wasmBytes(t, name)); got != "Go" {
			t.Errorf("testdata/%s: Language = %q, want Go", name, got)
		}
	}
	mods := realModules(t)
	if len(mods) == 0 {
		t.Log("no plugins or examples built (make plugins examples): checked the test plugins only")
	}
	for path, want := range mods {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := Language(b); got != want {
			t.Errorf("%s: Language = %q, want %q", path, got, want)
		}
		if n := testing.AllocsPerRun(20, func() { Language(b) }); n != 0 {
			t.Errorf("%s: Language allocates %v times", path, n)
		}
	}
}

func TestPluginLanguage(t *testing.T) {
	_, _, good := sharedRuntime(t)
	if got := good.Language(); got != "Go" {
		t.Fatalf("the good plugin's Language() = %q, want Go", got)
	}
}

func FuzzLanguage(f *testing.F) {
	for _, b := range [][]byte{
		nil,
		[]byte("\x00asm\x01\x00\x00\x00"),
		wWithCode(wCustom("producers", wProducers(wLang("Rust"), wTool("rustc")))),
		wWithCode(wCustom("producers", wProducers(wLang("C_plus_plus_14", "C99"), wTool("Debian clang", "TinyGo")))),
		wModule(wCustom("go:buildid", []byte("id")), wCustom("go.buildid", nil)),
		wWithCode(wSection(11, utf16LE("~lib/rt/tlsf.ts"))),
		wWithCode(wSection(11, []byte("library/std/src/panicking.rs"))),
		wModule([]byte{0, 0xff, 0xff, 0xff, 0xff, 0x0f}),
		wModule([]byte{0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f}),
		wModule(wCustom("producers", []byte{0xff, 0xff, 0xff, 0xff, 0x0f})),
		wModule(wCustom("producers", append(append(wLEB(1), wstr("language")...), 3, 0x7f))),
		wModule(wCustom("name", []byte("~lib/"))),
	} {
		f.Add(b)
	}
	// Real modules: their first bytes, and their custom and data sections
	// (which sit behind megabytes of code) in a small module. Kept small:
	// the fuzzer minimizes each new input it finds, for up to a minute
	// when the input is large.
	for path := range realModules(f) {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		f.Add(b[:min(len(b), 512)])
		f.Add(wModule(sectionsOf(b, 256)...))
	}
	f.Fuzz(func(t *testing.T, wasm []byte) {
		got := Language(wasm)
		if len(got) > maxLanguageName {
			t.Fatalf("name of %d bytes: %q", len(got), got)
		}
		for _, c := range []byte(got) {
			if c < ' ' || c > '~' {
				t.Fatalf("unclean name %q", got)
			}
		}
		if again := Language(wasm); again != got {
			t.Fatalf("not deterministic: %q then %q", got, again)
		}
	})
}

// sectionsOf returns the custom sections of a well-formed module, and its
// data section cut to max bytes of body.
func sectionsOf(wasm []byte, max int) [][]byte {
	var out [][]byte
	rest := wasm[8:]
	for len(rest) > 0 {
		size, n := uleb32(rest[1:])
		if n == 0 || int(size) > len(rest)-1-n {
			break
		}
		body := rest[1+n : 1+n+int(size)]
		switch rest[0] {
		case 0:
			out = append(out, wSection(0, body[:min(len(body), max)]))
		case sectionData:
			out = append(out, wSection(sectionData, body[:min(len(body), max)]))
		}
		rest = rest[1+n+int(size):]
	}
	return out
}
