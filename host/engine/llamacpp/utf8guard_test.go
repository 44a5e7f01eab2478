package llamacpp

import (
	"math"
	"testing"

	"github.com/hybridgroup/yzma/pkg/llama"
)

func TestUTF8Tail(t *testing.T) {
	for _, c := range []struct {
		in   string
		tail int
		ok   bool
	}{
		{"", 0, true}, {"abc", 0, true}, {"é", 0, true}, {"a\xc3", 1, true}, {"\xe8\x97", 2, true},
		{"\xf0\x9f\x98", 3, true}, {"\x80", 0, false}, {"a\x80b", 0, false}, {"\xc3a", 0, false},
		{"\xed\xa0\x80", 0, false}, // a surrogate
		{"\xff", 0, false},
	} {
		tail, ok := utf8Tail([]byte(c.in))
		if tail != c.tail || ok != c.ok {
			t.Errorf("utf8Tail(%q) = %d, %v; want %d, %v", c.in, tail, ok, c.tail, c.ok)
		}
	}
}

// The guard keeps only what continues valid UTF-8: after a complete
// character, no token that starts inside one; after an incomplete one, only
// the tokens that go on with it. Control tokens stay the grammar's call.
func TestUTF8Mask(t *testing.T) {
	pieces := []string{"", "a", "\x97", "\x97\x93", "\xe8", "\xe8\x97\x93", "\xbf\xbf\xbf", "\xc3a"}
	tab := &utf8Table{kind: make([]uint8, len(pieces)), contIndex: map[llama.Token]int{}}
	for i, p := range pieces {
		switch _, ok := utf8Tail([]byte(p)); {
		case p == "":
			tab.kind[i] = utf8Empty
		case isContinuation(p[0]):
			tab.kind[i] = utf8Bad
			tab.contIndex[llama.Token(i)] = len(tab.cont)
			tab.cont = append(tab.cont, llama.Token(i))
			tab.contPiece = append(tab.contPiece, []byte(p))
		case ok:
			tab.kind[i] = utf8Good
		default:
			tab.kind[i] = utf8Bad
		}
	}
	allowed := func(pending string) []bool {
		logits := make([]float32, len(pieces))
		tab.mask(logits, []byte(pending))
		out := make([]bool, len(pieces))
		for i, l := range logits {
			out[i] = !math.IsInf(float64(l), -1)
		}
		return out
	}
	for _, c := range []struct {
		pending string
		want    []bool
	}{
		{"", []bool{true, true, false, false, true, true, false, false}},
		{"\xe8", []bool{true, false, true, true, false, false, false, false}},
		{"\xe8\x97", []bool{true, false, true, false, false, false, false, false}},
	} {
		got := allowed(c.pending)
		for i := range got {
			if tab.allows(llama.Token(i), []byte(c.pending)) != got[i] {
				t.Errorf("after %q: allows(%q) disagrees with mask", c.pending, pieces[i])
			}
			if got[i] != c.want[i] {
				t.Errorf("after %q: token %q allowed %v, want %v", c.pending, pieces[i], got[i], c.want[i])
			}
		}
	}
	if p := advance([]byte("\xe8"), []byte("\x97")); string(p) != "\xe8\x97" {
		t.Errorf("advance = %q", p)
	}
	if p := advance([]byte("\xe8\x97"), []byte("\x93x")); p != nil {
		t.Errorf("advance = %q", p)
	}
}
