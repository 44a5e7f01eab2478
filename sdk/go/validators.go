package sdk

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

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

// issue returns a one-issue report. Its array comes from the Check (see
// Check.issues) and its capacity is 1, so that appending to it copies.
// Messages are built with strconv and concatenation, not fmt: in the
// sandbox fmt's machinery costs several microseconds per call.
func (c *Check) issue(code, severity, message string) []abi.Issue {
	if c.nIssues == len(c.issues) {
		return []abi.Issue{{Code: code, Severity: severity, Message: message}}
	}
	k := c.nIssues
	c.nIssues++
	c.issues[k] = abi.Issue{Code: code, Severity: severity, Message: message}
	return c.issues[k : k+1 : k+1]
}

func itoa(n int) string { return strconv.Itoa(n) }

// percent formats a ratio as fmt's "%.0f%%" of ratio*100 does.
func percent(ratio float64) string { return strconv.FormatFloat(ratio*100, 'f', 0, 64) + "%" }

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
		return c.issue(CodeTooShort, abi.SeverityError, "response has "+itoa(got)+" characters, at least "+itoa(n)+" expected")
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
		return c.issue(CodeTooLong, abi.SeverityWarning, "response had "+itoa(total)+" characters; cut to "+
			itoa(utf8.RuneCountInString(c.Response))+" (limit "+itoa(n)+")")
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
			out = append(out, c.issue(CodeRepetition, abi.SeverityError,
				percent(ratio)+" of "+itoa(n)+"-word sequences repeat (limit "+percent(maxRatio)+")")...)
		}
		if line, ok := repeatedLine(text, ws); ok {
			out = append(out, c.issue(CodeRepeatedLine, abi.SeverityWarning,
				"line "+strconv.Quote(clip(line, 60))+" occurs 3 or more times")...)
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
	// open-addressing set of the n-gram hashes seen (on the stack for
	// texts of up to 64 n-grams).
	const base = 1000003
	var h uint64
	for _, w := range ws[:n] {
		h = h*base + w.h
	}
	pow := powBase(n - 1)
	// A sparse table (load at most 1/4 while it fits on the stack) keeps
	// collisions, and so the calls to probeInsert, rare.
	size := max(16, 1<<bits.Len(uint(4*total-1)))
	if size > 256 {
		size = 1 << bits.Len(uint(2*total-1))
	}
	var small [256]uint64
	var seen []uint64
	if size <= len(small) {
		seen = small[:size]
	} else {
		seen = make([]uint64, size)
	}
	mask := uint64(size - 1)
	var dup uint64
	i := 0
	for {
		// The first slot decides almost always, without a branch (each
		// costs a termination check in the sandbox, and a call in the loop
		// makes every branch look as likely): insert into an empty slot,
		// count a duplicate. Probing further is rare, out of the loop.
		var k, j uint64
		for {
			k = finish(h)
			j = (k * 0x9E3779B97F4A7C15) >> 32 & mask
			cur := seen[j]
			empty, same := eqBit(cur, 0), eqBit(cur, k)
			if empty|same == 0 {
				break
			}
			seen[j] = cur | k*empty
			dup += same
			if i+n >= len(ws) {
				return float64(dup) / float64(total)
			}
			h = (h-ws[i].h*pow)*base + ws[i+n].h
			i++
		}
		dup += uint64(probeInsert(seen, j, k, mask))
		if i+n >= len(ws) {
			return float64(dup) / float64(total)
		}
		h = (h-ws[i].h*pow)*base + ws[i+n].h
		i++
	}
}

// powBase returns 1000003^e modulo 2^64.
func powBase(e int) uint64 {
	p := uint64(1)
	for range e {
		p *= 1000003
	}
	return p
}

// probeInsert continues the linear probe of repeatedNgrams after slot j:
// it returns 1 when k is found, else inserts k and returns 0.
//
//go:noinline
func probeInsert(seen []uint64, j, k, mask uint64) int {
	for j = (j + 1) & mask; ; j = (j + 1) & mask {
		switch seen[j] {
		case k:
			return 1
		case 0:
			seen[j] = k
			return 0
		}
	}
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
		return c.issue(code, abi.SeverityError, what+" in response: "+quoteList(found))
	}}
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
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
	suffix := "\n\n" + text
	return Validator{Name: "require_disclaimer", Check: func(c *Check) []abi.Issue {
		if ps.any(c.Response, c.responseWords()) {
			return nil
		}
		c.Response = concat(strings.TrimRight(c.Response, " \t\n"), suffix)
		return c.issue(CodeDisclaimerAdded, abi.SeverityInfo, "required disclaimer appended")
	}}
}

// concat returns a + b in one allocation and without the loops of the
// general string concatenation (each loop iteration costs a termination
// check in the sandbox).
func concat(a, b string) string {
	buf := make([]byte, len(a)+len(b))
	copy(buf[copy(buf, a):], b)
	return unsafe.String(unsafe.SliceData(buf), len(buf))
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
	// The usual messages, built once: building one costs allocations and
	// loops, each expensive in the sandbox.
	noHits := [2]string{relevanceMessage(0, minHits, 0), relevanceMessage(0, minHits, 1)}
	return Validator{Name: "relevance", Check: func(c *Check) []abi.Issue {
		ws := c.responseWords()
		if len(ws) < 8 {
			return nil
		}
		hits := ps.count(c.Response, ws, minHits)
		if hits >= minHits {
			return nil
		}
		var inResponse bloom
		inResponse.addWords(ws)
		shared := 0
		qs := c.queryWords()
		// Query words of 4 or more bytes that may be in the response.
		for k := scanWords(qs, 0, &inResponse, 0, 4); k < len(qs); k = scanWords(qs, k+1, &inResponse, 0, 4) {
			if h := qs[k].h; !stopWords.has(h) && containsWord(ws, h) && !containsWord(qs[:k], h) {
				shared++
			}
		}
		if shared >= 2 {
			return nil
		}
		if hits == 0 { // shared is 0 or 1 here
			return c.issue(CodeLowRelevance, abi.SeverityWarning, noHits[shared])
		}
		return c.issue(CodeLowRelevance, abi.SeverityWarning, relevanceMessage(hits, minHits, shared))
	}}
}

// relevanceMessage is the message of a low_relevance issue.
func relevanceMessage(hits, minHits, shared int) string {
	return "response mentions " + itoa(hits) + " of the domain's keywords (want " + itoa(minHits) +
		") and " + itoa(shared) + " words of the query"
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
		return c.issue(rule.Code, abi.SeverityError, msg+": "+quoteList(found))
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
		return c.issue(CodeUnbalancedFence, abi.SeverityWarning, "unclosed "+fence+" code block; closing fence added")
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

// scanFences finds the fenced code blocks of s, line by line as the
// fences are written, and calls fn with the byte range of each (from the
// start of its opening fence line to the end of its closing one, newline
// included; a block left open runs to the end of s). It returns the marker
// of the block left open, or "". Only lines whose first character other
// than a space or tab is '`' or '~' can be fences, so it jumps from one
// such byte to the next with a SWAR scan instead of walking every line (in
// the sandbox each loop iteration costs a termination check).
func scanFences(s string, fn func(start, end int)) string {
	openMarker, openStart := "", 0
	for i := nextFenceByte(s, 0); i < len(s); i = nextFenceByte(s, i) {
		ls := i // the start of the line, if only spaces and tabs precede i
		for ls > 0 && (s[ls-1] == ' ' || s[ls-1] == '\t') {
			ls--
		}
		le := nextNewline(s, i)
		next := min(le+1, len(s)) // the start of the next line
		if ls == 0 || s[ls-1] == '\n' {
			marker, info, ok := fenceLine(strings.TrimRight(s[ls:le], "\r"))
			switch {
			case openMarker == "" && ok:
				openMarker, openStart = marker, ls
			case openMarker != "" && ok && info == "" && marker[0] == openMarker[0] && len(marker) >= len(openMarker):
				openMarker = ""
				fn(openStart, next)
			}
		}
		i = next
	}
	if openMarker != "" {
		fn(openStart, len(s))
	}
	return openMarker
}

// nextFenceByte returns the index of the first '`' or '~' at or after i in
// s, or len(s), examining 32 bytes per loop iteration.
func nextFenceByte(s string, i int) int {
	return nextByteOf(s, i, '`', '~')
}

// nextNewline returns the index of the first '\n' at or after i in s, or
// len(s).
func nextNewline(s string, i int) int {
	return nextByteOf(s, i, '\n', '\n')
}

// nextByteOf returns the index of the first byte equal to c1 or c2 (both
// non-zero) at or after i in s, or len(s). Reads past the end are shifted
// in as 0, which matches neither.
func nextByteOf(s string, i int, c1, c2 byte) int {
	n := len(s)
	if i >= n {
		return n
	}
	if n < 8 {
		for ; i < n && s[i] != c1 && s[i] != c2; i++ {
		}
		return i
	}
	p, lim := stringPtr(s), n-8
	for i < n {
		v0, v1, v2, v3 := loadAt(p, i, lim), loadAt(p, i+8, lim), loadAt(p, i+16, lim), loadAt(p, i+24, lim)
		m0 := eqMask(v0, c1) | eqMask(v0, c2)
		m1 := eqMask(v1, c1) | eqMask(v1, c2)
		m2 := eqMask(v2, c1) | eqMask(v2, c2)
		m3 := eqMask(v3, c1) | eqMask(v3, c2)
		if m0|m1|m2|m3 != 0 {
			t0, t1, t2 := bits.TrailingZeros64(m0)>>3, bits.TrailingZeros64(m1)>>3, bits.TrailingZeros64(m2)>>3
			t3 := bits.TrailingZeros64(m3) >> 3
			return min(n, i+t0+t0>>3*(t1+t1>>3*(t2+t2>>3*t3)))
		}
		i += 32
	}
	return n
}

// openFence reports whether s ends inside a fenced code block and the fence
// that would close it.
func openFence(s string) (bool, string) {
	m := scanFences(s, func(int, int) {})
	return m != "", m
}

// stripFencedCode returns s without its fenced code blocks.
func stripFencedCode(s string) string {
	var b []byte
	last := 0
	scanFences(s, func(start, end int) {
		if b == nil {
			b = make([]byte, 0, len(s))
		}
		b = append(b, s[last:start]...)
		last = end
	})
	if b == nil {
		return s
	}
	return string(append(b, s[last:]...))
}
