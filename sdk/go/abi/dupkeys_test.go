package abi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestDuplicateKey(t *testing.T) {
	many := func(dupAt int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range 20 {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"k%d":%d`, i, i)
		}
		if dupAt >= 0 {
			fmt.Fprintf(&b, `,"K%d":0`, dupAt)
		}
		b.WriteString("}")
		return b.String()
	}
	for _, c := range []struct {
		doc, path string
	}{
		{`{"name":"a","name":"b"}`, "name"},
		{`{"name":"a","NAME":"b"}`, "NAME"},
		{`{"n\u0061me":"a","name":"b"}`, "name"},
		{`{"k":1,"\u212a":2}`, "\u212a"},
		{`{"a":{"x":1,"x":2}}`, "a.x"},
		{`{"a":[{"x":1},{"x":1,"y":2,"x":3}]}`, "a[1].x"},
		{`{"a":[[1,2],[{"b":{"c":1,"c":2}}]]}`, "a[1][0].b.c"},
		{many(3), "K3"},
		{many(19), "K19"},
		// No duplicates.
		{`{"a":{"x":1},"b":{"x":1}}`, ""},
		{`{"a":"{\"a\":1,\"a\":2}","b":"\\","c":"x\"y"}`, ""},
		{`{"a":[{"x":1},{"x":2}],"x":3}`, ""},
		{`{"a":[],"b":{},"c":[{}],"d":null,"e":true,"f":-1.5e3}`, ""},
		{many(-1), ""},
	} {
		path, dup := duplicateKey([]byte(c.doc))
		if dup != (c.path != "") || path != c.path {
			t.Errorf("%s: got %q, %v; want %q", c.doc, path, dup, c.path)
		}
	}
}

func TestDecodeRefusesDuplicateKeys(t *testing.T) {
	_, err := DecodeManifest([]byte(`{"abi_version":1,"name":"finance","version":"1.0.0","name":"billing"}`))
	if err == nil || !strings.Contains(err.Error(), "manifest: name: duplicate key") {
		t.Fatalf("manifest with name twice: %v", err)
	}
	_, err = DecodePromptResponse([]byte(`{"messages":[{"role":"user","content":"a","Content":"b"}]}`))
	if err == nil || !strings.Contains(err.Error(), "messages[0].Content: duplicate key") {
		t.Fatalf("prompt response with content twice: %v", err)
	}
}

// refDuplicate is duplicateKey written the slow, obvious way: decoding
// tokens and comparing every key with strings.EqualFold.
func refDuplicate(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		object    bool
		expectKey bool
		keys      []string
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.expectKey = true
				}
				stack = append(stack, &frame{object: v == '{', expectKey: v == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.object && top.expectKey {
				for _, k := range top.keys {
					if strings.EqualFold(k, v) {
						return true
					}
				}
				top.keys = append(top.keys, v)
				top.expectKey = false
				continue
			}
			if top != nil && top.object {
				top.expectKey = true
			}
		default:
			if top != nil && top.object {
				top.expectKey = true
			}
		}
	}
}

func FuzzDuplicateKey(f *testing.F) {
	for _, s := range []string{`{"a":1,"A":2}`, `{"a":{"b":[1,{"c":1,"c":2}]}}`, `{"a":"\"a\"","b":1}`,
		`{"k":1,"\u212a":2}`, `{"\u017f":1,"s":2}`, `[{"x":1},{"x":1}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		_, got := duplicateKey(data)
		if want := refDuplicate(data); got != want {
			t.Fatalf("%q: duplicateKey %v, reference %v", data, got, want)
		}
	})
}
