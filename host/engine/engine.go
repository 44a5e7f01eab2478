// Package engine defines how the host runs a language model. Implementations
// live in sub-packages: llamacpp (llama.cpp embedded in the process) and,
// later, openai (OpenAI-compatible servers).
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Message is one chat turn given to a model.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Params are sampling settings. Temperature 0 means greedy decoding.
type Params struct {
	MaxTokens     int      `json:"max_tokens"`
	Temperature   float32  `json:"temperature"`
	TopP          float32  `json:"top_p"`
	TopK          int      `json:"top_k"`
	RepeatPenalty float32  `json:"repeat_penalty"`
	Stop          []string `json:"stop,omitempty"`
	Seed          uint32   `json:"seed"`
	// IgnoreEOS keeps generating past end-of-generation tokens (they are
	// never sampled), until MaxTokens, a stop string or a full context;
	// for benchmarks of long answers.
	IgnoreEOS bool `json:"ignore_eos,omitempty"`
	// MaxPromptTokens, when positive, refuses (before evaluating anything)
	// a prompt of more tokens, with an error wrapping ErrOverBudget: the
	// caller's budget of work, such as a plugin's host-work tokens.
	MaxPromptTokens int `json:"-"`
	// Grammar, when set, is a GBNF grammar (root rule "root") every
	// generated text must match: tokens that would leave it are never
	// sampled, and the end of generation only comes where the grammar may
	// end (host/grammar makes them from JSON Schemas). A grammar that does
	// not parse is an error wrapping ErrInvalidInput. An engine that cannot
	// constrain its output returns ErrNotSupported.
	Grammar string `json:"-"`
	// Schema, set with Grammar when a response format alone constrains
	// the answer, is that format's JSON Schema, for engines that take a
	// schema rather than a grammar (a remote Ollama). Engines that take
	// the grammar ignore it.
	Schema json.RawMessage `json:"-"`
}

// Request is one generation. Exactly one of Messages (the model's chat
// template is applied) or Prompt (raw text, no template) is set.
type Request struct {
	Messages []Message
	Prompt   string
	Params   Params
}

// Finish reasons reported in Result.FinishReason.
const (
	FinishStop   = "stop"   // end-of-generation token or a stop string
	FinishLength = "length" // MaxTokens reached, or the context is full
)

// Result is the outcome of one generation.
type Result struct {
	Text     string `json:"text"`
	Model    string `json:"model"`
	TokensIn int    `json:"tokens_in"`
	// TokensCached is how many of the TokensIn prompt tokens were reused
	// from the engine's cache (a shared prefix already evaluated) rather
	// than evaluated again; TokensIn - TokensCached were evaluated.
	TokensCached int    `json:"tokens_cached"`
	TokensOut    int    `json:"tokens_out"`
	FinishReason string `json:"finish_reason"`
}

// TokenFunc receives generated text as it is produced. Returning an error
// stops the generation and Generate returns that error.
type TokenFunc func(piece string) error

// Engine runs one loaded model. Implementations are safe for concurrent use.
type Engine interface {
	// Model names the model this engine runs.
	Model() string
	// Generate runs req; when onToken is not nil it receives the text as it
	// is produced (stop strings already removed). It honours ctx.
	Generate(ctx context.Context, req Request, onToken TokenFunc) (Result, error)
	// Embed returns one vector per input.
	Embed(ctx context.Context, inputs []string) ([][]float32, error)
	// CountTokens returns how many tokens text has in this model's vocabulary.
	CountTokens(ctx context.Context, text string) (int, error)
	// Close frees the model. Calls after Close fail with ErrClosed.
	Close() error
}

// Placement says where a loaded model's layers run.
type Placement struct {
	// GPULayers of the model's Layers run on a GPU (0: all on the CPU).
	GPULayers int `json:"gpu_layers"`
	// Layers is the model's layer count as its runtime counts them; 0 when
	// it did not say.
	Layers int `json:"layers,omitempty"`
}

// Placer is implemented by engines that know where their model runs (the
// embedded llama.cpp engine); the model registry reports it.
type Placer interface {
	Placement() Placement
}

// ErrClosed is returned by an Engine used after Close.
var ErrClosed = errors.New("engine: closed")

// ErrNotSupported is returned by an Engine asked for something its model
// cannot do (for example Embed on a model without embeddings).
var ErrNotSupported = errors.New("engine: not supported")

// ErrOverBudget is wrapped by errors refusing work over a budget the caller
// set (Params.MaxPromptTokens).
var ErrOverBudget = errors.New("engine: over the caller's token budget")

// ErrUnavailable is wrapped by errors of an engine that cannot take a
// request now but may later: a remote engine whose servers are all down,
// ejected or at their limits. Callers answer 503, not 500.
var ErrUnavailable = errors.New("engine: unavailable")

// ErrInvalidInput is wrapped by errors about input the model cannot take
// (a NUL byte in a text, an empty prompt): the caller's mistake, which no
// retry fixes.
var ErrInvalidInput = errors.New("engine: invalid input")

// ContextLengthError says a prompt (or an input to embed) has more tokens
// than the model's context holds. It matches ErrInvalidInput.
type ContextLengthError struct {
	What    string // "prompt", "embedding input 3"
	Tokens  int    // tokens of the input; 0 when not known (a remote server did not say)
	Context int    // tokens the context holds; 0 when not known
	// AtLeast: Tokens is a lower bound, found without tokenizing a text
	// far too long for the context.
	AtLeast bool
}

// Error implements error.
func (e *ContextLengthError) Error() string {
	if e.Tokens <= 0 || e.Context <= 0 {
		return fmt.Sprintf("engine: %s is longer than the model's context", e.What)
	}
	return fmt.Sprintf("engine: %s has %s tokens, the context holds %d", e.What, e.Count(), e.Context)
}

// Count is Tokens as text: "at least N" when it is a lower bound.
func (e *ContextLengthError) Count() string {
	if e.AtLeast {
		return fmt.Sprintf("at least %d", e.Tokens)
	}
	return fmt.Sprint(e.Tokens)
}

// Is makes a ContextLengthError match ErrInvalidInput.
func (e *ContextLengthError) Is(target error) bool { return target == ErrInvalidInput }
