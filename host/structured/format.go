// Package structured holds what constrains a model's answer beyond free
// text: response formats (a JSON object, or a document valid against a JSON
// Schema) and tools (functions the model may call). Each compiles to a GBNF
// grammar for constrained decoding (host/grammar), adds an instruction to
// the prompt, and checks or parses what the model produced.
package structured

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mdsa-go/mdsa/host/grammar"
)

// Response format types (OpenAI's response_format.type).
const (
	FormatText       = "text"
	FormatJSONObject = "json_object"
	FormatJSONSchema = "json_schema"
)

// Error is a format or tool definition that cannot be used. Field names the
// part at fault in the terms of the definition ("schema", "tools[2].name");
// Pointer, when set, is the JSON pointer inside a schema.
type Error struct {
	Field   string
	Pointer string
	Msg     string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Pointer != "" {
		return fmt.Sprintf("%s at %s: %s", e.Field, e.Pointer, e.Msg)
	}
	return e.Field + ": " + e.Msg
}

func fieldErr(field, msg string) error { return &Error{Field: field, Msg: msg} }

// schemaError turns a grammar.SchemaError into an Error on field.
func schemaError(field string, err error) error {
	var se *grammar.SchemaError
	if errors.As(err, &se) {
		p := se.Path
		if p == "" {
			p = "/"
		}
		return &Error{Field: field, Pointer: p, Msg: se.Msg}
	}
	return &Error{Field: field, Msg: err.Error()}
}

// Format is a response format other than plain text.
type Format struct {
	// Type is FormatJSONObject or FormatJSONSchema.
	Type string
	// Name and Schema describe a FormatJSONSchema; Strict asks that the
	// schema be enforced exactly (a schema the grammar cannot express
	// exactly is refused) rather than on a best-effort basis.
	Name   string
	Schema json.RawMessage
	Strict bool

	grammar   string
	validator *jsonschema.Schema
}

// Limits on formats and tools.
const (
	// MaxSchemaBytes bounds one JSON Schema (a format's, a tool's
	// parameters).
	MaxSchemaBytes = 64 << 10
	// maxNameLen bounds format and tool names.
	maxNameLen = 64
)

// formatOptions bound the grammars of response formats: strings without a
// maxLength are as long as the token limit lets them be.
var formatOptions = grammar.Options{MaxStringLen: -1, MaxItems: 256, MaxDepth: 16}

// JSONObject is the json_object format: any JSON object.
func JSONObject() *Format {
	return &Format{Type: FormatJSONObject, grammar: grammar.JSONObject(formatOptions)}
}

// NewSchemaFormat compiles a json_schema format. A schema that is not a
// JSON object, is over MaxSchemaBytes, does not compile to a grammar (with
// strict; without it, what the grammar cannot express is left to the
// check), or is not a valid JSON Schema is an *Error on "schema" (or
// "name").
func NewSchemaFormat(name string, schema json.RawMessage, strict bool) (*Format, error) {
	if name == "" || len(name) > maxNameLen || !validName(name) {
		return nil, fieldErr("name", fmt.Sprintf("must be 1-%d letters, digits, '_' or '-', got %q", maxNameLen, clip(name, 80)))
	}
	f := &Format{Type: FormatJSONSchema, Name: name, Strict: strict}
	var err error
	if f.Schema, f.grammar, f.validator, err = compileSchema("schema", schema, strict, formatOptions); err != nil {
		return nil, err
	}
	return f, nil
}

// compileSchema checks a schema document and compiles its grammar (lenient
// unless strict) and validator.
func compileSchema(field string, schema json.RawMessage, strict bool, o grammar.Options) (json.RawMessage, string, *jsonschema.Schema, error) {
	trimmed := bytes.TrimSpace(schema)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, "", nil, fieldErr(field, "must be a JSON Schema object")
	}
	if len(trimmed) > MaxSchemaBytes {
		return nil, "", nil, fieldErr(field, fmt.Sprintf("has %d bytes, at most %d", len(trimmed), MaxSchemaBytes))
	}
	o.Lenient = !strict
	g, err := grammar.FromSchema(trimmed, o)
	if err != nil {
		return nil, "", nil, schemaError(field, err)
	}
	if p, why := recursionRisk(trimmed); why != "" {
		return nil, "", nil, &Error{Field: field, Pointer: p, Msg: why}
	}
	v, err := newValidator(trimmed)
	if err != nil {
		return nil, "", nil, fieldErr(field, "not a valid JSON Schema: "+clip(err.Error(), 300))
	}
	return json.RawMessage(trimmed), g, v, nil
}

// newValidator compiles schema for validation. Nothing is loaded from
// outside the document: a $ref to a file or URL fails to compile.
func newValidator(schema []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{}) // no files, no network
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	return c.Compile(schemaURL)
}

// schemaURL is where a schema lives for the validator (nowhere real).
const schemaURL = "mem:///schema.json"

// Grammar is the GBNF grammar (root "root") of the format.
func (f *Format) Grammar() string { return f.grammar }

// Instruction is what the prompt tells the model about the format.
func (f *Format) Instruction() string {
	if f.Type == FormatJSONObject {
		return "Reply with a single JSON object and nothing else."
	}
	return "Reply with a single JSON object and nothing else. It must be valid against this JSON Schema (" +
		f.Name + "):\n" + string(f.Schema)
}

// Check reports why text is not an answer of the format (nil when it is):
// not one JSON object, or not valid against the schema.
func (f *Format) Check(text string) error {
	trimmed := strings.TrimSpace(text)
	if !strings.HasPrefix(trimmed, "{") || !json.Valid([]byte(trimmed)) {
		return errors.New("not a JSON object")
	}
	if f.validator == nil {
		return nil
	}
	if depthOver(trimmed, maxCheckDepth) {
		return fmt.Errorf("nested deeper than %d levels", maxCheckDepth)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(trimmed))
	if err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if err := f.validator.Validate(doc); err != nil {
		return fmt.Errorf("not valid against the schema: %s", validationMsg(err))
	}
	return nil
}

// validName reports whether s is made of [A-Za-z0-9_-].
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// validationMsg is a validator's error without the library's preamble.
func validationMsg(err error) string {
	s := oneLine(err.Error())
	s = strings.TrimPrefix(s, "jsonschema validation failed with '"+schemaURL+"#' - ")
	s = strings.TrimPrefix(s, "jsonschema validation failed with '"+schemaURL+"#'")
	return clip(strings.TrimSpace(s), 500)
}
