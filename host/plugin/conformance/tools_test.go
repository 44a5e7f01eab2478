package conformance

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// compileTool compiles params as the host compiles a plugin's tool.
func compileTool(t *testing.T, params string) structured.Tool {
	t.Helper()
	tool, err := structured.NewTool("t", "a test tool", json.RawMessage(params), false)
	if err != nil {
		t.Fatalf("schema does not compile: %v\n%s", err, params)
	}
	return tool
}

func TestToolArgsGenerator(t *testing.T) {
	const params = `{
	  "type": "object",
	  "properties": {
	    "name":    {"type": "string"},
	    "code":    {"type": "string", "minLength": 10, "maxLength": 12},
	    "day":     {"type": "string", "format": "date"},
	    "amount":  {"type": "number", "exclusiveMinimum": 0, "maximum": 1e12},
	    "rate":    {"type": "number", "minimum": 2.5},
	    "low":     {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
	    "years":   {"type": "integer", "minimum": 5, "maximum": 40, "multipleOf": 5},
	    "neg":     {"type": "integer", "maximum": -3},
	    "flag":    {"type": "boolean"},
	    "unit":    {"type": "string", "enum": ["kg", "lb"]},
	    "kind":    {"const": "fixed"},
	    "maybe":   {"type": ["null", "integer"]},
	    "tags":    {"type": "array", "items": {"type": "string"}},
	    "points":  {"type": "array", "items": {"type": "integer", "minimum": 10}, "minItems": 2, "uniqueItems": true},
	    "where":   {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}, "opt": {"type": "string"}}, "required": ["city", "zip"]},
	    "ref":     {"$ref": "#/$defs/money"},
	    "either":  {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 7}]},
	    "both":    {"allOf": [{"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}, {"properties": {"y": {"type": "boolean"}}, "required": ["y"]}]},
	    "optional": {"type": "string"}
	  },
	  "required": ["name", "code", "day", "amount", "rate", "low", "years", "neg", "flag", "unit", "kind", "maybe",
	               "tags", "points", "where", "ref", "either", "both"],
	  "additionalProperties": false,
	  "$defs": {"money": {"type": "object", "properties": {"currency": {"enum": ["EUR", "USD"]}, "value": {"type": "number"}}, "required": ["currency", "value"]}}
	}`
	tool := compileTool(t, params)
	min, wrong := toolArgs(tool.Parameters)
	if err := tool.Check(string(min)); err != nil {
		t.Fatalf("minimal arguments are not valid: %v\n%s", err, min)
	}
	var got map[string]any
	if err := json.Unmarshal(min, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "example", "code": "examplexxx", "day": "2024-01-15", "amount": 1.0, "rate": 2.5, "low": 0.25,
		"years": 5.0, "neg": -3.0, "flag": true, "unit": "kg", "kind": "fixed", "maybe": 1.0,
		"tags": []any{}, "points": []any{10.0, 11.0},
		"where":  map[string]any{"city": "example", "zip": 1.0},
		"ref":    map[string]any{"currency": "EUR", "value": 1.0},
		"either": 7.0,
		"both":   map[string]any{"x": 1.0, "y": true},
	}
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(got)
	if string(wantJSON) != string(gotJSON) {
		t.Fatalf("minimal arguments\n got %s\nwant %s", gotJSON, wantJSON)
	}

	// Every required property of the wrong type, the rest as in minimal.
	if err := tool.Check(string(wrong)); err == nil {
		t.Fatalf("wrong-type arguments are valid: %s", wrong)
	}
	var bad map[string]any
	if err := json.Unmarshal(wrong, &bad); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{
		"name": 12.5, "amount": "not the right type", "years": "not the right type", "flag": "not the right type",
		"tags": "not the right type", "where": "not the right type", "unit": 12.5, "kind": "not the right type",
		"maybe": "not the right type",
	} {
		if b, _ := json.Marshal(bad[name]); string(b) != string(mustJSON(v)) {
			t.Errorf("wrong-type %s = %s, want %s", name, b, mustJSON(v))
		}
	}
	if len(bad) != len(got) {
		t.Fatalf("wrong-type arguments have %d properties, minimal %d", len(bad), len(got))
	}

	sets := toolArgSets(tool.Parameters)
	if len(sets) != 3 || sets[0].name != "minimal" || sets[1].name != "empty" || string(sets[1].args) != "{}" || sets[2].name != "wrong-type" {
		t.Fatalf("argument sets: %+v", sets)
	}
}

func TestToolArgsCases(t *testing.T) {
	cases := []struct {
		params       string
		min, wrong   string // wrong "" = none
		sets         int
		invalidEmpty bool // {} is not valid
	}{
		// No parameters: {} once.
		{params: ``, min: `{}`, sets: 1},
		{params: `{"type":"object","properties":{"q":{"type":"string"}}}`, min: `{}`, sets: 1},
		// The finance plugin's loan_payment.
		{params: `{"type":"object","properties":{"principal":{"type":"number","exclusiveMinimum":0,"maximum":1e12},` +
			`"annual_rate_percent":{"type":"number","minimum":0,"maximum":100},"years":{"type":"number","exclusiveMinimum":0,"maximum":100}},` +
			`"required":["principal","annual_rate_percent","years"],"additionalProperties":false}`,
			min:   `{"annual_rate_percent":1,"principal":1,"years":1}`,
			wrong: `{"annual_rate_percent":"not the right type","principal":"not the right type","years":"not the right type"}`, sets: 3, invalidEmpty: true},
		// Bounds below 1, numbers and integers.
		{params: `{"type":"object","properties":{"p":{"type":"number","maximum":0.5},"i":{"type":"integer","exclusiveMaximum":0}},"required":["p","i"]}`,
			min: `{"i":-1,"p":0.5}`, wrong: `{"i":"not the right type","p":"not the right type"}`, sets: 3, invalidEmpty: true},
		// Untyped alternatives: one with a type is not enough.
		{params: `{"type":"object","properties":{"u":{"anyOf":[{"type":"string"},{}]},"v":{"oneOf":[{"type":"string"},{"type":"integer"}]}},"required":["u","v"]}`,
			min: `{"u":"example","v":"example"}`, wrong: `{"u":"example","v":12.5}`, sets: 3, invalidEmpty: true},
		// An enum without a type, and keywords that imply a type without
		// requiring it.
		{params: `{"type":"object","properties":{"e":{"enum":[1,2]},"m":{"minimum":3}},"required":["e","m"]}`,
			min: `{"e":1,"m":3}`, wrong: `{"e":"not the right type","m":3}`, sets: 3, invalidEmpty: true},
		// minProperties takes optional properties in name order.
		{params: `{"type":"object","properties":{"b":{"type":"boolean"},"a":{"type":"string","maxLength":3}},"minProperties":1}`,
			min: `{"a":"exa"}`, sets: 2, invalidEmpty: true},
		// A self-referring schema ends.
		{params: `{"type":"object","properties":{"child":{"$ref":"#"}},"required":["child"]}`, sets: 3, invalidEmpty: true},
	}
	for i, tc := range cases {
		tool := compileTool(t, tc.params)
		min, wrong := toolArgs(tool.Parameters)
		if tc.min != "" && string(min) != tc.min {
			t.Errorf("case %d: minimal %s, want %s", i, min, tc.min)
		}
		if tc.min != "" {
			if err := tool.Check(string(min)); err != nil {
				t.Errorf("case %d: minimal %s is not valid: %v", i, min, err)
			}
		}
		if tc.wrong != "" && string(wrong) != tc.wrong || tc.wrong == "" && wrong != nil && tc.sets < 3 {
			t.Errorf("case %d: wrong-type %s, want %s", i, wrong, tc.wrong)
		}
		if wrong != nil && tool.Check(string(wrong)) == nil {
			t.Errorf("case %d: wrong-type %s is valid", i, wrong)
		}
		if got := len(toolArgSets(tool.Parameters)); got != tc.sets {
			t.Errorf("case %d: %d argument sets, want %d", i, got, tc.sets)
		}
		if err := tool.Check("{}"); (err != nil) != tc.invalidEmpty {
			t.Errorf("case %d: {} valid=%v", i, err == nil)
		}
	}
	// Schemas the host would not compile, straight to the generator: a
	// required property only additionalProperties describes, or nothing.
	for p, want := range map[string][2]string{
		`{"type":"object","required":["n"],"additionalProperties":{"type":"integer"}}`: {`{"n":1}`, `{"n":"not the right type"}`},
		`{"type":"object","required":["free"]}`:                                        {`{"free":"x"}`, ``},
	} {
		if min, wrong := toolArgs(json.RawMessage(p)); string(min) != want[0] || string(wrong) != want[1] {
			t.Errorf("%s: %s %s, want %s %s", p, min, wrong, want[0], want[1])
		}
	}
	// Not JSON, or not an object: the empty object.
	for _, p := range []string{`{"type":`, `[1]`, `true`} {
		if min, wrong := toolArgs(json.RawMessage(p)); string(min) != "{}" || wrong != nil {
			t.Errorf("%s: %s %s", p, min, wrong)
		}
	}
}

func TestCheckToolResponse(t *testing.T) {
	cases := []struct {
		r    abi.ToolResponse
		want string
	}{
		{abi.ToolResponse{Content: "42"}, ""},
		{abi.ToolResponse{Content: ""}, ""},
		{abi.ToolResponse{Content: "a must be a number", IsError: true}, ""},
		{abi.ToolResponse{Content: " \n", IsError: true}, "is_error with empty content"},
		{abi.ToolResponse{Content: "caf\xe9"}, "not valid UTF-8"},
		{abi.ToolResponse{Content: strings.Repeat("x", abi.MaxToolContentLen+1)}, "at most 65536 allowed"},
	}
	for i, tc := range cases {
		probs := strings.Join(checkToolResponse(tc.r), "; ")
		if tc.want == "" && probs != "" || tc.want != "" && !strings.Contains(probs, tc.want) {
			t.Errorf("case %d: problems %q, want %q", i, probs, tc.want)
		}
	}
}

// TestFinanceTools runs the whole kit on the finance plugin, whose
// loan_payment tool conforms.
func TestFinanceTools(t *testing.T) {
	rep := check(t, "finance.wasm", fix.finance, Options{MaxCallLatency: latencyBudget})
	logReport(t, rep)
	if !rep.Passed {
		t.Fatalf("finance does not pass: %+v", rep.Failed())
	}
	r, ok := rep.Result(CheckTools)
	if !ok || !r.Passed || !strings.Contains(r.Detail, "1 tool(s), 6 calls") || !strings.Contains(r.Detail, "unknown tool name") ||
		strings.Contains(r.Detail, "not valid against the schema") {
		t.Fatalf("tools: %+v", r)
	}
	if rep.CallUS[abi.ExportTool] <= 0 {
		t.Fatalf("call_us[tool] missing: %v", rep.CallUS)
	}
}

// TestToolModes checks each mode of testdata/tools: good passes every
// check, the others fail the tools check (only), saying why.
func TestToolModes(t *testing.T) {
	cases := []struct {
		mode   string
		detail []string // "" = passes
	}{
		{mode: "good"},
		{mode: "unknownok", detail: []string{`tool returned a normal response for the unknown tool "conformance-no-such-tool" ({"content":"fine"})`}},
		{mode: "unknowntrap", detail: []string{`tool trapped on the unknown tool "conformance-no-such-tool"`, "must fail with an error message, not trap"}},
		{mode: "failargs", detail: []string{
			`tool add with empty arguments {}: `, "add: a and b are required", "must answer arguments it cannot use with is_error",
			`tool pick with wrong-type arguments`, "pick: arguments: json: cannot unmarshal",
		}},
		{mode: "emptyerr", detail: []string{`tool add with wrong-type arguments {"a":"not the right type","b":"not the right type"}: is_error with empty content`}},
		{mode: "random", detail: []string{`tool add with minimal arguments {"a":1,"b":1}: not deterministic: the same call returned "2 (call 1)", then "2 (call 2)"`}},
		// One timeout, then no more calls of the export.
		{mode: "loop", detail: []string{`tool add with minimal arguments {"a":1,"b":1}: `, "timed out", "tool not probed with an unknown tool name or malformed input: it timed out earlier"}},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			rep := check(t, "tools.wasm", fix.tools, Options{Config: map[string]string{"mode": tc.mode}, LatencyCalls: 5, MaxCallLatency: time.Second})
			if testing.Verbose() {
				logReport(t, rep)
			}
			r, ok := rep.Result(CheckTools)
			if !ok {
				logReport(t, rep)
				t.Fatal("no tools check")
			}
			if tc.detail == nil {
				if !rep.Passed || !r.Passed || !strings.Contains(r.Detail, "2 tool(s), 12 calls") || rep.CallUS[abi.ExportTool] <= 0 {
					logReport(t, rep)
					t.Fatalf("tools: %+v", r)
				}
				return
			}
			if r.Passed || !strings.HasPrefix(r.Detail, CheckTools+": ") {
				logReport(t, rep)
				t.Fatalf("tools passed: %+v", r)
			}
			for _, want := range tc.detail {
				if !strings.Contains(r.Detail, want) {
					logReport(t, rep)
					t.Fatalf("tools detail lacks %q:\n%s", want, r.Detail)
				}
			}
			if f := rep.Failed(); len(f) != 1 {
				logReport(t, rep)
				t.Fatalf("only tools should fail: %+v", f)
			}
			if timeout := DefaultLimits().CallTimeout; tc.mode == "loop" && r.Duration > timeout+3*time.Second {
				t.Fatalf("tools check took %s: it waited for the spinning export more than once", r.Duration)
			}
		})
	}
}

// TestToolSlowCall: a tool call over Options.SlowCall fails the tools check.
func TestToolSlowCall(t *testing.T) {
	rep := check(t, "tools.wasm", fix.tools, Options{Config: map[string]string{"mode": "good"}, LatencyCalls: 5, SlowCall: time.Nanosecond})
	r, _ := rep.Result(CheckTools)
	if r.Passed || !strings.Contains(r.Detail, "tool add with minimal arguments") || !strings.Contains(r.Detail, "over the 1ns budget of one call") {
		logReport(t, rep)
		t.Fatalf("tools: %+v", r)
	}
}

func TestToolCalls(t *testing.T) {
	ids := compileTool(t, `{"type":"object","properties":{"id":{"type":"string","pattern":"^[0-9]{4}$"}},"required":["id"]}`)
	ids.Name = "ids"
	none := compileTool(t, ``)
	none.Name = "none"
	c := &checker{samples: []sample{{"plain", abi.PromptRequest{Query: "which id?"}}}}
	calls, invalid := c.toolCalls([]structured.Tool{ids, none})
	var got []string
	for _, tc := range calls {
		if tc.req.Query != "which id?" {
			t.Fatalf("query %q", tc.req.Query)
		}
		got = append(got, fmt.Sprintf("%s %s %v", tc.req.Name, tc.req.Arguments, tc.valid))
	}
	want := []string{`ids {"id":"example"} false`, `ids {} false`, `ids {"id":12.5} false`, `none {} true`}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("calls\n got %q\nwant %q", got, want)
	}
	if len(invalid) != 1 || invalid[0] != "ids" {
		t.Fatalf("invalid minimal: %v", invalid)
	}
	if !strings.HasPrefix(calls[2].what, `tool ids with wrong-type arguments {"id":12.5}`) {
		t.Fatalf("what: %q", calls[2].what)
	}
}
