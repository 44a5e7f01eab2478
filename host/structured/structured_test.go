package structured

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

const person = `{"type":"object","properties":{"name":{"type":"string","maxLength":20},"age":{"type":"integer","minimum":0}},"required":["name","age"],"additionalProperties":false}`

func TestSchemaFormat(t *testing.T) {
	if _, err := NewSchemaFormat("person", json.RawMessage(person), true); err == nil {
		t.Fatal("strict: minimum (not expressible by the grammar) accepted")
	}
	f, err := NewSchemaFormat("person", json.RawMessage(person), false)
	if err != nil {
		t.Fatal(err)
	}
	if f.Grammar() == "" || !strings.Contains(f.Instruction(), `"minimum":0`) {
		t.Fatalf("grammar %q, instruction %q", f.Grammar(), f.Instruction())
	}
	for doc, ok := range map[string]bool{
		`{"name":"Ann","age":3}`:          true,
		` {"name":"Ann","age":3} `:        true,
		`{"name":"Ann","age":-3}`:         false, // minimum, left to the check
		`{"name":"Ann"}`:                  false,
		`{"name":"Ann","age":3,"x":1}`:    false,
		`{"name":"Ann","age":3`:           false,
		`[1]`:                             false,
		`{"name":"Ann","age":3} trailing`: false,
	} {
		if err := f.Check(doc); (err == nil) != ok {
			t.Errorf("Check(%s) = %v, want ok %v", doc, err, ok)
		}
	}
	o := JSONObject()
	if o.Check(`{"a":[1]}`) != nil || o.Check(`"a"`) == nil || o.Check(`{`) == nil {
		t.Error("json_object check")
	}
}

func TestFormatErrors(t *testing.T) {
	for _, c := range []struct {
		name, schema   string
		strict         bool
		field, pointer string
		msgContains    string
	}{
		{"ok", `[]`, true, "schema", "", "JSON Schema object"},
		{"ok", ``, false, "schema", "", "JSON Schema object"},
		{"bad name!", `{}`, false, "name", "", "letters"},
		{"", `{}`, false, "name", "", "letters"},
		{"ok", `{"type":"object","properties":{"a":{"type":"string","pattern":"x"}}}`, true, "schema", "/properties/a/pattern", "unsupported keyword"},
		{"ok", `{"type":"object","properties":{"a":{"type":"strin"}}}`, false, "schema", "/properties/a/type", "unknown type"},
		{"ok", `{"$ref":"file:///etc/passwd"}`, false, "schema", "/$ref", "unsupported $ref"},
		{"ok", `{"type":"object","properties":{"a":{"$ref":"#/$defs/x"}},"$defs":{"x":{"type":"string","format":"email","pattern":"("}}}`, false, "schema", "", "not a valid JSON Schema"},
		{"ok", `{"type":"object"` + strings.Repeat(" ", MaxSchemaBytes) + `}`, false, "schema", "", "at most"},
	} {
		_, err := NewSchemaFormat(c.name, json.RawMessage(c.schema), c.strict)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || e.Pointer != c.pointer || !strings.Contains(e.Msg, c.msgContains) {
			t.Errorf("NewSchemaFormat(%q, %.60s) = %v, want field %s pointer %q containing %q", c.name, c.schema, err, c.field, c.pointer, c.msgContains)
		}
	}
}

func mustTool(t *testing.T, name, params string) Tool {
	t.Helper()
	tool, err := NewTool(name, "does "+name, json.RawMessage(params), false)
	if err != nil {
		t.Fatal(err)
	}
	return tool
}

func TestToolErrors(t *testing.T) {
	for _, c := range []struct{ name, desc, params, field string }{
		{"has space", "", `{}`, "name"},
		{strings.Repeat("a", 65), "", `{}`, "name"},
		{"f", strings.Repeat("d", MaxDescription+1), `{}`, "description"},
		{"f", "", `{"type":"string"}`, "parameters"},
		{"f", "", `{"type":"object","properties":{"a":{"type":"nope"}}}`, "parameters"},
		{"f", "", `"x"`, "parameters"},
	} {
		_, err := NewTool(c.name, c.desc, json.RawMessage(c.params), false)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field {
			t.Errorf("NewTool(%.20q, %.20q) = %v, want an error on %s", c.name, c.params, err, c.field)
		}
	}
	if tool, err := NewTool("noargs", "", nil, true); err != nil || tool.Check(`{}`) != nil {
		t.Fatalf("a tool without parameters: %v", err)
	}
}

func TestToolset(t *testing.T) {
	a, b := mustTool(t, "a", `{}`), mustTool(t, "b", `{}`)
	if _, err := NewToolset([]Tool{a, a}, Choice{}, true); err == nil || !strings.Contains(err.Error(), "tools[1].name") {
		t.Errorf("a repeated name: %v", err)
	}
	if _, err := NewToolset([]Tool{a}, Choice{Mode: ChoiceFunction, Name: "c"}, true); err == nil || !strings.Contains(err.Error(), "tool_choice") {
		t.Errorf("a choice of an unknown function: %v", err)
	}
	if _, err := NewToolset(nil, Choice{Mode: ChoiceRequired}, true); err == nil {
		t.Error("required without tools accepted")
	}
	if _, err := NewToolset([]Tool{a}, Choice{Mode: "sometimes"}, true); err == nil {
		t.Error("an unknown choice accepted")
	}
	many := make([]Tool, MaxTools+1)
	for i := range many {
		many[i] = Tool{Name: "t" + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + string(rune('a'+i/26))}
	}
	if _, err := NewToolset(many, Choice{}, true); err == nil {
		t.Error("more than MaxTools accepted")
	}
	ts, err := NewToolset([]Tool{a}, Choice{}, true)
	if err != nil {
		t.Fatal(err)
	}
	dom := b
	dom.Domain = "finance"
	merged, err := ts.With([]Tool{dom})
	if err != nil || len(merged.Tools) != 2 {
		t.Fatalf("With: %v", err)
	}
	clash := a
	clash.Domain = "finance"
	if _, err := ts.With([]Tool{clash}); err == nil || !strings.Contains(err.Error(), "domain finance") {
		t.Errorf("a clash with a domain's tool: %v", err)
	}
	fin := merged.Final()
	if len(fin.Tools) != 1 || fin.Tools[0].Name != "a" || !fin.Active() {
		t.Errorf("Final kept %+v", fin.Tools)
	}
	onlyDomain, _ := (*Toolset)(nil).With([]Tool{dom})
	if onlyDomain.Final().Active() {
		t.Error("Final of domain tools only still calls")
	}
	if !strings.Contains(merged.Instruction(), `"name":"b"`) || (&Toolset{Tools: []Tool{a}, Choice: Choice{Mode: ChoiceNone}}).Instruction() != "" {
		t.Error("Instruction")
	}
}

func TestParseRoundTrip(t *testing.T) {
	calls := []Call{{Name: "a", Arguments: `{"x":[1,"</tool_call>"]}`}, {Name: "b", Arguments: ``}}
	text := RenderCalls(calls)
	got, ok := Parse(text)
	if !ok || len(got) != 2 || got[0].Name != "a" || got[0].Arguments != calls[0].Arguments || got[1].Arguments != `{}` {
		t.Fatalf("Parse(%q) = %+v, %v", text, got, ok)
	}
	if got[0].ID == got[1].ID || !strings.HasPrefix(got[0].ID, "call_") || len(got[0].ID) != 29 {
		t.Errorf("ids %q %q", got[0].ID, got[1].ID)
	}
	for _, bad := range []string{"", "hello", text[:len(text)-3], "<tool_call>\n{\"name\": \"a\"", "<tool_call>\n{\"arguments\": {}}\n</tool_call>", "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call> trailing"} {
		if c, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) = %+v", bad, c)
		}
	}
	if !IsCall(text) || IsCall("The answer") {
		t.Error("IsCall")
	}
	msgs := Messages([]Turn{{Calls: calls, Results: []Result{{CallID: "1", Content: "42"}, {CallID: "2", Content: "7"}}}})
	if len(msgs) != 2 || msgs[0].Role != abi.RoleAssistant || msgs[1].Role != abi.RoleUser ||
		msgs[1].Content != "<tool_response>\n42\n</tool_response>\n<tool_response>\n7\n</tool_response>" {
		t.Errorf("Messages: %+v", msgs)
	}
}

func TestInstruct(t *testing.T) {
	got := Instruct([]abi.Message{{Role: abi.RoleSystem, Content: "Be kind."}, {Role: abi.RoleUser, Content: "q"}}, "A.", "", "B.")
	if len(got) != 2 || got[0].Content != "Be kind.\n\nA.\n\nB." {
		t.Errorf("%+v", got)
	}
	got = Instruct([]abi.Message{{Role: abi.RoleUser, Content: "q"}}, "A.")
	if len(got) != 2 || got[0].Role != abi.RoleSystem || got[0].Content != "A." {
		t.Errorf("%+v", got)
	}
	in := []abi.Message{{Role: abi.RoleUser, Content: "q"}}
	if got := Instruct(in); len(got) != 1 {
		t.Errorf("%+v", got)
	}
}

func TestGrammarShapes(t *testing.T) {
	a := mustTool(t, "get_rate", `{"type":"object","properties":{"currency":{"type":"string","enum":["EUR","USD"]}},"required":["currency"]}`)
	f, err := NewSchemaFormat("out", json.RawMessage(`{"type":"object","properties":{"v":{"type":"integer"}},"required":["v"]}`), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ts      *Toolset
		format  *Format
		want    []string
		notWant []string
	}{
		{nil, nil, nil, nil},
		{nil, f, []string{`root ::=`}, []string{"tool_call"}},
		{&Toolset{Tools: []Tool{a}, Choice: Choice{Mode: ChoiceAuto}}, nil, []string{`tool_call`, `[^<\x00] [^\x00]*`}, []string{"answer"}},
		{&Toolset{Tools: []Tool{a}, Choice: Choice{Mode: ChoiceAuto}, Parallel: true}, f, []string{`{0,7}`, `| answer`}, nil},
		{&Toolset{Tools: []Tool{a}, Choice: Choice{Mode: ChoiceRequired}}, f, []string{`tool_call`}, []string{"answer", `[^<`}},
		{&Toolset{Tools: []Tool{a}, Choice: Choice{Mode: ChoiceNone}}, nil, nil, nil},
	} {
		g, err := Grammar(c.ts, c.format)
		if err != nil {
			t.Fatal(err)
		}
		if c.want == nil && c.format == nil && g != "" {
			t.Errorf("grammar %q, want none", g)
		}
		for _, w := range c.want {
			if !strings.Contains(g, w) {
				t.Errorf("grammar lacks %q:\n%s", w, g)
			}
		}
		for _, w := range c.notWant {
			if strings.Contains(g, w) {
				t.Errorf("grammar has %q:\n%s", w, g)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(RenderCalls([]Call{{Name: "a", Arguments: `{"x":1}`}}))
	f.Add("<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"y\": [null]}}\n</tool_call>")
	f.Add("plain text")
	f.Fuzz(func(t *testing.T, text string) {
		calls, ok := Parse(text)
		if !ok {
			return
		}
		for _, c := range calls {
			if c.Name == "" || !json.Valid([]byte(c.Arguments)) {
				t.Fatalf("Parse(%q) gave %+v", text, c)
			}
		}
		// What Parse reads, RenderCalls writes back readably.
		again, ok := Parse(RenderCalls(calls))
		if !ok || len(again) != len(calls) {
			t.Fatalf("round trip of %+v failed", calls)
		}
		for i := range calls {
			if again[i].Name != calls[i].Name || again[i].Arguments != calls[i].Arguments {
				t.Fatalf("round trip changed %+v into %+v", calls[i], again[i])
			}
		}
	})
}

func TestValidationMessage(t *testing.T) {
	f, err := NewSchemaFormat("p", json.RawMessage(person), false)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Check(`{"name":"Ann","age":-1}`)
	if err == nil || strings.Contains(err.Error(), "mem://") || !strings.Contains(err.Error(), "/age") {
		t.Fatalf("message %v", err)
	}
}

// Schemas come from clients: any document either compiles to a grammar and
// a validator or is an *Error, never a panic; and a compiled format's check
// never panics on any text.
func FuzzSchemaFormat(f *testing.F) {
	f.Add([]byte(person), true, `{"name":"a","age":1}`)
	f.Add([]byte(`{"type":"object","properties":{"a":{"$ref":"#"}}}`), false, `{"a":{}}`)
	f.Add([]byte(`{"anyOf":[{"type":"string","format":"date"},{"enum":[1,null]}]}`), true, `"2024-01-01"`)
	f.Add([]byte(`{"type":"object","properties":{"x":{"type":"string","pattern":"(a+)+$"}}}`), false, `{"x":"aaaa"}`)
	f.Fuzz(func(t *testing.T, schema []byte, strict bool, doc string) {
		fm, err := NewSchemaFormat("f", schema, strict)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if fm.Grammar() == "" {
			t.Fatal("a format without a grammar")
		}
		_ = fm.Check(doc)
		if tool, err := NewTool("t", "", schema, strict); err == nil {
			_ = tool.Check(doc)
		}
	})
}

// Schemas whose checking would be exponential are refused; recursion with
// one recursive branch per applicator is fine, and checks are linear.
func TestRecursionRisk(t *testing.T) {
	for _, c := range []struct {
		schema, pointer string
	}{
		{`{"type":"object","properties":{"a":{"allOf":[{"$ref":"#"},{"$ref":"#"}]}}}`, "/properties/a/allOf"},
		{`{"$defs":{"n":{"type":"object","properties":{"k":{"oneOf":[{"$ref":"#/$defs/n"},{"type":"array","items":{"$ref":"#/$defs/n"}}]}}}},"$ref":"#/$defs/n"}`, "/$defs/n/properties/k/oneOf"},
		{`{"type":"object","properties":{"a":{"$dynamicRef":"#x"}}}`, "/properties/a/$dynamicRef"},
	} {
		_, err := NewSchemaFormat("r", json.RawMessage(c.schema), false)
		var e *Error
		if !errors.As(err, &e) || e.Pointer != c.pointer {
			t.Errorf("%s: %v, want an error at %s", c.schema, err, c.pointer)
		}
	}
	ok := `{"$defs":{"n":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/n"},{"type":"null"}]}},"required":["v","next"]}},"$ref":"#/$defs/n"}`
	f, err := NewSchemaFormat("list", json.RawMessage(ok), true)
	if err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat(`{"v":1,"next":`, 70) + "null" + strings.Repeat("}", 70)
	if err := f.Check(deep); err == nil || !strings.Contains(err.Error(), "deeper than 64") {
		t.Fatalf("a document nested 70 deep: %v", err)
	}
	shallow := strings.Repeat(`{"v":1,"next":`, 60) + "null" + strings.Repeat("}", 60)
	if err := f.Check(shallow); err != nil {
		t.Fatalf("60 deep: %v", err)
	}
	if depthOver(`{"s":"[[[[[[[[[[[[\"{{{{{{"}`, 2) {
		t.Error("brackets inside strings counted")
	}
}

func TestRecursionRiskSiblings(t *testing.T) {
	for _, schema := range []string{
		`{"type":"object","properties":{"a":{"$ref":"#","allOf":[{"$ref":"#"}]}}}`,
		`{"type":"object","properties":{"a":{"if":{"$ref":"#"},"then":{"$ref":"#"}}}}`,
	} {
		if _, err := NewSchemaFormat("r", json.RawMessage(schema), false); err == nil || !strings.Contains(err.Error(), "exponential") {
			t.Errorf("%s: %v", schema, err)
		}
	}
}

// Schema is the format's JSON Schema only when the format alone
// constrains the turn.
func TestSchemaOfTurn(t *testing.T) {
	f, err := NewSchemaFormat("person", json.RawMessage(person), false)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := NewToolset([]Tool{mustTool(t, "a", `{}`)}, Choice{}, true)
	if err != nil {
		t.Fatal(err)
	}
	none, err := NewToolset([]Tool{mustTool(t, "a", `{}`)}, Choice{Mode: ChoiceNone}, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ts   *Toolset
		f    *Format
		want string
	}{
		{"nothing", nil, nil, ""},
		{"json_object", nil, JSONObject(), `{"type":"object"}`},
		{"json_schema", nil, f, person},
		{"tools", ts, f, ""},
		{"tools off", none, f, person},
	} {
		if got := string(Schema(tc.ts, tc.f)); got != tc.want {
			t.Errorf("%s: schema %q, want %q", tc.name, got, tc.want)
		}
	}
}
