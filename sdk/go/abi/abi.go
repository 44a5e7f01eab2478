// Package abi holds the JSON shapes of the MDSA plugin contract, ABI v1.
//
// The same types are used on both sides of the sandbox: plugins built with
// sdk/go encode them, and the host decodes and checks them. The package has
// no dependencies beyond the standard library and builds for every GOOS,
// wasip1 included. sdk/ABI.md is the normative description; this package is
// its Go rendering.
package abi

import "encoding/json"

// Version is the plugin ABI version this package describes.
const Version = 1

// Minor is the minor version of ABI 1 this package describes: 1 adds
// plugin tools (Manifest.Tools, the tool export) and the response format in
// the prompt and validate inputs. Minor versions only add (sdk/ABI.md,
// section 9): a plugin of a later minor version loads on an older host,
// which ignores what it does not know.
const Minor = 1

// Names of the functions a plugin exports.
const (
	ExportDescribe = "describe"
	ExportPrompt   = "prompt"
	ExportValidate = "validate"
	ExportHandle   = "handle"
	// ExportTool runs one of the plugin's tools (ABI 1.1).
	ExportTool = "tool"
)

// HostModule is the Wasm import module that holds the MDSA host functions.
const HostModule = "extism:host/user"

// Names of the host functions a plugin may import from HostModule.
const (
	HostGenerate    = "mdsa_generate"
	HostEmbed       = "mdsa_embed"
	HostCountTokens = "mdsa_count_tokens"
	// HostRetrieve searches the tenant's knowledge bases (ABI 1.1).
	HostRetrieve = "mdsa_retrieve"
)

// Capabilities a plugin may declare in its Manifest. A host function refuses
// calls from a plugin that did not declare the matching capability.
const (
	CapGenerate    = "generate"
	CapEmbed       = "embed"
	CapCountTokens = "count_tokens"
	// CapRetrieve allows mdsa_retrieve (ABI 1.1).
	CapRetrieve = "retrieve"
)

// Model tiers a plugin may ask for.
const (
	TierDomain   = "domain"
	TierReasoner = "reasoner"
)

// Manifest is what the describe export returns.
type Manifest struct {
	ABI int `json:"abi"`
	// ABIMinor is the minor version the plugin is written for (0 when
	// absent); declaring Tools needs 1.
	ABIMinor     int        `json:"abi_minor,omitempty"`
	Name         string     `json:"name"`
	Version      string     `json:"version"`
	Description  string     `json:"description,omitempty"`
	Keywords     []string   `json:"keywords"`
	Examples     []string   `json:"examples"`
	Model        ModelPref  `json:"model"`
	Generation   Generation `json:"generation"`
	Capabilities []string   `json:"capabilities"`
	// Knowledge names the tenant's knowledge base the host searches with
	// each query before the prompt export, putting the passages found in
	// the prompt request's context ("knowledge") and citing them in the
	// result (ABI 1.1).
	Knowledge *KnowledgeSpec `json:"knowledge,omitempty"`
	// Tools are functions the plugin implements in its tool export, which
	// the host lets the model call while answering a query of the domain
	// (ABI 1.1).
	Tools []ToolSpec `json:"tools,omitempty"`
}

// KnowledgeSpec declares the knowledge base a plugin answers from.
type KnowledgeSpec struct {
	// KB is the knowledge base's name within the tenant
	// ([a-z0-9][a-z0-9_-]{0,63}).
	KB string `json:"kb"`
	// TopK is how many passages to retrieve (1-20; 0 means 4).
	TopK int `json:"top_k,omitempty"`
}

// ContextKnowledge is the prompt context key under which the host puts the
// passages retrieved for a plugin that declares Knowledge: numbered
// "[n] Title: text" blocks, which the plugin's template can show (for
// example {{context.knowledge|}}) and the model can cite by number.
const ContextKnowledge = "knowledge"

// RetrieveRequest is the input of mdsa_retrieve: a query over one of the
// tenant's knowledge bases (KB; "" means the one the manifest declares).
type RetrieveRequest struct {
	Query string `json:"query"`
	KB    string `json:"kb,omitempty"`
	TopK  int    `json:"top_k,omitempty"`
}

// RetrieveResponse is the output of mdsa_retrieve: the passages found,
// best first.
type RetrieveResponse struct {
	Passages []Passage `json:"passages"`
}

// Passage is one retrieved chunk of a document.
type Passage struct {
	Document string  `json:"document"`
	Title    string  `json:"title"`
	Source   string  `json:"source,omitempty"`
	Chunk    int     `json:"chunk"`
	Text     string  `json:"text"`
	Score    float64 `json:"score"`
}

// ToolSpec declares one of a plugin's tools.
type ToolSpec struct {
	// Name is 1-64 of [A-Za-z0-9_-], unique within the plugin.
	Name string `json:"name"`
	// Description tells the model what the tool does and when to use it.
	Description string `json:"description,omitempty"`
	// Parameters is the JSON Schema (an object schema) of the arguments;
	// absent means none.
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// ToolRequest is the input of the tool export: which tool, its arguments
// (a JSON object valid against the tool's parameters) and the query being
// answered.
type ToolRequest struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Query     string          `json:"query,omitempty"`
}

// ToolResponse is the output of the tool export: what the model reads as
// the call's result. IsError says the call failed (bad arguments, say);
// the model reads Content all the same and may try again.
type ToolResponse struct {
	Content string `json:"content"`
	IsError bool   `json:"is_error,omitempty"`
}

// ResponseFormat tells a plugin that the client asked for a structured
// answer (ABI 1.1): Type "json_object" or "json_schema" (with Schema). The
// host enforces it while generating; a plugin should not revise such an
// answer into something else (the host keeps the model's answer when a
// revision is not valid).
type ResponseFormat struct {
	Type   string          `json:"type"`
	Schema json.RawMessage `json:"schema,omitempty"`
}

// ModelPref says which model the plugin wants the host to run for it.
type ModelPref struct {
	Tier       string   `json:"tier,omitempty"`
	Prefer     []string `json:"prefer,omitempty"`
	MinContext int      `json:"min_context,omitempty"`
}

// Generation holds sampling settings. Zero values mean "not set": the host
// fills them from the plugin's defaults, then from its own.
type Generation struct {
	MaxTokens     int      `json:"max_tokens,omitempty"`
	Temperature   *float32 `json:"temperature,omitempty"`
	TopP          *float32 `json:"top_p,omitempty"`
	TopK          int      `json:"top_k,omitempty"`
	RepeatPenalty *float32 `json:"repeat_penalty,omitempty"`
	Stop          []string `json:"stop,omitempty"`
	Seed          *uint32  `json:"seed,omitempty"`
}

// Message is one chat turn.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Chat roles.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// PromptRequest is the input of the prompt export (and of handle).
type PromptRequest struct {
	Query   string            `json:"query"`
	History []Message         `json:"history,omitempty"`
	Context map[string]string `json:"context,omitempty"`
	// ResponseFormat is set when the client asked for a structured answer.
	ResponseFormat *ResponseFormat `json:"response_format,omitempty"`
}

// PromptResponse is the output of the prompt export.
type PromptResponse struct {
	Messages   []Message  `json:"messages"`
	Generation Generation `json:"generation"`
}

// ValidateRequest is the input of the validate export.
type ValidateRequest struct {
	Query    string `json:"query"`
	Response string `json:"response"`
	Domain   string `json:"domain"`
	// ResponseFormat is set when the client asked for a structured answer.
	ResponseFormat *ResponseFormat `json:"response_format,omitempty"`
}

// Severity levels of a validation issue.
const (
	SeverityInfo    = "info"
	SeverityWarning = "warning"
	SeverityError   = "error"
)

// Issue is one finding of a validator.
type Issue struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// Validation is the output of the validate export. Response, when set,
// replaces the model's answer (for example with a disclaimer added).
type Validation struct {
	OK       bool    `json:"ok"`
	Score    float64 `json:"score"`
	Issues   []Issue `json:"issues"`
	Response *string `json:"response,omitempty"`
}

// HandleResponse is the output of the optional handle export.
type HandleResponse struct {
	Response   string     `json:"response"`
	Validation Validation `json:"validation"`
}

// GenerateRequest is the input of the mdsa_generate host function. Either
// Messages (chat, the model's template is applied) or Prompt (raw text) is set.
type GenerateRequest struct {
	Messages []Message `json:"messages,omitempty"`
	Prompt   string    `json:"prompt,omitempty"`
	Generation
}

// GenerateResponse is the output of mdsa_generate.
type GenerateResponse struct {
	Text         string `json:"text"`
	Model        string `json:"model"`
	TokensIn     int    `json:"tokens_in"`
	TokensOut    int    `json:"tokens_out"`
	FinishReason string `json:"finish_reason"`
}

// EmbedRequest is the input of mdsa_embed.
type EmbedRequest struct {
	Input []string `json:"input"`
}

// EmbedResponse is the output of mdsa_embed.
type EmbedResponse struct {
	Model   string      `json:"model"`
	Vectors [][]float32 `json:"vectors"`
	// Tokens is the number of input tokens embedded, charged to the
	// request (0 from hosts that do not say).
	Tokens int `json:"tokens,omitempty"`
}

// CountTokensRequest is the input of mdsa_count_tokens.
type CountTokensRequest struct {
	Text string `json:"text"`
}

// CountTokensResponse is the output of mdsa_count_tokens.
type CountTokensResponse struct {
	Count int `json:"count"`
}

// HostError is what a host function returns instead of its normal output
// when it refuses or fails a call: {"error":{"code":..., "message":...}}.
type HostError struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody carries a machine-readable code and a human message.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes a host function may return.
const (
	ErrCapability  = "capability_denied" // the capability was not declared
	ErrModelDenied = "model_denied"      // the tenant may not use the model
	ErrBudget      = "budget_exceeded"   // token or host-call cap reached
	ErrBadRequest  = "bad_request"       // the input JSON is malformed
	ErrEngine      = "engine_error"      // inference failed
	ErrUnavailable = "unavailable"       // no engine/model for this call
)
