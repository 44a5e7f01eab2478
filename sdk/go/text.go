package sdk

import (
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// Text analysis for validators. Everything here is written for the wasm
// sandbox, where wazero's termination checks make every Go loop iteration
// and function call cost tens of nanoseconds and a Go map lookup about half
// a microsecond: one pass over the bytes produces hashed, lower-cased words,
// and word sets are open-addressing tables of 64-bit hashes behind a bloom
// filter. Words are compared by their 64-bit FNV-1a hash only: a false match
// needs a hash collision, about one chance in 2^64 per pair of words.

// FNV-1a, 64 bit.
const (
	hashOffset = 14695981039346656037
	hashPrime  = 1099511628211
)

// Byte tables.
var (
	// wordByte: 1 for ASCII letters and digits, 2 for bytes of multi-byte
	// runes (decided per rune), 0 for everything else.
	wordByte = func() (t [256]uint8) {
		for c := 0; c < 256; c++ {
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
				t[c] = 1
			case c >= 0x80:
				t[c] = 2
			}
		}
		return t
	}()
	// lowerByte lower-cases ASCII letters.
	lowerByte = func() (t [256]uint8) {
		for c := range 256 {
			t[c] = uint8(c)
			if c >= 'A' && c <= 'Z' {
				t[c] = uint8(c + 'a' - 'A')
			}
		}
		return t
	}()
	// notDigit is 1 for every byte but ASCII digits.
	notDigit = func() (t [256]uint8) {
		for c := range 256 {
			if c < '0' || c > '9' {
				t[c] = 1
			}
		}
		return t
	}()
	// sentenceEnd is 1 for bytes that end a sentence ('.' unless a word
	// follows it directly, as in "0.5" or "example.com").
	sentenceEnd = func() (t [256]uint8) {
		for _, c := range ".!?\n;:" {
			t[c] = 1
		}
		return t
	}()
	// newline is 1 for '\n'.
	newline = [256]uint8{'\n': 1}
	// flagByte marks bytes that analysis records: 1 for '@', 2 for the
	// bytes of Markdown code fences.
	flagByte = [256]uint8{'@': 1, '`': 2, '~': 2}
	// numberSep is 1 for bytes that may sit inside a written number.
	numberSep = func() (t [256]uint8) {
		for _, c := range " -.()+/" {
			t[c] = 1
		}
		return t
	}()
)

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
}

// analysis is the result of one pass over a text.
type analysis struct {
	words    []tok
	hasAt    bool // contains '@'
	hasFence bool // contains '`' or '~'
	digitRun int  // most digits in consecutive number words joined by number separators
}

func finish(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
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

// analyze splits s into words. The loops are kept free of calls and rare
// in branches: in the sandbox each taken branch costs a termination check.
func analyze(s string) analysis {
	a := analysis{words: make([]tok, 0, len(s)/4+4)}
	n := len(s)
	i := 0
	var sent, line int32
	var flags uint8
	for i < n {
		// The gap before a word.
		gap := i
		for i < n && wordByte[s[i]] == 0 {
			c := s[i]
			sent += int32(sentenceEnd[c])
			line += int32(newline[c])
			flags |= flagByte[c]
			i++
		}
		if i < n && wordByte[s[i]] == 2 {
			word, _, size := runeWord(s, i)
			if !word {
				i += size
				continue
			}
		}
		if i > gap && i < n && s[i-1] == '.' {
			sent-- // "0.5", "example.com": the dot is inside a word
		}
		if i >= n {
			break
		}
		// The word.
		start := i
		h := uint64(hashOffset)
		var digits uint8
		for i < n {
			c := s[i]
			if wordByte[c] != 1 {
				if wordByte[c] == 0 {
					break
				}
				word, lower, size := runeWord(s, i)
				if !word {
					break
				}
				for _, b := range lower {
					h = (h ^ uint64(b)) * hashPrime
				}
				digits = 1
				i += size
				continue
			}
			h = (h ^ uint64(lowerByte[c])) * hashPrime
			digits |= notDigit[c]
			i++
		}
		a.words = append(a.words, tok{start: int32(start), end: int32(i), sent: sent, line: line, h: finish(h), num: digits == 0})
	}
	a.hasAt, a.hasFence = flags&1 != 0, flags&2 != 0
	// Runs of number words ("4111 1111 1111 1111", "+1 (555) 010-2345").
	run := 0
	for k, w := range a.words {
		if !w.num {
			run = 0
			continue
		}
		if k > 0 && a.words[k-1].num && onlyNumberSeps(s[a.words[k-1].end:w.start]) {
			run += int(w.end - w.start)
		} else {
			run = int(w.end - w.start)
		}
		a.digitRun = max(a.digitRun, run)
	}
	return a
}

func onlyNumberSeps(gap string) bool {
	if len(gap) > 3 {
		return false
	}
	for i := 0; i < len(gap); i++ {
		if numberSep[gap[i]] == 0 {
			return false
		}
	}
	return true
}

// wordHashes returns the hashes of the words of s.
func wordHashes(s string) []uint64 {
	ws := analyze(s).words
	out := make([]uint64, len(ws))
	for i, w := range ws {
		out[i] = w.h
	}
	return out
}

// hashLower hashes the word s the way analyze does.
func hashLower(s string) uint64 {
	h := uint64(hashOffset)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < utf8.RuneSelf {
			h = (h ^ uint64(lowerByte[c])) * hashPrime
			continue
		}
		_, lower, size := runeWord(s, i)
		for _, b := range lower {
			h = (h ^ uint64(b)) * hashPrime
		}
		i += size - 1
	}
	return finish(h)
}

// pluralStem returns the hashes of w without a trailing "s" and "es" (0
// when w does not end so).
func pluralStem(s string, w tok) (noS, noES uint64) {
	if w.end-w.start < 3 || s[w.end-1]|0x20 != 's' {
		return 0, 0
	}
	noS = hashLower(s[w.start : w.end-1])
	if w.end-w.start >= 4 && s[w.end-2]|0x20 == 'e' {
		noES = hashLower(s[w.start : w.end-2])
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
}

func newPhraseSet(phrases []string, loose bool) *phraseSet {
	ps := &phraseSet{first: newHtab(len(phrases)), loose: loose}
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

// maybe is the cheap pre-test of matchAt: false means no phrase starts at w.
func (ps *phraseSet) maybe(s string, w *tok) bool {
	return ps.first.bl.may(w.h) || ps.loose && w.end-w.start >= 3 && s[w.end-1]|0x20 == 's'
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
	for i := range ws {
		if !ps.maybe(s, &ws[i]) {
			continue
		}
		p, ok := ps.matchAt(s, ws, i)
		if !ok {
			continue
		}
		dup := false
		for _, f := range found {
			if f == p {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		found = append(found, p)
		if limit > 0 && len(found) == limit {
			break
		}
	}
	out := make([]string, len(found))
	for i, p := range found {
		out[i] = p.text
	}
	return out
}

// any reports whether any phrase occurs in ws.
func (ps *phraseSet) any(s string, ws []tok) bool {
	for i := range ws {
		if !ps.maybe(s, &ws[i]) {
			continue
		}
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
	a   *analysis
}

func (tc *textCache) get(s string) *analysis {
	if tc.a != nil && len(tc.src) == len(s) && unsafe.StringData(tc.src) == unsafe.StringData(s) {
		return tc.a
	}
	a := analyze(s)
	tc.src, tc.a = s, &a
	return tc.a
}

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
