package sdk

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Word patterns describe phrasings to look for, matched on whole words
// within one sentence, ignoring case and punctuation. They are much cheaper
// than regular expressions inside the wasm sandbox. Syntax, elements
// separated by spaces:
//
//	word          the word itself; "can't" is the two words "can t"
//	(a|b c|d)     one of the alternatives; an alternative may be several words
//	[a|b c]       optionally one of the alternatives
//	*N            up to N arbitrary words (N from 1 to 9)
//	#             one word made of digits ("12" in "12%")
//
// The first element must be a word or a (...) group. Example:
//
//	guaranteed *2 (return|returns|profit|profits)
//
// matches "guaranteed returns" and "GUARANTEED 12% annual returns".

type slot struct {
	alts     [][]uint64 // alternatives (word sequences); nil for gap and number
	optional bool
	gap      int  // > 0: skip 0..gap arbitrary words
	number   bool // one digits-only word
	// firsts is a 256-bit filter of the alternatives' first words: a word
	// not in it starts none of them, which saves the loops over the
	// alternatives (each iteration costs a termination check in the
	// sandbox).
	firsts [4]uint64
	// For slots with many alternatives, byFirst maps a first word to its
	// group in groups: the indexes of the alternatives starting with it,
	// in their original order.
	byFirst *htab
	groups  [][]int32
}

// indexAlts builds byFirst and groups for a slot with many alternatives.
func (sl *slot) indexAlts() {
	if len(sl.alts) <= 4 {
		return
	}
	t := newHtab(len(sl.alts))
	for k, alt := range sl.alts {
		g, ok := t.get(alt[0])
		if !ok {
			g = int32(len(sl.groups))
			t.put(alt[0], g)
			sl.groups = append(sl.groups, nil)
		}
		sl.groups[g] = append(sl.groups[g], int32(k))
	}
	sl.byFirst = &t
}

func (sl *slot) mayStart(h uint64) bool { return sl.firsts[h>>62]>>(h>>56&63)&1 != 0 }

type wordPattern struct {
	src   string
	slots []slot
	// next, when set, is a filter of the words that can follow a match of
	// the first slot (whose alternatives are then all one word long): a
	// cheap test before matchSlots, since most candidates fail there.
	next *[4]uint64
}

// nextFilter computes wordPattern.next.
func (p *wordPattern) nextFilter() {
	for _, alt := range p.slots[0].alts {
		if len(alt) != 1 {
			return
		}
	}
	var f [4]uint64
	for _, sl := range p.slots[1:] {
		if sl.alts == nil { // a gap or a number: any word
			return
		}
		for k := range f {
			f[k] |= sl.firsts[k]
		}
		if !sl.optional {
			p.next = &f
			return
		}
	}
	// Every later slot is optional: the first word alone may match.
}

// mayFollow reports whether the word after a match of the first slot at
// ws[i] can continue p.
func (p *wordPattern) mayFollow(ws []tok, i int) bool {
	if p.next == nil {
		return true
	}
	if i+1 >= len(ws) {
		return false
	}
	h := ws[i+1].h
	return p.next[h>>62]>>(h>>56&63)&1 != 0
}

func parseWordPattern(src string) (wordPattern, error) {
	p := wordPattern{src: src}
	s := strings.TrimSpace(src)
	for len(s) > 0 {
		switch s[0] {
		case ' ', '\t', '\n':
			s = s[1:]
			continue
		case '(', '[':
			closer := byte(')')
			if s[0] == '[' {
				closer = ']'
			}
			end := strings.IndexByte(s, closer)
			if end < 0 {
				return p, fmt.Errorf("pattern %q: unclosed %q", src, s[0])
			}
			var sl slot
			sl.optional = s[0] == '['
			for alt := range strings.SplitSeq(s[1:end], "|") {
				if strings.ContainsAny(alt, "()[]*#") {
					return p, fmt.Errorf("pattern %q: groups cannot nest or hold * or #", src)
				}
				ws := wordHashes(alt)
				if len(ws) == 0 {
					return p, fmt.Errorf("pattern %q: empty alternative (use [...] for optional words)", src)
				}
				sl.alts = append(sl.alts, ws)
			}
			p.slots = append(p.slots, sl)
			s = s[end+1:]
		case '*':
			end := 1
			for end < len(s) && s[end] >= '0' && s[end] <= '9' {
				end++
			}
			n, err := strconv.Atoi(s[1:end])
			if err != nil || n < 1 || n > 9 {
				return p, fmt.Errorf("pattern %q: want *1 to *9", src)
			}
			p.slots = append(p.slots, slot{gap: n})
			s = s[end:]
		case '#':
			p.slots = append(p.slots, slot{number: true})
			s = s[1:]
		case ')', ']', '|':
			return p, fmt.Errorf("pattern %q: unexpected %q", src, s[0])
		default:
			end := strings.IndexAny(s, " \t\n([*#)]|")
			if end < 0 {
				end = len(s)
			}
			ws := wordHashes(s[:end])
			if len(ws) > 0 {
				p.slots = append(p.slots, slot{alts: [][]uint64{ws}})
			}
			s = s[end:]
		}
	}
	if len(p.slots) == 0 {
		return p, fmt.Errorf("pattern %q has no words", src)
	}
	if first := p.slots[0]; first.alts == nil || first.optional {
		return p, fmt.Errorf("pattern %q: must start with a word or a (...) group", src)
	}
	for i := range p.slots {
		sl := &p.slots[i]
		for _, alt := range sl.alts {
			h := alt[0]
			sl.firsts[h>>62] |= 1 << (h >> 56 & 63)
		}
		sl.indexAlts()
	}
	p.nextFilter()
	return p, nil
}

// matchSlots matches slots at ws[i:], all in sentence sent, and returns the
// end index (exclusive) of the shortest match, or -1.
func matchSlots(ws []tok, i int, slots []slot, sent int32) int {
	if len(slots) == 0 {
		return i
	}
	sl := &slots[0]
	switch {
	case sl.gap > 0:
		for k := 0; k <= sl.gap && i+k <= len(ws); k++ {
			if k > 0 && ws[i+k-1].sent != sent {
				break
			}
			if e := matchSlots(ws, i+k, slots[1:], sent); e >= 0 {
				return e
			}
		}
		return -1
	case sl.number:
		if i < len(ws) && ws[i].num && ws[i].sent == sent {
			return matchSlots(ws, i+1, slots[1:], sent)
		}
		return -1
	}
	if i < len(ws) && sl.mayStart(ws[i].h) {
		if e := matchAlts(ws, i, sl, slots, sent); e >= 0 {
			return e
		}
	}
	if sl.optional {
		return matchSlots(ws, i, slots[1:], sent)
	}
	return -1
}

// matchAlts tries the alternatives of sl = &slots[0] at ws[i:], in order.
func matchAlts(ws []tok, i int, sl *slot, slots []slot, sent int32) int {
	if sl.byFirst != nil {
		g, ok := sl.byFirst.get(ws[i].h)
		if !ok {
			return -1
		}
		for _, k := range sl.groups[g] {
			if e := matchAlt(ws, i, sl.alts[k], slots, sent); e >= 0 {
				return e
			}
		}
		return -1
	}
	for _, alt := range sl.alts {
		if i+len(alt) > len(ws) {
			continue
		}
		ok := true
		for j, h := range alt {
			if ws[i+j].h != h || ws[i+j].sent != sent {
				ok = false
				break
			}
		}
		if ok {
			if e := matchSlots(ws, i+len(alt), slots[1:], sent); e >= 0 {
				return e
			}
		}
	}
	return -1
}

// matchAlt matches the alternative alt of slots[0] at ws[i:], then the
// rest of the slots.
func matchAlt(ws []tok, i int, alt []uint64, slots []slot, sent int32) int {
	if i+len(alt) > len(ws) {
		return -1
	}
	for j, h := range alt {
		if ws[i+j].h != h || ws[i+j].sent != sent {
			return -1
		}
	}
	return matchSlots(ws, i+len(alt), slots[1:], sent)
}

// patternSet finds matches of several word patterns, indexed by the words
// their first element can start with.
type patternSet struct {
	pats  []wordPattern
	first htab      // first word -> index in byWord
	by    [][]int32 // pattern indexes by first word
}

func newPatternSet(srcs []string) (*patternSet, error) {
	ps := &patternSet{}
	var errs []error
	n := 0
	for _, src := range srcs {
		p, err := parseWordPattern(src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps.pats = append(ps.pats, p)
		n += len(p.slots[0].alts)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(ps.pats) == 0 {
		return nil, errors.New("no patterns given")
	}
	ps.first = newHtab(n)
	for pi, p := range ps.pats {
		for _, alt := range p.slots[0].alts {
			g, ok := ps.first.get(alt[0])
			if !ok {
				g = int32(len(ps.by))
				ps.first.put(alt[0], g)
				ps.by = append(ps.by, nil)
			}
			if l := ps.by[g]; len(l) == 0 || l[len(l)-1] != int32(pi) {
				ps.by[g] = append(l, int32(pi))
			}
		}
	}
	return ps, nil
}

// nextFirst returns the index of the first word at or after i whose hash
// is in the bloom filter of first words, or len(ws) (see scanWords).
func (ps *patternSet) nextFirst(ws []tok, i int) int {
	return scanWords(ws, i, &ps.first.bl, 0, 0)
}

// each calls fn with the word range [i, e) of every match, scanning left to
// right; a match resumes the scan after its end. fn returns false to stop.
func (ps *patternSet) each(ws []tok, fn func(i, e int) bool) {
	for i := ps.nextFirst(ws, 0); i < len(ws); i = ps.nextFirst(ws, i+1) {
		g, ok := ps.first.get(ws[i].h)
		if !ok {
			continue
		}
		for _, pi := range ps.by[g] {
			p := &ps.pats[pi]
			if !p.mayFollow(ws, i) {
				continue
			}
			if e := matchSlots(ws, i, p.slots, ws[i].sent); e > i {
				if !fn(i, e) {
					return
				}
				i = e - 1
				break
			}
		}
	}
}
