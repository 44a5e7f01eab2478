package router

import (
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxQueryBytes bounds the work spent on one query: longer input is cut.
const maxQueryBytes = 4096

// lexical is router v0: for every domain it keeps the TF-IDF vectors of its
// examples and its keyword set. A query scores, per domain, the best cosine
// similarity to one of the examples blended with keyword evidence.
type lexical struct {
	opts     Options
	names    []string
	idf      map[string]float64
	domains  []lexDomain
	maxIDF   float64
	kwWeight float64
}

type lexDomain struct {
	name     string
	examples []sparse
	keywords map[string]bool // single-token keywords (stemmed)
	phrases  [][]string      // multi-token keywords
}

type sparse map[string]float64

func newLexical(domains []Domain, opts Options) *lexical {
	r := &lexical{opts: opts, names: sortedNames(domains), idf: map[string]float64{}, kwWeight: 0.4}
	// Document frequency over all examples and keyword lists.
	df := map[string]int{}
	docs := 0
	count := func(toks []string) {
		docs++
		for _, t := range uniq(toks) {
			df[t]++
		}
	}
	for _, d := range domains {
		for _, e := range d.Examples {
			count(tokens(e))
		}
		for _, k := range d.Keywords {
			count(tokens(k))
		}
	}
	for t, n := range df {
		v := math.Log(float64(docs+1)/float64(n+1)) + 1
		r.idf[t] = v
		r.maxIDF = max(r.maxIDF, v)
	}
	for _, d := range domains {
		ld := lexDomain{name: d.Name, keywords: map[string]bool{}}
		for _, e := range d.Examples {
			if v := r.vector(tokens(e)); len(v) > 0 {
				ld.examples = append(ld.examples, v)
			}
		}
		for _, k := range d.Keywords {
			switch toks := tokens(k); len(toks) {
			case 0:
			case 1:
				ld.keywords[toks[0]] = true
			default:
				ld.phrases = append(ld.phrases, toks)
			}
		}
		r.domains = append(r.domains, ld)
	}
	return r
}

func (r *lexical) Domains() []string { return slices.Clone(r.names) }

// vector is the L2-normalised TF-IDF vector of toks; unknown words get the
// highest IDF (they are rare by definition) so they dilute the similarity.
func (r *lexical) vector(toks []string) sparse {
	v := sparse{}
	for _, t := range toks {
		w, ok := r.idf[t]
		if !ok {
			w = r.maxIDF + 1
		}
		v[t] += w
	}
	var n float64
	for _, w := range v {
		n += w * w
	}
	n = math.Sqrt(n)
	for t := range v {
		v[t] /= n
	}
	return v
}

func dot(a, b sparse) float64 {
	if len(a) > len(b) {
		a, b = b, a
	}
	var s float64
	for t, w := range a {
		s += w * b[t]
	}
	return s
}

func (r *lexical) Route(query string) Decision {
	toks := tokens(query)
	qv := r.vector(toks)
	scores := make([]Scored, 0, len(r.domains))
	for _, d := range r.domains {
		var sim float64
		for _, e := range d.examples {
			sim = max(sim, dot(qv, e))
		}
		hits := 0
		for _, t := range toks {
			if d.keywords[t] {
				hits++
			}
		}
		for _, p := range d.phrases {
			if containsRun(toks, p) {
				hits += 2
			}
		}
		kw := 1 - 1/(1+float64(hits)) // 0, .5, .67, .75 ...
		scores = append(scores, Scored{Domain: d.name, Score: (1-r.kwWeight)*sim + r.kwWeight*kw})
	}
	slices.SortStableFunc(scores, func(a, b Scored) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return strings.Compare(a.Domain, b.Domain)
	})
	dec := Decision{Alternatives: scores[:min(r.opts.TopK, len(scores))]}
	if len(scores) == 0 {
		dec.OutOfScope = true
		return dec
	}
	// Confidence: the best score, discounted when the runner-up is close.
	best := scores[0].Score
	conf := best
	if len(scores) > 1 && best > 0 {
		conf = best * (0.5 + 0.5*(best-scores[1].Score)/best)
	}
	dec.Confidence = math.Max(0, math.Min(1, conf))
	if dec.Confidence < r.opts.Threshold || best == 0 {
		dec.OutOfScope = true
		return dec
	}
	dec.Domain = scores[0].Domain
	return dec
}

func containsRun(toks, run []string) bool {
	for i := 0; i+len(run) <= len(toks); i++ {
		if slices.Equal(toks[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

func uniq(toks []string) []string {
	s := slices.Clone(toks)
	slices.Sort(s)
	return slices.Compact(s)
}

// stop words carry no domain evidence.
var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a an the and or but if of to in on at by for with from about as into
		is are was were be been being am do does did doing have has had having i me my mine we our you your
		he she it its they them their this that these those what which who whom how why when where can could
		would should will shall may might must not no so than too very just there here any some all also
		please tell want need get got im ive id`) {
		m[w] = true
	}
	return m
}()

// tokens lowercases, splits on anything but letters and digits, drops stop
// words and applies a light suffix stemmer. Invalid UTF-8 is treated as a
// separator; input beyond maxQueryBytes is ignored.
func tokens(s string) []string {
	if len(s) > maxQueryBytes {
		s = s[:maxQueryBytes]
	}
	var out []string
	var b strings.Builder
	flush := func() {
		if b.Len() == 0 {
			return
		}
		w := b.String()
		b.Reset()
		if stopWords[w] {
			return
		}
		out = append(out, stem(w))
	}
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if c != utf8.RuneError && (unicode.IsLetter(c) || unicode.IsDigit(c)) {
			b.WriteRune(unicode.ToLower(c))
			continue
		}
		if c == '\'' { // don't, it's: keep the word whole
			continue
		}
		flush()
	}
	flush()
	return out
}

// stem strips common English suffixes so "charges", "charged" and
// "charging" meet at "charg".
func stem(w string) string {
	w = stripSuffix(w)
	if len(w) > 3 && strings.HasSuffix(w, "e") {
		w = w[:len(w)-1]
	}
	return w
}

func stripSuffix(w string) string {
	for _, suf := range []string{"ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s"} {
		if len(w) > len(suf)+2 && strings.HasSuffix(w, suf) {
			switch suf {
			case "ies", "ied":
				return w[:len(w)-3] + "y"
			case "s":
				if strings.HasSuffix(w, "ss") {
					return w
				}
			}
			return w[:len(w)-len(suf)]
		}
	}
	return w
}
