package router

import (
	"math"
	"unicode"
	"unicode/utf8"
)

// Bounds on the work spent on one query, whatever its size: text after
// maxQueryBytes is ignored and so are words after maxWords. A word longer
// than maxWordBytes is cut.
const (
	maxQueryBytes = 4096
	maxWords      = 256
	maxWordBytes  = 48
)

// words splits s into lowercase words of letters and digits. Apostrophes
// inside a word are dropped ("don't" -> "dont"); anything else, invalid
// UTF-8 included, separates words. dst is reused when it has capacity.
func words(s string, dst []string) []string {
	if len(s) > maxQueryBytes {
		s = s[:maxQueryBytes]
	}
	out := dst[:0]
	var buf [maxWordBytes + utf8.UTFMax]byte
	n := 0
	flush := func() {
		if n > 0 && len(out) < maxWords {
			out = append(out, string(buf[:n]))
		}
		n = 0
	}
	for i := 0; i < len(s); {
		c := rune(s[i])
		size := 1
		if c >= utf8.RuneSelf {
			c, size = utf8.DecodeRuneInString(s[i:])
		}
		i += size
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			if n < maxWordBytes {
				buf[n] = byte(c)
				n++
			}
		case c >= 'A' && c <= 'Z':
			if n < maxWordBytes {
				buf[n] = byte(c + 'a' - 'A')
				n++
			}
		case c == '\'' || c == '\u2019':
		case c >= utf8.RuneSelf && c != utf8.RuneError && (unicode.IsLetter(c) || unicode.IsDigit(c)):
			if n < maxWordBytes {
				n += utf8.EncodeRune(buf[n:], unicode.ToLower(c))
			}
		default:
			flush()
		}
		if len(out) >= maxWords {
			break
		}
	}
	flush()
	return out
}

// Feature kinds, mixed into the hash so that the word "car" and the
// character trigram "car" are different features.
const (
	kindWord   = 'w'
	kindBigram = 'b'
	kindChar   = 'c'
)

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashStart(kind byte) uint64 { return (fnvOffset ^ uint64(kind)) * fnvPrime }

func hashAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}

// charGram bounds: n-grams of "<word>" from minGram to maxGram bytes.
const (
	minGram = 3
	maxGram = 5
)

// featureHashes appends the hashed features of a word sequence to dst:
// stemmed words, stemmed word bigrams and character n-grams of each word
// with boundary marks. Features repeat when they occur more than once.
func featureHashes(ws []string, dst []uint64) []uint64 {
	prev := ""
	for _, w := range ws {
		s := stem(w)
		dst = append(dst, hashAdd(hashStart(kindWord), s))
		if prev != "" {
			h := hashAdd(hashStart(kindBigram), prev)
			h = (h ^ ' ') * fnvPrime
			dst = append(dst, hashAdd(h, s))
		}
		prev = s
		// Character n-grams over "<w>", counted in bytes: cheap and good
		// enough for the Latin scripts where misspellings matter most.
		if len(w) > maxWordBytes {
			w = w[:maxWordBytes]
		}
		var pad [maxWordBytes + 2]byte
		pad[0] = '<'
		copy(pad[1:], w)
		pad[len(w)+1] = '>'
		p := pad[:len(w)+2]
		for n := minGram; n <= maxGram; n++ {
			for i := 0; i+n <= len(p); i++ {
				h := hashStart(kindChar)
				for _, c := range p[i : i+n] {
					h = (h ^ uint64(c)) * fnvPrime
				}
				dst = append(dst, h)
			}
		}
	}
	return dst
}

// sparseVec is a sparse vector over feature rows.
type sparseVec struct {
	idx []int32
	val []float32
}

func (v sparseVec) dot(w sparseVec) float32 {
	// Both sorted by idx.
	var s float32
	i, j := 0, 0
	for i < len(v.idx) && j < len(w.idx) {
		switch {
		case v.idx[i] < w.idx[j]:
			i++
		case v.idx[i] > w.idx[j]:
			j++
		default:
			s += v.val[i] * w.val[j]
			i++
			j++
		}
	}
	return s
}

func l2norm(v []float32) {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	if n == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(n))
	for i := range v {
		v[i] *= inv
	}
}
