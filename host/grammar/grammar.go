// Package grammar converts JSON Schemas (the subset used by OpenAI-style
// structured outputs) into llama.cpp GBNF grammars, so that generation
// constrained by llama.cpp's grammar sampler produces only JSON documents
// valid against the schema.
//
// The grammars are deliberately conservative: every document they accept is
// valid, but not every valid document is accepted. Strings, arrays, object
// nesting and numbers are bounded (see Options); whitespace between tokens is
// at most one space or newline; object properties appear exactly in the
// order the schema declares them; enum and const values must be written in
// their compact JSON form.
package grammar

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// Options bounds the grammars. Zero fields take their defaults.
type Options struct {
	// MaxStringLen bounds the length, in characters (an escape sequence
	// counts as one), of every string; default 256. A schema's maxLength
	// above it is lowered to it. Negative: strings without a maxLength are
	// unbounded (generation is then bounded only by its token limit).
	MaxStringLen int
	// MaxItems bounds arrays that have no maxItems, and the members of
	// objects and arrays whose shape the schema leaves open; default 32.
	MaxItems int
	// MaxDepth bounds the nesting of schemas, and of the open-ended JSON
	// values allowed where a schema does not constrain them; default 8.
	MaxDepth int
	// Lenient ignores what the grammar cannot express instead of failing:
	// unknown keywords (minimum, pattern, ...), unknown formats (a plain
	// string) and additionalProperties other than false (only the declared
	// properties are generated). The grammar then accepts documents the
	// schema may refuse, so a caller that needs validity checks the result
	// against the schema. For best-effort schemas such as OpenAI's
	// non-strict tool parameters.
	Lenient bool
}

const (
	defaultMaxStringLen = 256
	defaultMaxItems     = 32
	defaultMaxDepth     = 8

	// maxRules bounds the number of rules in one grammar.
	maxRules = 1000
	// maxGrammarBytes bounds the size of one grammar.
	maxGrammarBytes = 1 << 20
	// hardMaxItems bounds an explicit maxItems (each repetition becomes a
	// rule inside llama.cpp).
	hardMaxItems = 1024
)

func (o Options) withDefaults() Options {
	if o.MaxStringLen == 0 {
		o.MaxStringLen = defaultMaxStringLen
	}
	if o.MaxItems <= 0 {
		o.MaxItems = defaultMaxItems
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = defaultMaxDepth
	}
	return o
}

// JSONObject is a GBNF grammar (root rule "root") of any JSON object,
// bounded by o: at most o.MaxDepth nested objects and arrays, o.MaxItems
// members per object or array and o.MaxStringLen characters per string.
func JSONObject(o Options) string {
	c := newCompiler(o, nil)
	obj := c.anyObject()
	c.rules = append([]rule{{"root", obj}}, c.rules...)
	return c.render()
}

// FromSchema compiles a JSON Schema document to a GBNF grammar with root rule
// "root". Supported: type (a name or a list of names), properties (in the
// order written), required, additionalProperties false or absent (no other
// properties are generated), items, minItems, maxItems, minLength,
// maxLength, format "date", "date-time" and "uuid", enum, const, anyOf,
// oneOf (as plain alternatives), and $ref to "#", "#/$defs/NAME" or
// "#/definitions/NAME" (recursion allowed when an object or array lies in
// between). Annotations (title, description, default, examples, $schema,
// $comment, $defs, definitions, ...) are ignored. Any other keyword, a
// malformed value, an unsatisfiable schema or a breach of a bound (64 KB of
// schema, 1,000 rules, o.MaxDepth nesting) is a *SchemaError.
func FromSchema(schema []byte, o Options) (string, error) {
	if len(schema) > maxSchemaBytes {
		return "", schemaErr("", "schema larger than 64 KB")
	}
	root, err := parseSchema(schema)
	if err != nil {
		return "", err
	}
	c := newCompiler(o, root)
	if _, err := c.ref("#", "", 0, map[string]bool{}); err != nil {
		return "", err
	}
	return c.output()
}

// Named is a JSON Schema to be compiled under the rule name Rule; a nil
// Schema stands for any JSON object (as JSONObject). Lenient compiles this
// one schema as Options.Lenient does.
type Named struct {
	Rule    string
	Schema  []byte
	Lenient bool
}

// Compose compiles several schemas into one grammar whose root rule is
// root (a GBNF expression that may refer to each schema's Rule and to the
// rule "ws", an optional space or newline). Each schema's $refs resolve
// within that schema; helper rules are shared. Rule names must be
// lower-case letters, digits and '-', must not be "root" or repeat, and
// may clash with no generated rule (use a prefix such as "tool-"). A
// schema's error is a *SchemaError whose Path is prefixed by its index,
// "/3/properties/x" for the fourth schema.
func Compose(root string, schemas []Named, o Options) (string, error) {
	c := newCompiler(o, nil)
	c.ws()
	for _, n := range schemas {
		if n.Rule == "" || sanitize(n.Rule) != n.Rule || c.names[n.Rule] {
			return "", schemaErr("", "bad or repeated rule name "+strconv.Quote(n.Rule))
		}
		c.names[n.Rule] = true
	}
	total, lenient := 0, c.o.Lenient
	for i, n := range schemas {
		if n.Schema == nil {
			c.rules = append(c.rules, rule{n.Rule, c.anyObject()})
			continue
		}
		c.o.Lenient = lenient || n.Lenient
		total += len(n.Schema)
		if len(n.Schema) > maxSchemaBytes || total > 4*maxSchemaBytes {
			return "", schemaErr("/"+strconv.Itoa(i), "schemas larger than 64 KB each or 256 KB in all")
		}
		v, err := parseSchema(n.Schema)
		if err != nil {
			return "", prefixErr(err, i)
		}
		c.root, c.rootName = v, n.Rule
		c.defs, c.inProg = map[string]string{}, map[string]bool{}
		if _, err := c.ref("#", "", 0, map[string]bool{}); err != nil {
			return "", prefixErr(err, i)
		}
	}
	c.rules = append([]rule{{"root", root}}, c.rules...)
	return c.output()
}

func prefixErr(err error, i int) error {
	if se, ok := err.(*SchemaError); ok {
		return schemaErr("/"+strconv.Itoa(i)+se.Path, se.Msg)
	}
	return err
}

func (c *compiler) output() (string, error) {
	out := c.render()
	if len(out) > maxGrammarBytes {
		return "", schemaErr("", "grammar larger than 1 MB")
	}
	return out, nil
}

type rule struct{ name, body string }

type compiler struct {
	o        Options
	root     *value
	rootName string // the rule of "#"
	rules    []rule
	names    map[string]bool   // rule names taken
	defs     map[string]string // $ref -> rule name
	inProg   map[string]bool   // $refs being compiled
	size     int
}

func newCompiler(o Options, root *value) *compiler {
	return &compiler{
		o:        o.withDefaults(),
		root:     root,
		rootName: "root",
		names:    map[string]bool{"root": true},
		defs:     map[string]string{},
		inProg:   map[string]bool{},
	}
}

func (c *compiler) render() string {
	var b strings.Builder
	for _, r := range c.rules {
		b.WriteString(r.name)
		b.WriteString(" ::= ")
		b.WriteString(r.body)
		b.WriteByte('\n')
	}
	return b.String()
}

// add appends a rule whose name was reserved.
func (c *compiler) add(path, name, body string) error {
	if len(c.rules) >= maxRules {
		return schemaErr(path, "schema needs more than 1000 grammar rules")
	}
	c.size += len(name) + len(body) + 6
	if c.size > maxGrammarBytes {
		return schemaErr(path, "grammar larger than 1 MB")
	}
	c.rules = append(c.rules, rule{name, body})
	return nil
}

// reserve returns an unused rule name derived from base.
func (c *compiler) reserve(base string) string {
	name := sanitize(base)
	if len(name) > 60 {
		name = strings.TrimRight(name[:60], "-")
	}
	if !c.names[name] {
		c.names[name] = true
		return name
	}
	for i := 2; ; i++ {
		n := name + "-" + strconv.Itoa(i)
		if !c.names[n] {
			c.names[n] = true
			return n
		}
	}
}

// sanitize maps s to [a-z0-9-], collapsing runs of other characters.
func sanitize(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(b.String(), "-")
}

// helper defines a fixed helper rule once and returns its name.
func (c *compiler) helper(name, body string) string {
	if !c.names[name] {
		c.names[name] = true
		// helpers are few and fixed; they do not count against maxRules
		c.rules = append(c.rules, rule{name, body})
	}
	return name
}

func (c *compiler) ws() string { return c.helper("ws", `[ \n]?`) }

func (c *compiler) char() string {
	return c.helper("char", `[^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )`)
}

// str returns a rule of JSON strings of min to max characters.
func (c *compiler) str(min, max int) string {
	ch := c.char()
	name := "string"
	if min != 0 || max != c.o.MaxStringLen {
		name = "string-" + strconv.Itoa(min) + "-" + strconv.Itoa(max)
	}
	return c.helper(name, `"\"" `+repeat(ch, min, max)+` "\""`)
}

// repeat renders x{min,max} (max < 0: x{min,}) in a form llama.cpp
// accepts; x is one atom.
func repeat(x string, min, max int) string {
	switch {
	case max < 0 && min == 0:
		return x + "*"
	case max < 0:
		return x + "{" + strconv.Itoa(min) + ",}"
	case max == 0:
		return `""`
	case min == max && min == 1:
		return x
	case min == max:
		return x + "{" + strconv.Itoa(min) + "}"
	case min == 0 && max == 1:
		return x + "?"
	}
	return x + "{" + strconv.Itoa(min) + "," + strconv.Itoa(max) + "}"
}

func (c *compiler) integer() string {
	return c.helper("integer", `"-"? ( "0" | [1-9] [0-9]{0,15} )`)
}

func (c *compiler) number() string {
	return c.helper("number", `"-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?`)
}

func (c *compiler) boolean() string { return c.helper("boolean", `"true" | "false"`) }

func (c *compiler) null() string { return c.helper("null", `"null"`) }

func (c *compiler) date() string {
	return c.helper("date", `[0-9]{4} "-" ( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] ) | ( "0" [469] | "11" ) "-" ( "0" [1-9] | [12] [0-9] | "30" ) | "02-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) )`)
}

func (c *compiler) dateTime() string {
	d := c.date()
	return c.helper("date-time", d+` "T" ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,9} )? ( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )`)
}

func (c *compiler) uuid() string {
	return c.helper("uuid", `[0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12}`)
}

// anyValue returns the rule of any JSON value nested at most MaxDepth deep.
func (c *compiler) anyValue() string { return c.anyLevel(0) }

// anyObject returns the rule of any JSON object nested at most MaxDepth deep.
func (c *compiler) anyObject() string { c.anyLevel(0); return "object-0" }

// anyLevel defines value-d, object-d and array-d for d..MaxDepth.
func (c *compiler) anyLevel(d int) string {
	name := "value-" + strconv.Itoa(d)
	if c.names[name] {
		return name
	}
	scalars := c.str(0, c.o.MaxStringLen) + " | " + c.number() + " | " + c.boolean() + " | " + c.null()
	if d >= c.o.MaxDepth {
		return c.helper(name, scalars)
	}
	c.names[name] = true
	idx := len(c.rules)
	c.rules = append(c.rules, rule{name, ""})
	inner := c.anyLevel(d + 1)
	ws, s := c.ws(), c.str(0, c.o.MaxStringLen)
	sd := strconv.Itoa(d)
	n := c.o.MaxItems - 1
	member := s + " " + ws + ` ":" ` + ws + " " + inner + " " + ws
	more := ""
	if n > 0 {
		more = " " + repeat(`( "," `+ws+" "+member+" )", 0, n)
	}
	c.helper("object-"+sd, `"{" `+ws+" ( "+member+more+` )? "}"`)
	elem := inner + " " + ws
	more = ""
	if n > 0 {
		more = " " + repeat(`( "," `+ws+" "+elem+" )", 0, n)
	}
	c.helper("array-"+sd, `"[" `+ws+" ( "+elem+more+` )? "]"`)
	c.rules[idx].body = "object-" + sd + " | array-" + sd + " | " + scalars
	return name
}

// literal renders s as a GBNF string literal.
func literal(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatInt(int64(r)>>4, 16))
			b.WriteString(strconv.FormatInt(int64(r)&15, 16))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// annotations are keywords that do not affect validation.
var annotations = map[string]bool{
	"title": true, "description": true, "default": true, "examples": true,
	"$schema": true, "$comment": true, "$defs": true, "definitions": true,
	"readOnly": true, "writeOnly": true, "deprecated": true, "$id": true,
}

// keywords are the validation keywords FromSchema understands.
var keywords = map[string]bool{
	"type": true, "enum": true, "const": true, "anyOf": true, "oneOf": true, "$ref": true,
	"properties": true, "required": true, "additionalProperties": true,
	"items": true, "minItems": true, "maxItems": true,
	"minLength": true, "maxLength": true, "format": true,
}

var typeNames = []string{"object", "array", "string", "integer", "number", "boolean", "null"}

// ref compiles the schema $ref points at (once) and returns its rule name.
// unguarded holds the $refs entered since the last object or array, to
// reject left recursion, which llama.cpp cannot parse.
func (c *compiler) ref(ref, path string, depth int, unguarded map[string]bool) (string, error) {
	if unguarded[ref] {
		return "", schemaErr(path, "circular $ref without an object or array in between")
	}
	if name, ok := c.defs[ref]; ok {
		if c.inProg[ref] && unguarded[ref] {
			return "", schemaErr(path, "circular $ref without an object or array in between")
		}
		return name, nil
	}
	var target *value
	var tpath, name string
	if ref == "#" {
		target, tpath, name = c.root, "", c.rootName
	} else {
		var rest, container string
		switch {
		case strings.HasPrefix(ref, "#/$defs/"):
			container, rest = "$defs", ref[len("#/$defs/"):]
		case strings.HasPrefix(ref, "#/definitions/"):
			container, rest = "definitions", ref[len("#/definitions/"):]
		default:
			return "", schemaErr(path, "unsupported $ref "+strconv.Quote(ref)+": only \"#\", \"#/$defs/NAME\" and \"#/definitions/NAME\"")
		}
		key, ok := unescapePointer(rest)
		if !ok || strings.Contains(rest, "/") {
			return "", schemaErr(path, "unsupported $ref "+strconv.Quote(ref))
		}
		target = c.root.get(container).get(key)
		if target == nil {
			return "", schemaErr(path, "$ref "+strconv.Quote(ref)+" not found")
		}
		tpath = "/" + container + "/" + escapePointer(key)
		name = c.reserve("def-" + key)
	}
	c.defs[ref] = name
	c.inProg[ref] = true
	ung := make(map[string]bool, len(unguarded)+1)
	for k := range unguarded {
		ung[k] = true
	}
	ung[ref] = true
	idx := len(c.rules)
	if err := c.add(tpath, name, ""); err != nil {
		return "", err
	}
	body, err := c.compile(target, tpath, depth, ung)
	if err != nil {
		return "", err
	}
	c.rules[idx].body = body
	delete(c.inProg, ref)
	return name, nil
}

// compile returns a GBNF expression for schema v at path.
func (c *compiler) compile(v *value, path string, depth int, ung map[string]bool) (string, error) {
	if depth > c.o.MaxDepth {
		return "", schemaErr(path, "schema nested deeper than MaxDepth ("+strconv.Itoa(c.o.MaxDepth)+")")
	}
	switch v.kind {
	case 'b':
		if !v.b {
			return "", schemaErr(path, "schema false matches nothing")
		}
		return c.anyValue(), nil
	case '{':
	default:
		return "", schemaErr(path, "schema must be an object or a boolean")
	}
	var validation []string // validation keywords present
	for _, k := range v.keys {
		switch {
		case annotations[k]:
		case keywords[k]:
			if c.o.Lenient && k == "additionalProperties" {
				continue
			}
			validation = append(validation, k)
		case c.o.Lenient:
		default:
			return "", schemaErr(path+"/"+escapePointer(k), "unsupported keyword "+strconv.Quote(k))
		}
	}
	has := func(k string) bool { return v.get(k) != nil }
	alone := func(k string) error { // k must be the only validation keyword
		for _, o := range validation {
			if o != k {
				return schemaErr(path+"/"+escapePointer(o), strconv.Quote(o)+" alongside "+strconv.Quote(k)+" is unsupported")
			}
		}
		return nil
	}

	if r := v.get("$ref"); r != nil {
		if err := alone("$ref"); err != nil {
			return "", err
		}
		if r.kind != 's' {
			return "", schemaErr(path+"/$ref", "$ref must be a string")
		}
		return c.ref(r.s, path+"/$ref", depth+1, ung)
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		a := v.get(kw)
		if a == nil {
			continue
		}
		if err := alone(kw); err != nil {
			return "", err
		}
		if a.kind != '[' || len(a.items) == 0 {
			return "", schemaErr(path+"/"+kw, kw+" must be a non-empty array of schemas")
		}
		alts := make([]string, 0, len(a.items))
		for i, s := range a.items {
			e, err := c.compile(s, path+"/"+kw+"/"+strconv.Itoa(i), depth+1, ung)
			if err != nil {
				return "", err
			}
			alts = append(alts, e)
		}
		return "( " + strings.Join(alts, " | ") + " )", nil
	}

	// types
	var types []string
	if t := v.get("type"); t != nil {
		tpath := path + "/type"
		var list []*value
		switch t.kind {
		case 's':
			list = []*value{t}
		case '[':
			list = t.items
		default:
			return "", schemaErr(tpath, "type must be a string or an array of strings")
		}
		if len(list) == 0 {
			return "", schemaErr(tpath, "type must not be empty")
		}
		seen := map[string]bool{}
		for i, e := range list {
			if e.kind != 's' || !contains(typeNames, e.s) {
				p := tpath
				if t.kind == '[' {
					p += "/" + strconv.Itoa(i)
				}
				return "", schemaErr(p, "unknown type")
			}
			if !seen[e.s] {
				seen[e.s] = true
				types = append(types, e.s)
			}
		}
	}

	if has("enum") || has("const") {
		return c.enum(v, path, types, validation)
	}

	if types == nil {
		switch {
		case has("properties") || has("required") || has("additionalProperties"):
			types = []string{"object"}
		case has("items") || has("minItems") || has("maxItems"):
			types = []string{"array"}
		case has("minLength") || has("maxLength") || has("format"):
			types = []string{"string"}
		default:
			return c.anyValue(), nil
		}
	}
	alts := make([]string, 0, len(types))
	for _, t := range types {
		var e string
		var err error
		switch t {
		case "object":
			e, err = c.object(v, path, depth)
		case "array":
			e, err = c.array(v, path, depth)
		case "string":
			e, err = c.stringType(v, path)
		case "integer":
			e = c.integer()
		case "number":
			e = c.number()
		case "boolean":
			e = c.boolean()
		case "null":
			e = c.null()
		}
		if err != nil {
			return "", err
		}
		alts = append(alts, e)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return "( " + strings.Join(alts, " | ") + " )", nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// enum compiles enum and const (intersected), filtered by types.
func (c *compiler) enum(v *value, path string, types, validation []string) (string, error) {
	for _, k := range validation {
		if k != "enum" && k != "const" && k != "type" {
			return "", schemaErr(path+"/"+escapePointer(k), strconv.Quote(k)+" alongside enum or const is unsupported")
		}
	}
	var vals []*value
	if e := v.get("enum"); e != nil {
		if e.kind != '[' || len(e.items) == 0 {
			return "", schemaErr(path+"/enum", "enum must be a non-empty array")
		}
		vals = e.items
	}
	if k := v.get("const"); k != nil {
		if vals == nil {
			vals = []*value{k}
		} else {
			want := string(k.appendJSON(nil))
			var keep []*value
			for _, x := range vals {
				if string(x.appendJSON(nil)) == want {
					keep = append(keep, x)
				}
			}
			vals = keep
		}
	}
	seen := map[string]bool{}
	var alts []string
	for _, x := range vals {
		if types != nil && !hasType(x, types) {
			continue
		}
		lit := literal(string(x.appendJSON(nil)))
		if !seen[lit] {
			seen[lit] = true
			alts = append(alts, lit)
		}
	}
	if len(alts) == 0 {
		return "", schemaErr(path, "no enum or const value matches the schema")
	}
	sort.Strings(alts) // deterministic and independent of duplicates
	if len(alts) == 1 {
		return alts[0], nil
	}
	return "( " + strings.Join(alts, " | ") + " )", nil
}

// hasType reports whether x is an instance of one of types.
func hasType(x *value, types []string) bool {
	for _, t := range types {
		switch {
		case t == "object" && x.kind == '{', t == "array" && x.kind == '[',
			t == "string" && x.kind == 's', t == "boolean" && x.kind == 'b',
			t == "null" && x.kind == '0', t == "number" && x.kind == 'n':
			return true
		case t == "integer" && x.kind == 'n':
			f, err := strconv.ParseFloat(x.s, 64)
			if err == nil && f == math.Trunc(f) && !strings.ContainsAny(x.s, ".eE") {
				return true
			}
		}
	}
	return false
}

// count reads a non-negative integer keyword; ok is false when absent.
func count(v *value, path, k string) (n int, ok bool, err error) {
	x := v.get(k)
	if x == nil {
		return 0, false, nil
	}
	if x.kind != 'n' {
		return 0, false, schemaErr(path+"/"+k, k+" must be a non-negative integer")
	}
	n64, perr := strconv.ParseInt(x.s, 10, 64)
	if perr != nil || n64 < 0 {
		return 0, false, schemaErr(path+"/"+k, k+" must be a non-negative integer")
	}
	if n64 > math.MaxInt32 {
		n64 = math.MaxInt32
	}
	return int(n64), true, nil
}

func (c *compiler) stringType(v *value, path string) (string, error) {
	minL, _, err := count(v, path, "minLength")
	if err != nil {
		return "", err
	}
	maxL, hasMax, err := count(v, path, "maxLength")
	if err != nil {
		return "", err
	}
	if f := v.get("format"); f != nil {
		if f.kind != 's' {
			return "", schemaErr(path+"/format", "format must be a string")
		}
		if v.get("minLength") != nil || hasMax {
			return "", schemaErr(path+"/format", "format alongside minLength or maxLength is unsupported")
		}
		switch f.s {
		case "date":
			return `"\"" ` + c.date() + ` "\""`, nil
		case "date-time":
			return `"\"" ` + c.dateTime() + ` "\""`, nil
		case "uuid":
			return `"\"" ` + c.uuid() + ` "\""`, nil
		}
		if !c.o.Lenient {
			return "", schemaErr(path+"/format", "unsupported format "+strconv.Quote(f.s))
		}
	}
	if !hasMax || (c.o.MaxStringLen >= 0 && maxL > c.o.MaxStringLen) {
		maxL = c.o.MaxStringLen
	}
	if maxL >= 0 && minL > maxL {
		p := path + "/minLength"
		return "", schemaErr(p, "minLength exceeds maxLength (or MaxStringLen "+strconv.Itoa(c.o.MaxStringLen)+")")
	}
	return c.str(minL, maxL), nil
}

func (c *compiler) array(v *value, path string, depth int) (string, error) {
	minI, _, err := count(v, path, "minItems")
	if err != nil {
		return "", err
	}
	maxI, hasMax, err := count(v, path, "maxItems")
	if err != nil {
		return "", err
	}
	if !hasMax {
		maxI = c.o.MaxItems
	}
	if maxI > hardMaxItems {
		maxI = hardMaxItems
	}
	var item string
	if it := v.get("items"); it == nil {
		item = c.anyValue()
	} else if it.kind == 'b' && !it.b {
		maxI = 0
	} else if it.kind != '{' && it.kind != 'b' {
		return "", schemaErr(path+"/items", "items must be a schema (tuple form is unsupported)")
	} else if item, err = c.compile(it, path+"/items", depth+1, map[string]bool{}); err != nil {
		return "", err
	}
	if minI > maxI {
		return "", schemaErr(path+"/minItems", "minItems exceeds maxItems (or the item limit)")
	}
	ws := c.ws()
	var body string
	switch {
	case maxI == 0:
		body = `"[" ` + ws + ` "]"`
	default:
		elem := item + " " + ws
		more := ""
		if maxI > 1 {
			more = " " + repeat(`( "," `+ws+" "+elem+" )", max(minI-1, 0), maxI-1)
		}
		if minI == 0 {
			body = `"[" ` + ws + " ( " + elem + more + ` )? "]"`
		} else {
			body = `"[" ` + ws + " " + elem + more + ` "]"`
		}
	}
	name := c.reserve("p" + path)
	if err := c.add(path, name, body); err != nil {
		return "", err
	}
	return name, nil
}

func (c *compiler) object(v *value, path string, depth int) (string, error) {
	if ap := v.get("additionalProperties"); ap != nil && !(ap.kind == 'b' && !ap.b) && !c.o.Lenient {
		return "", schemaErr(path+"/additionalProperties", "additionalProperties other than false is unsupported")
	}
	props := v.get("properties")
	if props != nil && props.kind != '{' {
		return "", schemaErr(path+"/properties", "properties must be an object")
	}
	req := map[string]bool{}
	if r := v.get("required"); r != nil {
		if r.kind != '[' {
			return "", schemaErr(path+"/required", "required must be an array of strings")
		}
		for i, x := range r.items {
			p := path + "/required/" + strconv.Itoa(i)
			if x.kind != 's' {
				return "", schemaErr(p, "required must be an array of strings")
			}
			if props.get(x.s) == nil {
				return "", schemaErr(p, "required property "+strconv.Quote(x.s)+" is not in properties")
			}
			req[x.s] = true
		}
	}
	name := c.reserve("p" + path)
	idx := len(c.rules)
	if err := c.add(path, name, ""); err != nil {
		return "", err
	}
	ws := c.ws()
	var kvs []string
	var keys []string
	if props != nil {
		for i, k := range props.keys {
			e, err := c.compile(props.vals[i], path+"/properties/"+escapePointer(k), depth+1, map[string]bool{})
			if err != nil {
				return "", err
			}
			kvs = append(kvs, literal(string(appendJSONString(nil, k)))+" "+ws+` ":" `+ws+" "+e+" "+ws)
			keys = append(keys, k)
		}
	}
	// rest(i): members i.. once one member was written (each needs a comma).
	rest := func(i int) string {
		var parts []string
		for j := i; j < len(kvs); j++ {
			m := `"," ` + ws + " " + kvs[j]
			if req[keys[j]] {
				parts = append(parts, m)
			} else {
				parts = append(parts, "( "+m+" )?")
			}
		}
		return strings.Join(parts, " ")
	}
	// first(i): members i.. when none was written yet.
	var first func(i int) string
	first = func(i int) string {
		if i == len(kvs) {
			return ""
		}
		s := strings.TrimSpace(kvs[i] + " " + rest(i+1))
		if req[keys[i]] {
			return s
		}
		if f := first(i + 1); f != "" {
			return "( " + s + " | " + f + " )"
		}
		return "( " + s + " )?"
	}
	members := first(0)
	body := `"{" ` + ws + " " + members + ` "}"`
	if members == "" {
		body = `"{" ` + ws + ` "}"`
	}
	c.rules[idx].body = body
	return name, nil
}
