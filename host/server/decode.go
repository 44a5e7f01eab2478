package server

import (
	"encoding/json"
	"strings"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Bounds on request values (beyond server.max_body_bytes).
const (
	maxTokensCap     = 1 << 20 // a max_tokens beyond this is a mistake
	maxEmbedInputs   = 2048    // inputs per embeddings request (OpenAI's limit)
	maxTopK          = 1 << 16
	maxRepeatPenalty = 10
)

// chatRequest is a decoded POST /v1/chat/completions body.
type chatRequest struct {
	Model string
	// Query is the content of the last message, a user message.
	Query string
	// History holds the user and assistant messages before it, in order.
	History []abi.Message
	// System is the system (and developer) messages' contents, joined by
	// blank lines; "" when there are none.
	System string
	// MaxTokens is the requested completion length (0: not given) and
	// MaxTokensParam the field that gave it.
	MaxTokens      int
	MaxTokensParam string
	Temperature    *float32
	TopP           *float32
	TopK           int
	RepeatPenalty  *float32
	Stop           []string
	Seed           *uint32
	Stream         bool
	IncludeUsage   bool
	// ConversationID names a conversation the server keeps
	// ([conversations]): its messages come before these.
	ConversationID string
	// Format is the response format (nil: text); Tools the client's tools
	// and how the model may call them (nil: none); Turns the rounds of
	// tool calls and results after the query.
	Format *structured.Format
	Tools  *structured.Toolset
	Turns  []structured.Turn
}

// decodeChat decodes and checks a chat completion request. Every error is a
// 400 naming the field at fault.
func decodeChat(data []byte) (chatRequest, *apiError) {
	var r chatRequest
	raw, aerr := jsonDoc(data)
	if aerr != nil {
		return r, aerr
	}
	var (
		messages       json.RawMessage
		maxTok, maxCmp int
		n              int64 = 1
		logprobs       bool
		penalty        float64
		tools          []structured.Tool
		choice         structured.Choice
		choiceGiven    bool
		parallel       = true
	)
	aerr = object(raw, "", map[string]field{
		"model":           str(&r.Model),
		"conversation_id": str(&r.ConversationID),
		"messages": func(v json.RawMessage, _ string) *apiError {
			messages = v
			return nil
		},
		"max_tokens":            intField(&maxTok, 1, maxTokensCap),
		"max_completion_tokens": intField(&maxCmp, 1, maxTokensCap),
		"temperature":           float32In(&r.Temperature, 0, 2),
		"top_p":                 float32In(&r.TopP, 0, 1),
		"top_k":                 intField(&r.TopK, 0, maxTopK),
		"repeat_penalty":        float32In(&r.RepeatPenalty, 0, maxRepeatPenalty),
		"stop":                  stopField(&r.Stop),
		"seed":                  seedField(&r.Seed),
		"stream":                boolean(&r.Stream),
		"stream_options": func(v json.RawMessage, path string) *apiError {
			return object(v, path, map[string]field{"include_usage": boolean(&r.IncludeUsage)})
		},
		"n": func(v json.RawMessage, path string) *apiError {
			if integer(&n, 1, 1)(v, path) != nil {
				return badRequest(path, "unsupported_value", "n: only one choice per request (n = 1) is supported")
			}
			return nil
		},
		"logprobs":          boolean(&logprobs),
		"presence_penalty":  number(&penalty, -2, 2),
		"frequency_penalty": number(&penalty, -2, 2),
		"user":              str(new(string)),
		"metadata":          ignore,
		"store":             boolean(new(bool)),
		"response_format":   responseFormat(&r.Format),
		"tools":             toolDefs(&tools),
		"tool_choice": func(v json.RawMessage, path string) *apiError {
			choiceGiven = true
			return toolChoice(&choice)(v, path)
		},
		"parallel_tool_calls": boolean(&parallel),
		"functions":           unsupported("functions (the old function calling) are not supported: use tools"),
	})
	if aerr != nil {
		return r, aerr
	}
	if logprobs {
		return r, badRequest("logprobs", "unsupported_value", "logprobs: log probabilities are not supported")
	}
	if r.Model == "" {
		return r, badRequest("model", "missing_field", "model is required: \"mdsa\" routes each query to a domain, \"mdsa/<domain>\" picks one (GET /v1/models lists them)")
	}
	switch {
	case maxTok > 0 && maxCmp > 0 && maxTok != maxCmp:
		return r, badRequest("max_completion_tokens", "invalid_value", "max_tokens (%d) and max_completion_tokens (%d) disagree; give one", maxTok, maxCmp)
	case maxCmp > 0:
		r.MaxTokens, r.MaxTokensParam = maxCmp, "max_completion_tokens"
	case maxTok > 0:
		r.MaxTokens, r.MaxTokensParam = maxTok, "max_tokens"
	}
	if messages == nil {
		return r, badRequest("messages", "missing_field", "messages is required: an array of {\"role\",\"content\"} ending with a user message")
	}
	if aerr := r.decodeMessages(messages); aerr != nil {
		return r, aerr
	}
	if aerr := r.toolset(tools, choice, choiceGiven, parallel); aerr != nil {
		return r, aerr
	}
	return r, nil
}

func unsupported(msg string) field {
	return func(_ json.RawMessage, path string) *apiError {
		return badRequest(path, "unsupported_parameter", "%s: %s", path, msg)
	}
}

// decodeMessages splits the conversation: system and developer messages
// become System, the last message (which must be the user's) the Query,
// the user and assistant messages before it History.
func (r *chatRequest) decodeMessages(raw json.RawMessage) *apiError {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return wrongType("messages", "an array of messages", raw)
	}
	if len(list) == 0 {
		return badRequest("messages", "empty_messages", "messages is empty: give at least one user message")
	}
	var system []string
	msgs := make([]chatMsg, 0, len(list))
	lastUser := -1
	for i, m := range list {
		cm := chatMsg{path: index("messages", i)}
		path := cm.path
		aerr := object(m, path, map[string]field{
			"role": str(&cm.role),
			"content": func(v json.RawMessage, p string) *apiError {
				s, err := decodeContent(v, p)
				cm.content = &s
				return err
			},
			"name":         str(new(string)),
			"refusal":      ignore,
			"tool_calls":   toolCalls(&cm.calls),
			"tool_call_id": str(&cm.callID),
		})
		if aerr != nil {
			return aerr
		}
		if len(cm.calls) > 0 && cm.role != abi.RoleAssistant {
			return badRequest(join(path, "tool_calls"), "invalid_value", "%s.tool_calls: only assistant messages carry tool calls", path)
		}
		switch cm.role {
		case abi.RoleSystem, "developer":
			if cm.content != nil && *cm.content != "" {
				system = append(system, *cm.content)
			}
			continue
		case abi.RoleUser:
			if cm.content == nil {
				return badRequest(join(path, "content"), "missing_field", "%s.content is required for a user message", path)
			}
			lastUser = len(msgs)
		case abi.RoleAssistant:
		case roleTool:
			if cm.callID == "" {
				return badRequest(join(path, "tool_call_id"), "missing_field", "%s.tool_call_id is required for a tool message: the id of the call it answers", path)
			}
		case "":
			return badRequest(join(path, "role"), "missing_field", "%s.role is required: system, user, assistant or tool", path)
		default:
			return badRequest(join(path, "role"), "unsupported_value", "%s.role %q is not supported: use system, user, assistant or tool", path, clip(cm.role, 64))
		}
		msgs = append(msgs, cm)
	}
	if lastUser < 0 {
		return badRequest("messages", "missing_user_message", "messages has no user message: the last user message is the query")
	}
	history, aerr := foldHistory(msgs[:lastUser])
	if aerr != nil {
		return aerr
	}
	if r.Turns, aerr = tailTurns(msgs[lastUser+1:]); aerr != nil {
		return aerr
	}
	r.Query = *msgs[lastUser].content
	r.History = history
	if strings.TrimSpace(r.Query) == "" {
		return badRequest("messages", "invalid_value", "the last user message is empty: it is the query")
	}
	r.System = strings.Join(system, "\n\n")
	return nil
}

// decodeContent reads a message's content: a string, or an array of text
// parts ({"type":"text","text":"..."}), joined by newlines.
func decodeContent(raw json.RawMessage, path string) (string, *apiError) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []json.RawMessage
	if json.Unmarshal(raw, &parts) != nil {
		return "", wrongType(path, "a string or an array of content parts", raw)
	}
	texts := make([]string, 0, len(parts))
	notText := unsupported("only text content parts are supported")
	for i, p := range parts {
		pp := index(path, i)
		var typ string
		var text *string
		aerr := object(p, pp, map[string]field{
			"type": str(&typ),
			"text": func(v json.RawMessage, fp string) *apiError {
				var t string
				if err := str(&t)(v, fp); err != nil {
					return err
				}
				text = &t
				return nil
			},
			"image_url": notText, "input_audio": notText, "file": notText, "refusal": notText,
		})
		if aerr != nil {
			return "", aerr
		}
		if typ != "text" {
			return "", badRequest(join(pp, "type"), "unsupported_value", "%s.type %q is not supported: only text content parts are", pp, clip(typ, 64))
		}
		if text == nil {
			return "", badRequest(join(pp, "text"), "missing_field", "%s.text is required", pp)
		}
		texts = append(texts, *text)
	}
	return strings.Join(texts, "\n"), nil
}

// generation maps the sampling settings onto the host's; maxTokens is the
// value resolved against the tenant's limit.
func (r *chatRequest) generation(maxTokens int) abi.Generation {
	return abi.Generation{MaxTokens: maxTokens, Temperature: r.Temperature, TopP: r.TopP, TopK: r.TopK,
		RepeatPenalty: r.RepeatPenalty, Stop: r.Stop, Seed: r.Seed}
}

// embeddingsRequest is a decoded POST /v1/embeddings body.
type embeddingsRequest struct {
	Model string
	Input []string
	// Base64 asks for each vector as base64 of little-endian float32s.
	Base64 bool
	// Dimensions, when not 0, is the size the client expects.
	Dimensions int
}

// decodeEmbeddings decodes and checks an embeddings request.
func decodeEmbeddings(data []byte) (embeddingsRequest, *apiError) {
	var r embeddingsRequest
	raw, aerr := jsonDoc(data)
	if aerr != nil {
		return r, aerr
	}
	var input json.RawMessage
	var format string
	aerr = object(raw, "", map[string]field{
		"model": str(&r.Model),
		"input": func(v json.RawMessage, _ string) *apiError {
			input = v
			return nil
		},
		"encoding_format": str(&format),
		"dimensions":      intField(&r.Dimensions, 1, 1<<16),
		"user":            str(new(string)),
	})
	if aerr != nil {
		return r, aerr
	}
	switch format {
	case "", "float":
	case "base64":
		r.Base64 = true
	default:
		return r, badRequest("encoding_format", "unsupported_value", "encoding_format %q is not supported: float or base64", clip(format, 64))
	}
	if input == nil {
		return r, badRequest("input", "missing_field", "input is required: a string or an array of strings")
	}
	var one string
	if json.Unmarshal(input, &one) == nil {
		r.Input = []string{one}
	} else {
		var list []json.RawMessage
		if json.Unmarshal(input, &list) != nil {
			return r, wrongType("input", "a string or an array of strings", input)
		}
		if len(list) > maxEmbedInputs {
			return r, badRequest("input", "invalid_value", "input has %d items; at most %d per request", len(list), maxEmbedInputs)
		}
		for i, v := range list {
			var s string
			if json.Unmarshal(v, &s) != nil {
				if k := kind(v); k == "a number" || k == "an array" {
					return r, badRequest(index("input", i), "unsupported_value", "%s: token arrays are not supported; send text", index("input", i))
				}
				return r, wrongType(index("input", i), "a string", v)
			}
			r.Input = append(r.Input, s)
		}
	}
	if len(r.Input) == 0 {
		return r, badRequest("input", "invalid_value", "input is an empty array: give at least one string")
	}
	for i, s := range r.Input {
		if strings.TrimSpace(s) == "" {
			return r, badRequest(index("input", i), "invalid_value", "%s is empty", index("input", i))
		}
	}
	return r, nil
}

// queryRequest is a decoded POST /v1/query body: a host.Request (the API
// key decides the tenant).
type queryRequest struct {
	host.Request
	// ConversationID names a conversation the server keeps.
	ConversationID string
}

// decodeQuery decodes and checks a native query request.
func decodeQuery(data []byte) (queryRequest, *apiError) {
	var r queryRequest
	raw, aerr := jsonDoc(data)
	if aerr != nil {
		return r, aerr
	}
	aerr = object(raw, "", map[string]field{
		"query":           str(&r.Query),
		"conversation_id": str(&r.ConversationID),
		"history": func(v json.RawMessage, path string) *apiError {
			var list []json.RawMessage
			if json.Unmarshal(v, &list) != nil {
				return wrongType(path, "an array of {\"role\",\"content\"}", v)
			}
			r.History = make([]abi.Message, 0, len(list))
			for i, m := range list {
				p := index(path, i)
				var msg abi.Message
				if err := object(m, p, map[string]field{"role": str(&msg.Role), "content": str(&msg.Content)}); err != nil {
					return err
				}
				if msg.Role != abi.RoleUser && msg.Role != abi.RoleAssistant {
					return badRequest(join(p, "role"), "invalid_value", "%s.role must be user or assistant, got %q", p, clip(msg.Role, 64))
				}
				r.History = append(r.History, msg)
			}
			if len(r.History) == 0 {
				r.History = nil
			}
			return nil
		},
		"context": func(v json.RawMessage, path string) *apiError {
			var m map[string]json.RawMessage
			if json.Unmarshal(v, &m) != nil || m == nil {
				return wrongType(path, "an object of strings", v)
			}
			r.Context = make(map[string]string, len(m))
			for k, val := range m {
				var s string
				if json.Unmarshal(val, &s) != nil {
					return wrongType(join(path, clip(k, 64)), "a string", val)
				}
				r.Context[k] = s
			}
			if len(r.Context) == 0 {
				r.Context = nil
			}
			return nil
		},
		"domain":          str(&r.Domain),
		"response_format": responseFormat(&r.Format),
		"generation": func(v json.RawMessage, path string) *apiError {
			g := &r.Generation
			return object(v, path, map[string]field{
				"max_tokens":     intField(&g.MaxTokens, 1, maxTokensCap),
				"temperature":    float32In(&g.Temperature, 0, 2),
				"top_p":          float32In(&g.TopP, 0, 1),
				"top_k":          intField(&g.TopK, 0, maxTopK),
				"repeat_penalty": float32In(&g.RepeatPenalty, 0, maxRepeatPenalty),
				"stop":           stopField(&g.Stop),
				"seed":           seedField(&g.Seed),
			})
		},
		"request_id": func(v json.RawMessage, path string) *apiError {
			if err := str(&r.RequestID)(v, path); err != nil {
				return err
			}
			if !saneID(r.RequestID) {
				return badRequest(path, "invalid_value", "request_id: want 1 to 128 letters, digits or . _ : -")
			}
			return nil
		},
	})
	if aerr != nil {
		return r, aerr
	}
	if strings.TrimSpace(r.Query) == "" {
		return r, badRequest("query", "missing_field", "query is required and must not be empty")
	}
	return r, nil
}

// decodeRoute decodes a POST /v1/route body: {"query": "..."}.
func decodeRoute(data []byte) (string, *apiError) {
	raw, aerr := jsonDoc(data)
	if aerr != nil {
		return "", aerr
	}
	var q string
	if aerr := object(raw, "", map[string]field{"query": str(&q)}); aerr != nil {
		return "", aerr
	}
	if strings.TrimSpace(q) == "" {
		return "", badRequest("query", "missing_field", "query is required and must not be empty")
	}
	return q, nil
}

// saneID reports whether id may serve as a request id: 1 to 128 ASCII
// letters, digits, '.', '_', ':' or '-'.
func saneID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
