package knowledge

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxHeadingRunes is the most characters of one heading kept in a heading
// path; a longer heading is cut there, and its full text starts its
// section's body instead.
const maxHeadingRunes = 100

// maxListIndent is the deepest a list item of HTML is indented, in
// levels of two spaces.
const maxListIndent = 3

// maxHeadingLevels is the depth of a heading path (h1..h6).
const maxHeadingLevels = 6

// section is a run of a document's text under one heading.
type section struct {
	// path is the heading path, outermost first; empty for text before
	// the first heading.
	path []string
	// body is the section's text: normalised, paragraphs separated by one
	// blank line.
	body string
}

// extracted is a document's text, cut into sections.
type extracted struct {
	// title is the title the document gives itself: the HTML <title>, else
	// its first heading, else its first line.
	title    string
	sections []section
}

// extract turns body, of type typ (a Type constant), into sections of
// normalised, valid UTF-8 text. It returns ErrInvalid when no text is left.
func extract(typ string, body []byte) (extracted, error) {
	var ex extracted
	if !utf8.Valid(body) {
		return ex, fmt.Errorf("%w: %s body is not valid UTF-8", ErrInvalid, typ)
	}
	switch typ {
	case TypeText:
		ex.sections = []section{{body: normalize(string(body))}}
	case TypeMarkdown:
		ex = extractMarkdown(string(body))
	case TypeHTML:
		var err error
		if ex, err = extractHTML(body); err != nil {
			return ex, err
		}
	default:
		return ex, fmt.Errorf("%w: %q", ErrUnsupportedType, typ)
	}
	// Drop empty sections; check what is left.
	kept := ex.sections[:0]
	for _, s := range ex.sections {
		if s.body == "" {
			continue
		}
		if !utf8.ValidString(s.body) {
			return ex, fmt.Errorf("%w: %s body is not valid UTF-8 text once extracted", ErrInvalid, typ)
		}
		for i, h := range s.path {
			if !utf8.ValidString(h) {
				s.path[i] = strings.ToValidUTF8(h, "\uFFFD")
			}
		}
		kept = append(kept, s)
	}
	ex.sections = kept
	if len(ex.sections) == 0 {
		return ex, fmt.Errorf("%w: %s body holds no text once extracted", ErrInvalid, typ)
	}
	if ex.title == "" {
		ex.title = firstLine(ex.sections[0].body)
	}
	ex.title = cutRunes(strings.ToValidUTF8(ex.title, "\uFFFD"), MaxTitleRunes)
	return ex, nil
}

// normalize cleans extracted text: newlines become \n; control characters
// other than \n and \t (NUL included), the byte order mark and invalid
// UTF-8 are dropped; line and paragraph separators become newlines; spaces
// at the ends of lines are trimmed; more than one blank line in a row
// becomes one; blank lines at the start and end are dropped.
func normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	newlines := 0 // newlines held back, written before the next text
	lineStart := true
	spaces := 0 // spaces and tabs held back, dropped at the end of a line
	var pending []byte
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError && size == 1 {
			continue
		}
		switch {
		case r == '\r':
			if i < len(s) && s[i] == '\n' {
				i++
			}
			r = '\n'
		case r == '\u2028', r == '\u2029', r == '\v', r == '\f', r == '\u0085':
			r = '\n'
		}
		switch {
		case r == '\n':
			pending, spaces = pending[:0], 0
			if !lineStart || b.Len() > 0 {
				newlines++
			}
			lineStart = true
			continue
		case r == ' ' || r == '\t':
			pending = append(pending, byte(r))
			spaces++
			continue
		case unicode.IsControl(r), r == '\uFEFF':
			continue
		}
		if newlines > 0 && b.Len() > 0 {
			b.WriteString("\n\n"[:min(newlines, 2)])
		}
		newlines = 0
		if spaces > 0 {
			b.Write(pending)
			pending, spaces = pending[:0], 0
		}
		b.WriteRune(r)
		lineStart = false
	}
	return b.String()
}

// firstLine returns the first non-blank line of s, trimmed.
func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if t := strings.TrimSpace(line); t != "" {
			return t
		}
	}
	return ""
}

// cutRunes cuts s to at most n characters.
func cutRunes(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return strings.TrimSpace(s[:j])
		}
		i++
	}
	return s
}

// collapseSpace trims s and turns its runs of white space into one space.
func collapseSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// crlf turns CR LF and CR into LF.
var crlf = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// sectioner builds sections: text is written into the current section,
// and a heading starts a new one.
type sectioner struct {
	path     [maxHeadingLevels]string
	sections []section
	cur      strings.Builder
	title    string // the first heading
}

// heading ends the current section and starts one under a heading of the
// given level (1..6) and text.
func (s *sectioner) heading(level int, text string) {
	text = collapseSpace(normalize(text))
	if text == "" {
		return
	}
	if s.title == "" {
		s.title = text
	}
	s.flush()
	level = min(max(level, 1), maxHeadingLevels)
	short := cutRunes(text, maxHeadingRunes)
	s.path[level-1] = short
	for i := level; i < maxHeadingLevels; i++ {
		s.path[i] = ""
	}
	if short != text {
		// The path keeps only the start: the whole heading opens the body.
		s.cur.WriteString(text)
		s.cur.WriteString("\n\n")
	}
}

// flush ends the current section.
func (s *sectioner) flush() {
	body := normalize(s.cur.String())
	s.cur.Reset()
	if body == "" {
		return
	}
	var path []string
	for _, h := range s.path {
		if h != "" {
			path = append(path, h)
		}
	}
	s.sections = append(s.sections, section{path: path, body: body})
}

// extractMarkdown extracts the text of a Markdown document: ATX and Setext
// headings start sections; fenced and indented code is kept as text (a
// fence's lines are dropped, and no heading is seen inside); images and
// links keep their text and lose their URLs; link reference definitions
// are dropped, as are block quote markers.
func extractMarkdown(src string) extracted {
	var s sectioner
	var para []string // lines of the open paragraph, for Setext headings
	flushPara := func() {
		for _, l := range para {
			s.cur.WriteString(l)
			s.cur.WriteByte('\n')
		}
		para = para[:0]
	}
	var fence string // the open code fence's marker, "" when none
	for line := range strings.Lines(crlf.Replace(src)) {
		line = strings.TrimRight(line, "\r\n")
		if fence != "" {
			if isFenceClose(line, fence) {
				fence = ""
				s.cur.WriteString("\n")
				continue
			}
			s.cur.WriteString(line)
			s.cur.WriteByte('\n')
			continue
		}
		if f := fenceOpen(line); f != "" {
			flushPara()
			fence = f
			s.cur.WriteString("\n")
			continue
		}
		if level, text, ok := atxHeading(line); ok {
			flushPara()
			s.heading(level, mdInline(text))
			continue
		}
		if level, ok := setextUnderline(line); ok {
			if len(para) > 0 {
				text := strings.Join(para, " ")
				para = para[:0]
				s.heading(level, text)
				continue
			}
			if level == 2 {
				// A thematic break (---), not an underline.
				s.cur.WriteString("\n")
				continue
			}
		}
		if isLinkRefDef(line) {
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			flushPara()
			s.cur.WriteString("\n")
			continue
		}
		if indent(line) >= 4 {
			// Indented code: kept as it is.
			flushPara()
			s.cur.WriteString(line)
			s.cur.WriteByte('\n')
			continue
		}
		for strings.HasPrefix(trimmed, ">") {
			trimmed = strings.TrimSpace(trimmed[1:])
		}
		text := mdInline(trimmed)
		if isListItem(trimmed) || strings.HasPrefix(trimmed, "|") {
			// List items and table rows never make a Setext heading.
			flushPara()
			s.cur.WriteString(text)
			s.cur.WriteByte('\n')
			continue
		}
		para = append(para, text)
	}
	flushPara()
	s.flush()
	return extracted{title: s.title, sections: s.sections}
}

// indent returns the width of line's leading spaces and tabs (a tab
// counting 4).
func indent(line string) int {
	n := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case ' ':
			n++
		case '\t':
			n += 4
		default:
			return n
		}
	}
	return n
}

// fenceOpen returns the fence marker (``` or ~~~, as long as written) that
// line opens a code block with, or "".
func fenceOpen(line string) string {
	if indent(line) > 3 {
		return ""
	}
	t := strings.TrimLeft(line, " ")
	if len(t) < 3 || (t[0] != '`' && t[0] != '~') {
		return ""
	}
	n := 0
	for n < len(t) && t[n] == t[0] {
		n++
	}
	if n < 3 || (t[0] == '`' && strings.IndexByte(t[n:], '`') >= 0) {
		return ""
	}
	return t[:n]
}

// isFenceClose reports whether line closes a code block opened by fence.
func isFenceClose(line, fence string) bool {
	if indent(line) > 3 {
		return false
	}
	t := strings.TrimSpace(line)
	if len(t) < len(fence) {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] != fence[0] {
			return false
		}
	}
	return true
}

// atxHeading parses an ATX heading line ("## Text ##").
func atxHeading(line string) (level int, text string, ok bool) {
	if indent(line) > 3 {
		return 0, "", false
	}
	t := strings.TrimLeft(line, " ")
	for level < len(t) && t[level] == '#' {
		level++
	}
	if level < 1 || level > 6 || (level < len(t) && t[level] != ' ' && t[level] != '\t') {
		return 0, "", false
	}
	text = strings.TrimSpace(t[level:])
	// A closing sequence of #s, preceded by a space (or alone), goes.
	if end := strings.TrimRight(text, "#"); end != text && (end == "" || end[len(end)-1] == ' ' || end[len(end)-1] == '\t') {
		text = strings.TrimSpace(end)
	}
	return level, text, true
}

// setextUnderline reports whether line is a Setext underline: "===" for
// level 1, "---" for level 2.
func setextUnderline(line string) (int, bool) {
	if indent(line) > 3 {
		return 0, false
	}
	t := strings.TrimSpace(line)
	if t == "" || (t[0] != '=' && t[0] != '-') {
		return 0, false
	}
	for i := 0; i < len(t); i++ {
		if t[i] != t[0] {
			return 0, false
		}
	}
	if t[0] == '=' {
		return 1, true
	}
	return 2, true
}

// isLinkRefDef reports whether line is a link reference definition
// ("[label]: url").
func isLinkRefDef(line string) bool {
	if indent(line) > 3 {
		return false
	}
	t := strings.TrimLeft(line, " ")
	if !strings.HasPrefix(t, "[") || strings.HasPrefix(t, "[^") {
		return false
	}
	end := strings.Index(t, "]:")
	return end > 1 && !strings.ContainsAny(t[1:end], "[]") && strings.TrimSpace(t[end+2:]) != ""
}

// isListItem reports whether t (trimmed) starts with a list marker.
func isListItem(t string) bool {
	if len(t) >= 2 && (t[0] == '-' || t[0] == '*' || t[0] == '+') && (t[1] == ' ' || t[1] == '\t') {
		return true
	}
	i := 0
	for i < len(t) && i < 9 && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	return i > 0 && i+1 < len(t) && (t[i] == '.' || t[i] == ')') && (t[i+1] == ' ' || t[i+1] == '\t')
}

// mdInline turns a line's images and links into their text: "![alt](url)"
// into "alt", "[text](url)", "[text][ref]" and "[text][]" into "text", and
// "<https://...>" into the bare address.
func mdInline(line string) string {
	if !strings.ContainsAny(line, "[<") {
		return line
	}
	var b strings.Builder
	b.Grow(len(line))
	for i := 0; i < len(line); {
		c := line[i]
		start := i
		if c == '!' && i+1 < len(line) && line[i+1] == '[' {
			start = i + 1
		}
		if line[start] == '[' {
			if text, next, ok := mdLink(line, start); ok {
				b.WriteString(mdInline(text))
				i = next
				continue
			}
		}
		if c == '<' {
			if end := strings.IndexByte(line[i:], '>'); end > 0 {
				inner := line[i+1 : i+end]
				if strings.Contains(inner, "://") && !strings.ContainsAny(inner, " <") || strings.HasPrefix(inner, "mailto:") {
					b.WriteString(inner)
					i += end + 1
					continue
				}
			}
		}
		b.WriteByte(c)
		i++
	}
	return b.String()
}

// mdLink parses a link at line[open] == '[': its text, and where it ends.
// It reports false for a bracket that starts no link (the text of a link
// without a destination or reference is kept as it is written).
func mdLink(line string, open int) (text string, next int, ok bool) {
	close := matching(line, open, '[', ']')
	if close < 0 || close+1 >= len(line) {
		return "", 0, false
	}
	text = line[open+1 : close]
	switch line[close+1] {
	case '(':
		end := matching(line, close+1, '(', ')')
		if end < 0 {
			return "", 0, false
		}
		return text, end + 1, true
	case '[':
		end := strings.IndexByte(line[close+1:], ']')
		if end < 0 {
			return "", 0, false
		}
		return text, close + 1 + end + 1, true
	}
	return "", 0, false
}

// matching returns the index of the bracket closing line[open], counting
// nesting and skipping backslash escapes, or -1.
func matching(line string, open int, o, c byte) int {
	depth := 0
	for i := open; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++
		case o:
			depth++
		case c:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// htmlSkip are the elements whose content is not visible text.
var htmlSkip = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Noscript: true, atom.Template: true,
	atom.Head: true, atom.Iframe: true, atom.Object: true, atom.Embed: true,
	atom.Svg: true, atom.Math: true, atom.Canvas: true, atom.Select: true,
	atom.Datalist: true, atom.Audio: true, atom.Video: true,
}

// htmlParagraph are the block elements that end a paragraph (a blank line
// before and after them).
var htmlParagraph = map[atom.Atom]bool{
	atom.P: true, atom.Div: true, atom.Section: true, atom.Article: true,
	atom.Aside: true, atom.Blockquote: true, atom.Pre: true, atom.Table: true,
	atom.Ul: true, atom.Ol: true, atom.Dl: true, atom.Figure: true,
	atom.Header: true, atom.Footer: true, atom.Main: true, atom.Nav: true,
	atom.Form: true, atom.Fieldset: true, atom.Details: true, atom.Hr: true,
	atom.Address: true, atom.Hgroup: true, atom.Center: true, atom.Body: true,
	atom.Dialog: true, atom.Menu: true, atom.Dir: true,
}

// htmlLine are the block elements that end a line.
var htmlLine = map[atom.Atom]bool{
	atom.Li: true, atom.Dt: true, atom.Dd: true, atom.Tr: true, atom.Br: true,
	atom.Caption: true, atom.Summary: true, atom.Legend: true,
	atom.Figcaption: true, atom.Option: true, atom.Label: true,
	atom.Thead: true, atom.Tbody: true, atom.Tfoot: true,
}

// headingLevel returns 1..6 for h1..h6, else 0.
func headingLevel(a atom.Atom) int {
	switch a {
	case atom.H1:
		return 1
	case atom.H2:
		return 2
	case atom.H3:
		return 3
	case atom.H4:
		return 4
	case atom.H5:
		return 5
	case atom.H6:
		return 6
	}
	return 0
}

// htmlWriter collects the visible text of an HTML document.
type htmlWriter struct {
	s       sectioner
	pre     int // depth of <pre> elements
	lists   int // depth of lists
	heading *strings.Builder
}

// out is where text goes: the open heading, else the section.
func (w *htmlWriter) out() *strings.Builder {
	if w.heading != nil {
		return w.heading
	}
	return &w.s.cur
}

// atLineStart reports whether the output ends a line (or is empty).
func (w *htmlWriter) atLineStart() bool {
	o := w.out()
	return o.Len() == 0 || strings.HasSuffix(o.String(), "\n")
}

// text writes a text node: white space collapsed outside <pre>.
func (w *htmlWriter) text(t string) {
	o := w.out()
	if w.pre > 0 {
		o.WriteString(t)
		return
	}
	// Collapse runs of ASCII white space (not NBSP) into one space, and
	// drop it where a line starts or a space already ends the output.
	cur := o.String()
	space := len(cur) == 0 || strings.HasSuffix(cur, " ") || strings.HasSuffix(cur, "\n") || strings.HasSuffix(cur, "\t")
	for i := 0; i < len(t); i++ {
		switch c := t[i]; c {
		case ' ', '\t', '\n', '\r', '\f':
			if !space {
				o.WriteByte(' ')
				space = true
			}
		default:
			o.WriteByte(c)
			space = false
		}
	}
}

// newline ends the line, unless it is ended; blank adds a blank line.
func (w *htmlWriter) newline(blank bool) {
	o := w.out()
	if w.heading != nil {
		// Headings are one line.
		if !w.atLineStart() && !strings.HasSuffix(o.String(), " ") {
			o.WriteByte(' ')
		}
		return
	}
	cur := o.String()
	if cur == "" {
		return
	}
	if !strings.HasSuffix(cur, "\n") {
		o.WriteByte('\n')
	}
	if blank && !strings.HasSuffix(cur, "\n\n") {
		o.WriteByte('\n')
	}
}

// extractHTML extracts the visible text of an HTML document: the contents
// of script, style, noscript, template, head (and other invisible
// elements, and those with a hidden attribute) are skipped; block elements
// end lines or paragraphs; h1..h6 start sections; list items are marked
// "- ", indented by nesting; table cells are separated by tabs.
func extractHTML(body []byte) (extracted, error) {
	doc, err := html.ParseWithOptions(bytes.NewReader(body), html.ParseOptionEnableScripting(true))
	if err != nil {
		return extracted{}, fmt.Errorf("%w: html: %w", ErrInvalid, err)
	}
	title := htmlTitle(doc)
	var w htmlWriter
	type frame struct {
		n    *html.Node
		exit bool
	}
	stack := []frame{{n: doc}}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := f.n
		if f.exit {
			w.leave(n)
			continue
		}
		switch n.Type {
		case html.TextNode:
			w.text(n.Data)
			continue
		case html.ElementNode:
			if htmlSkip[n.DataAtom] || hasAttr(n, "hidden") {
				continue
			}
			w.enter(n)
			stack = append(stack, frame{n: n, exit: true})
		case html.DocumentNode:
		default:
			continue // comments, doctypes
		}
		// Children in order: push them last first.
		for c := n.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, frame{n: c})
		}
	}
	w.s.flush()
	if title == "" {
		title = w.s.title
	}
	return extracted{title: title, sections: w.s.sections}, nil
}

// enter handles an element's start.
func (w *htmlWriter) enter(n *html.Node) {
	a := n.DataAtom
	switch {
	case headingLevel(a) > 0 && w.heading == nil:
		w.heading = new(strings.Builder)
	case a == atom.Pre:
		w.pre++
	case isList(a):
		w.lists++
	}
	switch {
	case isList(a) && w.lists > 1:
		w.newline(false) // a nested list continues its item's lines
	case htmlParagraph[a]:
		w.newline(true)
	case a == atom.Li:
		w.newline(false)
		if w.heading == nil {
			w.out().WriteString(strings.Repeat("  ", min(max(w.lists-1, 0), maxListIndent)))
			w.out().WriteString("- ")
		}
	case a == atom.Td || a == atom.Th:
		if !w.atLineStart() {
			w.out().WriteByte('\t')
		}
	case htmlLine[a] && a != atom.Br:
		w.newline(false)
	}
}

// leave handles an element's end.
func (w *htmlWriter) leave(n *html.Node) {
	a := n.DataAtom
	if level := headingLevel(a); level > 0 && w.heading != nil {
		text := w.heading.String()
		w.heading = nil
		w.s.heading(level, text)
		return
	}
	switch {
	case a == atom.Pre:
		w.pre--
	case isList(a):
		w.lists--
	}
	switch {
	case a == atom.Br:
		if w.heading != nil {
			w.heading.WriteByte(' ')
		} else {
			w.out().WriteByte('\n')
		}
	case isList(a) && w.lists > 0:
		w.newline(false)
	case htmlParagraph[a]:
		w.newline(true)
	case htmlLine[a]:
		w.newline(false)
	}
}

// isList reports whether a is a list element.
func isList(a atom.Atom) bool {
	return a == atom.Ul || a == atom.Ol || a == atom.Menu || a == atom.Dir
}

// hasAttr reports whether n has the attribute key.
func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return true
		}
	}
	return false
}

// htmlTitle returns the text of the document's first <title>, or "".
func htmlTitle(doc *html.Node) string {
	stack := []*html.Node{doc}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Type == html.ElementNode && n.DataAtom == atom.Title {
			var b strings.Builder
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type == html.TextNode {
					b.WriteString(c.Data)
				}
			}
			return collapseSpace(normalize(b.String()))
		}
		if n.Type == html.ElementNode && n.DataAtom == atom.Svg {
			continue // an SVG <title> names a picture
		}
		for c := n.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, c)
		}
	}
	return ""
}
