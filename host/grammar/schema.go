package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// maxSchemaBytes bounds the size of a schema document given to FromSchema.
const maxSchemaBytes = 64 << 10

// maxNesting bounds the JSON nesting of a schema document, independent of
// Options.MaxDepth, so that parsing cannot recurse without limit.
const maxNesting = 256

// SchemaError reports a schema that FromSchema cannot compile: malformed,
// unsupported, unsatisfiable, or over one of the bounds.
type SchemaError struct {
	// Path is a JSON pointer (RFC 6901) to the offending keyword, e.g.
	// "/properties/age/type"; "" means the whole document.
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error implements error.
func (e *SchemaError) Error() string {
	p := e.Path
	if p == "" {
		p = "/"
	}
	return "grammar: schema " + p + ": " + e.Msg
}

func schemaErr(path, msg string) error { return &SchemaError{Path: path, Msg: msg} }

// value is a parsed JSON value that keeps the order of object keys.
type value struct {
	kind  byte // '{' object, '[' array, 's' string, 'n' number, 'b' boolean, '0' null
	keys  []string
	vals  []*value // object members, parallel to keys
	items []*value // array elements
	s     string   // string contents or number text
	b     bool
}

// get returns the member named k of an object, or nil.
func (v *value) get(k string) *value {
	if v == nil || v.kind != '{' {
		return nil
	}
	for i, key := range v.keys {
		if key == k {
			return v.vals[i]
		}
	}
	return nil
}

// appendJSON appends v's compact JSON encoding (object keys in order).
func (v *value) appendJSON(b []byte) []byte {
	switch v.kind {
	case '{':
		b = append(b, '{')
		for i, k := range v.keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = v.vals[i].appendJSON(b)
		}
		return append(b, '}')
	case '[':
		b = append(b, '[')
		for i, it := range v.items {
			if i > 0 {
				b = append(b, ',')
			}
			b = it.appendJSON(b)
		}
		return append(b, ']')
	case 's':
		return appendJSONString(b, v.s)
	case 'n':
		return append(b, v.s...)
	case 'b':
		if v.b {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	default:
		return append(b, "null"...)
	}
}

// appendJSONString appends s as a JSON string without HTML escaping.
func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// parseSchema decodes one JSON document, keeping key order. Duplicate keys,
// trailing data and nesting over maxNesting are errors.
func parseSchema(doc []byte) (*value, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	v, err := parseValue(dec, "", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, schemaErr("", "trailing data after the schema document")
	}
	return v, nil
}

func parseValue(dec *json.Decoder, path string, depth int) (*value, error) {
	if depth > maxNesting {
		return nil, schemaErr(path, "document nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, schemaErr(path, "invalid JSON: "+err.Error())
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			v := &value{kind: '{'}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, schemaErr(path, "invalid JSON: "+err.Error())
				}
				k, ok := kt.(string)
				if !ok {
					return nil, schemaErr(path, "invalid JSON: object key is not a string")
				}
				if seen[k] {
					return nil, schemaErr(path+"/"+escapePointer(k), "duplicate key")
				}
				seen[k] = true
				m, err := parseValue(dec, path+"/"+escapePointer(k), depth+1)
				if err != nil {
					return nil, err
				}
				v.keys = append(v.keys, k)
				v.vals = append(v.vals, m)
			}
			if _, err := dec.Token(); err != nil {
				return nil, schemaErr(path, "invalid JSON: "+err.Error())
			}
			return v, nil
		case '[':
			v := &value{kind: '['}
			for i := 0; dec.More(); i++ {
				it, err := parseValue(dec, path+"/"+itoa(i), depth+1)
				if err != nil {
					return nil, err
				}
				v.items = append(v.items, it)
			}
			if _, err := dec.Token(); err != nil {
				return nil, schemaErr(path, "invalid JSON: "+err.Error())
			}
			return v, nil
		}
		return nil, schemaErr(path, "invalid JSON: unexpected "+t.String())
	case string:
		return &value{kind: 's', s: t}, nil
	case json.Number:
		return &value{kind: 'n', s: string(t)}, nil
	case bool:
		return &value{kind: 'b', b: t}, nil
	case nil:
		return &value{kind: '0'}, nil
	}
	return nil, schemaErr(path, "invalid JSON")
}

// escapePointer escapes one JSON pointer reference token.
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// unescapePointer undoes escapePointer; ok is false for a stray '~'.
func unescapePointer(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '~' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		switch s[i+1] {
		case '0':
			b.WriteByte('~')
		case '1':
			b.WriteByte('/')
		default:
			return "", false
		}
		i++
	}
	return b.String(), true
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	neg := i < 0
	if neg {
		i = -i
	}
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	if neg {
		n--
		b[n] = '-'
	}
	return string(b[n:])
}
