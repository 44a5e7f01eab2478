package textcap

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdefgh", 3, "abc... (5 more bytes)"},
		{"héllo", 2, "h... (5 more bytes)"}, // never half a rune
		{"abc", 0, "... (3 more bytes)"},
		{"abc", -1, "... (3 more bytes)"},
	} {
		if got := Truncate(c.in, c.n); got != c.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
	long := strings.Repeat("日本", 1000)
	got := Truncate(long, 100)
	if !utf8.ValidString(got) || len(got) > 130 {
		t.Fatalf("%d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

func TestError(t *testing.T) {
	base := errors.New(strings.Repeat("x", 5000))
	wrapped := fmt.Errorf("load: %w", base)
	got := Error(wrapped, 100)
	if len(got.Error()) > 130 || !strings.HasPrefix(got.Error(), "load: xxx") || !errors.Is(got, base) {
		t.Fatalf("%d bytes: %q; Is base %v", len(got.Error()), got.Error()[:20], errors.Is(got, base))
	}
	short := errors.New("short")
	if Error(short, 100) != short || Error(nil, 1) != nil {
		t.Fatal("a short error or nil was changed")
	}
}
