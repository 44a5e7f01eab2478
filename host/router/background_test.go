package router

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDefaultBackgroundCorpus(t *testing.T) {
	bg := DefaultBackground()
	if len(bg) < 300 {
		t.Fatalf("DefaultBackground has %d entries, want at least 300", len(bg))
	}
	seen := make(map[string]int, len(bg))
	for i, s := range bg {
		key := strings.ToLower(strings.TrimSpace(s))
		switch {
		case key == "":
			t.Errorf("entry %d is empty", i)
			continue
		case !utf8.ValidString(s):
			t.Errorf("entry %d %q is not valid UTF-8", i, s)
		case len(s) >= 200:
			t.Errorf("entry %d %q is %d bytes, want under 200", i, s, len(s))
		}
		if j, dup := seen[key]; dup {
			t.Errorf("entry %d %q duplicates entry %d %q", i, s, j, bg[j])
		}
		seen[key] = i
	}

	// Each call hands out its own slice: changing one must not show in
	// another.
	a, b := DefaultBackground(), DefaultBackground()
	want := b[0]
	a[0] = "changed by the caller"
	a = append(a[:1], a[2:]...)
	if b[0] != want || len(b) != len(bg) || b[1] != bg[1] {
		t.Fatal("DefaultBackground calls share their backing array")
	}
	if c := DefaultBackground(); c[0] != want || c[1] != bg[1] {
		t.Fatal("modifying a returned slice changed later results")
	}
	_ = a
}
