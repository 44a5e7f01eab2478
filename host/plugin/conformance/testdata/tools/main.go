//go:build wasip1

// Command tools is a test plugin of the conformance kit's tools check. It
// declares two tools, add and pick, and behaves by the config value "mode"
// (also its name, as "tools-MODE"):
//
//   - good: conforming; bad arguments give an is_error result, an unknown
//     tool name an error.
//   - unknownok: answers an unknown tool name with a normal result.
//   - unknowntrap: traps on an unknown tool name.
//   - failargs: fails the call (an error) on bad arguments.
//   - emptyerr: answers bad arguments with is_error and empty content.
//   - random: the same call gives a different result each time.
//   - loop: spins on every call of a declared tool.
//
// Its prompt and validate exports conform, so only the tools check tells
// the modes apart. One module for all modes: compiling a Go module under
// the race detector takes seconds.
package main

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

func main() {}

const addParams = `{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"],"additionalProperties":false}`

const pickParams = `{
  "type": "object",
  "properties": {
    "color": {"enum": ["red", "green", "blue"]},
    "count": {"type": "integer", "minimum": 2, "maximum": 9},
    "tags": {"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 1},
    "where": {"$ref": "#/$defs/place"},
    "note": {"type": "string"}
  },
  "required": ["color", "count", "tags", "where"],
  "$defs": {"place": {"type": "object", "properties": {"city": {"type": "string"}, "day": {"type": "string", "format": "date"}}, "required": ["city", "day"]}}
}`

var mode string

func getMode() string {
	if mode == "" {
		mode, _ = kernel.Config("mode")
		if mode == "" {
			mode = "good"
		}
	}
	return mode
}

//go:wasmexport describe
func describe() int32 {
	m := abi.Manifest{
		ABI: abi.Version, ABIMinor: 1, Name: "tools-" + getMode(), Version: "0.1.0",
		Description:  "A test plugin with tools: adding numbers and picking things.",
		Keywords:     []string{"add", "sum", "pick"},
		Examples:     []string{"What is 2 plus 3?", "Add 7 and 8 for me.", "Pick a red one.", "Sum these two numbers.", "Which colour should I pick?"},
		Capabilities: []string{},
		Tools: []abi.ToolSpec{
			{Name: "add", Description: "Adds two numbers.", Parameters: json.RawMessage(addParams)},
			{Name: "pick", Description: "Picks things.", Parameters: json.RawMessage(pickParams)},
		},
	}
	return output(m)
}

func output(v any) int32 {
	b, err := json.Marshal(v)
	if err != nil {
		kernel.Error(err.Error())
		return 1
	}
	kernel.Output(b)
	return 0
}

func fail(msg string) int32 {
	kernel.Error(msg)
	return 1
}

//go:wasmexport prompt
func prompt() int32 {
	var req abi.PromptRequest
	if err := json.Unmarshal(kernel.Input(), &req); err != nil {
		return fail("prompt: decode input: " + err.Error())
	}
	return output(abi.PromptResponse{Messages: []abi.Message{
		{Role: abi.RoleSystem, Content: "You add numbers and pick things."},
		{Role: abi.RoleUser, Content: req.Query},
	}})
}

//go:wasmexport validate
func validate() int32 {
	var req abi.ValidateRequest
	if err := json.Unmarshal(kernel.Input(), &req); err != nil {
		return fail("validate: decode input: " + err.Error())
	}
	return output(abi.Validation{OK: true, Score: 1, Issues: []abi.Issue{}})
}

var calls int

var table []int

//go:wasmexport tool
func tool() int32 {
	var req abi.ToolRequest
	if err := json.Unmarshal(kernel.Input(), &req); err != nil {
		return fail("tool: decode input: " + err.Error())
	}
	if getMode() == "loop" && req.Name != "" && req.Name != "conformance-no-such-tool" {
		for {
			calls++
		}
	}
	content, err := run(req)
	switch {
	case err == errUnknown && getMode() == "unknownok":
		return output(abi.ToolResponse{Content: "fine"})
	case err == errUnknown && getMode() == "unknowntrap":
		return int32(table[len(req.Name)]) // index out of range: a trap
	case err == errUnknown:
		return fail("tool: no tool named " + strconv.Quote(req.Name))
	case err != nil && getMode() == "failargs":
		return fail("tool: " + err.Error())
	case err != nil && getMode() == "emptyerr":
		return output(abi.ToolResponse{IsError: true})
	case err != nil:
		return output(abi.ToolResponse{Content: err.Error(), IsError: true})
	}
	if getMode() == "random" {
		calls++
		content += fmt.Sprintf(" (call %d)", calls)
	}
	return output(abi.ToolResponse{Content: content})
}

type errString string

func (e errString) Error() string { return string(e) }

const errUnknown = errString("unknown tool")

func run(req abi.ToolRequest) (string, error) {
	switch req.Name {
	case "add":
		var a struct{ A, B *float64 }
		if err := json.Unmarshal(req.Arguments, &a); err != nil {
			return "", fmt.Errorf("add: arguments: %v", err)
		}
		if a.A == nil || a.B == nil {
			return "", errString("add: a and b are required")
		}
		return strconv.FormatFloat(*a.A+*a.B, 'g', -1, 64), nil
	case "pick":
		var a struct {
			Color string
			Count *int
			Tags  []string
			Where *struct{ City, Day string }
		}
		if err := json.Unmarshal(req.Arguments, &a); err != nil {
			return "", fmt.Errorf("pick: arguments: %v", err)
		}
		if a.Color == "" || a.Count == nil || len(a.Tags) == 0 || a.Where == nil {
			return "", errString("pick: color, count, tags and where are required")
		}
		return fmt.Sprintf("picked %d %s (%v) in %s on %s", *a.Count, a.Color, a.Tags, a.Where.City, a.Where.Day), nil
	}
	return "", errUnknown
}
