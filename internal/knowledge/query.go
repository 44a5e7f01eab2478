package knowledge

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// maxTermRunes is the longest word of a query searched for; longer ones
// are dropped (no chunk could match them usefully).
const maxTermRunes = 64

// stopwords are common English words dropped from a query that has other
// words: they match nearly every chunk, which costs time and adds little
// to the ranking.
var stopwords = map[string]bool{}

func init() {
	for w := range strings.FieldsSeq(`
		a about above after again against all also am an and any are as at be because been
		before being below between both but by can could did do does doing down during each
		few for from further had has have having he her here hers herself him himself his how
		i if in into is it its itself just me more most my myself no nor not now of off on
		once only or other our ours ourselves out over own same she should so some such than
		that the their theirs them themselves then there these they this those through to too
		under until up us very was we were what when where which while who whom why will with
		would you your yours yourself yourselves`) {
		stopwords[w] = true
	}
}

// queryTerms cuts an (untrusted) query into the words to search for:
// maximal runs of letters, digits and combining marks starting with a
// letter or digit, lower-cased, each once, at most MaxQueryTerms of them.
// Stop words are dropped unless nothing else is left. Everything else in
// the query, FTS5 and tsquery syntax included, only separates words.
func queryTerms(q string) []string {
	var all, content []string
	seen := map[string]bool{}
	eachWord(q, func(w string) bool {
		w = strings.ToLower(w)
		if seen[w] || utf8.RuneCountInString(w) > maxTermRunes {
			return true
		}
		seen[w] = true
		all = append(all, w)
		if !stopwords[w] {
			content = append(content, w)
		}
		return len(content) < MaxQueryTerms
	})
	if len(content) > 0 {
		return content
	}
	return all[:min(len(all), MaxQueryTerms)]
}

// eachWord calls f with each word of s, in order, until f returns false: a
// word is a maximal run of letters, digits and combining marks that starts
// with a letter or digit. Invalid UTF-8 separates words.
func eachWord(s string, f func(w string) bool) {
	start := -1
	for i, r := range s {
		word := unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsNumber(r)
		if !word && start >= 0 && unicode.IsMark(r) {
			word = true // a combining mark continues a word
		}
		if r == utf8.RuneError {
			word = false
		}
		switch {
		case word && start < 0:
			start = i
		case !word && start >= 0:
			if !f(s[start:i]) {
				return
			}
			start = -1
		}
	}
	if start >= 0 {
		f(s[start:])
	}
}

// foldWord returns a word lower-cased, with the diacritics of its Latin
// letters removed ("Café" -> "cafe"), as SQLite's unicode61 tokenizer
// does with remove_diacritics: the PostgreSQL store folds the text it
// indexes and the words it searches for alike with it.
func foldWord(w string) string {
	w = strings.ToLower(w)
	ascii := true
	for i := 0; i < len(w); i++ {
		if w[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return w
	}
	d := norm.NFD.String(w)
	var b strings.Builder
	b.Grow(len(d))
	latin := false // the last base letter is Latin
	for _, r := range d {
		if unicode.Is(unicode.Mn, r) {
			if latin {
				continue
			}
		} else {
			latin = unicode.Is(unicode.Latin, r)
		}
		b.WriteRune(r)
	}
	return norm.NFC.String(b.String())
}

// ftsQuery returns the FTS5 MATCH expression for terms within scope: the
// scope token in the scope column AND any of the terms, each an FTS5
// string, in the text column. The terms hold only letters, digits and
// marks, so no quote needs escaping; quoting makes even "NEAR" or "AND" a
// word.
func ftsQuery(scope string, terms []string) string {
	var b strings.Builder
	b.WriteString(`scope : "`)
	b.WriteString(scope)
	b.WriteString(`" AND text : (`)
	for i, t := range terms {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteByte('"')
		b.WriteString(strings.ReplaceAll(t, `"`, `""`))
		b.WriteByte('"')
	}
	b.WriteString(")")
	return b.String()
}

// scopeToken returns the word that marks a (tenant, knowledge base)'s
// chunks in the full-text index: "s" and 40 decimal digits of a hash of
// both (128 bits). Ending in a digit, it is left alone by the porter
// stemmer, which only strips letters.
func scopeToken(tenant, kb string) string {
	h := sha256.Sum256([]byte(tenant + "\x00" + kb))
	return fmt.Sprintf("s%020d%020d", binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(h[8:16]))
}

// indexText returns the words of a chunk as the PostgreSQL store indexes
// them: cut as queryTerms cuts a query, folded (foldWord), the words
// longer than any searched for left out, joined by spaces. PostgreSQL's
// parser then only ever sees plain words, so that the chunk's words are
// exactly those a query can name (no URL, e-mail, file or hyphenated
// tokens of its own), whatever the database's locale.
func indexText(text string) string {
	var b strings.Builder
	b.Grow(len(text))
	eachWord(text, func(w string) bool {
		if utf8.RuneCountInString(w) > maxTermRunes {
			return true
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(foldWord(w))
		return true
	})
	return b.String()
}

// tsQuery returns the to_tsquery text that matches a chunk holding any of
// terms (from queryTerms): each term folded, quoted, the terms OR-ed. The
// terms hold only letters, digits and marks, so none can be tsquery syntax
// (operators, weights, prefixes); quotes and backslashes would still be
// doubled. The text is passed to to_tsquery as a parameter, never spliced
// into SQL.
func tsQuery(terms []string) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, t := range terms {
		t = foldWord(t)
		if seen[t] {
			continue
		}
		seen[t] = true
		if b.Len() > 0 {
			b.WriteString(" | ")
		}
		b.WriteByte('\'')
		b.WriteString(strings.NewReplacer(`'`, `''`, `\`, `\\`).Replace(t))
		b.WriteByte('\'')
	}
	return b.String()
}
