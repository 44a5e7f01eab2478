package sdk

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Issue codes reported by the validators of this package.
const (
	CodeTooShort         = "too_short"             // MinLength (error)
	CodeTooLong          = "too_long"              // MaxLength: cut to the limit (warning)
	CodeRepetition       = "repetition"            // NoRepetition: repeated word n-grams (error)
	CodeRepeatedLine     = "repeated_line"         // NoRepetition: the same line 3+ times (warning)
	CodeBannedTerm       = "banned_term"           // BannedTerms (error)
	CodeToxic            = "toxic_language"        // NoToxicity (error)
	CodeDisclaimerAdded  = "disclaimer_added"      // RequireDisclaimer appended it (info)
	CodeLowRelevance     = "low_relevance"         // Relevance (warning)
	CodeCertainDiagnosis = "certain_diagnosis"     // NoCertainDiagnoses (error)
	CodePromisedReturns  = "promised_returns"      // NoPromisedReturns (error)
	CodePIIRedacted      = "pii_redacted"          // RedactPII (warning)
	CodeUnbalancedFence  = "unbalanced_code_fence" // BalancedCodeFences: closed (warning)
)

func issue(code, severity, format string, args ...any) []abi.Issue {
	return []abi.Issue{{Code: code, Severity: severity, Message: fmt.Sprintf(format, args...)}}
}

// MinLength reports an error when the response, without surrounding
// white space, has fewer than n characters (runes). MinLength(1) rejects
// empty answers.
func MinLength(n int) Validator {
	if n < 1 {
		return invalid("min_length", fmt.Errorf("n = %d, want >= 1", n))
	}
	return Validator{Name: "min_length", Check: func(c *Check) []abi.Issue {
		t := strings.TrimSpace(c.Response)
		if len(t) >= 4*n { // a rune is at most 4 bytes
			return nil
		}
		got := utf8.RuneCountInString(t)
		if got >= n {
			return nil
		}
		return issue(CodeTooShort, abi.SeverityError, "response has %d characters, at least %d expected", got, n)
	}}
}

// MaxLength cuts a response longer than n characters (runes) at the last
// sentence or line end before the limit (or the last space, adding "…"),
// and reports a warning. Put it before validators that append text
// (RequireDisclaimer) and before BalancedCodeFences.
func MaxLength(n int) Validator {
	if n < 16 {
		return invalid("max_length", fmt.Errorf("n = %d, want >= 16", n))
	}
	return Validator{Name: "max_length", Check: func(c *Check) []abi.Issue {
		if len(c.Response) <= n { // at most one rune per byte
			return nil
		}
		total := utf8.RuneCountInString(c.Response)
		if total <= n {
			return nil
		}
		c.Response = cut(c.Response, n)
		return issue(CodeTooLong, abi.SeverityWarning, "response had %d characters; cut to %d (limit %d)",
			total, utf8.RuneCountInString(c.Response), n)
	}}
}

// cut shortens s to at most n runes, preferring a sentence or line end in
// the second half of the allowed text.
func cut(s string, n int) string {
	end := len(s)
	count := 0
	for i := range s {
		if count == n {
			end = i
			break
		}
		count++
	}
	head := s[:end]
	best := -1
	for i := len(head) - 1; i >= len(head)/2 && i > 0; i-- {
		ch := head[i]
		if ch == '\n' {
			best = i
			break
		}
		if (ch == '.' || ch == '!' || ch == '?') && (i+1 == len(head) || head[i+1] == ' ' || head[i+1] == '\n') {
			best = i + 1
			break
		}
	}
	if best > 0 {
		return strings.TrimRight(head[:best], " \n\t")
	}
	// No sentence end: cut at the last space and mark the cut. The marker
	// takes one rune of the budget.
	sp := strings.LastIndexByte(head, ' ')
	if sp < len(head)/2 {
		_, size := utf8.DecodeLastRuneInString(head)
		sp = len(head) - size
	}
	return strings.TrimRight(head[:sp], " \n\t") + "…"
}

// NoRepetition reports degenerate, looping output: an error when more than
// maxRatio of the response's word n-grams repeat an earlier n-gram, and a
// warning when a line of 3 or more words occurs 3 or more times. Fenced code
// blocks are skipped (code repeats legitimately). Texts of fewer than n+8
// words are not judged. NoRepetition(4, 0.3) is a sensible default.
func NoRepetition(n int, maxRatio float64) Validator {
	if n < 1 || n > 16 {
		return invalid("no_repetition", fmt.Errorf("n = %d, want 1..16", n))
	}
	if !(maxRatio > 0 && maxRatio < 1) {
		return invalid("no_repetition", fmt.Errorf("maxRatio = %v, want in (0,1)", maxRatio))
	}
	return Validator{Name: "no_repetition", Check: func(c *Check) []abi.Issue {
		text := c.Response
		a := c.responseAnalysis()
		ws := a.words
		if a.hasFence {
			if prose := stripFencedCode(text); len(prose) != len(text) {
				text, ws = prose, analyze(prose).words
			}
		}
		var out []abi.Issue
		if ratio := repeatedNgrams(ws, n); ratio > maxRatio {
			out = append(out, issue(CodeRepetition, abi.SeverityError,
				"%.0f%% of %d-word sequences repeat (limit %.0f%%)", ratio*100, n, maxRatio*100)...)
		}
		if line, ok := repeatedLine(text, ws); ok {
			out = append(out, issue(CodeRepeatedLine, abi.SeverityWarning,
				"line %q occurs 3 or more times", clip(line, 60))...)
		}
		return out
	}}
}

// repeatedNgrams returns the share of the word n-grams of ws that repeat an
// earlier one (0 for fewer than n+8 words).
func repeatedNgrams(ws []tok, n int) float64 {
	total := len(ws) - n + 1
	if len(ws) < n+8 {
		return 0
	}
	// Polynomial rolling hash over the word hashes, and an inline
	// open-addressing set of the n-gram hashes seen.
	const base = 1000003
	pow := uint64(1)
	for range n - 1 {
		pow *= base
	}
	var h uint64
	for _, w := range ws[:n] {
		h = h*base + w.h
	}
	size := 16
	for size < 2*total {
		size <<= 1
	}
	seen := make([]uint64, size)
	mask := uint64(size - 1)
	dup := 0
	for i := 0; ; i++ {
		k := finish(h)
		for j := (k * 0x9E3779B97F4A7C15) >> 32 & mask; ; j = (j + 1) & mask {
			if seen[j] == k {
				dup++
				break
			}
			if seen[j] == 0 {
				seen[j] = k
				break
			}
		}
		if i+n >= len(ws) {
			break
		}
		h = (h-ws[i].h*pow)*base + ws[i+n].h
	}
	return float64(dup) / float64(total)
}

// repeatedLine returns a line of 3 or more words that occurs 3 or more
// times in text (ws are its words).
func repeatedLine(text string, ws []tok) (string, bool) {
	if len(ws) < 9 || ws[len(ws)-1].line < 2 {
		return "", false
	}
	type lineInfo struct {
		h          uint64
		start, end int32
	}
	var lines []lineInfo
	for i := 0; i < len(ws); {
		l := lineInfo{start: ws[i].start}
		j := i
		for ; j < len(ws) && ws[j].line == ws[i].line; j++ {
			l.h = l.h*1000003 + ws[j].h
		}
		if j-i >= 3 {
			l.end = ws[j-1].end
			lines = append(lines, l)
		}
		i = j
	}
	if len(lines) < 3 {
		return "", false
	}
	counts := newHtab(len(lines))
	for _, l := range lines {
		k := finish(l.h)
		v, _ := counts.get(k)
		if v == 2 {
			return text[l.start:l.end], true
		}
		counts.put(k, v+1)
	}
	return "", false
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// BannedTerms reports an error when the response contains any of terms as
// whole words, ignoring case ("risk free" matches "Risk-free" but "ass" does
// not match "class").
func BannedTerms(terms ...string) Validator {
	return termValidator("banned_terms", CodeBannedTerm, "banned term", terms)
}

func termValidator(name, code, what string, terms []string) Validator {
	ps := newPhraseSet(terms, false)
	if ps.empty() {
		return invalid(name, errors.New("no terms given"))
	}
	return Validator{Name: name, Check: func(c *Check) []abi.Issue {
		found := ps.find(c.Response, c.responseWords(), 5)
		if len(found) == 0 {
			return nil
		}
		return issue(code, abi.SeverityError, "%s in response: %s", what, quoteList(found))
	}}
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// toxicTerms is a small built-in list of profanity and insults an assistant
// should never produce. It leaves out words with common harmless senses
// ("prick your finger", "no stupid questions").
var toxicTerms = []string{
	"fuck", "fucking", "fucked", "fucker", "motherfucker", "shit", "shitty", "bullshit",
	"bitch", "bastard", "asshole", "dickhead", "cunt", "wanker", "twat", "douchebag",
	"dumbass", "jackass", "idiot", "moron", "imbecile", "retard", "retarded",
	"piss off", "screw you", "shut up", "kill yourself", "go to hell", "you suck",
	"you are stupid", "you re stupid", "how stupid are you",
}

// NoToxicity is BannedTerms over a built-in list of profanity and insults,
// reported with code toxic_language.
func NoToxicity() Validator {
	return termValidator("no_toxicity", CodeToxic, "toxic language", toxicTerms)
}

// RequireDisclaimer makes sure the response carries text: when neither text
// nor any of the alternatives appears in it (whole words, case and
// punctuation ignored), text is appended after a blank line and an info
// issue is reported. Alternatives let a model's own wording count, e.g.
// "not financial advice".
func RequireDisclaimer(text string, alternatives ...string) Validator {
	text = strings.TrimSpace(text)
	ps := newPhraseSet(append([]string{text}, alternatives...), false)
	if len(wordHashes(text)) == 0 {
		return invalid("require_disclaimer", errors.New("empty disclaimer"))
	}
	return Validator{Name: "require_disclaimer", Check: func(c *Check) []abi.Issue {
		if ps.any(c.Response, c.responseWords()) {
			return nil
		}
		c.Response = strings.TrimRight(c.Response, " \t\n") + "\n\n" + text
		return []abi.Issue{{Code: CodeDisclaimerAdded, Severity: abi.SeverityInfo, Message: "required disclaimer appended"}}
	}}
}

// stopWords are left out when comparing the words of a query and a response.
var stopWords = newWordSet([]string{
	"about", "after", "also", "because", "been", "before", "being", "could", "does", "doing",
	"from", "have", "here", "just", "know", "like", "make", "more", "most", "much", "need",
	"only", "other", "should", "some", "such", "than", "that", "their", "them", "then",
	"there", "these", "they", "this", "very", "want", "what", "when", "where", "which",
	"while", "will", "with", "would", "your", "yours", "into", "help", "please", "thanks",
	"thank", "were", "explain", "tell",
})

// Relevance warns when the response looks unrelated to the domain: it
// mentions fewer than minHits distinct keywords (whole words; a keyword's
// last word may be plural: "loan" matches "loans") and shares fewer than 2
// content words (4+ letters, not stop words) with the query. Responses of
// fewer than 8 words are not judged.
func Relevance(keywords []string, minHits int) Validator {
	ps := newPhraseSet(keywords, true)
	if ps.empty() {
		return invalid("relevance", errors.New("no keywords given"))
	}
	minHits = max(minHits, 1)
	return Validator{Name: "relevance", Check: func(c *Check) []abi.Issue {
		ws := c.responseWords()
		if len(ws) < 8 {
			return nil
		}
		hits := len(ps.find(c.Response, ws, minHits))
		if hits >= minHits {
			return nil
		}
		var inResponse bloom
		for k := range ws {
			inResponse.add(ws[k].h)
		}
		shared := 0
		qs := c.queryWords()
		for k, q := range qs {
			if q.end-q.start < 4 || !inResponse.may(q.h) || stopWords.has(q.h) ||
				!containsWord(ws, q.h) || containsWord(qs[:k], q.h) {
				continue
			}
			shared++
		}
		if shared >= 2 {
			return nil
		}
		return issue(CodeLowRelevance, abi.SeverityWarning,
			"response mentions %d of the domain's keywords (want %d) and %d words of the query", hits, minHits, shared)
	}}
}

func containsWord(ws []tok, h uint64) bool {
	for k := range ws {
		if ws[k].h == h {
			return true
		}
	}
	return false
}

// ClaimRule describes claims a response must not make: word patterns (see
// below) and hedge words that, when they occur in the same sentence within
// Window words before a match, make it acceptable ("if you have diabetes"
// is fine, "you have diabetes" is not). Conditions do the same when they
// follow the match ("you don't need a doctor unless ..."). Contractions are
// split like any other word: "not" also covers "n't" ("can't" is "can t"),
// so a hedge list with "not" accepts "don't" and "won't".
//
// Patterns use the word-pattern syntax:
//
//	word          the word itself
//	(a|b c|d)     one of the alternatives, each one or more words
//	[a|b c]       optionally one of the alternatives
//	*N            up to N arbitrary words (1 to 9)
//	#             one word made of digits
//
// Matching is on whole words within one sentence, ignoring case and
// punctuation; the first element must be a word or a (...) group.
type ClaimRule struct {
	Name       string   // validator name
	Code       string   // issue code
	Message    string   // what is wrong, e.g. "states a diagnosis as certain"
	Patterns   []string // word patterns
	Hedges     []string // words that, before a match, make it acceptable
	Conditions []string // words that, after a match, make it acceptable
	Window     int      // words searched before and after a match; 0 means 6
}

// ForbidClaims returns a Validator that reports an error listing the first
// matches of rule.Patterns that are not hedged. Invalid patterns make
// Register fail.
func ForbidClaims(rule ClaimRule) Validator {
	name := rule.Name
	if name == "" {
		name = "forbid_claims"
	}
	if rule.Code == "" {
		return invalid(name, errors.New("Code is required"))
	}
	ps, err := newPatternSet(rule.Patterns)
	if err != nil {
		return invalid(name, err)
	}
	hedges := hedgeSet(rule.Hedges)
	conditions := hedgeSet(rule.Conditions)
	window := rule.Window
	if window <= 0 {
		window = 6
	}
	msg := rule.Message
	if msg == "" {
		msg = "forbidden claim"
	}
	return Validator{Name: name, Check: func(c *Check) []abi.Issue {
		ws := c.responseWords()
		var found []string
		ps.each(ws, func(i, e int) bool {
			if hedgedAround(ws, i, e, window, &hedges, &conditions) {
				return true
			}
			found = append(found, clip(c.Response[ws[i].start:ws[e-1].end], 60))
			return len(found) < 3
		})
		if len(found) == 0 {
			return nil
		}
		return issue(rule.Code, abi.SeverityError, "%s: %s", msg, quoteList(found))
	}}
}

// hedgeSet builds a word set; "not" also adds "t", the tail of "n't".
func hedgeSet(words []string) wordSet {
	for _, w := range words {
		if strings.EqualFold(strings.TrimSpace(w), "not") {
			return newWordSet(append(words, "t"))
		}
	}
	return newWordSet(words)
}

// hedgedAround reports whether a hedge occurs among the window words before
// ws[i] or a condition among the window words after ws[e-1], in the same
// sentence.
func hedgedAround(ws []tok, i, e, window int, hedges, conditions *wordSet) bool {
	sent := ws[i].sent
	for k := i - 1; k >= 0 && k >= i-window && ws[k].sent == sent; k-- {
		if hedges.has(ws[k].h) {
			return true
		}
	}
	for k := e; k < len(ws) && k < e+window && ws[k].sent == sent; k++ {
		if conditions.has(ws[k].h) {
			return true
		}
	}
	return false
}

// diagnosisRule flags certain diagnoses and "no need to see a doctor".
var diagnosisRule = ClaimRule{
	Name:    "no_certain_diagnoses",
	Code:    CodeCertainDiagnosis,
	Message: "states a diagnosis or medical outcome as certain",
	Patterns: []string{
		"you (definitely|certainly|clearly|surely|obviously|undoubtedly) (have|are suffering from|are having|have got|are experiencing)",
		"you (have|ve got|have got|are suffering from|re suffering from|are having) [a|an] (" + conditions + ")",
		"(the|your) diagnosis is",
		"i [can] (confirm|guarantee|am certain|am sure|am positive|m certain|m sure) [that] (you|this|it)",
		"(this|it|that) is (definitely|certainly|clearly|undoubtedly|without doubt|without a doubt) [a|an] (case of|sign of|symptom of|caused by|" + conditions + ")",
		"no need to (see|visit|consult|call) [a|your|an] (doctor|physician|gp|professional|emergency|ambulance)",
		"(don t|do not) need [to see|to visit] [a|your] (doctor|physician|medical attention|medical help)",
		"(100|one hundred) [percent] (sure|certain)",
		"will (definitely|certainly) (cure|go away|heal|resolve|clear up)",
	},
	Hedges: []string{"if", "whether", "may", "might", "could", "possibly", "perhaps", "unless",
		"suspect", "rule", "not", "no", "never", "unlikely", "do", "does", "think", "only"},
	Conditions: []string{"unless", "if", "until", "provided"},
}

// conditions are diagnoses a response must not state as certain.
const conditions = "cancer|diabetes|a tumor|tumor|a tumour|tumour|leukemia|lymphoma|hiv|aids|" +
	"multiple sclerosis|parkinson s|parkinsons|alzheimer s|alzheimers|heart disease|a heart attack|" +
	"heart attack|a stroke|stroke|appendicitis|pneumonia|covid|covid 19|lupus|depression|" +
	"schizophrenia|bipolar disorder|meningitis|sepsis|kidney failure|liver failure|epilepsy|" +
	"dementia|strep throat|copd|an infection|infection|a concussion|a fracture|a broken bone"

// NoCertainDiagnoses reports answers that state a diagnosis or outcome as
// certain ("you have diabetes", "the diagnosis is", "no need to see a
// doctor") unless hedged in the same sentence ("if you have diabetes",
// "only a doctor can confirm that you have ...").
func NoCertainDiagnoses() Validator { return ForbidClaims(diagnosisRule) }

// returnsRule flags promised or guaranteed investment results.
var returnsRule = ClaimRule{
	Name:    "no_promised_returns",
	Code:    CodePromisedReturns,
	Message: "promises or guarantees investment results",
	Patterns: []string{
		"(guarantee|guaranteed|guarantees|guaranteeing) *2 (" + gains + ")",
		"guaranteed to (make|earn|grow|double|triple|beat|outperform|rise|go up|increase|pay)",
		"(" + gains + ") (are|is|will be) guaranteed",
		"risk free (profit|profits|gain|gains|money|income|way to get rich|way to make money)",
		"(cannot|can not|can t|won t|will not|never) lose [any] (money|value|a dime|a penny|a cent)",
		"(will|is going to|are going to) (definitely|certainly|surely|undoubtedly) *2 (rise|go up|increase|grow|double|triple|outperform|pay off|recover|skyrocket)",
		"(double|triple) your (money|investment|savings)",
		"(surefire|sure fire) (bet|win|winner|investment|way)",
		"sure bet",
		"get rich quick",
		"can t go wrong with",
	},
	Hedges: []string{"no", "not", "never", "nobody", "nothing", "none", "without", "nor",
		"beware", "avoid", "promises", "promise", "promising", "claims", "claim", "claiming",
		"scam", "scams", "fraud", "suspicious", "if", "whether", "flag", "flags"},
}

const gains = "return|returns|profit|profits|gain|gains|income|yield|yields|growth|payout|payouts"

// NoPromisedReturns reports answers that promise or guarantee investment
// results ("guaranteed returns", "you can't lose money", "will definitely go
// up", "double your money") unless negated or quoted as a warning sign in
// the same sentence ("no investment has guaranteed returns", "beware of
// anyone promising guaranteed returns").
func NoPromisedReturns() Validator { return ForbidClaims(returnsRule) }

// BalancedCodeFences closes a Markdown code fence (``` or ~~~) that the
// response leaves open, typically because generation hit its token limit,
// and reports a warning.
func BalancedCodeFences() Validator {
	return Validator{Name: "balanced_code_fences", Check: func(c *Check) []abi.Issue {
		if !c.responseAnalysis().hasFence {
			return nil
		}
		open, fence := openFence(c.Response)
		if !open {
			return nil
		}
		c.Response = strings.TrimRight(c.Response, " \t\n") + "\n" + fence
		return issue(CodeUnbalancedFence, abi.SeverityWarning, "unclosed %s code block; closing fence added", fence)
	}}
}

// fenceLine reports whether line (without its newline) is a code fence and
// returns its marker run ("```", "~~~~") and the info string after it.
func fenceLine(line string) (marker, info string, ok bool) {
	t := strings.TrimLeft(line, " \t")
	if len(t) < 3 || (t[0] != '`' && t[0] != '~') {
		return "", "", false
	}
	n := 0
	for n < len(t) && t[n] == t[0] {
		n++
	}
	if n < 3 {
		return "", "", false
	}
	info = strings.TrimSpace(t[n:])
	if t[0] == '`' && strings.IndexByte(info, '`') >= 0 {
		return "", "", false
	}
	return t[:n], info, true
}

// scanFences walks the lines of s, calling fn for each with whether it is
// inside a fenced block (fence lines themselves count as inside). It returns
// the marker of a block left open at the end, or "".
func scanFences(s string, fn func(line string, inside bool)) string {
	openMarker := ""
	for line := range strings.Lines(s) {
		body := strings.TrimRight(line, "\r\n")
		marker, info, ok := fenceLine(body)
		switch {
		case openMarker == "" && ok:
			openMarker = marker
			fn(line, true)
		case openMarker != "" && ok && info == "" && marker[0] == openMarker[0] && len(marker) >= len(openMarker):
			openMarker = ""
			fn(line, true)
		default:
			fn(line, openMarker != "")
		}
	}
	return openMarker
}

// openFence reports whether s ends inside a fenced code block and the fence
// that would close it.
func openFence(s string) (bool, string) {
	m := scanFences(s, func(string, bool) {})
	return m != "", m
}

// stripFencedCode returns s without its fenced code blocks.
func stripFencedCode(s string) string {
	if !strings.Contains(s, "```") && !strings.Contains(s, "~~~") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	scanFences(s, func(line string, inside bool) {
		if !inside {
			b.WriteString(line)
		}
	})
	return b.String()
}
