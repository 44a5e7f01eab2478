package sdk

import (
	"fmt"
	"strings"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Template placeholders:
//
//	{{query}}              the user's query
//	{{context.KEY}}        the value of context key KEY, or "" when absent
//	{{context.KEY|text}}   the same, with "text" used when KEY is absent or empty
//	\{{                    a literal "{{"
//
// Spaces inside the braces are ignored ({{ query }} works). Rendering is a
// single pass: text that a placeholder inserts is never scanned again, so a
// query that contains "{{context.secret}}" stays literal.

type segKind uint8

const (
	segText segKind = iota
	segQuery
	segContext
)

type segment struct {
	kind segKind
	text string // literal text (segText) or the default value (segContext)
	key  string // context key (segContext)
	json string // text escaped for a JSON string, without the quotes
}

// template is a parsed prompt template.
type template []segment

// parseTemplate parses src once so that rendering is a plain concatenation.
func parseTemplate(src string) (template, error) {
	var t template
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t = append(t, segment{kind: segText, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(src); {
		j := strings.Index(src[i:], "{{")
		if j < 0 {
			lit.WriteString(src[i:])
			break
		}
		j += i
		if j > i && src[j-1] == '\\' {
			lit.WriteString(src[i : j-1])
			lit.WriteString("{{")
			i = j + 2
			continue
		}
		lit.WriteString(src[i:j])
		end := strings.Index(src[j+2:], "}}")
		if end < 0 {
			return nil, fmt.Errorf("template: unclosed \"{{\" at byte %d (write \\{{ for a literal)", j)
		}
		inner := strings.TrimSpace(src[j+2 : j+2+end])
		seg, err := parsePlaceholder(inner)
		if err != nil {
			return nil, fmt.Errorf("template: placeholder at byte %d: %w", j, err)
		}
		flush()
		t = append(t, seg)
		i = j + 2 + end + 2
	}
	flush()
	for i := range t {
		if t[i].text != "" {
			enc := appendString(nil, t[i].text)
			t[i].json = string(enc[1 : len(enc)-1])
		}
	}
	return t, nil
}

func parsePlaceholder(inner string) (segment, error) {
	if inner == "query" {
		return segment{kind: segQuery}, nil
	}
	key, ok := strings.CutPrefix(inner, "context.")
	if !ok {
		return segment{}, fmt.Errorf("unknown placeholder {{%s}} (want {{query}} or {{context.KEY}})", inner)
	}
	key, def, _ := strings.Cut(key, "|")
	key = strings.TrimSpace(key)
	if key == "" {
		return segment{}, fmt.Errorf("empty context key in {{%s}}", inner)
	}
	for _, r := range key {
		if !(r == '_' || r == '-' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return segment{}, fmt.Errorf("context key %q: only letters, digits, '_', '-' and '.' are allowed", key)
		}
	}
	return segment{kind: segContext, key: key, text: def}, nil
}

// render expands t for one request.
func (t template) render(req *abi.PromptRequest) string {
	if len(t) == 1 {
		switch t[0].kind {
		case segText:
			return t[0].text
		case segQuery:
			return req.Query
		}
	}
	var b strings.Builder
	n := 0
	for _, s := range t {
		switch s.kind {
		case segText:
			n += len(s.text)
		case segQuery:
			n += len(req.Query)
		}
	}
	b.Grow(n + 64)
	for _, s := range t {
		switch s.kind {
		case segText:
			b.WriteString(s.text)
		case segQuery:
			b.WriteString(req.Query)
		case segContext:
			if v := req.Context[s.key]; v != "" {
				b.WriteString(v)
			} else {
				b.WriteString(s.text)
			}
		}
	}
	return b.String()
}

// RenderTemplate expands the placeholders of src ({{query}},
// {{context.KEY}}, {{context.KEY|default}}) with the values of req. It is
// meant for custom Prompt functions; the default prompt export parses its
// templates once at registration instead.
func RenderTemplate(src string, req abi.PromptRequest) (string, error) {
	t, err := parseTemplate(src)
	if err != nil {
		return "", err
	}
	return t.render(&req), nil
}
