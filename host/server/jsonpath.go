package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file is a small strict JSON reader for request bodies: it checks the
// syntax first (reporting the line, column and byte of an error), then
// walks the document field by field so that every problem names its place
// ("messages[2].content: want a string or an array of content parts, got
// a number") and unknown fields are refused, with a suggestion when one is
// close to a known name.

// jsonDoc parses data as one JSON value. An empty body, invalid JSON or
// trailing data is a 400 that says what and where.
func jsonDoc(data []byte) (json.RawMessage, *apiError) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, badRequest("", "invalid_json", "the request body is empty; send a JSON object")
	}
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off := se.Offset
			if off >= int64(len(data)) {
				off = int64(len(data)) + 1 // the input ended early: point just past it
			}
			line, col := lineCol(data, off)
			return nil, badRequest("", "invalid_json", "malformed JSON at line %d, column %d (byte %d): %s",
				line, col, se.Offset, se.Error())
		}
		return nil, badRequest("", "invalid_json", "malformed JSON: %s", err.Error())
	}
	return raw, nil
}

// lineCol converts json.SyntaxError's offset (bytes read when the error was
// found, so the 1-based position of the offending byte) to a 1-based line
// and column.
func lineCol(data []byte, off int64) (line, col int) {
	off = min(max(off-1, 0), int64(len(data)))
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = 1 + utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])
	return line, col
}

// kind names the JSON type of raw, for messages.
func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// wrongType is the 400 for a value of the wrong JSON type.
func wrongType(path, want string, raw json.RawMessage) *apiError {
	return badRequest(path, "invalid_type", "%s: want %s, got %s", path, want, kind(raw))
}

// field handles one member of an object; raw is never null (null members
// are treated as absent).
type field func(raw json.RawMessage, path string) *apiError

// object walks the members of the object raw at path, calling the handler
// of each known member in the order of the document's keys (sorted) and
// refusing unknown ones.
func object(raw json.RawMessage, path string, fields map[string]field) *apiError {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		what := path
		if what == "" {
			what = "the request body"
		}
		return badRequest(path, "invalid_type", "%s: want a JSON object, got %s", what, kind(raw))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f, ok := fields[k]
		if !ok {
			return unknownField(path, k, fields)
		}
		if v := m[k]; !isNull(v) {
			if err := f(v, join(path, k)); err != nil {
				return err
			}
		}
	}
	return nil
}

func unknownField(path, key string, fields map[string]field) *apiError {
	key = clip(key, 64)
	where := "the request body"
	if path != "" {
		where = path
	}
	msg := fmt.Sprintf("unknown field %q in %s", key, where)
	best, bestD := "", 3
	for k := range fields {
		if d := editDistance(strings.ToLower(key), k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	}
	return badRequest(join(path, key), "unknown_field", "%s", msg)
}

// editDistance is the Levenshtein distance of two short strings, capped at
// a small value for long inputs (field names are short).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// str decodes a JSON string.
func str(dst *string) field {
	return func(raw json.RawMessage, path string) *apiError {
		if err := json.Unmarshal(raw, dst); err != nil {
			return wrongType(path, "a string", raw)
		}
		return nil
	}
}

// boolean decodes a JSON boolean.
func boolean(dst *bool) field {
	return func(raw json.RawMessage, path string) *apiError {
		if err := json.Unmarshal(raw, dst); err != nil {
			return wrongType(path, "true or false", raw)
		}
		return nil
	}
}

// number decodes a JSON number in [lo, hi].
func number(dst *float64, lo, hi float64) field {
	return func(raw json.RawMessage, path string) *apiError {
		var v float64
		if kind(raw) != "a number" || json.Unmarshal(raw, &v) != nil {
			return wrongType(path, "a number", raw)
		}
		if v < lo || v > hi || math.IsNaN(v) {
			return badRequest(path, "invalid_value", "%s: %s is out of range [%s, %s]", path,
				fmtNum(v), fmtNum(lo), fmtNum(hi))
		}
		*dst = v
		return nil
	}
}

// float32In decodes a JSON number in [lo, hi] into a new *float32.
func float32In(dst **float32, lo, hi float64) field {
	return func(raw json.RawMessage, path string) *apiError {
		var v float64
		if err := number(&v, lo, hi)(raw, path); err != nil {
			return err
		}
		f := float32(v)
		*dst = &f
		return nil
	}
}

// integer decodes a JSON number that is a whole number in [lo, hi].
func integer(dst *int64, lo, hi int64) field {
	return func(raw json.RawMessage, path string) *apiError {
		var v float64
		if kind(raw) != "a number" || json.Unmarshal(raw, &v) != nil {
			return wrongType(path, "a whole number", raw)
		}
		if v != math.Trunc(v) {
			return badRequest(path, "invalid_type", "%s: want a whole number, got %s", path, fmtNum(v))
		}
		if v < float64(lo) || v > float64(hi) {
			return badRequest(path, "invalid_value", "%s: %s is out of range [%d, %d]", path, fmtNum(v), lo, hi)
		}
		*dst = int64(v)
		return nil
	}
}

// intField decodes a whole number in [lo, hi] into an int.
func intField(dst *int, lo, hi int) field {
	return func(raw json.RawMessage, path string) *apiError {
		var v int64
		if err := integer(&v, int64(lo), int64(hi))(raw, path); err != nil {
			return err
		}
		*dst = int(v)
		return nil
	}
}

// stopField decodes OpenAI's stop: a string or an array of up to 4
// non-empty strings.
func stopField(dst *[]string) field {
	return func(raw json.RawMessage, path string) *apiError {
		var one string
		if json.Unmarshal(raw, &one) == nil {
			if one == "" {
				return badRequest(path, "invalid_value", "%s: a stop sequence must not be empty", path)
			}
			*dst = []string{one}
			return nil
		}
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) != nil {
			return wrongType(path, "a string or an array of strings", raw)
		}
		if len(list) > maxStop {
			return badRequest(path, "invalid_value", "%s: at most %d stop sequences, got %d", path, maxStop, len(list))
		}
		out := make([]string, 0, len(list))
		for i, r := range list {
			var s string
			if json.Unmarshal(r, &s) != nil {
				return wrongType(index(path, i), "a string", r)
			}
			if s == "" {
				return badRequest(index(path, i), "invalid_value", "%s: a stop sequence must not be empty", index(path, i))
			}
			out = append(out, s)
		}
		*dst = out
		return nil
	}
}

// seedField decodes a seed, a whole number in [0, 2^32-1].
func seedField(dst **uint32) field {
	return func(raw json.RawMessage, path string) *apiError {
		var v int64
		if err := integer(&v, 0, math.MaxUint32)(raw, path); err != nil {
			return err
		}
		u := uint32(v)
		*dst = &u
		return nil
	}
}

// ignore accepts any value: fields of OpenAI's API that change nothing here.
func ignore(json.RawMessage, string) *apiError { return nil }

// clip cuts s to at most n bytes (on a rune boundary), marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// maxStop is the most stop sequences a request may give (OpenAI's limit).
const maxStop = 4
