package knowledge

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func mustExtract(t *testing.T, typ, body string) extracted {
	t.Helper()
	ex, err := extract(typ, []byte(body))
	if err != nil {
		t.Fatalf("extract(%s): %v", typ, err)
	}
	return ex
}

// sectionStrings renders sections as "A > B | body" for comparison.
func sectionStrings(ex extracted) []string {
	out := make([]string, len(ex.sections))
	for i, s := range ex.sections {
		out[i] = strings.Join(s.path, " > ") + " | " + s.body
	}
	return out
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a\r\nb\rc\n", "a\nb\nc"},
		{"\n\n  lead\n", "  lead"},
		{"x\x00y\x07z\x1b[0m", "xyz[0m"},
		{"tab\there  \nend\t", "tab\there\nend"},
		{"p1\n\n\n\n\np2", "p1\n\np2"},
		{"a\u2028b\u2029c", "a\nb\nc"},
		{"\ufeffbom", "bom"},
		{"bad\xffutf8", "badutf8"},
		{"  \n\t\n", ""},
	} {
		if got := normalize(tc.in); got != tc.want {
			t.Errorf("normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestExtractText(t *testing.T) {
	ex := mustExtract(t, TypeText, "\r\n  First line here \r\nsecond\x00 line\x01\r\n\r\n\r\nNew paragraph.\tTabbed.")
	if ex.title != "First line here" {
		t.Errorf("title = %q", ex.title)
	}
	want := []string{" |   First line here\nsecond line\n\nNew paragraph.\tTabbed."}
	if got := sectionStrings(ex); !slices.Equal(got, want) {
		t.Errorf("sections = %q\nwant %q", got, want)
	}
	// Lines that look like Markdown headings are text in a text document.
	ex = mustExtract(t, TypeText, "# not a heading\nbody")
	if len(ex.sections) != 1 || len(ex.sections[0].path) != 0 {
		t.Errorf("text with #: %q", sectionStrings(ex))
	}
}

func TestExtractMarkdown(t *testing.T) {
	md := "Guide to Fees\n=============\n\n" +
		"Intro with a [link text](https://example.com/x \"title\") and ![a diagram](img/fees.png).\n" +
		"See [the ref][r1] and <https://bank.example/help>.\n\n" +
		"[r1]: https://example.com/secret-url\n\n" +
		"## Cash machines ##\n\n" +
		"Withdrawals are free.\n\n" +
		"```sh\n# comment, not a heading\ncurl https://api.example/fees\n```\n\n" +
		"### Abroad\n\n" +
		"> A quoted **tip**.\n\n" +
		"Setext two\n----------\n\n" +
		"- item one\n- item two\n\n---\n\n" +
		"    indented code\n"
	ex := mustExtract(t, TypeMarkdown, md)
	if ex.title != "Guide to Fees" {
		t.Errorf("title = %q", ex.title)
	}
	want := []string{
		"Guide to Fees | Intro with a link text and a diagram.\nSee the ref and https://bank.example/help.",
		"Guide to Fees > Cash machines | Withdrawals are free.\n\n# comment, not a heading\ncurl https://api.example/fees",
		"Guide to Fees > Cash machines > Abroad | A quoted **tip**.",
		"Guide to Fees > Setext two | - item one\n- item two\n\n    indented code",
	}
	if got := sectionStrings(ex); !slices.Equal(got, want) {
		t.Errorf("sections:\n%s\nwant:\n%s", strings.Join(got, "\n--\n"), strings.Join(want, "\n--\n"))
	}
	all := strings.Join(sectionStrings(ex), "\n")
	for _, gone := range []string{"example.com/x", "fees.png", "secret-url", "```", "[", "]("} {
		if strings.Contains(all, gone) {
			t.Errorf("extracted text holds %q:\n%s", gone, all)
		}
	}
	// Without a heading the title is the first line.
	if ex := mustExtract(t, TypeMarkdown, "\n\nJust some *notes*\nand more"); ex.title != "Just some *notes*" {
		t.Errorf("title without heading = %q", ex.title)
	}
	// An unclosed fence keeps the rest as code.
	ex = mustExtract(t, TypeMarkdown, "# H\n~~~\n# still code\n")
	if got := sectionStrings(ex); !slices.Equal(got, []string{"H | # still code"}) {
		t.Errorf("unclosed fence: %q", got)
	}
}

func TestExtractHTML(t *testing.T) {
	page := `<!DOCTYPE html>
<html><head><title>  Bank
  Fees </title>
<style>body { color: red } .fee::after { content: "STYLE" }</style>
<script>document.write("<p>SCRIPT</p>"); var x = "</div>";</script>
<meta name="description" content="META">
</head>
<body>
<noscript>NOSCRIPT</noscript>
<template><p>TEMPLATE</p></template>
<nav><a href="/">Home</a></nav>
<h1>Fees <small>2024</small></h1>
<p>All   fees are
   listed here.</p>
<h2>Cash machines</h2>
<ul>
  <li>Own bank: free
    <ul><li>Including weekends</li><li>Any amount</li></ul>
  </li>
  <li>Other banks: &pound;1.50</li>
</ul>
<div hidden>HIDDEN</div>
<table><tr><th>Where</th><th>Fee</th></tr><tr><td>Abroad</td><td>2%</td></tr></table>
<h3>Notes</h3>
<p>First line<br>second line</p>
<script>alert("SCRIPT2")</script>
<pre>  keep
    spacing</pre>
</body></html>`
	ex := mustExtract(t, TypeHTML, page)
	if ex.title != "Bank Fees" {
		t.Errorf("title = %q", ex.title)
	}
	want := []string{
		" | Home",
		"Fees 2024 | All fees are listed here.",
		"Fees 2024 > Cash machines | - Own bank: free\n  - Including weekends\n  - Any amount\n- Other banks: £1.50\n\nWhere\tFee\nAbroad\t2%",
		"Fees 2024 > Cash machines > Notes | First line\nsecond line\n\n  keep\n    spacing",
	}
	if got := sectionStrings(ex); !slices.Equal(got, want) {
		t.Errorf("sections:\n%s\nwant:\n%s", strings.Join(got, "\n--\n"), strings.Join(want, "\n--\n"))
	}
	all := strings.Join(sectionStrings(ex), "\n")
	for _, gone := range []string{"STYLE", "SCRIPT", "META", "NOSCRIPT", "TEMPLATE", "HIDDEN", "color", "<"} {
		if strings.Contains(all, gone) {
			t.Errorf("extracted text holds %q", gone)
		}
	}

	// Without <title>, the first heading; without one, the first line.
	if ex := mustExtract(t, TypeHTML, "<p>intro</p><h2>The  Heading</h2><p>x</p>"); ex.title != "The Heading" {
		t.Errorf("title from heading = %q", ex.title)
	}
	if ex := mustExtract(t, TypeHTML, "<div>first <b>line</b></div><div>second</div>"); ex.title != "first line" {
		t.Errorf("title from first line = %q", ex.title)
	}
	// A fragment with no markup at all is text.
	if ex := mustExtract(t, TypeHTML, "plain words"); ex.sections[0].body != "plain words" {
		t.Errorf("fragment: %q", sectionStrings(ex))
	}
}

func TestExtractHeadingPaths(t *testing.T) {
	// Skipped levels, a return to a higher level, and an over-long
	// heading, which is cut in the path and kept whole in the body.
	long := strings.Repeat("word ", 40)
	md := "# A\n\n### A3\n\nx\n\n## B\n\ny\n\n# C\n\nz\n\n## " + long + "\n\nw\n"
	ex := mustExtract(t, TypeMarkdown, md)
	var paths []string
	for _, s := range ex.sections {
		paths = append(paths, strings.Join(s.path, " > "))
	}
	cut := cutRunes(strings.TrimSpace(long), maxHeadingRunes)
	want := []string{"A > A3", "A > B", "C", "C > " + cut}
	if !slices.Equal(paths, want) {
		t.Errorf("paths = %q\nwant %q", paths, want)
	}
	if last := ex.sections[len(ex.sections)-1].body; !strings.HasPrefix(last, strings.TrimSpace(long)+"\n\nw") {
		t.Errorf("long heading body = %q", last)
	}
}

func TestExtractInvalid(t *testing.T) {
	for _, tc := range []struct{ typ, body string }{
		{TypeText, "   \n\t\n"},
		{TypeText, "\x00\x01\x02"},
		{TypeText, "caf\xe9"},
		{TypeMarkdown, "# \n\n[r]: http://x\n"},
		{TypeHTML, "<script>only()</script><style>x{}</style>"},
		{TypeHTML, "<p>caf\xe9</p>"},
	} {
		if _, err := extract(tc.typ, []byte(tc.body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("extract(%s, %q) = %v, want ErrInvalid", tc.typ, tc.body, err)
		}
	}
}

func TestNormType(t *testing.T) {
	for in, want := range map[string]string{
		"": TypeText, "text": TypeText, "TEXT/plain; charset=utf-8": TypeText,
		"markdown": TypeMarkdown, "md": TypeMarkdown, "text/markdown": TypeMarkdown,
		"html": TypeHTML, " text/html ": TypeHTML, "application/xhtml+xml": TypeHTML,
	} {
		if got, err := normType(in); err != nil || got != want {
			t.Errorf("normType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"pdf", "application/pdf", "docx"} {
		if _, err := normType(in); !errors.Is(err, ErrUnsupportedType) || errors.Is(err, ErrInvalid) {
			t.Errorf("normType(%q) = %v, want ErrUnsupportedType", in, err)
		}
	}
	for _, in := range []string{"te xt", "<html>", "\x00", strings.Repeat("a", 101)} {
		if _, err := normType(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("normType(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

// sentence returns a sentence of n characters ending in a full stop.
func sentence(n int, word string) string {
	s := strings.Repeat(word+" ", n/len(word)+1)[:n-1]
	if strings.HasSuffix(s, " ") {
		s = s[:n-2] + "z"
	}
	return s + "."
}

func TestChunkSizesAndPrefixes(t *testing.T) {
	const size = 100
	s40 := sentence(40, "alpha") // 40 characters
	if utf8.RuneCountInString(s40) != 40 {
		t.Fatalf("sentence length %d", len(s40))
	}
	secs := []section{
		{path: nil, body: "Short preamble."},
		{path: []string{"Fees", "Cash machines"}, body: strings.Join([]string{
			s40 + " " + s40,                         // 81: fits
			s40,                                     // 81+2+40 > 100: new chunk
			s40 + " " + s40 + " " + s40 + " " + s40, // 163: split into sentences
		}, "\n\n")},
		{path: []string{"Fees", "Long"}, body: sentence(150, "beta")},          // one sentence of 150 < 2*size: whole
		{path: []string{"Huge"}, body: sentence(450, "gamma") + " " + "tail."}, // > 2*size: split at spaces
	}
	chunks := chunkSections(secs, size, 100)
	var bodies []string
	for _, c := range chunks {
		switch {
		case strings.HasPrefix(c, "Fees > Cash machines: "):
			bodies = append(bodies, strings.TrimPrefix(c, "Fees > Cash machines: "))
		case strings.HasPrefix(c, "Fees > Long: "):
			if n := utf8.RuneCountInString(strings.TrimPrefix(c, "Fees > Long: ")); n != 150 {
				t.Errorf("sentence of 150 split: chunk of %d", n)
			}
		case strings.HasPrefix(c, "Huge: "):
			if n := utf8.RuneCountInString(strings.TrimPrefix(c, "Huge: ")); n > size {
				t.Errorf("part of a huge sentence has %d characters, more than %d", n, size)
			}
		case c == "Short preamble.":
		default:
			t.Errorf("unexpected chunk %q", c)
		}
	}
	want := []string{
		s40 + " " + s40,
		s40 + "\n\n" + s40, // the next paragraph's first sentence joins
		s40 + " " + s40,
		s40,
	}
	if !slices.Equal(bodies, want) {
		t.Errorf("Cash machines chunks:\n%q\nwant\n%q", bodies, want)
	}
	// The huge sentence's words all survive, in order.
	var huge []string
	for _, c := range chunks {
		if b, ok := strings.CutPrefix(c, "Huge: "); ok {
			huge = append(huge, b)
		}
	}
	if got, want := strings.Join(huge, " "), sentence(450, "gamma")+" tail."; got != want {
		t.Errorf("huge sentence rejoined = %q\nwant %q", got, want)
	}
	for _, c := range chunks {
		body := c[strings.Index(c, ": ")+2:]
		if n := utf8.RuneCountInString(body); n > 2*size {
			t.Errorf("chunk of %d characters: %q", n, c)
		}
	}
}

func TestChunkSentenceSplitting(t *testing.T) {
	got := splitSentences(`He said "Stop." Then left! Why? e.g.x stays. 3.14 stays.` + "\nNew line")
	var texts []string
	for _, p := range got {
		texts = append(texts, p.text)
	}
	want := []string{`He said "Stop."`, "Then left!", "Why?", "e.g.x stays.", "3.14 stays.", "New line"}
	if !slices.Equal(texts, want) {
		t.Errorf("sentences = %q\nwant %q", texts, want)
	}
	// A word longer than the limit is cut.
	parts := splitWords(strings.Repeat("é", 250), 100)
	if len(parts) != 3 || utf8.RuneCountInString(parts[0].text) != 100 || utf8.RuneCountInString(parts[2].text) != 50 {
		t.Errorf("hard split = %d parts", len(parts))
	}
}

func TestChunkManyTinySections(t *testing.T) {
	// 3000 headings with a word each would make 3000 chunks; a document
	// may make at most ceil(MaxDocBytes/ChunkChars)*2.
	var b strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&b, "# H%d\nw%d\n", i, i)
	}
	l, _ := Limits{MaxDocBytes: b.Len(), ChunkChars: 200}.withDefaults()
	ex := mustExtract(t, TypeMarkdown, b.String())
	chunks := chunkSections(ex.sections, l.ChunkChars, l.maxChunksPerDoc())
	if chunks == nil || len(chunks) > l.maxChunksPerDoc() {
		t.Fatalf("%d chunks, limit %d", len(chunks), l.maxChunksPerDoc())
	}
	all := strings.Join(chunks, "\n")
	for _, w := range []string{"H0: w0", "H1\n\nw1", "w2999"} {
		if !strings.Contains(all, w) {
			t.Errorf("merged chunks lack %q", w)
		}
	}
}

func TestQueryTerms(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"What is the fee for cash machines?", []string{"fee", "cash", "machines"}},
		{"the of and", []string{"the", "of", "and"}},
		{`NEAR(a b) "quoted" col:value ^start * AND OR NOT -x +y`, []string{"near", "b", "quoted", "col", "value", "start", "x", "y"}},
		{"Café CAFÉ naïve 東京 ٣٤", []string{"café", "naïve", "東京", "٣٤"}},
		{"!!! ??? *** \"\" () {} :", nil},
		{"e\u0301t\u00e9", []string{"e\u0301t\u00e9"}},
		{"\u0301alone", []string{"alone"}},
		{"bad\xffbyte", []string{"bad", "byte"}},
		{strings.Repeat("x", 65) + " ok", []string{"ok"}},
	} {
		if got := queryTerms(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("queryTerms(%q) = %q, want %q", tc.q, got, tc.want)
		}
	}
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("w%d", i))
	}
	if got := queryTerms(strings.Join(many, " ")); len(got) != MaxQueryTerms || got[31] != "w31" {
		t.Errorf("100 words -> %d terms", len(got))
	}
	if got := ftsQuery("sabc", []string{"near", "x"}); got != `scope : "sabc" AND text : ("near" OR "x")` {
		t.Errorf("ftsQuery = %s", got)
	}
}

func TestValidKB(t *testing.T) {
	for _, ok := range []string{"a", "0", "docs", "my-kb_2", strings.Repeat("a", 64)} {
		if !ValidKB(ok) {
			t.Errorf("ValidKB(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "-a", "_a", "A", "a b", "a/b", "a.b", "é", strings.Repeat("a", 65), "a\x00"} {
		if ValidKB(bad) {
			t.Errorf("ValidKB(%q) = true", bad)
		}
	}
}
