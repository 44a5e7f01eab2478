package sdkcheck

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// The tools protocol of the SDKs' test plugins (ABI 1.1): each declares
// two tools, "add" ({"a": number, "b": number} -> {"sum": a+b}; "a and b
// must be numbers" as a failed call otherwise; the sum 14 fails the export
// with "unlucky number") and "query" (no parameters; answers the query and
// how many arguments it got: "QUERY (N arguments)").

// AddCase is one call of the add tool and what it must answer.
type AddCase struct {
	Args, Content string
	IsError       bool
}

// AddCases are the calls every SDK's test makes.
var AddCases = []AddCase{
	{`{"a":2,"b":3.5}`, `{"sum":5.5}`, false},
	{`{"b":1000,"a":-1e3,"extra":[1]}`, `{"sum":0}`, false},
	{`{"a":"2","b":3}`, "a and b must be numbers", true},
	{`{"a":1}`, "a and b must be numbers", true},
	{`null`, "a and b must be numbers", true},
}

// CheckToolManifest checks the tools the test plugin p declares: abi_minor
// 1, add (described, with its schema) and query (no parameters), compiled.
func CheckToolManifest(t *testing.T, p *plugin.Plugin) {
	t.Helper()
	m := p.Manifest()
	if m.ABIMinor != 1 || len(m.Tools) != 2 || m.Tools[0].Name != "add" || m.Tools[1].Name != "query" ||
		m.Tools[0].Description != "Adds two numbers exactly. Use it for any sum." || m.Tools[1].Parameters != nil {
		t.Fatalf("manifest: abi_minor %d, tools %+v", m.ABIMinor, m.Tools)
	}
	var schema struct {
		Properties map[string]struct {
			Type        string `json:"type"`
			Description string `json:"description"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	if err := json.Unmarshal(m.Tools[0].Parameters, &schema); err != nil || schema.Properties["b"].Description != "the second é addend" ||
		schema.Properties["a"].Type != "number" || !slices.Equal(schema.Required, []string{"a", "b"}) {
		t.Fatalf("parameters %s: %+v %v", m.Tools[0].Parameters, schema, err)
	}
	if ts := p.Tools(); len(ts) != 2 || ts[0].Name != "add" || ts[1].Name != "query" {
		t.Fatalf("compiled tools: %+v", ts)
	}
}

// ToolCallOptions adapts CheckToolCalls to an SDK's test plugin.
type ToolCallOptions struct {
	// Extra add cases, after AddCases.
	Extra []AddCase
	// QuerySuffix follows the query in the query tool's answer; "" means
	// " (0 arguments)".
	QuerySuffix string
}

// CheckToolCalls calls the test plugin's tools through the host: the add
// cases, the query tool, and an unknown name.
func CheckToolCalls(t *testing.T, p *plugin.Plugin, o ToolCallOptions) {
	t.Helper()
	ctx := context.Background()
	if o.QuerySuffix == "" {
		o.QuerySuffix = " (0 arguments)"
	}
	for _, tc := range append(slices.Clone(AddCases), o.Extra...) {
		r, err := p.Tool(ctx, abi.ToolRequest{Name: "add", Arguments: json.RawMessage(tc.Args)})
		if err != nil || r.Content != tc.Content || r.IsError != tc.IsError {
			t.Errorf("add(%s) = %+v, %v; want %q (is_error %v)", tc.Args, r, err, tc.Content, tc.IsError)
		}
	}
	q := "What is \"2+2\"?\n🙂"
	if r, err := p.Tool(ctx, abi.ToolRequest{Name: "query", Arguments: json.RawMessage(`{}`), Query: q}); err != nil ||
		r != (abi.ToolResponse{Content: q + o.QuerySuffix}) {
		t.Errorf("query tool: %+v, %v", r, err)
	}
	if _, err := p.Tool(ctx, abi.ToolRequest{Name: "nope", Arguments: json.RawMessage(`{}`)}); !errors.Is(err, plugin.ErrNoTool) {
		t.Errorf("unknown tool through the host: %v", err)
	}
}

// RawToolErrors are inputs the host never sends to the tool export and
// the error each must give.
var RawToolErrors = []struct{ Input, Want string }{
	{`{"name":"nope","arguments":{}}`, `tool: no tool named "nope"`},
	{`{"arguments":{}}`, `tool: no tool named ""`},
	{`{"name":5}`, "tool: decode input: name: want a string"},
	{`{"name":"add","query":[]}`, "tool: decode input: query: want a string"},
	{`[]`, "tool: decode input: want a JSON object"},
	{`{"name":"add"`, "tool: decode input: unexpected end of JSON input at byte 13"},
}

// CheckRawToolErrors feeds RawToolErrors to the tool export of wasm.
func CheckRawToolErrors(t *testing.T, wasm []byte) {
	t.Helper()
	raw := RawPluginWithHost(t, wasm, func(string, []byte) []byte { return nil })
	for _, tc := range RawToolErrors {
		if _, msg := CallRaw(t, raw, "tool", []byte(tc.Input)); msg != tc.Want {
			t.Errorf("tool(%s): error %q, want %q", tc.Input, msg, tc.Want)
		}
	}
}
