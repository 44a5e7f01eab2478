package sdk

import (
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

func TestRenderTemplate(t *testing.T) {
	req := abi.PromptRequest{
		Query:   "What is {{context.secret}}?",
		Context: map[string]string{"plan": "gold", "empty": "", "secret": "hidden"},
	}
	for _, tc := range []struct{ src, want string }{
		{"{{query}}", "What is {{context.secret}}?"},
		{"Q: {{ query }} plan={{context.plan}}", "Q: What is {{context.secret}}? plan=gold"},
		{"[{{context.missing}}]", "[]"},
		{"[{{context.missing|n/a}}] [{{context.empty|none}}] [{{context.plan|x}}]", "[n/a] [none] [gold]"},
		{`literal \{{query}} and {{query}}`, "literal {{query}} and What is {{context.secret}}?"},
		{"no placeholders", "no placeholders"},
		{"", ""},
		{"} }} {", "} }} {"},
		{"{{context.a.b-c_d|}}", ""},
	} {
		got, err := RenderTemplate(tc.src, req)
		if err != nil || got != tc.want {
			t.Errorf("RenderTemplate(%q) = %q, %v; want %q", tc.src, got, err, tc.want)
		}
	}
}

func TestRenderTemplateErrors(t *testing.T) {
	for _, src := range []string{
		"{{query", "{{}}", "{{ Query }}", "{{history}}", "{{context.}}", "{{context.a b}}",
		"{{context.x}} and {{", "{{context.é}}",
	} {
		if _, err := RenderTemplate(src, abi.PromptRequest{}); err == nil {
			t.Errorf("RenderTemplate(%q): no error", src)
		}
	}
}

// FuzzRenderTemplate checks that parsing never panics, that a template
// without "{{" renders as itself, and that the query is inserted verbatim
// (rendering is a single pass).
func FuzzRenderTemplate(f *testing.F) {
	f.Add("Q: {{query}} ({{context.k|d}})", "{{context.k}}", "v")
	f.Add(`\{{query}}`, "q", "")
	f.Add("{{ context.k }}{{query}}", "", "{{query}}")
	f.Fuzz(func(t *testing.T, src, query, value string) {
		req := abi.PromptRequest{Query: query, Context: map[string]string{"k": value}}
		out, err := RenderTemplate(src, req)
		if err != nil {
			return
		}
		if !strings.Contains(src, "{{") && out != src {
			t.Fatalf("template without placeholders changed: %q -> %q", src, out)
		}
		if src == "{{query}}" && out != query {
			t.Fatalf("query not verbatim: %q -> %q", query, out)
		}
		if tpl, err := parseTemplate(src); err == nil {
			if again := tpl.render(&req); again != out {
				t.Fatalf("render not deterministic: %q vs %q", again, out)
			}
		}
	})
}
