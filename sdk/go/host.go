package sdk

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// ErrNoHost is returned by the host-call functions outside the WebAssembly
// sandbox (in native builds and tests) unless a Host made with NewHost is used.
var ErrNoHost = errors.New("no MDSA host: host functions exist only inside the wasm sandbox (use sdk.NewHost in tests)")

// HostCaller sends one JSON request to the host function named function
// (abi.HostGenerate, abi.HostEmbed or abi.HostCountTokens) and returns the
// host's JSON reply. Inside the sandbox it is the Extism transport; tests
// pass a fake to NewHost.
type HostCaller func(function string, request []byte) ([]byte, error)

// Host calls the MDSA host functions with typed requests and replies. A
// refusal from the host ({"error":{"code","message"}}) comes back as a
// *HostError. Calls are synchronous; the host enforces the time limit, so
// there is no context parameter: a plugin cannot cancel a host call.
type Host struct {
	call HostCaller
}

// NewHost returns a Host that sends its calls through call. Use it in native
// tests of custom Prompt, Validate and Handle functions.
func NewHost(call HostCaller) *Host { return &Host{call: call} }

// wasmHost is the sandbox transport; callWasmHost is defined per build
// target (it fails with ErrNoHost outside wasip1). The value never changes.
var wasmHost = &Host{call: callWasmHost}

// WasmHost returns the Host that talks to the real MDSA host through the
// Extism kernel. Outside the sandbox every call fails with ErrNoHost.
func WasmHost() *Host { return wasmHost }

// HostError is a call that the host refused or could not serve. Code is one
// of the abi.Err* codes (abi.ErrBudget, abi.ErrCapability, ...).
type HostError struct {
	Function string // host function, e.g. "mdsa_generate"
	Code     string // machine-readable code from the host
	Message  string // the host's explanation
}

// Error implements error.
func (e *HostError) Error() string {
	return fmt.Sprintf("%s: host refused the call: %s: %s", e.Function, e.Code, e.Message)
}

// ErrorCode returns the host's error code carried by err (for example
// abi.ErrBudget), or "" when err does not come from a host refusal.
func ErrorCode(err error) string {
	if he, ok := errors.AsType[*HostError](err); ok {
		return he.Code
	}
	return ""
}

// replies carry either the normal output or an error object.
type generateReply struct {
	abi.GenerateResponse
	Error *abi.ErrorBody `json:"error"`
}

type embedReply struct {
	abi.EmbedResponse
	Error *abi.ErrorBody `json:"error"`
}

type countReply struct {
	abi.CountTokensResponse
	Error *abi.ErrorBody `json:"error"`
}

func (h *Host) caller() HostCaller {
	if h == nil || h.call == nil {
		return callWasmHost
	}
	return h.call
}

// invoke encodes req, calls fn and decodes the reply into out, returning a
// *HostError when the reply is an error object.
func (h *Host) invoke(fn string, req any, out any, errBody func() *abi.ErrorBody) error {
	in, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: encode request: %w", fn, err)
	}
	reply, err := h.caller()(fn, in)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(reply, out); err != nil {
		return fmt.Errorf("%s: decode host reply: %w", fn, err)
	}
	if e := errBody(); e != nil {
		code := e.Code
		if code == "" {
			code = "unknown"
		}
		return &HostError{Function: fn, Code: code, Message: e.Message}
	}
	return nil
}

// Generate asks the host to run the plugin's model (mdsa_generate). Set
// either req.Messages (chat) or req.Prompt (raw text). Needs the "generate"
// capability.
func (h *Host) Generate(req abi.GenerateRequest) (abi.GenerateResponse, error) {
	if len(req.Messages) == 0 && req.Prompt == "" {
		return abi.GenerateResponse{}, fmt.Errorf("%s: request has neither messages nor prompt", abi.HostGenerate)
	}
	var r generateReply
	err := h.invoke(abi.HostGenerate, req, &r, func() *abi.ErrorBody { return r.Error })
	return r.GenerateResponse, err
}

// Embed asks the host for one embedding vector per input (mdsa_embed).
// Needs the "embed" capability.
func (h *Host) Embed(inputs ...string) (abi.EmbedResponse, error) {
	var r embedReply
	err := h.invoke(abi.HostEmbed, abi.EmbedRequest{Input: inputs}, &r, func() *abi.ErrorBody { return r.Error })
	if err == nil && len(r.Vectors) != len(inputs) {
		err = fmt.Errorf("%s: host returned %d vectors for %d inputs", abi.HostEmbed, len(r.Vectors), len(inputs))
	}
	return r.EmbedResponse, err
}

// CountTokens asks the host how many tokens text is for the plugin's model
// (mdsa_count_tokens). Needs the "count_tokens" capability.
func (h *Host) CountTokens(text string) (int, error) {
	var r countReply
	err := h.invoke(abi.HostCountTokens, abi.CountTokensRequest{Text: text}, &r, func() *abi.ErrorBody { return r.Error })
	return r.Count, err
}

type retrieveReply struct {
	abi.RetrieveResponse
	Error *abi.ErrorBody `json:"error"`
}

// Retrieve searches the tenant's knowledge base (req.KB, or the one the
// manifest declares) for passages about req.Query (mdsa_retrieve, ABI
// 1.1). Needs the "retrieve" capability. A module imports mdsa_retrieve
// only when it calls Retrieve, so plugins that do not keep loading on hosts
// without it.
func (h *Host) Retrieve(req abi.RetrieveRequest) (abi.RetrieveResponse, error) {
	call := HostCaller(callWasmRetrieve)
	if h != nil && h != wasmHost && h.call != nil {
		call = h.call
	}
	var r retrieveReply
	err := (&Host{call: call}).invoke(abi.HostRetrieve, req, &r, func() *abi.ErrorBody { return r.Error })
	if err == nil && r.Passages == nil {
		r.Passages = []abi.Passage{}
	}
	return r.RetrieveResponse, err
}

// Retrieve calls mdsa_retrieve through WasmHost.
func Retrieve(req abi.RetrieveRequest) (abi.RetrieveResponse, error) { return wasmHost.Retrieve(req) }

// Generate calls mdsa_generate through WasmHost.
func Generate(req abi.GenerateRequest) (abi.GenerateResponse, error) {
	return wasmHost.Generate(req)
}

// Embed calls mdsa_embed through WasmHost.
func Embed(inputs ...string) (abi.EmbedResponse, error) { return wasmHost.Embed(inputs...) }

// CountTokens calls mdsa_count_tokens through WasmHost.
func CountTokens(text string) (int, error) { return wasmHost.CountTokens(text) }
