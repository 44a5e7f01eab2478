package conformance

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The tools check calls every tool with arguments made from its parameters
// schema. The generator below covers the JSON Schema a tool's parameters
// use in practice (types, enum and const, numeric and length bounds, common
// formats, required and nested properties, arrays with minItems, local
// $refs, allOf, anyOf and oneOf); what it cannot satisfy (a pattern, say)
// yields arguments that are not valid, which the check tells apart by
// validating them against the compiled schema.

// argSet is one arguments object the tools check sends to a tool.
type argSet struct {
	// name says what the arguments are: "minimal", "empty" or
	// "wrong-type".
	name string
	args json.RawMessage
}

// toolArgSets returns the argument objects for a tool with parameters
// schema params: the minimal object generated from the schema, the empty
// object (unless that is the minimal one) and, when the schema requires
// properties, the minimal object with a value of the wrong type in each
// required property.
func toolArgSets(params json.RawMessage) []argSet {
	min, wrong := toolArgs(params)
	out := []argSet{{"minimal", min}}
	if !bytes.Equal(min, []byte("{}")) {
		out = append(out, argSet{"empty", json.RawMessage("{}")})
	}
	if wrong != nil {
		out = append(out, argSet{"wrong-type", wrong})
	}
	return out
}

// toolArgs generates the minimal arguments object of a parameters schema
// and, when the schema requires properties, the same object with a value of
// the wrong type in each required property (nil when none is required).
// Parameters that are absent, not JSON or not an object schema give {}.
func toolArgs(params json.RawMessage) (minimal, wrong json.RawMessage) {
	var root any
	d := json.NewDecoder(bytes.NewReader(params))
	d.UseNumber()
	if len(bytes.TrimSpace(params)) == 0 || d.Decode(&root) != nil {
		return json.RawMessage("{}"), nil
	}
	g := &schemaGen{root: root}
	s := g.resolve(root, 0)
	obj, ok := g.value(s, 0).(map[string]any)
	if !ok {
		obj = map[string]any{}
	}
	minimal = mustJSON(obj)

	g.spent = 0
	m, _ := s.(map[string]any)
	bad := make(map[string]any, len(obj))
	for k, v := range obj {
		bad[k] = v
	}
	changed := false
	for _, name := range g.required(m, 0) {
		if v, ok := g.wrongValue(propSchema(m, name)); ok {
			bad[name] = v
			changed = true
		}
	}
	if !changed {
		return minimal, nil
	}
	return minimal, mustJSON(bad)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// Values come from a decoded document and the generator's own
		// literals: they always encode. Keep the check going regardless.
		return json.RawMessage("{}")
	}
	return b
}

// maxSchemaDepth bounds the generator's recursion ($refs that refer to
// themselves, deeply nested objects): deeper values are "x". It is kept
// low because validating a value against a schema whose allOf refers back
// to itself takes time exponential in the value's depth.
const maxSchemaDepth = 8

// genBudget bounds the schemas the generator visits for one tool (a
// schema whose allOf branches refer back to it, or nested arrays with
// large minItems, would otherwise take exponential time).
const genBudget = 5000

// schemaGen generates values from one schema document.
type schemaGen struct {
	root any
	// spent counts the schemas visited, up to genBudget.
	spent int
}

// exhausted spends one step of the budget and reports whether it is gone.
func (g *schemaGen) exhausted() bool {
	g.spent++
	return g.spent > genBudget
}

// resolve follows a local $ref ("#", "#/$defs/x", "#/definitions/x") and
// folds allOf into one schema (properties and required merged, the first
// value of any other keyword kept).
func (g *schemaGen) resolve(s any, depth int) any {
	if g.exhausted() {
		return s
	}
	for range maxSchemaDepth {
		m, ok := s.(map[string]any)
		if !ok {
			return s
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			break
		}
		target, found := g.pointer(ref)
		if !found {
			break
		}
		// Keywords beside $ref apply too (2019-09 and later): they win.
		merged := copyMap(target)
		for k, v := range m {
			if k != "$ref" {
				merged[k] = v
			}
		}
		s = merged
	}
	m, ok := s.(map[string]any)
	if !ok || depth > maxSchemaDepth {
		return s
	}
	all, ok := m["allOf"].([]any)
	if !ok {
		return s
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != "allOf" {
			out[k] = v
		}
	}
	for _, sub := range all {
		sm, ok := g.resolve(sub, depth+1).(map[string]any)
		if !ok {
			continue
		}
		for k, v := range sm {
			switch k {
			case "properties":
				props, _ := out[k].(map[string]any)
				props = copyMap(props)
				if add, ok := v.(map[string]any); ok {
					for name, ps := range add {
						if _, dup := props[name]; !dup {
							props[name] = ps
						}
					}
				}
				out[k] = props
			case "required":
				req, _ := out[k].([]any)
				if add, ok := v.([]any); ok {
					req = append(slices.Clone(req), add...)
				}
				out[k] = req
			default:
				if _, set := out[k]; !set {
					out[k] = v
				}
			}
		}
	}
	return out
}

// copyMap returns a shallow copy of v as a map (empty when v is not one).
func copyMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	out := make(map[string]any, len(m)+1)
	for k, x := range m {
		out[k] = x
	}
	return out
}

// pointer finds a local reference in the root document.
func (g *schemaGen) pointer(ref string) (any, bool) {
	if ref == "#" {
		_, ok := g.root.(map[string]any)
		return g.root, ok
	}
	if !strings.HasPrefix(ref, "#/") {
		return nil, false
	}
	cur := g.root
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	_, ok := cur.(map[string]any)
	return cur, ok
}

// declaredTypes returns the types a schema declares ("type" as a string or
// a list), or nil.
func declaredTypes(m map[string]any) []string {
	switch t := m["type"].(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, x := range t {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// types returns the types a schema declares, or the one its keywords
// imply (a value of that type meets them), or nil.
func types(m map[string]any) []string {
	if ts := declaredTypes(m); len(ts) > 0 {
		return ts
	}
	has := func(keys ...string) bool {
		for _, k := range keys {
			if _, ok := m[k]; ok {
				return true
			}
		}
		return false
	}
	switch {
	case has("properties", "required", "additionalProperties", "minProperties", "patternProperties"):
		return []string{"object"}
	case has("items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains"):
		return []string{"array"}
	case has("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
		return []string{"number"}
	case has("minLength", "maxLength", "pattern", "format"):
		return []string{"string"}
	}
	return nil
}

// value generates a simple value valid against schema s: its const, its
// first enum value, or a value of its first non-null type within its
// bounds (objects hold their required properties, arrays their minItems).
func (g *schemaGen) value(s any, depth int) any {
	s = g.resolve(s, depth)
	m, ok := s.(map[string]any)
	if !ok || depth > maxSchemaDepth || g.exhausted() {
		return "x" // true, or too deep: any value
	}
	if c, ok := m["const"]; ok {
		return c
	}
	if e, ok := m["enum"].([]any); ok && len(e) > 0 {
		return e[0]
	}
	ts := types(m)
	if len(ts) == 0 {
		for _, key := range []string{"anyOf", "oneOf"} {
			if alts, ok := m[key].([]any); ok && len(alts) > 0 {
				return g.value(g.pickAlt(alts, depth), depth+1)
			}
		}
		return "x"
	}
	t := ts[0]
	for _, x := range ts {
		if x != "null" {
			t = x
			break
		}
	}
	switch t {
	case "object":
		return g.object(m, depth)
	case "array":
		return g.array(m, depth)
	case "string":
		return stringValue(m)
	case "integer":
		return numberValue(m, true)
	case "number":
		return numberValue(m, false)
	case "boolean":
		return true
	case "null":
		return nil
	}
	return "x"
}

// pickAlt picks the first alternative of anyOf or oneOf that is not just
// null.
func (g *schemaGen) pickAlt(alts []any, depth int) any {
	for _, a := range alts {
		if m, ok := g.resolve(a, depth+1).(map[string]any); ok {
			if ts := types(m); len(ts) == 1 && ts[0] == "null" {
				continue
			}
		}
		return a
	}
	return alts[0]
}

// required returns the required property names of an object schema.
func (g *schemaGen) required(s any, depth int) []string {
	m, _ := g.resolve(s, depth).(map[string]any)
	var out []string
	if req, ok := m["required"].([]any); ok {
		for _, r := range req {
			if name, ok := r.(string); ok && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// propSchema returns the schema of property name in object schema m: its
// entry in properties, else additionalProperties when that is a schema,
// else true (anything).
func propSchema(m map[string]any, name string) any {
	props, _ := m["properties"].(map[string]any)
	if ps, ok := props[name]; ok {
		return ps
	}
	if ps, ok := m["additionalProperties"].(map[string]any); ok {
		return ps
	}
	return true
}

// object generates the required properties of m (and, for minProperties,
// the first optional ones in name order).
func (g *schemaGen) object(m map[string]any, depth int) map[string]any {
	props, _ := m["properties"].(map[string]any)
	out := make(map[string]any)
	for _, name := range g.required(m, depth) {
		out[name] = g.value(propSchema(m, name), depth+1)
	}
	if n, ok := intKeyword(m, "minProperties"); ok && len(out) < n {
		names := make([]string, 0, len(props))
		for name := range props {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if len(out) >= n {
				break
			}
			if _, done := out[name]; !done {
				out[name] = g.value(props[name], depth+1)
			}
		}
	}
	return out
}

// maxGenItems bounds the items of a generated array (minItems may ask for
// more than is sensible to send).
const maxGenItems = 64

// array generates minItems items (none when minItems is absent).
func (g *schemaGen) array(m map[string]any, depth int) []any {
	n, _ := intKeyword(m, "minItems")
	n = min(n, maxGenItems)
	out := make([]any, 0, n)
	prefix, _ := m["prefixItems"].([]any)
	if list, ok := m["items"].([]any); ok { // draft 4-7 tuple form
		prefix = list
	}
	unique, _ := m["uniqueItems"].(bool)
	for i := range n {
		var is any = true
		if i < len(prefix) {
			is = prefix[i]
		} else if items, ok := m["items"].(map[string]any); ok {
			is = items
		} else if items, ok := m["additionalItems"].(map[string]any); ok && len(prefix) > 0 {
			is = items
		}
		v := g.value(is, depth+1)
		if unique {
			v = vary(v, i)
		}
		out = append(out, v)
	}
	return out
}

// vary makes the i-th generated item of a uniqueItems array differ from
// the others where it can (numbers and strings).
func vary(v any, i int) any {
	if i == 0 {
		return v
	}
	switch x := v.(type) {
	case float64:
		return x + float64(i)
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return f + float64(i)
		}
	case string:
		return x + strconv.Itoa(i)
	}
	return v
}

// formatSamples are valid values of the string formats a validator checks.
var formatSamples = map[string]string{
	"date":                  "2024-01-15",
	"date-time":             "2024-01-15T09:30:00Z",
	"time":                  "09:30:00Z",
	"duration":              "P1D",
	"email":                 "user@example.com",
	"idn-email":             "user@example.com",
	"hostname":              "example.com",
	"idn-hostname":          "example.com",
	"ipv4":                  "192.0.2.1",
	"ipv6":                  "2001:db8::1",
	"uri":                   "https://example.com/",
	"uri-reference":         "https://example.com/",
	"iri":                   "https://example.com/",
	"iri-reference":         "https://example.com/",
	"uri-template":          "https://example.com/{id}",
	"uuid":                  "123e4567-e89b-12d3-a456-426614174000",
	"json-pointer":          "/a",
	"relative-json-pointer": "0",
	"regex":                 "a",
}

// maxGenString bounds the length of a generated string (minLength may ask
// for more than is sensible to send).
const maxGenString = 1024

// stringValue is "example" (or the sample of a known format), cut or
// padded to the length bounds.
func stringValue(m map[string]any) string {
	s := "example"
	if f, ok := m["format"].(string); ok {
		if v, known := formatSamples[f]; known {
			s = v
		}
	}
	if n, ok := intKeyword(m, "minLength"); ok && len([]rune(s)) < n {
		s += strings.Repeat("x", min(n, maxGenString)-len([]rune(s)))
	}
	if n, ok := intKeyword(m, "maxLength"); ok && len([]rune(s)) > n {
		s = string([]rune(s)[:max(n, 0)])
	}
	return s
}

// numberValue is 1 moved into the schema's bounds (minimum, maximum, their
// exclusive forms, draft 4's boolean ones included) and onto multipleOf.
func numberValue(m map[string]any, integer bool) any {
	lo, hasLo := number(m["minimum"])
	hi, hasHi := number(m["maximum"])
	exLo, exHi := false, false
	if b, ok := m["exclusiveMinimum"].(bool); ok {
		exLo = b && hasLo
	} else if x, ok := number(m["exclusiveMinimum"]); ok && (!hasLo || x >= lo) {
		lo, hasLo, exLo = x, true, true
	}
	if b, ok := m["exclusiveMaximum"].(bool); ok {
		exHi = b && hasHi
	} else if x, ok := number(m["exclusiveMaximum"]); ok && (!hasHi || x <= hi) {
		hi, hasHi, exHi = x, true, true
	}
	if integer {
		// Integer bounds: the smallest and largest integers inside.
		if hasLo {
			if exLo {
				lo = math.Floor(lo) + 1
			} else {
				lo = math.Ceil(lo)
			}
		}
		if hasHi {
			if exHi {
				hi = math.Ceil(hi) - 1
			} else {
				hi = math.Floor(hi)
			}
		}
		exLo, exHi = false, false
	}
	v := 1.0
	above := func(x float64) bool { return !hasLo || x > lo || !exLo && x == lo }
	below := func(x float64) bool { return !hasHi || x < hi || !exHi && x == hi }
	if !above(v) {
		v = lo
		if exLo {
			v = lo + 1
		}
	}
	if !below(v) {
		v = hi
		if exHi {
			v = hi - 1
		}
	}
	if !above(v) && hasLo && hasHi {
		v = (lo + hi) / 2 // a narrow open interval
	}
	if step, ok := number(m["multipleOf"]); ok && step > 0 {
		if k := math.Ceil(v / step); below(k * step) {
			v = k * step
		} else {
			v = math.Floor(v/step) * step
		}
	}
	if integer {
		v = math.Round(v)
	}
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return json.Number(strconv.FormatInt(int64(v), 10))
	}
	return json.Number(strconv.FormatFloat(v, 'g', -1, 64))
}

// number reads a JSON number keyword.
func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// intKeyword reads a non-negative integer keyword (minItems, minLength).
func intKeyword(m map[string]any, key string) (int, bool) {
	f, ok := number(m[key])
	if !ok || f < 0 {
		return 0, false
	}
	return int(min(f, 1<<20)), true
}

// wrongValue returns a value whose JSON type the property schema s does
// not allow: a string where it wants anything else, a number where it
// wants a string. A schema that names no type (its anyOf or oneOf
// alternatives neither) gets a string when it has an enum or const (of
// other values, as a rule); otherwise it allows anything, and ok is false.
func (g *schemaGen) wrongValue(s any) (v any, ok bool) {
	m, _ := g.resolve(s, 0).(map[string]any)
	ts, typed := g.allowedTypes(m, 0)
	if !typed {
		_, isConst := m["const"]
		_, isEnum := m["enum"]
		if isConst || isEnum {
			return "not the right type", true
		}
		return nil, false
	}
	allowed := func(t string) bool {
		for _, x := range ts {
			if x == t {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		jsonType string
		v        any
	}{
		{"string", "not the right type"},
		{"number", json.Number("12.5")},
		{"boolean", true},
		{"object", map[string]any{"unexpected": true}},
		{"array", []any{}},
	} {
		if !allowed(c.jsonType) {
			return c.v, true
		}
	}
	return nil, false // every type is allowed
}

// allowedTypes returns the types schema m allows: its own, or those of all
// its anyOf or oneOf alternatives; typed is false when that is not known
// (some alternative, or m itself, names no type).
func (g *schemaGen) allowedTypes(m map[string]any, depth int) (ts []string, typed bool) {
	if ts := declaredTypes(m); len(ts) > 0 {
		return ts, true
	}
	if depth > maxSchemaDepth {
		return nil, false
	}
	for _, key := range []string{"anyOf", "oneOf"} {
		alts, ok := m[key].([]any)
		if !ok || len(alts) == 0 {
			continue
		}
		var out []string
		for _, a := range alts {
			am, _ := g.resolve(a, depth+1).(map[string]any)
			ats, ok := g.allowedTypes(am, depth+1)
			if !ok {
				return nil, false
			}
			out = append(out, ats...)
		}
		return out, true
	}
	return nil, false
}
