package knowledge

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxPrefixRunes bounds the heading path that starts a chunk's text.
const maxPrefixRunes = 300

// piece is a unit of packing: a paragraph, a sentence, or part of an
// over-long sentence.
type piece struct {
	text string
	// sep joins the piece to the one before it in a chunk: "\n\n" between
	// paragraphs, else the white space that separated them (" " or "\n").
	sep string
}

// draft is a chunk before its heading path is prefixed.
type draft struct {
	sec  int // index of its (first) section
	body string
	n    int // characters in body
}

// chunkSections splits the sections into chunks of about size characters,
// each prefixed with its section's heading path. A section's paragraphs are
// packed into chunks of at most size characters; a paragraph that does not
// fit is split into sentences, and a sentence longer than 2*size at white
// space (or, lacking any, anywhere) into parts of at most size characters.
// A document of many tiny sections could still make more than maxChunks
// chunks: then neighbouring chunks are merged, across sections (a merged
// section's heading is kept inline), up to 2*size characters. It returns
// nil, without error, when even that leaves more than maxChunks; the
// caller refuses the document.
func chunkSections(secs []section, size, maxChunks int) []string {
	var drafts []draft
	for i, s := range secs {
		drafts = append(drafts, pack(i, splitSection(s.body, size), size)...)
	}
	if len(drafts) > maxChunks {
		drafts = mergeDrafts(drafts, secs, 2*size)
		if len(drafts) > maxChunks {
			return nil
		}
	}
	out := make([]string, len(drafts))
	for i, d := range drafts {
		out[i] = prefix(secs[d.sec].path) + d.body
	}
	return out
}

// prefix returns the heading path that starts a chunk: "A > B: ", or "".
func prefix(path []string) string {
	if len(path) == 0 {
		return ""
	}
	return cutRunes(strings.Join(path, " > "), maxPrefixRunes) + ": "
}

// pack packs a section's pieces greedily into drafts of at most size
// characters; a piece longer than size makes a draft of its own.
func pack(sec int, pieces []piece, size int) []draft {
	var out []draft
	var b strings.Builder
	n := 0
	for _, p := range pieces {
		pn := utf8.RuneCountInString(p.text)
		if n > 0 && n+len(p.sep)+pn > size {
			out = append(out, draft{sec: sec, body: b.String(), n: n})
			b.Reset()
			n = 0
		}
		if n > 0 {
			b.WriteString(p.sep)
			n += len(p.sep)
		}
		b.WriteString(p.text)
		n += pn
	}
	if n > 0 {
		out = append(out, draft{sec: sec, body: b.String(), n: n})
	}
	return out
}

// mergeDrafts merges neighbouring drafts greedily up to size characters. A
// draft that starts another section brings that section's heading along,
// as a line of its own.
func mergeDrafts(drafts []draft, secs []section, size int) []draft {
	var out []draft
	for i, d := range drafts {
		if i > 0 && d.sec != drafts[i-1].sec {
			// The first draft of a section: its heading goes inline.
			// (Unless the body starts with it already: a heading too long
			// for the path.)
			if p := secs[d.sec].path; len(p) > 0 && !strings.HasPrefix(d.body, p[len(p)-1]) {
				h := p[len(p)-1]
				d.body = h + "\n\n" + d.body
				d.n += utf8.RuneCountInString(h) + 2
			}
		}
		if k := len(out) - 1; k >= 0 && out[k].n+2+d.n <= size {
			out[k].body += "\n\n" + d.body
			out[k].n += 2 + d.n
			continue
		}
		out = append(out, d)
	}
	return out
}

// splitSection cuts a section's body into pieces: its paragraphs, and the
// sentences (or parts of sentences) of those longer than size.
func splitSection(body string, size int) []piece {
	var out []piece
	for para := range strings.SplitSeq(body, "\n\n") {
		para = strings.TrimSpace(para)
		if para == "" {
			continue
		}
		if utf8.RuneCountInString(para) <= size {
			out = append(out, piece{text: para, sep: "\n\n"})
			continue
		}
		sep := "\n\n"
		for _, s := range splitSentences(para) {
			if s.sep == "" {
				s.sep = sep
			}
			if utf8.RuneCountInString(s.text) > 2*size {
				if words := splitWords(s.text, size); len(words) > 0 {
					words[0].sep = s.sep
					out = append(out, words...)
				}
			} else {
				out = append(out, s)
			}
			sep = ""
		}
	}
	return out
}

// sentenceEnd reports whether r ends a sentence.
func sentenceEnd(r rune) bool {
	switch r {
	case '.', '!', '?', '…', '。', '！', '？', '؟', '।':
		return true
	}
	return false
}

// closer reports whether r may follow a sentence's end before the space:
// closing quotes and brackets.
func closer(r rune) bool {
	switch r {
	case '"', '\'', ')', ']', '}', '»', '”', '’', '」', '』':
		return true
	}
	return false
}

// splitSentences cuts a paragraph into sentences: after sentence-ending
// punctuation (and closing quotes or brackets) followed by white space,
// and at line ends. Each piece's sep is the white space before it (" " or
// "\n"), "" for the first.
func splitSentences(p string) []piece {
	var out []piece
	start := 0
	sep := ""
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRuneInString(p[i:])
		end := -1 // where the sentence ends, exclusive
		switch {
		case r == '\n':
			end = i
		case sentenceEnd(r):
			j := i + size
			for j < len(p) {
				r2, s2 := utf8.DecodeRuneInString(p[j:])
				if !sentenceEnd(r2) && !closer(r2) {
					break
				}
				j += s2
			}
			if j == len(p) || isSpace(p[j:]) {
				end = j
			}
		}
		if end < 0 {
			i += size
			continue
		}
		// Skip the white space after the sentence.
		k := end
		ws := " "
		for k < len(p) {
			r2, s2 := utf8.DecodeRuneInString(p[k:])
			if !unicode.IsSpace(r2) {
				break
			}
			if r2 == '\n' {
				ws = "\n"
			}
			k += s2
		}
		if text := strings.TrimSpace(p[start:end]); text != "" {
			out = append(out, piece{text: text, sep: sep})
			sep = ws
		}
		start = k
		i = max(k, i+size)
	}
	if text := strings.TrimSpace(p[start:]); text != "" {
		out = append(out, piece{text: text, sep: sep})
	}
	if len(out) > 0 {
		out[0].sep = ""
	}
	return out
}

// isSpace reports whether s starts with white space.
func isSpace(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsSpace(r)
}

// splitWords cuts an over-long sentence into parts of at most size
// characters, at the last white space that keeps a part within size, or
// at size characters when a part would hold none.
func splitWords(s string, size int) []piece {
	var out []piece
	for s != "" {
		// Find the byte offset of the size-th character, and the last
		// white space before it.
		n, cut, lastSpace := 0, len(s), -1
		for i, r := range s {
			if n == size {
				cut = i
				break
			}
			if unicode.IsSpace(r) {
				lastSpace = i
			}
			n++
		}
		if cut < len(s) && lastSpace > 0 {
			cut = lastSpace
		}
		part := strings.TrimSpace(s[:cut])
		s = strings.TrimLeftFunc(s[cut:], unicode.IsSpace)
		if part != "" {
			out = append(out, piece{text: part, sep: " "})
		}
	}
	return out
}
