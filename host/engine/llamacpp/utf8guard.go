package llamacpp

import (
	"math"
	"unicode/utf8"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// Under a grammar, llama.cpp's grammar sampler reads each token's text as
// UTF-8 and, where the bytes are not valid UTF-8, checks only the part
// before them: a token of stray bytes (a continuation byte with no lead,
// say, as byte-level vocabularies have) passes the grammar anywhere and
// leaves text that is not UTF-8, and so not the JSON the grammar promised
// (the structured-output property test found a string longer than its
// maxLength that way). The UTF-8 guard closes that gap: before each
// constrained draw it bans the tokens whose bytes, after the incomplete
// character the text so far ends with, are not valid UTF-8 (an incomplete
// last character of their own is fine; it is carried to the next token).

// Kinds of token text, as UTF-8 on its own.
const (
	utf8Empty = iota // no text (control tokens): left to the grammar
	utf8Bad          // invalid, or starts inside a character
	utf8Good         // valid, possibly ending in an incomplete character
)

// utf8Table classifies a vocabulary's tokens.
type utf8Table struct {
	kind []uint8
	// cont are the tokens that start with a continuation byte, with their
	// text: the only ones that may follow an incomplete character.
	cont      []llama.Token
	contPiece [][]byte
	contIndex map[llama.Token]int // position in cont
}

// newUTF8Table classifies the n tokens of vocab.
func newUTF8Table(vocab llama.Vocab, n int32) *utf8Table {
	t := &utf8Table{kind: make([]uint8, n), contIndex: map[llama.Token]int{}}
	var buf []byte
	for tok := llama.Token(0); tok < llama.Token(n); tok++ {
		var b []byte
		b, buf = tokenPiece(vocab, tok, buf)
		switch {
		case len(b) == 0:
			t.kind[tok] = utf8Empty
		case isContinuation(b[0]):
			t.kind[tok] = utf8Bad
			t.contIndex[tok] = len(t.cont)
			t.cont = append(t.cont, tok)
			t.contPiece = append(t.contPiece, append([]byte(nil), b...))
		default:
			if _, ok := utf8Tail(b); ok {
				t.kind[tok] = utf8Good
			} else {
				t.kind[tok] = utf8Bad
			}
		}
	}
	return t
}

func isContinuation(c byte) bool { return c&0xC0 == 0x80 }

// utf8Tail reports whether b is valid UTF-8 but for an incomplete last
// character, and how many bytes that incomplete character has (0: none).
func utf8Tail(b []byte) (int, bool) {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(b[i:]) { // a valid start, cut short
				return len(b) - i, true
			}
			return 0, false
		}
		i += size
	}
	return 0, true
}

// allows reports whether tok may follow a text ending in the incomplete
// character pending: what mask would leave.
func (t *utf8Table) allows(tok llama.Token, pending []byte) bool {
	if tok < 0 || int(tok) >= len(t.kind) || t.kind[tok] == utf8Empty {
		return true
	}
	if len(pending) == 0 {
		return t.kind[tok] == utf8Good
	}
	i, ok := t.contIndex[tok]
	if !ok {
		return false
	}
	_, valid := utf8Tail(append(append([]byte(nil), pending...), t.contPiece[i]...))
	return valid
}

// mask bans, in logits, the tokens that may not follow a text ending in
// the incomplete character pending (empty: none).
func (t *utf8Table) mask(logits []float32, pending []byte) {
	ban := float32(math.Inf(-1))
	if len(pending) == 0 {
		for i, k := range t.kind {
			if k == utf8Bad && i < len(logits) {
				logits[i] = ban
			}
		}
		return
	}
	// Only a token that goes on with the character may follow.
	keep := make([]float32, len(t.cont))
	var buf []byte
	for i, tok := range t.cont {
		keep[i] = ban
		buf = append(append(buf[:0], pending...), t.contPiece[i]...)
		if _, ok := utf8Tail(buf); ok && int(tok) < len(logits) {
			keep[i] = logits[tok]
		}
	}
	for i, k := range t.kind {
		if k != utf8Empty && i < len(logits) {
			logits[i] = ban
		}
	}
	for i, tok := range t.cont {
		if int(tok) < len(logits) {
			logits[tok] = keep[i]
		}
	}
}

// advance returns the incomplete character a text ending in pending ends
// in once piece is added.
func advance(pending, piece []byte) []byte {
	b := append(append([]byte(nil), pending...), piece...)
	if n, ok := utf8Tail(b); ok && n > 0 {
		return b[len(b)-n:]
	}
	return nil
}
