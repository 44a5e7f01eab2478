package sdk

import (
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// refAnalyze is a plain rune-by-rune reference for analyze.
func refAnalyze(s string) analysis {
	var a analysis
	a.hasAt = strings.Contains(s, "@")
	a.hasFence = strings.ContainsAny(s, "`~")
	var sent, line int32
	start := -1
	var lowered []byte
	flush := func(end int) {
		if start < 0 {
			return
		}
		num := true
		for i := start; i < end; i++ {
			if s[i] < '0' || s[i] > '9' {
				num = false
			}
		}
		var plural uint8
		if end-start >= 3 && (s[end-1] == 's' || s[end-1] == 'S') {
			plural = 1
		}
		a.words = append(a.words, tok{start: int32(start), end: int32(end), sent: sent, line: line, h: refWordHash(lowered), num: num, plural: plural})
		start, lowered = -1, nil
	}
	for i, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if start < 0 {
				start = i
			}
			lowered = utf8.AppendRune(lowered, unicode.ToLower(r))
			continue
		}
		flush(i)
		switch r {
		case '!', '?', '\n', ';', ':':
			sent++
		case '.':
			next, _ := utf8.DecodeRuneInString(s[i+1:])
			if !(unicode.IsLetter(next) || unicode.IsDigit(next)) {
				sent++
			}
		}
		if r == '\n' {
			line++
		}
	}
	flush(len(s))
	a.digitRun = refDigitRun(s, a.words)
	return a
}

// refWordHash is a byte-by-byte reference for wordHash.
func refWordHash(lowered []byte) uint64 {
	h := uint64(hashOffset)
	var block uint64
	for i, b := range lowered {
		block |= uint64(b) << (8 * (i % 8))
		if i%8 == 7 {
			h = mixBlock(h, block)
			block = 0
		}
	}
	return finish(mixBlock(h, block))
}

func refDigitRun(s string, ws []tok) int {
	best, run := 0, 0
	for k, w := range ws {
		if !w.num {
			run = 0
			continue
		}
		gap := ""
		if k > 0 {
			gap = s[ws[k-1].end:w.start]
		}
		if k > 0 && ws[k-1].num && len(gap) <= 3 && strings.Trim(gap, " -.()+/") == "" {
			run += int(w.end - w.start)
		} else {
			run = int(w.end - w.start)
		}
		best = max(best, run)
	}
	return best
}

var analyzeSeeds = []string{
	"",
	"Hello, World! It's 9.5% of $10,000. See example.com... Done",
	"ÉCOLE über straße Σίσυφος 日本語 — 123 ١٢٣",
	"line one\nline two\n\nline three: yes; no? ok.",
	"card 4111 1111 1111 1111, phone +1 (555) 010-2345, mail a@b.co ```go",
	"bad \xff utf8 \xc3 é\xe2\x80",
	"a.b. c.—d .e",
	"Supercalifragilistic internationalization ABCDEFGH abcdefghijklmnop 1234567890123456 x",
	"déjà-vu naïveté abcdefghé ABCDEFGHÉ abcdefgh\u00e9 12345678٣ Straße",
	"        \n\n\n   ........!!!???;;;:::   @@@```~~~        tail",
	"4111111111111111 and 12345678 90 +1 (555) 010-2345 1.2.3",
	"x",
	"ab\xffcd\x00ef",
	"0\x80 12345678\x80 abcdefgh\xcf\x83",
	"fin.élan x.Ωmega 3.٣ end.é",
	"........000000000 ........x",
	"12345678ab payments abcdefghs 1234567812345678 abcdefgh12345678x 123456789 Lines.",
}

func TestAnalyzeMatchesReference(t *testing.T) {
	for _, s := range analyzeSeeds {
		checkAnalyze(t, s)
		// Every position, so that words and gaps cross the 8-byte chunks
		// in every way.
		for i := range len(s) {
			checkAnalyze(t, s[i:])
			checkAnalyze(t, s[:i])
		}
	}
	a := analyze("Don't STOP, can't stop")
	if len(a.words) != 6 || a.words[0].h != wordHashes("don")[0] || a.words[2].h != wordHashes("stop")[0] {
		t.Errorf("contractions or case: %+v", a.words)
	}
}

func checkAnalyze(t *testing.T, s string) {
	t.Helper()
	got, want := analyze(s), refAnalyze(s)
	for _, w := range got.words {
		// Any sub-word hashes as the word it would be on its own.
		if h := hashRange(s, int(w.start), int(w.end)); h != w.h {
			t.Fatalf("hashRange(%q) = %x, analyze gave %x", s[w.start:w.end], h, w.h)
		}
		if w.end-w.start > 1 && s[w.end-1] < utf8.RuneSelf { // as pluralStem does
			sub := s[w.start : w.end-1]
			if h, ws := hashRange(s, int(w.start), int(w.end-1)), analyze(sub).words; len(ws) == 1 && ws[0].h != h {
				t.Fatalf("hashRange(%q) = %x, analyze gave %x", sub, h, ws[0].h)
			}
		}
	}
	if len(got.words) == 0 && len(want.words) == 0 {
		got.words, want.words = nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("analyze(%q):\n got %+v\nwant %+v", s, got, want)
	}
}

// FuzzAnalyze compares the table-driven tokenizer with the reference.
func FuzzAnalyze(f *testing.F) {
	for _, s := range analyzeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkAnalyze(t, s) })
}

func TestPhrases(t *testing.T) {
	p := NewPhrases("can't breathe", "chest pain", "Stroke")
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"I CAN'T BREATHE and have chest-pain", []string{"can t breathe", "chest pain"}},
		{"chest\npain", nil}, // a line break ends the sentence
		{"strokes of luck", nil},
		{"a stroke, a stroke", []string{"stroke"}},
		{"painful chest", nil},
	} {
		if got := p.Find(tc.text, 0); !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("Find(%q) = %q, want %q", tc.text, got, tc.want)
		}
		if got := p.In(tc.text); got != (len(tc.want) > 0) {
			t.Errorf("In(%q) = %v", tc.text, got)
		}
	}
	if got := p.Find("chest pain, stroke, can't breathe", 2); len(got) != 2 {
		t.Errorf("limit: %q", got)
	}
	c := &Check{Query: "my chest pain", Response: "no match here"}
	if !p.InQuery(c) || p.InResponse(c) {
		t.Error("InQuery/InResponse")
	}
}

func TestLoosePhrases(t *testing.T) {
	ps := newPhraseSet([]string{"loan", "tax", "index fund", "credit score"}, true)
	for text, want := range map[string]int{
		"two loans and taxes":           2,
		"index funds beat credit score": 2,
		"loaning":                       0,
		"taxi":                          0,
		"funds index":                   0,
	} {
		if got := len(ps.find(text, analyze(text).words, 0)); got != want {
			t.Errorf("%q: %d matches, want %d", text, got, want)
		}
	}
}

func TestWordPatterns(t *testing.T) {
	ps, err := newPatternSet([]string{
		"guaranteed *2 (return|returns)",
		"you (have|ve got) [a|an] (tumor|heart attack)",
		"# percent certain",
	})
	if err == nil {
		t.Fatal("pattern starting with # accepted")
	}
	ps, err = newPatternSet([]string{
		"guaranteed *2 (return|returns)",
		"you (have|ve got) [a|an] (tumor|heart attack)",
		"(will) # percent",
	})
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string][]string{
		"We offer GUARANTEED returns.":              {"GUARANTEED returns"},
		"guaranteed 12% annual returns":             {"guaranteed 12% annual returns"},
		"guaranteed a b c returns":                  nil,
		"guaranteed. Returns vary":                  nil,
		"You've got a heart attack; you have tumor": {"You've got a heart attack", "you have tumor"},
		"it will 50 percent":                        {"will 50 percent"},
		"it will fifty percent":                     nil,
	} {
		ws := analyze(text).words
		var got []string
		ps.each(ws, func(i, e int) bool {
			got = append(got, text[ws[i].start:ws[e-1].end])
			return true
		})
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: matches %q, want %q", text, got, want)
		}
	}
	for _, bad := range []string{"", "(a|b", "[a] b", "*3 a", "a *0 b", "a (b|) c", "a (b (c)) d", "a ] b", "a (b|*2) c"} {
		if _, err := parseWordPattern(bad); err == nil {
			t.Errorf("parseWordPattern(%q): no error", bad)
		}
	}
}

func TestHtab(t *testing.T) {
	tab := newHtab(100)
	for i := uint64(1); i <= 100; i++ {
		tab.put(i*0x1234567, int32(i))
	}
	for i := uint64(1); i <= 100; i++ {
		if v, ok := tab.get(i * 0x1234567); !ok || v != int32(i) {
			t.Fatalf("get %d = %d, %v", i, v, ok)
		}
	}
	if _, ok := tab.get(7); ok {
		t.Error("absent key found")
	}
	var empty htab
	if _, ok := empty.get(1); ok {
		t.Error("zero htab found a key")
	}
}
