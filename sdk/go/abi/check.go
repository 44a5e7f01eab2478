package abi

// This file holds the host-side decoding and checking of documents that come
// from a plugin and therefore cannot be trusted: the outputs of its exports
// and the inputs it passes to host functions. Every Decode function is
// strict: the input must be valid UTF-8, exactly one JSON object and nothing
// after it (whitespace aside), with no key twice in an object (compared as
// encoding/json matches fields: unescaped, without regard to case); unknown
// fields are ignored so that newer
// plugins keep working. Every error says which document and which field is
// wrong.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds enforced by the Check and Decode functions. Lengths are in bytes.
const (
	MaxNameLen         = 64       // Manifest.Name
	MaxVersionLen      = 64       // Manifest.Version
	MaxDescriptionLen  = 4096     // Manifest.Description
	MaxKeywords        = 1024     // entries in Manifest.Keywords
	MaxKeywordLen      = 128      // one keyword
	MaxExamples        = 1024     // entries in Manifest.Examples
	MaxExampleLen      = 2048     // one example utterance
	MaxPrefer          = 16       // entries in ModelPref.Prefer
	MaxModelNameLen    = 256      // one preferred model name
	MaxMinContext      = 1 << 24  // ModelPref.MinContext
	MaxCapabilities    = 16       // entries in Manifest.Capabilities
	MaxGenTokens       = 1 << 20  // Generation.MaxTokens
	MaxTopK            = 1 << 20  // Generation.TopK
	MaxTemperature     = 10       // Generation.Temperature
	MaxRepeatPenalty   = 10       // Generation.RepeatPenalty
	MaxStops           = 16       // entries in Generation.Stop
	MaxStopLen         = 256      // one stop string
	MaxMessages        = 512      // messages in a prompt or generate request
	MaxContentLen      = 1 << 20  // one message, prompt, response or text
	MaxIssues          = 256      // Validation.Issues
	MaxIssueCodeLen    = 64       // Issue.Code
	MaxIssueMessageLen = 4096     // Issue.Message
	MaxEmbedInputs     = 512      // EmbedRequest.Input entries
	MaxTools           = 32       // Manifest.Tools
	MaxToolNameLen     = 64       // ToolSpec.Name
	MaxToolSchemaLen   = 64 << 10 // ToolSpec.Parameters
	MaxToolContentLen  = 64 << 10 // ToolResponse.Content
	MaxRetrieveTopK    = 20       // KnowledgeSpec.TopK, RetrieveRequest.TopK
	MaxRetrieveQuery   = 4096     // RetrieveRequest.Query
)

// ErrUnsupportedABI is matched (with errors.Is) by the error DecodeManifest
// and CheckManifest return for a manifest whose abi field is not Version.
var ErrUnsupportedABI = errors.New("unsupported ABI version")

// VersionError reports a manifest whose ABI version this package does not
// implement.
type VersionError struct {
	Got int // the version the plugin declared (0 when missing)
}

// Error implements error.
func (e *VersionError) Error() string {
	if e.Got == 0 {
		return fmt.Sprintf("manifest: abi: missing ABI version (host supports %d)", Version)
	}
	return fmt.Sprintf("manifest: abi: unsupported ABI version %d (host supports %d)", e.Got, Version)
}

// Is makes errors.Is(err, ErrUnsupportedABI) true.
func (e *VersionError) Is(target error) bool { return target == ErrUnsupportedABI }

// FieldError reports one invalid field of a document.
type FieldError struct {
	Doc   string // which document: "manifest", "prompt response", ...
	Field string // JSON path of the field, e.g. "keywords[3]"; empty for the whole document
	Msg   string // what is wrong
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Doc + ": " + e.Msg
	}
	return e.Doc + ": " + e.Field + ": " + e.Msg
}

// Document names used in errors.
const (
	docManifest       = "manifest"
	docPromptResponse = "prompt response"
	docValidation     = "validation"
	docHandleResponse = "handle response"
	docGenerate       = "generate request"
	docEmbed          = "embed request"
	docCountTokens    = "count_tokens request"
	docToolResponse   = "tool response"
	docRetrieve       = "retrieve request"
)

// DecodeManifest decodes and checks the output of the describe export.
// A manifest whose abi is not Version yields a *VersionError.
func DecodeManifest(data []byte) (Manifest, error) {
	var m Manifest
	if err := decodeStrict(docManifest, data, &m); err != nil {
		return Manifest{}, err
	}
	if err := CheckManifest(&m); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// DecodePromptResponse decodes and checks the output of the prompt export.
func DecodePromptResponse(data []byte) (PromptResponse, error) {
	var r PromptResponse
	if err := decodeStrict(docPromptResponse, data, &r); err != nil {
		return PromptResponse{}, err
	}
	if err := CheckPromptResponse(&r); err != nil {
		return PromptResponse{}, err
	}
	return r, nil
}

// DecodeValidation decodes and checks the output of the validate export.
func DecodeValidation(data []byte) (Validation, error) {
	var v Validation
	if err := decodeStrict(docValidation, data, &v); err != nil {
		return Validation{}, err
	}
	if err := CheckValidation(&v); err != nil {
		return Validation{}, err
	}
	return v, nil
}

// DecodeHandleResponse decodes and checks the output of the handle export.
func DecodeHandleResponse(data []byte) (HandleResponse, error) {
	var r HandleResponse
	if err := decodeStrict(docHandleResponse, data, &r); err != nil {
		return HandleResponse{}, err
	}
	if err := CheckHandleResponse(&r); err != nil {
		return HandleResponse{}, err
	}
	return r, nil
}

// DecodeGenerateRequest decodes and checks the input a plugin passes to
// mdsa_generate.
func DecodeGenerateRequest(data []byte) (GenerateRequest, error) {
	var r GenerateRequest
	if err := decodeStrict(docGenerate, data, &r); err != nil {
		return GenerateRequest{}, err
	}
	if err := CheckGenerateRequest(&r); err != nil {
		return GenerateRequest{}, err
	}
	return r, nil
}

// DecodeEmbedRequest decodes and checks the input a plugin passes to
// mdsa_embed.
func DecodeEmbedRequest(data []byte) (EmbedRequest, error) {
	var r EmbedRequest
	if err := decodeStrict(docEmbed, data, &r); err != nil {
		return EmbedRequest{}, err
	}
	if err := CheckEmbedRequest(&r); err != nil {
		return EmbedRequest{}, err
	}
	return r, nil
}

// DecodeCountTokensRequest decodes and checks the input a plugin passes to
// mdsa_count_tokens.
func DecodeCountTokensRequest(data []byte) (CountTokensRequest, error) {
	var r CountTokensRequest
	if err := decodeStrict(docCountTokens, data, &r); err != nil {
		return CountTokensRequest{}, err
	}
	if err := CheckCountTokensRequest(&r); err != nil {
		return CountTokensRequest{}, err
	}
	return r, nil
}

// CheckManifest checks a manifest: the ABI version, the name
// ([a-z0-9_-]{1,64}), version, keywords and examples (both present, bounded,
// at least one entry between them), the model preference, the generation
// defaults and the capabilities (known, no duplicates).
func CheckManifest(m *Manifest) error {
	if m.ABI != Version {
		return &VersionError{Got: m.ABI}
	}
	c := checker{doc: docManifest}
	if m.Name == "" {
		c.fail("name", "required")
	} else if !ValidName(m.Name) {
		c.fail("name", fmt.Sprintf("%s must match [a-z0-9_-]{1,%d}", quote(m.Name), MaxNameLen))
	}
	c.text("version", m.Version, MaxVersionLen, true)
	c.text("description", m.Description, MaxDescriptionLen, false)
	c.list("keywords", m.Keywords, MaxKeywords, MaxKeywordLen, true)
	c.list("examples", m.Examples, MaxExamples, MaxExampleLen, true)
	if c.err == nil && len(m.Keywords)+len(m.Examples) == 0 {
		c.fail("keywords", "keywords and examples are both empty: the router has nothing to match")
	}
	switch m.Model.Tier {
	case "", TierDomain, TierReasoner:
	default:
		c.fail("model.tier", fmt.Sprintf("unknown tier %s (want %q or %q)", quote(m.Model.Tier), TierDomain, TierReasoner))
	}
	if m.Model.Prefer != nil {
		c.list("model.prefer", m.Model.Prefer, MaxPrefer, MaxModelNameLen, false)
	}
	c.intRange("model.min_context", m.Model.MinContext, 0, MaxMinContext)
	c.generation("generation", &m.Generation)
	if m.Capabilities == nil {
		c.fail("capabilities", "required (use [] for none)")
	} else if len(m.Capabilities) > MaxCapabilities {
		c.fail("capabilities", fmt.Sprintf("%d entries, at most %d allowed", len(m.Capabilities), MaxCapabilities))
	}
	seen := make(map[string]bool, len(m.Capabilities))
	for i, cp := range m.Capabilities {
		f := index("capabilities", i)
		switch {
		case !KnownCapability(cp):
			c.fail(f, fmt.Sprintf("unknown capability %s", quote(cp)))
		case seen[cp]:
			c.fail(f, fmt.Sprintf("duplicate capability %s", quote(cp)))
		}
		seen[cp] = true
	}
	c.tools(m)
	return c.err
}

// DecodeToolResponse decodes and checks the output of the tool export.
func DecodeToolResponse(data []byte) (ToolResponse, error) {
	var r ToolResponse
	if err := decodeStrict(docToolResponse, data, &r); err != nil {
		return ToolResponse{}, err
	}
	c := checker{doc: docToolResponse}
	c.text("content", r.Content, MaxToolContentLen, false)
	if c.err != nil {
		return ToolResponse{}, c.err
	}
	return r, nil
}

// DecodeRetrieveRequest decodes and checks the input a plugin passes to
// mdsa_retrieve.
func DecodeRetrieveRequest(data []byte) (RetrieveRequest, error) {
	var r RetrieveRequest
	if err := decodeStrict(docRetrieve, data, &r); err != nil {
		return RetrieveRequest{}, err
	}
	c := checker{doc: docRetrieve}
	c.text("query", r.Query, MaxRetrieveQuery, true)
	if r.KB != "" && !ValidKBName(r.KB) {
		c.fail("kb", fmt.Sprintf("%s must match [a-z0-9][a-z0-9_-]{0,63}", quote(r.KB)))
	}
	c.intRange("top_k", r.TopK, 0, MaxRetrieveTopK)
	if c.err != nil {
		return RetrieveRequest{}, c.err
	}
	return r, nil
}

// ValidKBName reports whether s is a valid knowledge base name:
// [a-z0-9][a-z0-9_-]{0,63}.
func ValidKBName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')) {
			return false
		}
	}
	return true
}

// ValidToolName reports whether s is a valid tool name: 1 to
// MaxToolNameLen bytes of ASCII letters, digits, '_' and '-'.
func ValidToolName(s string) bool {
	if len(s) == 0 || len(s) > MaxToolNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// tools checks the tool declarations of a manifest (the host also compiles
// each schema when it loads the plugin).
func (c *checker) tools(m *Manifest) {
	if m.ABIMinor < 0 {
		c.fail("abi_minor", fmt.Sprintf("%d is negative", m.ABIMinor))
	}
	if k := m.Knowledge; k != nil {
		if m.ABIMinor < 1 {
			c.fail("knowledge", "knowledge needs abi_minor 1 or later")
		}
		if !ValidKBName(k.KB) {
			c.fail("knowledge.kb", fmt.Sprintf("%s must match [a-z0-9][a-z0-9_-]{0,63}", quote(k.KB)))
		}
		c.intRange("knowledge.top_k", k.TopK, 0, MaxRetrieveTopK)
	}
	for _, cp := range m.Capabilities {
		if cp == CapRetrieve && m.ABIMinor < 1 {
			c.fail("capabilities", "retrieve needs abi_minor 1 or later")
		}
	}
	if len(m.Tools) == 0 {
		return
	}
	if m.ABIMinor < 1 {
		c.fail("tools", "tools need abi_minor 1 or later")
	}
	if len(m.Tools) > MaxTools {
		c.fail("tools", fmt.Sprintf("%d entries, at most %d allowed", len(m.Tools), MaxTools))
	}
	seen := make(map[string]bool, len(m.Tools))
	for i, t := range m.Tools {
		f := index("tools", i)
		switch {
		case !ValidToolName(t.Name):
			c.fail(f+".name", fmt.Sprintf("%s must match [A-Za-z0-9_-]{1,%d}", quote(t.Name), MaxToolNameLen))
		case seen[t.Name]:
			c.fail(f+".name", fmt.Sprintf("duplicate tool %s", quote(t.Name)))
		}
		seen[t.Name] = true
		c.text(f+".description", t.Description, MaxDescriptionLen, false)
		if p := bytes.TrimSpace(t.Parameters); len(p) > 0 {
			switch {
			case len(p) > MaxToolSchemaLen:
				c.fail(f+".parameters", fmt.Sprintf("%d bytes, at most %d allowed", len(p), MaxToolSchemaLen))
			case p[0] != '{' && string(p) != "null":
				c.fail(f+".parameters", "must be a JSON Schema object")
			}
		}
	}
}

// CheckPromptResponse checks the output of the prompt export: 1 to
// MaxMessages messages with known roles, and valid generation overrides.
func CheckPromptResponse(r *PromptResponse) error {
	c := checker{doc: docPromptResponse}
	c.messages("messages", r.Messages, true)
	c.generation("generation", &r.Generation)
	return c.err
}

// CheckValidation checks the output of the validate export: score in [0,1],
// bounded issues with a code, a known severity and a message, and a bounded
// revised response.
func CheckValidation(v *Validation) error {
	c := checker{doc: docValidation}
	c.validation("", v)
	return c.err
}

// CheckHandleResponse checks the output of the handle export.
func CheckHandleResponse(r *HandleResponse) error {
	c := checker{doc: docHandleResponse}
	c.text("response", r.Response, MaxContentLen, false)
	c.validation("validation.", &r.Validation)
	return c.err
}

// CheckGenerateRequest checks an mdsa_generate input: exactly one of
// messages or prompt, and valid sampling settings.
func CheckGenerateRequest(r *GenerateRequest) error {
	c := checker{doc: docGenerate}
	switch {
	case len(r.Messages) > 0 && r.Prompt != "":
		c.fail("prompt", "messages and prompt are mutually exclusive")
	case len(r.Messages) == 0 && r.Prompt == "":
		c.fail("messages", "one of messages or prompt is required")
	case len(r.Messages) > 0:
		c.messages("messages", r.Messages, true)
	default:
		c.text("prompt", r.Prompt, MaxContentLen, true)
	}
	c.generation("", &r.Generation)
	return c.err
}

// CheckEmbedRequest checks an mdsa_embed input: 1 to MaxEmbedInputs
// non-empty texts.
func CheckEmbedRequest(r *EmbedRequest) error {
	c := checker{doc: docEmbed}
	c.list("input", r.Input, MaxEmbedInputs, MaxContentLen, true)
	if c.err == nil && len(r.Input) == 0 {
		c.fail("input", "at least one text is required")
	}
	return c.err
}

// CheckCountTokensRequest checks an mdsa_count_tokens input.
func CheckCountTokensRequest(r *CountTokensRequest) error {
	c := checker{doc: docCountTokens}
	c.text("text", r.Text, MaxContentLen, false)
	return c.err
}

// ValidName reports whether s is a valid plugin name: 1 to MaxNameLen bytes
// of lower-case ASCII letters, digits, '_' and '-'.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// KnownCapability reports whether c is a capability this ABI version defines.
func KnownCapability(c string) bool {
	switch c {
	case CapGenerate, CapEmbed, CapCountTokens, CapRetrieve:
		return true
	}
	return false
}

// decodeStrict decodes exactly one JSON object from data into v.
func decodeStrict(doc string, data []byte, v any) error {
	if !utf8.Valid(data) {
		return &FieldError{Doc: doc, Msg: fmt.Sprintf("invalid UTF-8 at byte %d", invalidUTF8At(data))}
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return &FieldError{Doc: doc, Msg: "empty document (want a JSON object)"}
	}
	if trimmed[0] != '{' {
		return &FieldError{Doc: doc, Msg: "not a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return &FieldError{Doc: doc, Field: ute.Field, Msg: fmt.Sprintf("JSON %s cannot be stored in a %s", ute.Value, ute.Type)}
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return &FieldError{Doc: doc, Msg: fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, err)}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return &FieldError{Doc: doc, Msg: "invalid JSON: unexpected end of input"}
		}
		return &FieldError{Doc: doc, Msg: "invalid JSON: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &FieldError{Doc: doc, Msg: fmt.Sprintf("trailing data after the JSON object at byte %d", dec.InputOffset())}
	}
	if path, dup := duplicateKey(data); dup {
		return &FieldError{Doc: doc, Field: path, Msg: "duplicate key (keys may appear once per object, compared without regard to case)"}
	}
	return nil
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// checker accumulates the first error found in a document.
type checker struct {
	doc string
	err error
}

func (c *checker) fail(field, msg string) {
	if c.err == nil {
		c.err = &FieldError{Doc: c.doc, Field: field, Msg: msg}
	}
}

// text checks a string field: valid UTF-8, at most max bytes, non-blank if
// required.
func (c *checker) text(field, s string, max int, required bool) {
	switch {
	case !utf8.ValidString(s):
		c.fail(field, "invalid UTF-8")
	case len(s) > max:
		c.fail(field, fmt.Sprintf("%d bytes, at most %d allowed", len(s), max))
	case required && strings.TrimSpace(s) == "":
		c.fail(field, "required")
	}
}

// list checks a list of strings: present if required, at most maxN entries,
// each non-blank text of at most maxLen bytes.
func (c *checker) list(field string, items []string, maxN, maxLen int, required bool) {
	if items == nil {
		if required {
			c.fail(field, "required (use [] for none)")
		}
		return
	}
	if len(items) > maxN {
		c.fail(field, fmt.Sprintf("%d entries, at most %d allowed", len(items), maxN))
		return
	}
	for i, s := range items {
		c.text(index(field, i), s, maxLen, true)
	}
}

func (c *checker) intRange(field string, v, lo, hi int) {
	if v < lo || v > hi {
		c.fail(field, fmt.Sprintf("%d out of range [%d, %d]", v, lo, hi))
	}
}

func (c *checker) floatRange(field string, v *float32, lo, hi float64) {
	if v == nil {
		return
	}
	f := float64(*v)
	if math.IsNaN(f) || f < lo || f > hi {
		c.fail(field, fmt.Sprintf("%v out of range [%v, %v]", f, lo, hi))
	}
}

// generation checks sampling settings; prefix is "" or "generation".
func (c *checker) generation(prefix string, g *Generation) {
	f := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + "." + name
	}
	c.intRange(f("max_tokens"), g.MaxTokens, 0, MaxGenTokens)
	c.floatRange(f("temperature"), g.Temperature, 0, MaxTemperature)
	c.floatRange(f("top_p"), g.TopP, 0, 1)
	c.intRange(f("top_k"), g.TopK, 0, MaxTopK)
	c.floatRange(f("repeat_penalty"), g.RepeatPenalty, 0, MaxRepeatPenalty)
	if len(g.Stop) > MaxStops {
		c.fail(f("stop"), fmt.Sprintf("%d entries, at most %d allowed", len(g.Stop), MaxStops))
	}
	for i, s := range g.Stop {
		// Whitespace such as "\n\n" is a common stop string; only "" is invalid.
		c.text(index(f("stop"), i), s, MaxStopLen, false)
		if s == "" {
			c.fail(index(f("stop"), i), "empty stop string")
		}
	}
}

func (c *checker) messages(field string, msgs []Message, required bool) {
	if len(msgs) == 0 {
		if required {
			c.fail(field, "at least one message is required")
		}
		return
	}
	if len(msgs) > MaxMessages {
		c.fail(field, fmt.Sprintf("%d messages, at most %d allowed", len(msgs), MaxMessages))
		return
	}
	for i, m := range msgs {
		f := index(field, i)
		switch m.Role {
		case RoleSystem, RoleUser, RoleAssistant:
		default:
			c.fail(f+".role", fmt.Sprintf("unknown role %s (want system, user or assistant)", quote(m.Role)))
		}
		c.text(f+".content", m.Content, MaxContentLen, false)
	}
}

// validation checks a Validation; prefix is "" or "validation.".
func (c *checker) validation(prefix string, v *Validation) {
	if math.IsNaN(v.Score) || v.Score < 0 || v.Score > 1 {
		c.fail(prefix+"score", fmt.Sprintf("%v out of range [0, 1]", v.Score))
	}
	if len(v.Issues) > MaxIssues {
		c.fail(prefix+"issues", fmt.Sprintf("%d issues, at most %d allowed", len(v.Issues), MaxIssues))
		return
	}
	for i, is := range v.Issues {
		f := prefix + index("issues", i)
		c.text(f+".code", is.Code, MaxIssueCodeLen, true)
		switch is.Severity {
		case SeverityInfo, SeverityWarning, SeverityError:
		default:
			c.fail(f+".severity", fmt.Sprintf("unknown severity %s (want info, warning or error)", quote(is.Severity)))
		}
		c.text(f+".message", is.Message, MaxIssueMessageLen, false)
	}
	if v.Response != nil {
		c.text(prefix+"response", *v.Response, MaxContentLen, false)
	}
}

func index(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
}

// quote renders untrusted text for an error message: quoted, with
// non-graphic runes and invalid bytes escaped, and cut to 64 bytes.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.QuoteToGraphic(s[:cut]) + "..."
	}
	return strconv.QuoteToGraphic(s)
}
