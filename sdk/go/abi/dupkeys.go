package abi

import (
	"encoding/json"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// maxLinearKeys is how many keys an object's duplicate check compares one by
// one before it switches to a map.
const maxLinearKeys = 8

// keyFrame is one open object or array of the document being scanned.
type keyFrame struct {
	object    bool
	expectKey bool   // an object, before a key (after '{' or ',')
	path      string // JSON path of this value
	index     int    // arrays: the index of the element being scanned
	key       string // objects: the last key read
	keys      []string
	set       map[string]struct{}
}

// duplicateKey scans data, a syntactically valid JSON document, for an
// object that names one key twice, and returns the path of the second one.
// Keys count as the same when encoding/json would store them in the same
// field: after unescaping, compared without regard to case. (With
// duplicates allowed, a plugin could show one value to one reader of its
// JSON and another to the host, whose decoder keeps the last.)
func duplicateKey(data []byte) (path string, dup bool) {
	var stack []keyFrame
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{', '[':
			p := ""
			if n := len(stack); n > 0 {
				p = stack[n-1].childPath()
			}
			stack = append(stack, keyFrame{object: c == '{', expectKey: c == '{', path: p})
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ',':
			if n := len(stack); n > 0 {
				if stack[n-1].object {
					stack[n-1].expectKey = true
				} else {
					stack[n-1].index++
				}
			}
		case '"':
			end, escaped := stringEnd(data, i)
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
				top := &stack[n-1]
				top.expectKey = false
				key := string(data[i+1 : end])
				if escaped {
					var s string
					if json.Unmarshal(data[i:end+1], &s) == nil {
						key = s
					}
				}
				top.key = key
				if top.seen(foldKey(key)) {
					return top.childPath(), true
				}
			}
			i = end
		}
	}
	return "", false
}

// childPath is the path of the value being scanned inside f.
func (f *keyFrame) childPath() string {
	if !f.object {
		return f.path + "[" + strconv.Itoa(f.index) + "]"
	}
	if f.path == "" {
		return f.key
	}
	return f.path + "." + f.key
}

// seen records k and reports whether it was already there.
func (f *keyFrame) seen(k string) bool {
	if f.set != nil {
		if _, ok := f.set[k]; ok {
			return true
		}
		f.set[k] = struct{}{}
		return false
	}
	for _, old := range f.keys {
		if old == k {
			return true
		}
	}
	f.keys = append(f.keys, k)
	if len(f.keys) > maxLinearKeys {
		f.set = make(map[string]struct{}, 2*len(f.keys))
		for _, old := range f.keys {
			f.set[old] = struct{}{}
		}
		f.keys = nil
	}
	return false
}

// stringEnd returns the index of the quote that closes the string opening
// at data[start], and whether the string holds escapes.
func stringEnd(data []byte, start int) (end int, escaped bool) {
	for j := start + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j, escaped
		}
	}
	return len(data) - 1, escaped
}

// foldKey maps the keys that encoding/json matches to one field to one
// string, folding as it does: ASCII letters to upper case, other runes to
// the smallest rune of their case-folding orbit (so the Kelvin sign meets
// k, and the long s meets s).
func foldKey(k string) string {
	b := make([]byte, 0, len(k))
	for _, r := range k {
		switch {
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		case r >= utf8.RuneSelf:
			r = smallestFold(r)
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}

// smallestFold returns the smallest rune that case-folds to r.
func smallestFold(r rune) rune {
	for {
		next := unicode.SimpleFold(r)
		if next <= r {
			return next
		}
		r = next
	}
}
