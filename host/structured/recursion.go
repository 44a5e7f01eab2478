package structured

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Checking a document against a schema whose applicators (allOf, anyOf,
// oneOf) have two or more branches that each recurse into the schema costs
// time exponential in the document's nesting: every level checks the level
// below once per branch. A client could send such a schema and let the
// model nest deeply. So a schema is refused when one applicator has two
// branches that reach a recursive definition, when it uses the dynamic
// references the analysis cannot follow, and documents nested deeper than
// maxCheckDepth are refused before any check: with at most one recursive
// branch per level, a check is linear in the document.

// maxCheckDepth bounds the nesting of a document Check validates.
const maxCheckDepth = 64

// recursionRisk returns the JSON pointer and reason of the first part of
// schema that would make checking exponential, or "" and "" when there is
// none. schema must be valid JSON.
func recursionRisk(schema []byte) (pointer, reason string) {
	var root any
	if json.Unmarshal(schema, &root) != nil {
		return "", ""
	}
	// The definitions a $ref may name: "#", "#/$defs/X", "#/definitions/X".
	defs := map[string]any{"#": root}
	if m, ok := root.(map[string]any); ok {
		for _, c := range []string{"$defs", "definitions"} {
			if d, ok := m[c].(map[string]any); ok {
				for k, v := range d {
					defs["#/"+c+"/"+escapePointerToken(k)] = v
				}
			}
		}
	}
	// refsOf: the $refs inside a definition (not inside the root's
	// definitions, which are definitions of their own).
	refsOf := map[string][]string{}
	for name, node := range defs {
		refsOf[name] = collectRefs(node, name == "#")
	}
	// recursive: the definitions that can reach themselves.
	recursive := map[string]bool{}
	for name := range defs {
		seen := map[string]bool{}
		stack := append([]string(nil), refsOf[name]...)
		for len(stack) > 0 {
			r := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if r == name {
				recursive[name] = true
				break
			}
			if seen[r] {
				continue
			}
			seen[r] = true
			stack = append(stack, refsOf[r]...)
		}
	}
	if p, why := scanApplicators(root, "", recursive); why != "" {
		return p, why
	}
	return "", ""
}

// collectRefs returns the $ref values in node; root skips its $defs and
// definitions.
func collectRefs(node any, root bool) []string {
	var out []string
	var walk func(v any, top bool)
	walk = func(v any, top bool) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if top && (k == "$defs" || k == "definitions") {
					continue
				}
				if k == "$ref" {
					if s, ok := c.(string); ok {
						out = append(out, s)
					}
					continue
				}
				walk(c, false)
			}
		case []any:
			for _, c := range x {
				walk(c, false)
			}
		}
	}
	walk(node, root)
	return out
}

// scanApplicators finds an applicator with two branches that reach a
// recursive definition, or a dynamic reference.
func scanApplicators(v any, path string, recursive map[string]bool) (string, string) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range []string{"$dynamicRef", "$recursiveRef"} {
			if _, ok := x[k]; ok {
				return path + "/" + k, "unsupported keyword " + strconv.Quote(k)
			}
		}
		// Every in-place applicator checks this same instance: together
		// they may recurse once.
		n, where := 0, ""
		count := func(k string, sub any) {
			if reachesRecursion(sub, recursive) {
				n++
				if where == "" || n == 2 {
					where = k
				}
			}
		}
		if r, ok := x["$ref"].(string); ok && recursive[r] {
			n, where = 1, "$ref"
		}
		for _, k := range []string{"allOf", "anyOf", "oneOf"} {
			if arr, ok := x[k].([]any); ok {
				for _, b := range arr {
					count(k, b)
				}
			}
		}
		for _, k := range []string{"not", "if", "then", "else"} {
			if sub, ok := x[k]; ok {
				count(k, sub)
			}
		}
		if ds, ok := x["dependentSchemas"].(map[string]any); ok {
			for _, sub := range ds {
				count("dependentSchemas", sub)
			}
		}
		if n >= 2 {
			return path + "/" + where, "more than one part of the schema applied to the same value recurses into the schema (" + where + "), which makes checking answers exponential"
		}
		for k, c := range x {
			if p, why := scanApplicators(c, path+"/"+escapePointerToken(k), recursive); why != "" {
				return p, why
			}
		}
	case []any:
		for i, c := range x {
			if p, why := scanApplicators(c, path+"/"+strconv.Itoa(i), recursive); why != "" {
				return p, why
			}
		}
	}
	return "", ""
}

// reachesRecursion reports whether a $ref inside v names a recursive
// definition.
func reachesRecursion(v any, recursive map[string]bool) bool {
	for _, r := range collectRefs(v, false) {
		if recursive[r] {
			return true
		}
	}
	return false
}

func escapePointerToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// depthOver reports whether the JSON document nests objects and arrays
// deeper than limit (strings are skipped whole).
func depthOver(doc string, limit int) bool {
	depth, inStr, esc := 0, false, false
	for i := 0; i < len(doc); i++ {
		c := doc[i]
		switch {
		case inStr:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
			if depth > limit {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}
