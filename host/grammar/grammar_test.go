package grammar

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hybridgroup/yzma/pkg/llama"
	"github.com/mdsa-go/mdsa/internal/gguf"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// ---- a small GBNF matcher for the subset this package emits ----

type gkind int

const (
	gSeq gkind = iota
	gAlt
	gLit
	gClass
	gRef
	gRep
)

type gnode struct {
	kind     gkind
	kids     []*gnode
	lit      []rune
	ranges   [][2]rune
	neg      bool
	name     string
	min, max int // max -1: unbounded
}

type gbnf struct {
	rules map[string]*gnode
	order []string
}

type gparser struct {
	s   []rune
	pos int
}

func (p *gparser) skip() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

func (p *gparser) errf(msg string) error {
	return errors.New(msg + " at " + strconv.Itoa(p.pos) + " in " + string(p.s))
}

func (p *gparser) char() (rune, error) {
	if p.pos >= len(p.s) {
		return 0, p.errf("unexpected end")
	}
	r := p.s[p.pos]
	p.pos++
	if r != '\\' {
		return r, nil
	}
	if p.pos >= len(p.s) {
		return 0, p.errf("dangling escape")
	}
	e := p.s[p.pos]
	p.pos++
	hex := func(n int) (rune, error) {
		if p.pos+n > len(p.s) {
			return 0, p.errf("short hex escape")
		}
		v, err := strconv.ParseUint(string(p.s[p.pos:p.pos+n]), 16, 32)
		p.pos += n
		return rune(v), err
	}
	switch e {
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case '\\', '"', '[', ']':
		return e, nil
	case 'x':
		return hex(2)
	case 'u':
		return hex(4)
	}
	return 0, p.errf("bad escape")
}

func (p *gparser) alt() (*gnode, error) {
	n := &gnode{kind: gAlt}
	for {
		s, err := p.seq()
		if err != nil {
			return nil, err
		}
		n.kids = append(n.kids, s)
		p.skip()
		if p.pos < len(p.s) && p.s[p.pos] == '|' {
			p.pos++
			continue
		}
		return n, nil
	}
}

func isName(r rune) bool { return r == '-' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') }

func (p *gparser) seq() (*gnode, error) {
	n := &gnode{kind: gSeq}
	for {
		p.skip()
		if p.pos >= len(p.s) || p.s[p.pos] == '|' || p.s[p.pos] == ')' {
			return n, nil
		}
		var a *gnode
		switch r := p.s[p.pos]; {
		case r == '"':
			p.pos++
			a = &gnode{kind: gLit}
			for {
				if p.pos >= len(p.s) {
					return nil, p.errf("unterminated literal")
				}
				if p.s[p.pos] == '"' {
					p.pos++
					break
				}
				c, err := p.char()
				if err != nil {
					return nil, err
				}
				a.lit = append(a.lit, c)
			}
		case r == '[':
			p.pos++
			a = &gnode{kind: gClass}
			if p.pos < len(p.s) && p.s[p.pos] == '^' {
				a.neg = true
				p.pos++
			}
			for {
				if p.pos >= len(p.s) {
					return nil, p.errf("unterminated class")
				}
				if p.s[p.pos] == ']' {
					p.pos++
					break
				}
				lo, err := p.char()
				if err != nil {
					return nil, err
				}
				hi := lo
				if p.pos+1 < len(p.s) && p.s[p.pos] == '-' && p.s[p.pos+1] != ']' {
					p.pos++
					if hi, err = p.char(); err != nil {
						return nil, err
					}
				}
				a.ranges = append(a.ranges, [2]rune{lo, hi})
			}
		case r == '(':
			p.pos++
			var err error
			if a, err = p.alt(); err != nil {
				return nil, err
			}
			if p.pos >= len(p.s) || p.s[p.pos] != ')' {
				return nil, p.errf("missing )")
			}
			p.pos++
		case isName(r):
			st := p.pos
			for p.pos < len(p.s) && isName(p.s[p.pos]) {
				p.pos++
			}
			a = &gnode{kind: gRef, name: string(p.s[st:p.pos])}
		default:
			return nil, p.errf("unexpected character")
		}
		for p.pos < len(p.s) {
			mn, mx := -2, -2
			switch p.s[p.pos] {
			case '?':
				mn, mx = 0, 1
			case '*':
				mn, mx = 0, -1
			case '+':
				mn, mx = 1, -1
			case '{':
				end := strings.IndexRune(string(p.s[p.pos:]), '}')
				if end < 0 {
					return nil, p.errf("unterminated {")
				}
				body := string(p.s[p.pos+1 : p.pos+end])
				lo, hi, comma := strings.Cut(body, ",")
				var err error
				if mn, err = strconv.Atoi(lo); err != nil {
					return nil, p.errf("bad repetition")
				}
				mx = mn
				if comma {
					mx = -1
					if hi != "" {
						if mx, err = strconv.Atoi(hi); err != nil || mx < mn {
							return nil, p.errf("bad repetition")
						}
					}
				}
				p.pos += end
			}
			if mn == -2 {
				break
			}
			p.pos++
			a = &gnode{kind: gRep, kids: []*gnode{a}, min: mn, max: mx}
		}
		n.kids = append(n.kids, a)
	}
}

// parseGBNF parses a grammar of one rule per line and checks that every
// referenced rule is defined.
func parseGBNF(src string) (*gbnf, error) {
	g := &gbnf{rules: map[string]*gnode{}}
	for _, line := range strings.Split(src, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, body, ok := strings.Cut(line, " ::= ")
		if !ok || name == "" || strings.IndexFunc(name, func(r rune) bool { return !isName(r) }) >= 0 {
			return nil, errors.New("bad rule line: " + line)
		}
		if g.rules[name] != nil {
			return nil, errors.New("duplicate rule " + name)
		}
		p := &gparser{s: []rune(body)}
		n, err := p.alt()
		if err != nil {
			return nil, err
		}
		if p.pos != len(p.s) {
			return nil, p.errf("trailing text")
		}
		g.rules[name] = n
		g.order = append(g.order, name)
	}
	var check func(n *gnode) error
	check = func(n *gnode) error {
		if n.kind == gRef && g.rules[n.name] == nil {
			return errors.New("undefined rule " + n.name)
		}
		for _, k := range n.kids {
			if err := check(k); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range g.rules {
		if err := check(n); err != nil {
			return nil, err
		}
	}
	if g.rules["root"] == nil {
		return nil, errors.New("no root rule")
	}
	return g, nil
}

type matcher struct {
	g    *gbnf
	in   []rune
	memo map[string][]int
}

func union(a, b []int) []int {
	seen := map[int]bool{}
	var out []int
	for _, x := range append(append([]int{}, a...), b...) {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func (m *matcher) match(n *gnode, pos int) []int {
	switch n.kind {
	case gLit:
		if pos+len(n.lit) > len(m.in) || string(m.in[pos:pos+len(n.lit)]) != string(n.lit) {
			return nil
		}
		return []int{pos + len(n.lit)}
	case gClass:
		if pos >= len(m.in) {
			return nil
		}
		in := false
		for _, r := range n.ranges {
			if m.in[pos] >= r[0] && m.in[pos] <= r[1] {
				in = true
			}
		}
		if in != n.neg {
			return []int{pos + 1}
		}
		return nil
	case gRef:
		key := n.name + "@" + strconv.Itoa(pos)
		if r, ok := m.memo[key]; ok {
			return r
		}
		r := m.match(m.g.rules[n.name], pos)
		m.memo[key] = r
		return r
	case gAlt:
		var out []int
		for _, k := range n.kids {
			out = union(out, m.match(k, pos))
		}
		return out
	case gSeq:
		cur := []int{pos}
		for _, k := range n.kids {
			var next []int
			for _, p := range cur {
				next = union(next, m.match(k, p))
			}
			cur = next
			if len(cur) == 0 {
				return nil
			}
		}
		return cur
	case gRep:
		cur := []int{pos}
		var out []int
		seen := map[int]bool{}
		for i := 0; n.max < 0 || i <= n.max; i++ {
			if i >= n.min {
				out = union(out, cur)
			}
			if n.max >= 0 && i == n.max {
				break
			}
			var next []int
			for _, p := range cur {
				next = union(next, m.match(n.kids[0], p))
			}
			if i >= n.min { // past the minimum only new positions matter
				var fresh []int
				for _, p := range next {
					if !seen[p] {
						seen[p] = true
						fresh = append(fresh, p)
					}
				}
				next = fresh
			}
			if len(next) == 0 {
				break
			}
			cur = next
		}
		return out
	}
	return nil
}

func accepts(t *testing.T, g *gbnf, doc string) bool {
	t.Helper()
	m := &matcher{g: g, in: []rune(doc), memo: map[string][]int{}}
	for _, p := range m.match(g.rules["root"], 0) {
		if p == len(m.in) {
			return true
		}
	}
	return false
}

// ---- schema cases ----

type schemaCase struct {
	name    string
	schema  string
	opts    Options
	valid   []string
	invalid []string
}

var cases = []schemaCase{
	{name: "person", schema: `{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}`,
		valid:   []string{`{"name":"Ann","age":30}`, "{ \"name\": \"A\\\"n\\u00e9\", \"age\": -4 }", "{\n\"name\":\"\",\"age\":0}"},
		invalid: []string{`{"name":"Ann"}`, `{"age":30,"name":"Ann"}`, `{"name":"Ann","age":"30"}`, `{"name":"Ann","age":30,"x":1}`, `{"name":"Ann","age":3.5}`, `{"name":"Ann","age":30}  `, `{"name":"Ann","age":030}`, "{\"name\":\"a\nb\",\"age\":1}"}},
	{name: "optional", schema: `{"type":"object","properties":{"a":{"type":"boolean"},"b":{"type":"null"},"c":{"type":"number"}},"required":["b"]}`,
		valid:   []string{`{"b":null}`, `{"a":true,"b":null}`, `{"b":null,"c":1.5e3}`, `{"a":false,"b":null,"c":-0.25}`},
		invalid: []string{`{}`, `{"a":true}`, `{"a":true,"c":1}`, `{"b":null,"a":true}`, `{"b":null,}`, `{,"b":null}`}},
	{name: "all-optional", schema: `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}}}`,
		valid:   []string{`{}`, `{"a":1}`, `{"b":2}`, `{"a":1,"b":2}`},
		invalid: []string{`{"b":2,"a":1}`, `{"a":1,}`, `{"c":1}`, `[]`}},
	{name: "empty-object", schema: `{"type":"object"}`, valid: []string{`{}`, `{ }`}, invalid: []string{`{"a":1}`, `{  }`}},
	{name: "string-bounds", schema: `{"type":"string","minLength":2,"maxLength":4}`,
		valid: []string{`"ab"`, `"abcd"`, `"a\nc"`, `"é√x"`}, invalid: []string{`"a"`, `"abcde"`, `12`, `"ab`}},
	{name: "max-string-len", schema: `{"type":"string"}`, opts: Options{MaxStringLen: 3},
		valid: []string{`""`, `"abc"`}, invalid: []string{`"abcd"`}},
	{name: "unbounded-string", schema: `{"type":"object","properties":{"a":{"type":"string","minLength":1},"b":{"type":"string"},"c":{"type":"string","maxLength":2}},"required":["a","b","c"]}`, opts: Options{MaxStringLen: -1},
		valid: []string{`{"a":"` + strings.Repeat("x", 600) + `","b":"","c":"ab"}`}, invalid: []string{`{"a":"","b":"","c":""}`, `{"a":"x","b":"","c":"abc"}`}},
	{name: "enum", schema: `{"enum":["red","green",3,null,true]}`,
		valid: []string{`"red"`, `"green"`, `3`, `null`, `true`}, invalid: []string{`"blue"`, `false`, `4`, `"Red"`}},
	{name: "enum-typed", schema: `{"type":"string","enum":["a","b",1]}`,
		valid: []string{`"a"`, `"b"`}, invalid: []string{`1`, `"c"`}},
	{name: "const", schema: `{"const":"x\"y"}`, valid: []string{`"x\"y"`}, invalid: []string{`"xy"`}},
	{name: "const-object", schema: `{"const":{"k":[1,2]}}`, valid: []string{`{"k":[1,2]}`}, invalid: []string{`{"k":[2,1]}`}},
	{name: "nullable", schema: `{"type":["string","null"],"maxLength":2}`,
		valid: []string{`null`, `"ab"`}, invalid: []string{`"abc"`, `0`}},
	{name: "array", schema: `{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3}`,
		valid: []string{`[1]`, `[1, 2,3]`, "[\n1,\n2\n]"}, invalid: []string{`[]`, `[1,2,3,4]`, `[1,]`, `["1"]`}},
	{name: "array-default-max", schema: `{"type":"array","items":{"type":"boolean"}}`, opts: Options{MaxItems: 2},
		valid: []string{`[]`, `[true]`, `[true,false]`}, invalid: []string{`[true,true,true]`}},
	{name: "array-any", schema: `{"type":"array"}`,
		valid: []string{`[]`, `[1,"a",{"b":[null]}]`}, invalid: []string{`[`, `{}`}},
	{name: "anyOf", schema: `{"anyOf":[{"type":"integer"},{"type":"object","properties":{"x":{"type":"string"}},"required":["x"],"additionalProperties":false}]}`,
		valid: []string{`5`, `{"x":"y"}`}, invalid: []string{`"5"`, `{}`}},
	{name: "oneOf", schema: `{"oneOf":[{"type":"boolean"},{"type":"null"}]}`, valid: []string{`true`, `null`}, invalid: []string{`1`}},
	{name: "defs", schema: `{"$defs":{"pt":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"}},"required":["x","y"],"additionalProperties":false}},"type":"object","properties":{"a":{"$ref":"#/$defs/pt"},"b":{"$ref":"#/$defs/pt"}},"required":["a","b"],"additionalProperties":false}`,
		valid: []string{`{"a":{"x":1,"y":2},"b":{"x":0,"y":-1.5}}`}, invalid: []string{`{"a":{"x":1},"b":{"x":0,"y":1}}`}},
	{name: "recursive", schema: `{"definitions":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/definitions/node"}}},"required":["v"],"additionalProperties":false}},"$ref":"#/definitions/node"}`,
		valid: []string{`{"v":1}`, `{"v":1,"kids":[{"v":2,"kids":[{"v":3}]},{"v":4}]}`}, invalid: []string{`{"v":1,"kids":[{}]}`, `{"kids":[]}`}},
	{name: "root-recursive", schema: `{"type":"object","properties":{"next":{"anyOf":[{"$ref":"#"},{"type":"null"}]}},"required":["next"],"additionalProperties":false}`,
		valid: []string{`{"next":null}`, `{"next":{"next":null}}`}, invalid: []string{`{"next":{}}`}},
	{name: "date", schema: `{"type":"object","properties":{"d":{"type":"string","format":"date"},"t":{"type":"string","format":"date-time"},"u":{"type":"string","format":"uuid"}},"required":["d","t","u"],"additionalProperties":false}`,
		valid:   []string{`{"d":"2024-02-28","t":"2024-12-31T23:59:59.123Z","u":"123e4567-e89b-12d3-a456-426614174000"}`, `{"d":"1999-04-30","t":"2024-01-01T00:00:00+05:30","u":"00000000-0000-0000-0000-000000000000"}`},
		invalid: []string{`{"d":"2024-02-30","t":"2024-12-31T23:59:59Z","u":"123e4567-e89b-12d3-a456-426614174000"}`, `{"d":"2024-04-31","t":"2024-12-31T23:59:59Z","u":"123e4567-e89b-12d3-a456-426614174000"}`, `{"d":"2024-01-01","t":"2024-12-31T24:00:00Z","u":"123e4567-e89b-12d3-a456-426614174000"}`, `{"d":"2024-01-01","t":"2024-12-31T23:00:00Z","u":"123e4567"}`}},
	{name: "escaped-key", schema: `{"type":"object","properties":{"a\"b/c~":{"type":"integer"}},"required":["a\"b/c~"],"additionalProperties":false}`,
		valid: []string{`{"a\"b/c~":1}`}, invalid: []string{`{"ab/c~":1}`}},
	{name: "any", schema: `{"description":"anything","title":"t","$schema":"https://json-schema.org/draft/2020-12/schema","default":1}`,
		valid: []string{`1`, `"s"`, `{"a":[1,{"b":null}]}`, `null`}, invalid: []string{`nul`, `{"a":}`}},
	{name: "strict-openai", schema: `{"type":"object","properties":{"steps":{"type":"array","items":{"type":"object","properties":{"explanation":{"type":"string"},"output":{"type":"string"}},"required":["explanation","output"],"additionalProperties":false}},"final_answer":{"type":"string"}},"required":["steps","final_answer"],"additionalProperties":false}`,
		valid: []string{`{"steps":[{"explanation":"e","output":"o"}],"final_answer":"42"}`, `{"steps":[],"final_answer":""}`}, invalid: []string{`{"steps":[{"explanation":"e"}],"final_answer":"42"}`}},
}

func compileCase(t *testing.T, c schemaCase) string {
	t.Helper()
	g, err := FromSchema([]byte(c.schema), c.opts)
	if err != nil {
		t.Fatalf("%s: FromSchema: %v", c.name, err)
	}
	return g
}

func TestFromSchemaMatches(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := compileCase(t, c)
			g, err := parseGBNF(src)
			if err != nil {
				t.Fatalf("parse grammar: %v\n%s", err, src)
			}
			for _, d := range c.valid {
				if !accepts(t, g, d) {
					t.Errorf("rejects valid %s\n%s", d, src)
				}
			}
			for _, d := range c.invalid {
				if accepts(t, g, d) {
					t.Errorf("accepts invalid %s\n%s", d, src)
				}
			}
		})
	}
}

func TestLenient(t *testing.T) {
	schema := `{"type":"object","properties":{"n":{"type":"number","minimum":0},"s":{"type":"string","pattern":"^a","format":"email"},"o":{"type":"object","additionalProperties":true}},"required":["n","s","o"],"additionalProperties":{"type":"integer"}}`
	if _, err := FromSchema([]byte(schema), Options{}); err == nil {
		t.Fatal("strict: unsupported keywords accepted")
	}
	src, err := FromSchema([]byte(schema), Options{Lenient: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseGBNF(src)
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	if !accepts(t, g, `{"n":-1,"s":"x","o":{}}`) {
		t.Errorf("lenient grammar rejects a document of the schema's shape\n%s", src)
	}
	for _, d := range []string{`{"n":1,"s":"x"}`, `{"n":1,"s":"x","o":{},"extra":1}`, `{"n":"1","s":"x","o":{}}`} {
		if accepts(t, g, d) {
			t.Errorf("lenient grammar accepts %s\n%s", d, src)
		}
	}
}

func TestCompose(t *testing.T) {
	a := `{"type":"object","properties":{"x":{"type":"integer"}},"required":["x"],"additionalProperties":false}`
	b := `{"$defs":{"v":{"type":"boolean"}},"type":"object","properties":{"y":{"$ref":"#/$defs/v"},"z":{"$ref":"#"}}}`
	src, err := Compose(`"A" ws tool-a | "B" ws tool-b | "C" tool-c | "D" tool-d`, []Named{{Rule: "tool-a", Schema: []byte(a)}, {Rule: "tool-b", Schema: []byte(b)},
		{Rule: "tool-c"}, {Rule: "tool-d", Schema: []byte(`{"type":"integer","minimum":1}`), Lenient: true}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseGBNF(src)
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	for _, d := range []string{`A{"x":1}`, `B {"y":true}`, `B{"z":{"z":{}}}`, `C{"any":[1,{"b":null}]}`, `D-5`} {
		if !accepts(t, g, d) {
			t.Errorf("rejects %s\n%s", d, src)
		}
	}
	for _, d := range []string{`A{"y":true}`, `B{"x":1}`, `B{"z":{"x":1}}`, `{"x":1}`, `C[]`, `D1.5`} {
		if accepts(t, g, d) {
			t.Errorf("accepts %s\n%s", d, src)
		}
	}
	composed = src
	_, err = Compose(`tool-a`, []Named{{Rule: "tool-a", Schema: []byte(a)}, {Rule: "tool-b", Schema: []byte(`{"type":"string","pattern":"x"}`)}}, Options{})
	var se *SchemaError
	if !errors.As(err, &se) || se.Path != "/1/pattern" {
		t.Fatalf("error %v, want a SchemaError at /1/pattern", err)
	}
	for _, bad := range []string{"root", "Tool", "", "ws"} {
		if _, err := Compose(`x`, []Named{{Rule: bad, Schema: []byte(a)}}, Options{}); err == nil {
			t.Errorf("rule name %q accepted", bad)
		}
	}
}

// composed is TestCompose's grammar, for TestLlamaParsesGrammars.
var composed string

func TestPropertyOrderKept(t *testing.T) {
	src, err := FromSchema([]byte(`{"type":"object","properties":{"zeta":{"type":"integer"},"alpha":{"type":"integer"}},"required":["zeta","alpha"],"additionalProperties":false}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Index(src, `zeta`) > strings.Index(src, `alpha`) {
		t.Fatalf("declared order lost:\n%s", src)
	}
}

func TestJSONObject(t *testing.T) {
	src := JSONObject(Options{MaxDepth: 2, MaxItems: 2, MaxStringLen: 4})
	g, err := parseGBNF(src)
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	for _, d := range []string{`{}`, `{"a":1}`, `{"a":[1,2],"c":"dddd"}`, `{"a":{"b":null}}`, "{ \"a\": true }"} {
		if !accepts(t, g, d) {
			t.Errorf("rejects %s\n%s", d, src)
		}
	}
	for _, d := range []string{`[]`, `1`, `{"a":1,"b":2,"c":3}`, `{"a":{"b":{"c":1}}}`, `{"a":"eeeee"}`, `{"a":1`, "{  }"} {
		if accepts(t, g, d) {
			t.Errorf("accepts %s\n%s", d, src)
		}
	}
	if _, err := parseGBNF(JSONObject(Options{})); err != nil {
		t.Fatal(err)
	}
}

func TestSchemaErrors(t *testing.T) {
	deep := `{"type":"integer"}`
	for range 10 {
		deep = `{"type":"array","items":` + deep + `}`
	}
	var many strings.Builder
	many.WriteString(`{"type":"object","properties":{`)
	for i := range 1100 {
		if i > 0 {
			many.WriteByte(',')
		}
		many.WriteString(`"p` + strconv.Itoa(i) + `":{"type":"object"}`)
	}
	many.WriteString(`}}`)
	big := `{"description":"` + strings.Repeat("x", 70000) + `"}`
	for _, c := range []struct{ schema, path string }{
		{`{"type":"string","pattern":"^a"}`, "/pattern"},
		{`{"type":"object","properties":{"age":{"type":"integer","minimum":0}}}`, "/properties/age/minimum"},
		{`{"type":"object","properties":{"age":{"type":"int"}}}`, "/properties/age/type"},
		{`{"type":["string","bogus"]}`, "/type/1"},
		{`{"type":"object","additionalProperties":true}`, "/additionalProperties"},
		{`{"type":"object","additionalProperties":{"type":"string"}}`, "/additionalProperties"},
		{`{"not":{"type":"string"}}`, "/not"},
		{`{"allOf":[{"type":"string"}]}`, "/allOf"},
		{`{"if":{},"then":{}}`, "/if"},
		{`{"type":"object","patternProperties":{}}`, "/patternProperties"},
		{`{"type":"string","format":"email"}`, "/format"},
		{`{"items":{"$ref":"#/$defs/missing"}}`, "/items/$ref"},
		{`{"$ref":"http://example.com/s.json"}`, "/$ref"},
		{`{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`, "/$defs/a/$ref"},
		{`{"anyOf":[{"$ref":"#"},{"type":"null"}]}`, "/anyOf/0/$ref"},
		{`{"type":"object","properties":{"a":{}},"required":["b"]}`, "/required/0"},
		{`{"type":"string","minLength":5,"maxLength":2}`, "/minLength"},
		{`{"type":"array","minItems":-1}`, "/minItems"},
		{`{"enum":[]}`, "/enum"},
		{`{"type":"string","enum":[1]}`, ""},
		{`{"type":"string","$ref":"#"}`, "/type"},
		{`{"type":"object","properties":{"a":false}}`, "/properties/a"},
		{`{"a":1,"a":2}`, "/a"},
		{`{"type":"string"} x`, ""},
		{`{"type":`, ""},
		{`[]`, ""},
		{deep, "/items/items/items/items/items/items/items/items/items"},
		{many.String(), ""},
		{big, ""},
	} {
		_, err := FromSchema([]byte(c.schema), Options{})
		var se *SchemaError
		if !errors.As(err, &se) {
			t.Errorf("%.80s: want *SchemaError, got %v", c.schema, err)
			continue
		}
		if c.path != "" && se.Path != c.path {
			t.Errorf("%.80s: path %q, want %q (%v)", c.schema, se.Path, c.path, se)
		}
		if se.Error() == "" {
			t.Error("empty message")
		}
	}
	// the rule limit names a path
	_, err := FromSchema([]byte(many.String()), Options{})
	if se := (*SchemaError)(nil); !errors.As(err, &se) || !strings.Contains(se.Msg, "1000") {
		t.Errorf("rule limit: %v", err)
	}
	if _, err := FromSchema([]byte(big), Options{}); err == nil || !strings.Contains(err.Error(), "64 KB") {
		t.Errorf("size limit: %v", err)
	}
	if _, err := FromSchema([]byte(deep), Options{MaxDepth: 20}); err != nil {
		t.Errorf("MaxDepth 20: %v", err)
	}
}

// ---- llama.cpp parses every grammar ----

var (
	llamaOnce sync.Once
	llamaErr  error
)

func TestLlamaParsesGrammars(t *testing.T) {
	dir := testutil.LlamaLibDir(t)
	llamaOnce.Do(func() {
		if llamaErr = llama.Load(dir); llamaErr != nil {
			return
		}
		if os.Getenv("MDSA_LLAMA_LOG") == "" {
			llama.LogSet(llama.LogSilent())
		}
		llama.Init()
	})
	if llamaErr != nil {
		t.Skipf("llama.cpp libraries not loadable: %v", llamaErr)
	}
	path := filepath.Join(t.TempDir(), "synth.gguf")
	if _, err := gguf.WriteSynth(path, gguf.SynthOptions{}); err != nil {
		t.Fatal(err)
	}
	model, err := llama.ModelLoadFromFile(path, llama.ModelDefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = llama.ModelFree(model) }()
	vocab := llama.ModelGetVocab(model)
	if vocab == 0 {
		t.Fatal("no vocab")
	}
	grammars := map[string]string{
		"json-object":       JSONObject(Options{}),
		"json-object-small": JSONObject(Options{MaxDepth: 1, MaxItems: 1, MaxStringLen: 1}),
	}
	for _, c := range cases {
		grammars[c.name] = compileCase(t, c)
	}
	if composed != "" {
		grammars["composed"] = composed
	}
	// a known-bad grammar must fail, proving the check can fail
	if s := llama.SamplerInitGrammar(vocab, `root ::= undefined-rule`, "root"); s != 0 {
		llama.SamplerFree(s)
		t.Fatal("llama.cpp accepted a grammar with an undefined rule")
	}
	for name, g := range grammars {
		s := llama.SamplerInitGrammar(vocab, g, "root")
		if s == 0 {
			t.Errorf("%s: llama.cpp rejects the grammar:\n%s", name, g)
			continue
		}
		llama.SamplerFree(s)
	}
}

// ---- fuzzing ----

func FuzzFromSchema(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c.schema))
	}
	f.Add([]byte(`{"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/b"}]},"b":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`))
	f.Add([]byte(`{"type":"array","items":{"type":"array","items":{"type":"array"}},"maxItems":1}`))
	f.Fuzz(func(t *testing.T, schema []byte) {
		g, err := FromSchema(schema, Options{MaxStringLen: 8, MaxItems: 4, MaxDepth: 4})
		if err != nil {
			var se *SchemaError
			if !errors.As(err, &se) {
				t.Fatalf("error is not a *SchemaError: %v", err)
			}
			return
		}
		if g == "" {
			t.Fatal("empty grammar")
		}
		if _, err := parseGBNF(g); err != nil {
			t.Fatalf("grammar does not parse: %v\n%s", err, g)
		}
	})
}
