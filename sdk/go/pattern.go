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
}

type wordPattern struct {
	src   string
	slots []slot
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
	if sl.optional {
		return matchSlots(ws, i, slots[1:], sent)
	}
	return -1
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

// each calls fn with the word range [i, e) of every match, scanning left to
// right; a match resumes the scan after its end. fn returns false to stop.
func (ps *patternSet) each(ws []tok, fn func(i, e int) bool) {
	for i := 0; i < len(ws); i++ {
		if !ps.first.bl.may(ws[i].h) {
			continue
		}
		g, ok := ps.first.get(ws[i].h)
		if !ok {
			continue
		}
		for _, pi := range ps.by[g] {
			if e := matchSlots(ws, i, ps.pats[pi].slots, ws[i].sent); e > i {
				if !fn(i, e) {
					return
				}
				i = e - 1
				break
			}
		}
	}
}
