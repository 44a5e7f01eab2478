package sdk

import (
	"math/bits"
	"slices"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// Text analysis for validators. Everything here is written for the wasm
// sandbox, where wazero's termination checks make every Go loop iteration
// cost tens of nanoseconds (a call into the host and back) and a Go map
// lookup about half a microsecond: one pass over the text reads it 8 bytes
// at a time, classifies the bytes with word-parallel arithmetic (SWAR), and
// produces hashed, lower-cased words; word sets are open-addressing tables
// of 64-bit hashes behind a bloom filter. Words are compared by their
// 64-bit hash only: a false match needs a hash collision, about one chance
// in 2^64 per pair of words.

// Word hashing: the lower-cased UTF-8 bytes of a word, in 8-byte
// little-endian blocks, the last one zero-padded (and empty when the length
// is a multiple of 8), each mixed into the state. Words never contain a 0
// byte, so the blocks determine the word.
const (
	hashOffset = 14695981039346656037
	hashMul    = 0xff51afd7ed558ccd
)

func mixBlock(h, v uint64) uint64 {
	h = (h ^ v) * hashMul
	return h ^ h>>29
}

// finish maps the hash 0 (the empty slot of the hash tables) to 1,
// without a branch.
func finish(h uint64) uint64 { return h | ((h-1)&^h)>>63 }

// wordHash hashes the lower-cased bytes of a word.
func wordHash(lowered []byte) uint64 {
	h := uint64(hashOffset)
	p := bytesPtr(lowered)
	i := 0
	for ; i+8 <= len(lowered); i += 8 {
		h = mixBlock(h, load8(p, i))
	}
	var last uint64
	if i < len(lowered) {
		last = load8Tail(p, i, len(lowered))
	}
	return finish(mixBlock(h, last))
}

// Byte classes, 8 bytes at a time (SWAR). Each function returns a mask
// with the top bit of every byte of v in the class set; they are small
// enough to inline, so that analyze's loop makes no calls.

// nonZero marks the bytes of x that are not 0 (exact: no carry crosses
// bytes).
func nonZero(x uint64) uint64 { return ((x &^ msb) + (msb - lsb) | x) & msb }

// eqMask marks the bytes of v equal to c.
func eqMask(v uint64, c byte) uint64 { return ^nonZero(v^lsb*uint64(c)) & msb }

// inRange marks the bytes of v in [lo, hi] (lo >= 1, hi < 0x80; bytes >=
// 0x80 may be marked too: callers clear them).
func inRange(v uint64, lo, hi byte) uint64 {
	vh := v | msb
	return (vh - lsb*uint64(lo)) &^ (vh - lsb*uint64(hi+1)) & msb
}

// alnumMask marks ASCII letters and digits.
func alnumMask(v uint64) uint64 {
	return (inRange(v, '0', '9') | inRange(v|lsb*0x20, 'a', 'z')) &^ v
}

// digitMask marks ASCII digits.
func digitMask(v uint64) uint64 { return inRange(v, '0', '9') &^ v }

// lowerMask lower-cases the ASCII letters of v.
func lowerMask(v uint64) uint64 { return v | (inRange(v, 'A', 'Z')&^v)>>2 }

// lowBytes returns a mask of the low k bytes (k <= 8).
func lowBytes(k int) uint64 { return uint64(1)<<(8*uint(k)) - 1 }

// tok is one word: a run of letters and digits, lower-cased and hashed.
// Apostrophes and hyphens separate words ("can't" is "can" "t", "risk-free"
// is "risk" "free"), the same way for texts and for the phrases matched
// against them.
type tok struct {
	start, end int32  // byte offsets in the text
	sent       int32  // sentence number
	line       int32  // line number
	h          uint64 // hash of the lower-cased word (never 0)
	num        bool   // digits only
	plural     uint8  // 1: 3 or more bytes ending in 's' or 'S' (may be a plural)
}

// analysis is the result of one pass over a text.
type analysis struct {
	words    []tok
	hasAt    bool // contains '@'
	hasFence bool // contains '`' or '~'
	digitRun int  // most digits in consecutive number words joined by number separators
}

// runeWord decodes the rune at s[i] (a byte >= 0x80) and reports whether it
// is a letter or digit, its lower-case UTF-8 form and its size.
func runeWord(s string, i int) (word bool, lower []byte, size int) {
	r, size := utf8.DecodeRuneInString(s[i:])
	if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
		return false, nil, size
	}
	return true, utf8.AppendRune(nil, unicode.ToLower(r)), size
}

// isWordRune reports whether the rune at s[i] (a byte >= 0x80) is a letter
// or digit, and its size.
func isWordRune(s string, i int) (bool, int) {
	r, size := utf8.DecodeRuneInString(s[i:])
	return unicode.IsLetter(r) || unicode.IsDigit(r), size
}

// continuesWord reports whether the non-ASCII rune at s[i] is a letter or
// digit.
func continuesWord(s string, i int) bool {
	word, _ := isWordRune(s, i)
	return word
}

// chunk returns the 8 bytes of s at i (zero-padded past the end) and how
// many of them are in s.
func chunk(p unsafe.Pointer, i, n int) (uint64, int) {
	if i+8 <= n {
		return load8(p, i), 8
	}
	return load8Tail(p, i, n), n - i
}

// analyze splits s into words.
//
// In the sandbox every taken branch and every loop iteration costs a
// termination check (a call out of the compiled code and back), far more
// than the arithmetic. So the work is an inner loop with no calls and no
// branches on its common path (calls in a loop make the compiler's block
// layout and register moves add jumps): each iteration reads the 8 bytes at
// i, classifies them at once (SWAR), finds the next word and hashes its
// first 16 bytes from two more reads. A typical word costs one iteration.
// Whatever is rare (gaps of 8 or more bytes, words of 16 or more bytes,
// non-ASCII runes, number words, a full slice) leaves the inner loop for
// the outer one.
func analyze(s string) analysis { return analyzeInto(s, nil) }

// analyzeInto is analyze, storing the words in buf when it is likely to be
// large enough.
func analyzeInto(s string, buf []tok) analysis {
	n := len(s)
	words := buf[:0]
	if cap(buf) < n/4+4 {
		words = make([]tok, 0, n/4+4)
	}
	// Reads are 8 bytes at min(i, lim), shifted down so that byte i comes
	// first and bytes past the end read as 0 (a gap byte of no class). A
	// text shorter than 8 bytes is read from a padded copy.
	p, lim := stringPtr(s), n-8
	var small [16]byte
	if n < 8 {
		copy(small[:], s)
		p, lim = unsafe.Pointer(&small), 8
	}
	var a analysis
	var st gapStats
	prevNum, prevEnd, run := false, 0, 0
	for i := 0; i < n; {
		const (
			exitEnd = iota
			exitFull
			exitGap
			exitLong
			exitNum
		)
		exit := exitEnd
		var v, stop uint64
		var k, start int
		var h uint64
		for i < n {
			if len(words) == cap(words) {
				exit = exitFull
				break
			}
			// The gap: bytes up to the next ASCII letter or digit or
			// non-ASCII byte.
			v = loadAt(p, i, lim)
			stop = alnumMask(v) | v&msb
			k = bits.TrailingZeros64(stop) >> 3
			// st.add(v, lowBytes(k)), by hand: the compiler does not
			// inline it.
			gap := lowBytes(k)
			sentEnds := eqMask(v, '!') | eqMask(v, '?') | eqMask(v, ';') | eqMask(v, ':') | eqMask(v, '\n')
			st.lastDots = eqMask(v, '.') & gap
			st.sent += int32(bits.OnesCount64(sentEnds&gap | st.lastDots))
			st.line += int32(bits.OnesCount64(eqMask(v, '\n') & gap))
			st.at |= eqMask(v, '@') & gap
			st.fence |= (eqMask(v, '`') | eqMask(v, '~')) & gap
			i += k
			// Bit 7 of the byte that stopped the gap: 1 for a non-ASCII
			// byte, 0 for an ASCII letter or digit, and 0 when nothing
			// stopped it (k = 8 shifts v out).
			if stop == 0 || v>>(8*uint(k))&0x80 != 0 {
				exit = exitGap
				break
			}
			// "0.5", "example.com": a dot right before a word is inside it.
			st.sent -= int32(st.lastDots << 8 >> (8 * uint(k)) >> 7 & 1)
			// The word's first 16 bytes, as two chunks: words of up to 15
			// bytes stay in this loop. Both are computed without a
			// branch; full1 selects the second when the first is all
			// letters and digits.
			start = i
			w := loadAt(p, i, lim)
			w2 := loadAt(p, i+8, lim)
			nonWord := ^alnumMask(w) & msb
			nonWord2 := ^alnumMask(w2) & msb
			full1 := ((nonWord - 1) &^ nonWord) >> 63 // 1 when nonWord = 0
			kw := bits.TrailingZeros64(nonWord) >> 3
			kw2 := bits.TrailingZeros64(nonWord2) >> 3
			m := lowBytes(kw)
			m2 := lowBytes(kw2)
			h1 := mixBlock(hashOffset, lowerMask(w)&m)
			h2 := mixBlock(mixBlock(hashOffset, lowerMask(w)), lowerMask(w2)&m2)
			sel := -full1 // all ones for a long word
			h = finish(h1&^sel | h2&sel)
			i += kw + kw2*int(full1)
			// The chunk and length where the word ends.
			we, ke := w&^sel|w2&sel, uint(kw)&^uint(sel)|uint(kw2)&uint(sel)
			// 16 or more letters, or a non-ASCII byte right after the
			// ASCII ones.
			if full1&(((nonWord2-1)&^nonWord2)>>63)|we>>(8*ke)&0x80 != 0 {
				exit = exitLong
				break
			}
			// All digits: the number words go to the outer loop.
			if eqBit(digitMask(w)&m, msb&m)&(eqBit(digitMask(w2)&m2, msb&m2)|(1^full1)) != 0 {
				exit = exitNum
				break
			}
			// plural, without a branch: the last byte is 's' or 'S' and
			// the word has 3 or more bytes. Shifts of 64 or more give 0.
			wl := kw + kw2*int(full1)
			last := (w>>(8*uint(wl-1))|w2>>(8*uint(wl-9)))&0xdf ^ 'S'
			plural := uint8((last-1)>>63) & uint8(uint(2-wl)>>63)
			words = words[:len(words)+1]
			words[len(words)-1] = tok{start: int32(start), end: int32(i), sent: st.sent, line: st.line, h: h, plural: plural}
			prevNum = false
		}
		num := false
		switch exit {
		case exitEnd:
			continue
		case exitFull:
			words = slices.Grow(words, len(words)/2+8)
			continue
		case exitGap:
			i = a.rareGap(s, i, p, lim, &st, stop, v, k, &words)
			prevNum = false
			continue
		case exitLong:
			h, i, num = longWord(s, start)
		case exitNum:
			num = true
		}
		words = append(words, tok{start: int32(start), end: int32(i), sent: st.sent, line: st.line, h: h, num: num,
			plural: pluralBit(s, start, i)})
		if num {
			run = numberRun(s, prevNum, prevEnd, start, i, run)
			a.digitRun = max(a.digitRun, run)
		}
		prevNum, prevEnd = num, i
	}
	a.words = words
	a.hasAt, a.hasFence = st.at != 0, st.fence != 0
	return a
}

// gapStats accumulates what analyze records about the bytes between words.
type gapStats struct {
	sent, line int32
	at, fence  uint64
	lastDots   uint64 // the '.' bytes of the last chunk added
}

// add counts the gap bytes of v selected by mask (low bytes).
func (st *gapStats) add(v, mask uint64) {
	sent := eqMask(v, '!') | eqMask(v, '?') | eqMask(v, ';') | eqMask(v, ':') | eqMask(v, '\n')
	dots := eqMask(v, '.') & mask
	st.sent += int32(bits.OnesCount64(sent&mask | dots))
	st.line += int32(bits.OnesCount64(eqMask(v, '\n') & mask))
	st.at |= eqMask(v, '@') & mask
	st.fence |= (eqMask(v, '`') | eqMask(v, '~')) & mask
	st.lastDots = dots
}

// rareGap handles what analyze's loop sees rarely, at i after the gap
// chunk v: a chunk with no word start (stop = 0: it skips the rest of the
// gap), or a non-ASCII rune at byte k of v (it skips a rune that is not a
// letter or digit, or adds the word that starts there). It returns where
// analyze goes on.
//
//go:noinline
func (a *analysis) rareGap(s string, i int, p unsafe.Pointer, lim int, st *gapStats, stop, v uint64, k int, words *[]tok) int {
	n := len(s)
	for stop == 0 && i < n {
		v = loadAt(p, i, lim)
		stop = alnumMask(v) | v&msb
		k = bits.TrailingZeros64(stop) >> 3
		st.add(v, lowBytes(k))
		i += k
	}
	if i >= n {
		return i
	}
	// "0.5", "example.com": a dot right before a word is inside it.
	dot := int32(0)
	if i > 0 && s[i-1] == '.' {
		dot = 1
	}
	if v>>(8*uint(k))&0x80 == 0 {
		// At an ASCII word: analyze's loop goes on there, reading it as a
		// chunk with no gap (so it does not apply the dot rule again).
		st.sent -= dot
		return i
	}
	word, size := isWordRune(s, i)
	if !word {
		return i + size
	}
	st.sent -= dot
	h, end := slowWord(s, i)
	*words = append(*words, tok{start: int32(i), end: int32(end), sent: st.sent, line: st.line, h: h,
		plural: pluralBit(s, i, end)})
	return end
}

// loadAt reads the 8 bytes at p+i, or, past lim, the 8 bytes at p+lim
// shifted down so that byte i comes first and bytes past the end read as
// 0. No branch: see analyze.
func loadAt(p unsafe.Pointer, i, lim int) uint64 {
	over := i - lim
	over &= ^(over >> 63) // max(over, 0)
	return load8(p, i-over) >> (8 * uint(over))
}

// pluralBit returns tok.plural for the word s[start:end].
func pluralBit(s string, start, end int) uint8 {
	if end-start >= 3 && s[end-1]|0x20 == 's' {
		return 1
	}
	return 0
}

// numberRun returns the length of the run of number words that ends with
// the number word s[start:end], given the run before it: runs join number
// words separated by at most 3 number separators ("4111 1111 1111 1111",
// "+1 (555) 010-2345").
//
//go:noinline
func numberRun(s string, prevNum bool, prevEnd, start, end, run int) int {
	if prevNum && onlyNumberSeps(s[prevEnd:start]) {
		return run + end - start
	}
	return end - start
}

// longWord hashes the ASCII word at s[start:] the slow way: for words of 8
// or more bytes, and for words that continue with a non-ASCII letter or
// digit. It returns the hash, the end and whether the word is all digits.
func longWord(s string, start int) (h uint64, end int, num bool) {
	n := len(s)
	p := stringPtr(s)
	h = hashOffset
	num = true
	i := start
	for {
		v, _ := chunk(p, i, n)
		w := alnumMask(v)
		if w == msb {
			h = mixBlock(h, lowerMask(v))
			num = num && digitMask(v) == msb
			i += 8
			continue
		}
		k := bits.TrailingZeros64(^w&msb) >> 3
		if i+k < n && s[i+k] >= utf8.RuneSelf && continuesWord(s, i+k) {
			h, end = slowWord(s, start)
			return h, end, false
		}
		m := lowBytes(k)
		return finish(mixBlock(h, lowerMask(v)&m)), i + k, num && digitMask(v)&m == msb&m
	}
}

// slowWord hashes the word at s[start:], which holds non-ASCII letters or
// digits, rune by rune, and returns its hash and end.
func slowWord(s string, start int) (uint64, int) {
	var buf [64]byte
	lowered := buf[:0]
	i := start
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if alnumMask(uint64(c)) == 0 {
				break
			}
			lowered = append(lowered, byte(lowerMask(uint64(c))))
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			break
		}
		lowered = utf8.AppendRune(lowered, unicode.ToLower(r))
		i += size
	}
	return wordHash(lowered), i
}

// onlyNumberSeps reports whether gap (between two number words) is at most
// 3 bytes of number separators (" -.()+/"). No loop: see analyze.
func onlyNumberSeps(gap string) bool {
	switch len(gap) {
	case 0:
		return true
	case 1:
		return numberSep[gap[0]] != 0
	case 2:
		return numberSep[gap[0]]&numberSep[gap[1]] != 0
	case 3:
		return numberSep[gap[0]]&numberSep[gap[1]]&numberSep[gap[2]] != 0
	}
	return false
}

// numberSep is 1 for bytes that may sit inside a written number.
var numberSep = func() (t [256]uint8) {
	for _, c := range " -.()+/" {
		t[c] = 1
	}
	return t
}()

// wordHashes returns the hashes of the words of s.
func wordHashes(s string) []uint64 {
	ws := analyze(s).words
	out := make([]uint64, len(ws))
	for i, w := range ws {
		out[i] = w.h
	}
	return out
}

// hashRange hashes the word s[start:end] the way analyze does. A word of
// fewer than 8 bytes in a text of 8 or more costs one read and no loop or
// call.
func hashRange(s string, start, end int) uint64 {
	if end-start < 8 && len(s) >= 8 {
		v := loadAt(stringPtr(s), start, len(s)-8) & lowBytes(end-start)
		if v&msb == 0 {
			return finish(mixBlock(hashOffset, lowerMask(v)))
		}
	}
	return hashRangeLong(s, start, end)
}

// hashRangeLong is hashRange for long words, short texts and non-ASCII
// bytes.
func hashRangeLong(s string, start, end int) uint64 {
	n := len(s)
	p := stringPtr(s)
	h := uint64(hashOffset)
	i := start
	for ; i+8 <= end; i += 8 {
		v := load8(p, i)
		if v&msb != 0 {
			return slowHash(s[start:end])
		}
		h = mixBlock(h, lowerMask(v))
	}
	var last uint64
	if i < end {
		v, _ := chunk(p, i, n)
		last = v & lowBytes(end-i)
		if last&msb != 0 {
			return slowHash(s[start:end])
		}
	}
	return finish(mixBlock(h, lowerMask(last)))
}

// slowHash hashes the word s rune by rune.
func slowHash(s string) uint64 {
	var lowered []byte
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			lowered = append(lowered, byte(lowerMask(uint64(c))))
			i++
			continue
		}
		_, lower, size := runeWord(s, i)
		if lower == nil {
			lower = []byte(s[i : i+size])
		}
		lowered = append(lowered, lower...)
		i += size
	}
	return wordHash(lowered)
}

// pluralStem returns the hashes of w without a trailing "s" and "es" (0
// when w does not end so).
func pluralStem(s string, w tok) (noS, noES uint64) {
	if w.end-w.start < 3 || s[w.end-1]|0x20 != 's' {
		return 0, 0
	}
	noS = hashRange(s, int(w.start), int(w.end-1))
	if w.end-w.start >= 4 && s[w.end-2]|0x20 == 'e' {
		noES = hashRange(s, int(w.start), int(w.end-2))
	}
	return noS, noES
}

// bloom is a 4096-bit filter over word hashes: a cheap "certainly not in
// the set" before a table lookup.
type bloom [64]uint64

func (b *bloom) add(h uint64)      { b[h>>58] |= 1 << (h >> 52 & 63) }
func (b *bloom) may(h uint64) bool { return b[h>>58]&(1<<(h>>52&63)) != 0 }

// htab maps 64-bit hashes to int32 values (open addressing, linear
// probing). Built once, then read-only.
type htab struct {
	keys  []uint64
	vals  []int32
	shift uint
	bl    bloom
}

func newHtab(n int) htab {
	size, shift := 8, uint(61)
	for size < 2*n {
		size <<= 1
		shift--
	}
	return htab{keys: make([]uint64, size), vals: make([]int32, size), shift: shift}
}

func (t *htab) slot(k uint64) uint64 { return (k * 0x9E3779B97F4A7C15) >> t.shift }

// put sets k to v, replacing an earlier value; k must not be 0.
func (t *htab) put(k uint64, v int32) {
	t.bl.add(k)
	mask := uint64(len(t.keys) - 1)
	for i := t.slot(k); ; i = (i + 1) & mask {
		if t.keys[i] == 0 || t.keys[i] == k {
			t.keys[i], t.vals[i] = k, v
			return
		}
	}
}

// get returns the value of k. The bloom test is inlined at call sites.
func (t *htab) get(k uint64) (int32, bool) {
	if !t.bl.may(k) {
		return 0, false
	}
	return t.probe(k)
}

// probe is kept out of line so that get, the bloom test in front of it,
// inlines.
//
//go:noinline
func (t *htab) probe(k uint64) (int32, bool) {
	mask := uint64(len(t.keys) - 1)
	for i := t.slot(k); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case k:
			return t.vals[i], true
		case 0:
			return 0, false
		}
	}
}

// wordSet is a set of word hashes.
type wordSet struct{ t htab }

func newWordSet(words []string) wordSet {
	var hs []uint64
	for _, w := range words {
		hs = append(hs, wordHashes(w)...)
	}
	s := wordSet{t: newHtab(len(hs))}
	for _, h := range hs {
		s.t.put(h, 1)
	}
	return s
}

func (s *wordSet) has(h uint64) bool {
	_, ok := s.t.get(h)
	return ok
}

// phrase is one entry of a phraseSet.
type phrase struct {
	words []uint64
	text  string // lower-cased words joined by spaces, for messages
}

// phraseSet finds whole-word, case-insensitive phrases of one or more
// words. It is built once and read-only afterwards.
type phraseSet struct {
	first  htab       // hash of the first word -> index in groups
	groups [][]phrase // phrases by first word
	// loose lets the last word of a phrase also match its plural ("loan"
	// matches "loans", "tax" matches "taxes").
	loose bool
	// looseBit is 1 when loose, for next's branch-free test.
	looseBit uint8
}

func newPhraseSet(phrases []string, loose bool) *phraseSet {
	ps := &phraseSet{first: newHtab(len(phrases)), loose: loose}
	if loose {
		ps.looseBit = 1
	}
	for _, p := range phrases {
		a := analyze(p)
		if len(a.words) == 0 {
			continue
		}
		ph := phrase{words: make([]uint64, len(a.words))}
		b := make([]byte, 0, len(p))
		for i, w := range a.words {
			ph.words[i] = w.h
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, lowerString(p[w.start:w.end])...)
		}
		ph.text = string(b)
		if g, ok := ps.first.get(ph.words[0]); ok {
			ps.groups[g] = append(ps.groups[g], ph)
			continue
		}
		ps.first.put(ph.words[0], int32(len(ps.groups)))
		ps.groups = append(ps.groups, []phrase{ph})
	}
	return ps
}

func (ps *phraseSet) empty() bool { return len(ps.groups) == 0 }

// next returns the index of the first word at or after i at which a phrase
// may start (its hash is in the bloom filter of first words, or, in loose
// mode, it may be a plural), or len(ws).
func (ps *phraseSet) next(ws []tok, i int) int {
	return scanWords(ws, i, &ps.first.bl, ps.looseBit, 0)
}

// scanWords returns the index of the first word at or after i, of at least
// minLen bytes, whose hash is in bl or (when plural is 1) whose plural bit
// is set; or len(ws). In the sandbox each loop iteration costs a
// termination check, so it tests 4 words per iteration, without calls or
// branches.
func scanWords(ws []tok, i int, bl *bloom, plural uint8, minLen int32) int {
	n := len(ws)
	if n > 0 {
		p := unsafe.Pointer(unsafe.SliceData(ws))
		for {
			// Written out: a call per word would cost a check each. Words
			// past the end count as hits, so that the scan stops there.
			m := wordHit(tokAt(p, i, n), bl, plural, minLen) | wordHit(tokAt(p, i+1, n), bl, plural, minLen)<<1 |
				wordHit(tokAt(p, i+2, n), bl, plural, minLen)<<2 | wordHit(tokAt(p, i+3, n), bl, plural, minLen)<<3 |
				wordHit(tokAt(p, i+4, n), bl, plural, minLen)<<4 | wordHit(tokAt(p, i+5, n), bl, plural, minLen)<<5 |
				wordHit(tokAt(p, i+6, n), bl, plural, minLen)<<6 | wordHit(tokAt(p, i+7, n), bl, plural, minLen)<<7 |
				pastEnd(i, n)
			if m != 0 {
				i += bits.TrailingZeros64(m)
				break
			}
			i += 8
		}
	}
	return i - (i-n)&^((i-n)>>63) // min(i, n)
}

// tokAt returns &ws[min(j, n-1)] for the n words at p, without a branch.
func tokAt(p unsafe.Pointer, j, n int) *tok {
	return (*tok)(unsafe.Add(p, uintptr(clampIndex(j, n))*unsafe.Sizeof(tok{})))
}

// wordHit is scanWords' test of a word, without a branch.
func wordHit(w *tok, bl *bloom, plural uint8, minLen int32) uint64 {
	return (bl[w.h>>58]>>(w.h>>52&63)&1 | uint64(w.plural&plural)) & (1 ^ uint64(uint32(w.end-w.start-minLen)>>31))
}

// pastEnd returns a mask of the words i..i+7 that are past n.
func pastEnd(i, n int) uint64 {
	left := n - i
	left &^= left >> 63 // max(left, 0)
	return 0xff << min(uint(left), 8) & 0xff
}

// longBit returns 1 when w has at least minLen bytes.
func longBit(w *tok, minLen int32) uint64 { return 1 ^ uint64(uint32(w.end-w.start-minLen)>>31) }

// clampIndex returns min(j, n-1) without a branch.
func clampIndex(j, n int) int {
	over := j - (n - 1)
	return j - over&^(over>>63)
}

// eqBit returns 1 when a == b, without a branch.
func eqBit(a, b uint64) uint64 {
	x := a ^ b
	return (x - 1) &^ x >> 63
}

// addWords adds the hashes of ws, 4 per loop iteration.
func (b *bloom) addWords(ws []tok) {
	n := len(ws)
	for k := 0; k < n; k += 4 {
		b.add(ws[k].h)
		b.add(ws[clampIndex(k+1, n)].h)
		b.add(ws[clampIndex(k+2, n)].h)
		b.add(ws[clampIndex(k+3, n)].h)
	}
}

// containsWord reports whether a word of ws has hash h, testing 4 words
// per loop iteration.
func containsWord(ws []tok, h uint64) bool {
	n := len(ws)
	for k := 0; k < n; k += 4 {
		if eqBit(ws[k].h, h)|eqBit(ws[clampIndex(k+1, n)].h, h)|eqBit(ws[clampIndex(k+2, n)].h, h)|
			eqBit(ws[clampIndex(k+3, n)].h, h) != 0 {
			return true
		}
	}
	return false
}

// matchAt returns the phrase that starts at ws[i], if any.
func (ps *phraseSet) matchAt(s string, ws []tok, i int) (*phrase, bool) {
	if g, ok := ps.first.get(ws[i].h); ok {
		for k := range ps.groups[g] {
			p := &ps.groups[g][k]
			if ps.seqAt(s, ws, i, p.words) {
				return p, true
			}
		}
	}
	if !ps.loose {
		return nil, false
	}
	// A one-word phrase in its plural form.
	noS, noES := pluralStem(s, ws[i])
	for _, stem := range [2]uint64{noS, noES} {
		if stem == 0 {
			continue
		}
		if g, ok := ps.first.get(stem); ok {
			for k := range ps.groups[g] {
				if p := &ps.groups[g][k]; len(p.words) == 1 {
					return p, true
				}
			}
		}
	}
	return nil, false
}

// seqAt reports whether the words of want occur at ws[i:] within one
// sentence; in loose mode the last word may be plural.
func (ps *phraseSet) seqAt(s string, ws []tok, i int, want []uint64) bool {
	if i+len(want) > len(ws) {
		return false
	}
	sent := ws[i].sent
	for j, h := range want {
		w := ws[i+j]
		if w.sent != sent {
			return false
		}
		if w.h == h {
			continue
		}
		if !ps.loose || j != len(want)-1 || j == 0 {
			return false
		}
		if noS, noES := pluralStem(s, w); noS != h && noES != h {
			return false
		}
	}
	return true
}

// find returns the distinct phrases found in ws, in order of first
// appearance, at most limit of them (limit <= 0: all).
func (ps *phraseSet) find(s string, ws []tok, limit int) []string {
	var found []*phrase
	for i := ps.next(ws, 0); i < len(ws); i = ps.next(ws, i+1) {
		p, ok := ps.matchAt(s, ws, i)
		if !ok || slices.Contains(found, p) {
			continue
		}
		found = append(found, p)
		if limit > 0 && len(found) == limit {
			break
		}
	}
	if len(found) == 0 {
		return []string{} // as before: empty, not nil, and no allocation
	}
	out := make([]string, len(found))
	for i, p := range found {
		out[i] = p.text
	}
	return out
}

// count returns how many distinct phrases occur in ws, counting up to
// limit (> 0). It allocates nothing.
func (ps *phraseSet) count(s string, ws []tok, limit int) int {
	var found [8]*phrase
	if limit > len(found) {
		return len(ps.find(s, ws, limit))
	}
	n := 0
	for i := ps.next(ws, 0); i < len(ws); i = ps.next(ws, i+1) {
		p, ok := ps.matchAt(s, ws, i)
		if !ok || slices.Contains(found[:n], p) {
			continue
		}
		found[n] = p
		if n++; n == limit {
			break
		}
	}
	return n
}

// any reports whether any phrase occurs in ws.
func (ps *phraseSet) any(s string, ws []tok) bool {
	for i := ps.next(ws, 0); i < len(ws); i = ps.next(ws, i+1) {
		if _, ok := ps.matchAt(s, ws, i); ok {
			return true
		}
	}
	return false
}

func lowerString(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || c >= 'A' && c <= 'Z' {
			b := make([]rune, 0, len(s))
			for _, r := range s {
				b = append(b, unicode.ToLower(r))
			}
			return string(b)
		}
	}
	return s
}

// textCache remembers the analysis of the last text it was asked about.
type textCache struct {
	src string
	a   analysis
	ok  bool
	// spare is storage for the words of the next analysis, left by a
	// recycled Check (see recycleCheck); used once.
	spare []tok
}

// get returns the analysis of s. It is small enough to inline; the
// analysis itself is out of line.
func (tc *textCache) get(s string) *analysis {
	if tc.ok && len(tc.src) == len(s) && unsafe.StringData(tc.src) == unsafe.StringData(s) {
		return &tc.a
	}
	return tc.load(s)
}

func (tc *textCache) load(s string) *analysis {
	tc.src, tc.a, tc.ok = s, analyzeInto(s, tc.spare), true
	tc.spare = nil
	return &tc.a
}

// recycle clears tc, keeping the storage of its words as spare.
func (tc *textCache) recycle() {
	spare := tc.a.words[:0]
	if cap(tc.spare) > cap(spare) {
		spare = tc.spare[:0]
	}
	if cap(spare) > maxSpareWords {
		spare = nil // one long text must not pin its storage
	}
	*tc = textCache{spare: spare}
}

// maxSpareWords bounds the word storage a recycled Check keeps (128 KiB).
const maxSpareWords = 4096

// Phrases matches a fixed list of phrases as whole words, ignoring case and
// punctuation ("can't breathe" matches "I CAN'T BREATHE!"). Build it once,
// at package level or in a validator constructor; it is safe for concurrent
// use.
type Phrases struct {
	ps *phraseSet
}

// NewPhrases returns a matcher for phrases.
func NewPhrases(phrases ...string) *Phrases {
	return &Phrases{ps: newPhraseSet(phrases, false)}
}

// Find returns the distinct phrases found in text (lower-cased, words joined
// by single spaces), in order of first appearance, at most limit of them
// (limit <= 0: all).
func (p *Phrases) Find(text string, limit int) []string {
	return p.ps.find(text, analyze(text).words, limit)
}

// In reports whether text contains any of the phrases.
func (p *Phrases) In(text string) bool {
	return p.ps.any(text, analyze(text).words)
}

// InResponse reports whether the check's current response contains any of
// the phrases. It reuses the analysis the built-in validators share, so it
// is cheaper than In(c.Response).
func (p *Phrases) InResponse(c *Check) bool {
	return p.ps.any(c.Response, c.responseWords())
}

// InQuery reports whether the check's query contains any of the phrases.
func (p *Phrases) InQuery(c *Check) bool {
	return p.ps.any(c.Query, c.queryWords())
}
