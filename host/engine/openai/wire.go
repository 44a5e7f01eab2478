package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/internal/textcap"
)

// The request and response shapes of the OpenAI-compatible API, as
// documented by OpenAI (https://platform.openai.com/docs/api-reference/chat)
// and extended by the servers MDSA knows:
//   - llama-server (llama.cpp tools/server/README.md): cache_prompt,
//     top_k, repeat_penalty, ignore_eos in the request; "timings" with
//     cache_n and prompt_n in the last stream chunk; POST /tokenize;
//     errors with type "exceed_context_size_error", n_prompt_tokens and
//     n_ctx.
//   - vLLM (docs.vllm.ai, "OpenAI-Compatible Server", extra parameters):
//     top_k, repetition_penalty, ignore_eos; POST /tokenize answering
//     count; context errors as "This model's maximum context length is N
//     tokens. However, you requested M tokens ...".
//   - Ollama (docs/openai.md): the OpenAI endpoints under /v1, no
//     extensions used here.

// chatRequest is the body of POST /v1/chat/completions and, with Prompt
// instead of Messages, of POST /v1/completions.
type chatRequest struct {
	Model         string           `json:"model"`
	Messages      []engine.Message `json:"messages,omitempty"`
	Prompt        string           `json:"prompt,omitempty"`
	MaxTokens     int              `json:"max_tokens,omitempty"`
	Temperature   float32          `json:"temperature"`
	TopP          float32          `json:"top_p,omitempty"`
	Stop          []string         `json:"stop,omitempty"`
	Seed          *uint32          `json:"seed,omitempty"`
	Stream        bool             `json:"stream"`
	StreamOptions *streamOptions   `json:"stream_options,omitempty"`
	// Extensions of llama-server and vLLM.
	TopK              int     `json:"top_k,omitempty"`
	RepeatPenalty     float32 `json:"repeat_penalty,omitempty"`     // llama-server
	RepetitionPenalty float32 `json:"repetition_penalty,omitempty"` // vLLM
	IgnoreEOS         bool    `json:"ignore_eos,omitempty"`
	CachePrompt       *bool   `json:"cache_prompt,omitempty"` // llama-server
	// Grammar constraints (engine.Params.Grammar, GBNF): llama-server
	// takes the grammar as "grammar", vLLM (0.12 and later) as
	// "structured_outputs": {"grammar": ...}, read by its xgrammar or
	// guidance back-end.
	Grammar           string             `json:"grammar,omitempty"`            // llama-server
	StructuredOutputs *structuredOutputs `json:"structured_outputs,omitempty"` // vLLM
	// ResponseFormat carries a response format's JSON Schema
	// (engine.Params.Schema) to Ollama, which takes no grammar but
	// enforces a json_schema format (0.5 and later).
	ResponseFormat *responseFormat `json:"response_format,omitempty"`
}

// responseFormat is OpenAI's response_format of type json_schema.
type responseFormat struct {
	Type       string         `json:"type"`
	JSONSchema responseSchema `json:"json_schema"`
}

type responseSchema struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema"`
	Strict bool            `json:"strict"`
}

// structuredOutputs is vLLM's constraint of a request.
type structuredOutputs struct {
	Grammar string `json:"grammar"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chunk is one event of a completion stream (or, with Message set, a whole
// non-streamed answer).
type chunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		Text         string  `json:"text"` // /v1/completions
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage   *usage   `json:"usage"`
	Timings *timings `json:"timings"` // llama-server
	Error   *apiErr  `json:"error"`   // an error sent inside the stream
}

type usage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

type timings struct {
	CacheN  int `json:"cache_n"`
	PromptN int `json:"prompt_n"`
}

type embeddingRequest struct {
	Model string   `json:"model"`
	Input []string `json:"input"`
}

type embeddingResponse struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

// apiErr is the error object of an error answer: OpenAI's {"error":
// {...}}, with llama-server's numeric code and token counts; vLLM answers
// the fields at the top level ({"object":"error","message":...}).
type apiErr struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"` // a string (OpenAI) or a number (llama-server, vLLM)
	NPrompt int             `json:"n_prompt_tokens"`
	NCtx    int             `json:"n_ctx"`
}

// upstreamError is a backend's error answer.
type upstreamError struct {
	Backend string
	Status  int
	Err     apiErr
}

func (e *upstreamError) Error() string {
	msg := e.Err.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("openai: backend %s answered %d: %s", e.Backend, e.Status, textcap.Truncate(msg, 300))
}

// retryable reports whether another backend may succeed where this one
// failed: the backend's own trouble (5xx, 429, 408) or a key or model it
// lacks (401, 403, 404), not a request no backend would take.
func (e *upstreamError) retryable() bool {
	switch {
	case e.Status >= 500, e.Status == http.StatusTooManyRequests, e.Status == http.StatusRequestTimeout,
		e.Status == http.StatusUnauthorized, e.Status == http.StatusForbidden, e.Status == http.StatusNotFound:
		return true
	}
	return false
}

// parseError reads an error answer's body.
func parseError(backend string, status int, body []byte) *upstreamError {
	ue := &upstreamError{Backend: backend, Status: status}
	var wrapped struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &wrapped) == nil && len(wrapped.Error) > 0 {
		if json.Unmarshal(wrapped.Error, &ue.Err) != nil {
			var s string
			if json.Unmarshal(wrapped.Error, &s) == nil { // Ollama: {"error":"..."}
				ue.Err.Message = s
			}
		}
	} else if json.Unmarshal(body, &ue.Err) != nil || ue.Err.Message == "" {
		ue.Err.Message = strings.TrimSpace(string(body))
	}
	ue.Err.Message = textcap.Truncate(ue.Err.Message, 1000)
	return ue
}

// vllmContext matches vLLM's context-length message.
var vllmContext = regexp.MustCompile(`maximum context length is (\d+) tokens\. However, you requested (\d+) tokens`)

// asEngineError turns a 4xx answer no other backend would take into the
// engine's errors: a context overflow into *engine.ContextLengthError, the
// rest into engine.ErrInvalidInput, so the gateway answers 400 as the
// embedded engine does.
func (e *upstreamError) asEngineError() error {
	if e.Err.Type == "exceed_context_size_error" || codeString(e.Err.Code) == "context_length_exceeded" {
		return fmt.Errorf("%w (%s)", &engine.ContextLengthError{What: "prompt", Tokens: e.Err.NPrompt, Context: e.Err.NCtx}, e.Error())
	}
	if m := vllmContext.FindStringSubmatch(e.Err.Message); m != nil {
		ctx, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		return fmt.Errorf("%w (%s)", &engine.ContextLengthError{What: "prompt", Tokens: n, Context: ctx}, e.Error())
	}
	return fmt.Errorf("%w: %w", engine.ErrInvalidInput, e)
}

// codeString is an error code that is a JSON string, else "".
func codeString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// errStreamEnded is a stream that stopped before its end.
var errStreamEnded = errors.New("openai: the backend's stream ended before the answer did")
