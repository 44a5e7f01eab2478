package server

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Structured outputs and tools on chat completions: OpenAI's
// response_format, tools, tool_choice and parallel_tool_calls, assistant
// messages with tool_calls and tool messages with their results.

// maxCallsPerMessage bounds the tool calls of one assistant message.
const maxCallsPerMessage = 128

// structuredError maps an error of host/structured onto a 400 on field (the
// request's path of the definition, e.g. "tools[2].function").
func structuredError(field string, err error) *apiError {
	var se *structured.Error
	if !errors.As(err, &se) {
		return badRequest(field, "invalid_value", "%s: %s", field, clip(err.Error(), maxErrorDetail))
	}
	param := field
	switch {
	case field == "":
		param = se.Field
	case se.Field != "":
		param = join(field, se.Field)
	}
	if se.Pointer != "" {
		return badRequest(param, "invalid_schema", "%s at %s: %s", param, se.Pointer, clip(se.Msg, maxErrorDetail))
	}
	return badRequest(param, "invalid_value", "%s: %s", param, clip(se.Msg, maxErrorDetail))
}

// rawJSON keeps a member's JSON as it is, for a later decoding.
func rawJSON(dst *json.RawMessage) field {
	return func(v json.RawMessage, _ string) *apiError {
		*dst = v
		return nil
	}
}

// responseFormat decodes response_format: text (nil), json_object or
// json_schema ({name, description, schema, strict}).
func responseFormat(dst **structured.Format) field {
	return func(v json.RawMessage, path string) *apiError {
		var typ string
		var js json.RawMessage
		if err := object(v, path, map[string]field{
			"type":        str(&typ),
			"json_schema": rawJSON(&js),
		}); err != nil {
			return err
		}
		switch typ {
		case structured.FormatText:
			return nil
		case structured.FormatJSONObject:
			*dst = structured.JSONObject()
			return nil
		case structured.FormatJSONSchema:
		case "":
			return badRequest(join(path, "type"), "missing_field", "%s.type is required: text, json_object or json_schema", path)
		default:
			return badRequest(join(path, "type"), "unsupported_value", "%s.type %q is not supported: use text, json_object or json_schema", path, clip(typ, 64))
		}
		jpath := join(path, "json_schema")
		if js == nil {
			return badRequest(jpath, "missing_field", "%s is required for type json_schema: {\"name\", \"schema\", \"strict\"}", jpath)
		}
		var name string
		var schema json.RawMessage
		var strict bool
		if err := object(js, jpath, map[string]field{
			"name":        str(&name),
			"description": str(new(string)),
			"schema":      rawJSON(&schema),
			"strict":      boolean(&strict),
		}); err != nil {
			return err
		}
		if name == "" {
			return badRequest(join(jpath, "name"), "missing_field", "%s.name is required", jpath)
		}
		if schema == nil {
			return badRequest(join(jpath, "schema"), "missing_field", "%s.schema is required: the JSON Schema of the answer", jpath)
		}
		f, err := structured.NewSchemaFormat(name, schema, strict)
		if err != nil {
			return structuredError(jpath, err)
		}
		*dst = f
		return nil
	}
}

// toolDefs decodes tools: [{type: "function", function: {name,
// description, parameters, strict}}].
func toolDefs(dst *[]structured.Tool) field {
	return func(v json.RawMessage, path string) *apiError {
		var list []json.RawMessage
		if json.Unmarshal(v, &list) != nil {
			return wrongType(path, "an array of tools", v)
		}
		if len(list) > structured.MaxTools {
			return badRequest(path, "too_many_tools", "%s: %d tools, at most %d", path, len(list), structured.MaxTools)
		}
		for i, raw := range list {
			tp := index(path, i)
			var typ string
			var fn json.RawMessage
			if err := object(raw, tp, map[string]field{
				"type":     str(&typ),
				"function": rawJSON(&fn),
			}); err != nil {
				return err
			}
			if typ != "function" {
				return badRequest(join(tp, "type"), "unsupported_value", "%s.type %q is not supported: only \"function\"", tp, clip(typ, 64))
			}
			fp := join(tp, "function")
			if fn == nil {
				return badRequest(fp, "missing_field", "%s is required", fp)
			}
			var name, desc string
			var params json.RawMessage
			var strict bool
			if err := object(fn, fp, map[string]field{
				"name":        str(&name),
				"description": str(&desc),
				"parameters":  rawJSON(&params),
				"strict":      boolean(&strict),
			}); err != nil {
				return err
			}
			t, err := structured.NewTool(name, desc, params, strict)
			if err != nil {
				return structuredError(fp, err)
			}
			*dst = append(*dst, t)
		}
		return nil
	}
}

// toolChoice decodes tool_choice: "none", "auto", "required" or
// {type: "function", function: {name}}.
func toolChoice(dst *structured.Choice) field {
	return func(v json.RawMessage, path string) *apiError {
		var s string
		if json.Unmarshal(v, &s) == nil {
			switch s {
			case structured.ChoiceNone, structured.ChoiceAuto, structured.ChoiceRequired:
				dst.Mode = s
				return nil
			}
			return badRequest(path, "unsupported_value", "%s %q is not supported: use none, auto, required or {\"type\":\"function\",\"function\":{\"name\":...}}", path, clip(s, 64))
		}
		var typ string
		var fn json.RawMessage
		if err := object(v, path, map[string]field{
			"type":     str(&typ),
			"function": rawJSON(&fn),
		}); err != nil {
			return err
		}
		if typ != "function" || fn == nil {
			return badRequest(path, "invalid_value", "%s: an object must be {\"type\":\"function\",\"function\":{\"name\":...}}", path)
		}
		var name string
		if err := object(fn, join(path, "function"), map[string]field{"name": str(&name)}); err != nil {
			return err
		}
		if name == "" {
			return badRequest(join(join(path, "function"), "name"), "missing_field", "%s.function.name is required", path)
		}
		*dst = structured.Choice{Mode: structured.ChoiceFunction, Name: name}
		return nil
	}
}

// toolset builds the request's toolset from its tools and choice (nil when
// it has no tools).
func (r *chatRequest) toolset(tools []structured.Tool, choice structured.Choice, choiceGiven bool, parallel bool) *apiError {
	if len(tools) == 0 {
		if choiceGiven && (choice.Mode == structured.ChoiceRequired || choice.Mode == structured.ChoiceFunction) {
			return badRequest("tool_choice", "invalid_value", "tool_choice %q needs tools", choice.Mode)
		}
		return nil
	}
	ts, err := structured.NewToolset(tools, choice, parallel)
	if err != nil {
		return structuredError("", err)
	}
	r.Tools = ts
	return nil
}

// toolCalls decodes an assistant message's tool_calls.
func toolCalls(dst *[]structured.Call) field {
	return func(v json.RawMessage, path string) *apiError {
		var list []json.RawMessage
		if json.Unmarshal(v, &list) != nil {
			return wrongType(path, "an array of tool calls", v)
		}
		if len(list) > maxCallsPerMessage {
			return badRequest(path, "invalid_value", "%s: %d calls, at most %d", path, len(list), maxCallsPerMessage)
		}
		for i, raw := range list {
			cp := index(path, i)
			var c structured.Call
			var typ string
			var fn json.RawMessage
			if err := object(raw, cp, map[string]field{
				"id":       str(&c.ID),
				"type":     str(&typ),
				"function": rawJSON(&fn),
			}); err != nil {
				return err
			}
			if c.ID == "" {
				return badRequest(join(cp, "id"), "missing_field", "%s.id is required", cp)
			}
			if typ != "" && typ != "function" {
				return badRequest(join(cp, "type"), "unsupported_value", "%s.type %q is not supported: only \"function\"", cp, clip(typ, 64))
			}
			fp := join(cp, "function")
			if fn == nil {
				return badRequest(fp, "missing_field", "%s is required", fp)
			}
			if err := object(fn, fp, map[string]field{"name": str(&c.Name), "arguments": str(&c.Arguments)}); err != nil {
				return err
			}
			if c.Name == "" {
				return badRequest(join(fp, "name"), "missing_field", "%s.name is required", fp)
			}
			*dst = append(*dst, c)
		}
		return nil
	}
}

// chatMsg is one decoded message of a chat request.
type chatMsg struct {
	path    string
	role    string
	content *string
	calls   []structured.Call
	callID  string
}

// foldHistory turns the messages before the query into the plugin's
// history: an assistant's calls and their results become text of the
// assistant's turn (consecutive assistant turns merged), so that roles
// alternate and routing sees only the user's words.
func foldHistory(msgs []chatMsg) ([]abi.Message, *apiError) {
	var out []abi.Message
	var open []structured.Call // the last assistant's calls
	addAssistant := func(text string) {
		if n := len(out); n > 0 && out[n-1].Role == abi.RoleAssistant {
			if text != "" {
				if out[n-1].Content != "" {
					out[n-1].Content += "\n"
				}
				out[n-1].Content += text
			}
			return
		}
		out = append(out, abi.Message{Role: abi.RoleAssistant, Content: text})
	}
	for _, m := range msgs {
		switch m.role {
		case abi.RoleUser:
			out = append(out, abi.Message{Role: abi.RoleUser, Content: *m.content})
			open = nil
		case abi.RoleAssistant:
			text := ""
			if m.content != nil {
				text = *m.content
			}
			if len(m.calls) > 0 {
				text = strings.TrimSpace(text + "\n" + structured.RenderCalls(m.calls))
				open = m.calls
			}
			addAssistant(text)
		case roleTool:
			c, ok := findCall(open, m.callID)
			if !ok {
				return nil, badRequest(join(m.path, "tool_call_id"), "invalid_value", "%s.tool_call_id %q answers no tool call of the assistant message before it", m.path, clip(m.callID, 80))
			}
			addAssistant(structured.RenderResults([]structured.Result{{CallID: c.ID, Name: c.Name, Content: contentOf(m)}}))
		}
	}
	return out, nil
}

// tailTurns reads the messages after the query: rounds of an assistant's
// calls followed by a tool message for each.
func tailTurns(msgs []chatMsg) ([]structured.Turn, *apiError) {
	var turns []structured.Turn
	for i := 0; i < len(msgs); {
		m := msgs[i]
		if m.role != abi.RoleAssistant || len(m.calls) == 0 {
			return nil, badRequest("messages", "invalid_value", "messages must end with a user message (the query) or with tool results after it; %s is a %s message without tool calls", m.path, m.role)
		}
		t := structured.Turn{Calls: m.calls, Results: make([]structured.Result, len(m.calls))}
		got := make([]bool, len(m.calls))
		i++
		for ; i < len(msgs) && msgs[i].role == roleTool; i++ {
			tm := msgs[i]
			k := -1
			for j, c := range m.calls {
				if c.ID == tm.callID {
					k = j
				}
			}
			if k < 0 {
				return nil, badRequest(join(tm.path, "tool_call_id"), "invalid_value", "%s.tool_call_id %q answers no tool call of %s", tm.path, clip(tm.callID, 80), m.path)
			}
			t.Results[k] = structured.Result{CallID: tm.callID, Name: m.calls[k].Name, Content: contentOf(tm)}
			got[k] = true
		}
		for j, ok := range got {
			if !ok {
				p := index(join(m.path, "tool_calls"), j)
				return nil, badRequest(p, "missing_tool_result", "%s (id %q) has no tool message with its result", p, clip(m.calls[j].ID, 80))
			}
		}
		turns = append(turns, t)
	}
	return turns, nil
}

const roleTool = "tool"

func findCall(calls []structured.Call, id string) (structured.Call, bool) {
	for _, c := range calls {
		if c.ID == id {
			return c, true
		}
	}
	return structured.Call{}, false
}

func contentOf(m chatMsg) string {
	if m.content == nil {
		return ""
	}
	return *m.content
}
