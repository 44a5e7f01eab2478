package conformance

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// The checks read plugin output after the host's decoders accepted it; the
// fuzz targets feed them whatever those decoders accept and check that they
// neither panic nor pass something they should not.

func FuzzDescribeChecks(f *testing.F) {
	f.Add(`{"abi":1,"name":"x","version":"1","description":"d","keywords":["a","b","c"],"examples":["1","2","3","4","5"],"capabilities":[]}`)
	f.Add(`{"abi":1,"name":"x","version":"1","keywords":["a","A "],"examples":["a"],"capabilities":["generate","generate"]}`)
	f.Add(`{"abi":1,"name":"x","version":"1","keywords":[],"examples":["é\u0000"],"capabilities":["embed"]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		m, err := abi.DecodeManifest([]byte(doc))
		if err != nil {
			return
		}
		c := &checker{manifest: m}
		probs := c.checkDescribe()
		if len(probs) == 0 && (len(m.Keywords) < MinKeywords || len(m.Examples) < MinExamples || strings.TrimSpace(m.Description) == "") {
			t.Fatalf("passed a thin manifest: %+v", m)
		}
	})
}

func FuzzVerdict(f *testing.F) {
	f.Add(`{"ok":true,"score":1,"issues":[]}`)
	f.Add(`{"ok":true,"score":0.5,"issues":[{"code":"x","severity":"error","message":"m"}],"response":"r"}`)
	f.Add(`{"ok":false,"score":0,"issues":null}`)
	f.Fuzz(func(t *testing.T, doc string) {
		v, err := abi.DecodeValidation([]byte(doc))
		if err != nil {
			return
		}
		probs := checkVerdict(v)
		hasError := false
		for _, is := range v.Issues {
			hasError = hasError || is.Severity == abi.SeverityError
		}
		if len(probs) == 0 && (v.OK == hasError || v.Issues == nil) {
			t.Fatalf("passed an inconsistent verdict: %+v", v)
		}
	})
}

func FuzzPromptMessages(f *testing.F) {
	f.Add(`{"messages":[{"role":"system","content":"s"},{"role":"user","content":"q"}]}`, "q")
	f.Add(`{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}`, " q ")
	f.Fuzz(func(t *testing.T, doc, query string) {
		r, err := abi.DecodePromptResponse([]byte(doc))
		if err != nil {
			return
		}
		probs := checkMessages(r.Messages, query)
		if len(probs) > 0 {
			return
		}
		found := false
		for _, m := range r.Messages {
			found = found || strings.Contains(m.Content, strings.TrimSpace(query))
		}
		if !found || r.Messages[len(r.Messages)-1].Role != abi.RoleUser {
			t.Fatalf("passed a prompt without the query last from the user: %+v", r.Messages)
		}
	})
}

func FuzzToolArgs(f *testing.F) {
	f.Add(`{"type":"object","properties":{"a":{"type":"number","exclusiveMinimum":0},"b":{"enum":["x","y"]}},"required":["a","b"]}`)
	f.Add(`{"type":"object","properties":{"l":{"type":"array","items":{"$ref":"#/$defs/p"},"minItems":3,"uniqueItems":true}},"required":["l"],"$defs":{"p":{"type":"object","properties":{"s":{"type":"string","minLength":2,"format":"email"}},"required":["s"]}}}`)
	f.Add(`{"type":"object","properties":{"n":{"allOf":[{"$ref":"#"},{"$ref":"#"}]}},"required":["n"]}`)
	f.Add(`{"type":"object","properties":{"i":{"type":"integer","minimum":0.5,"exclusiveMaximum":3,"multipleOf":2}},"required":["i"]}`)
	f.Fuzz(func(t *testing.T, params string) {
		tool, err := structured.NewTool("t", "", json.RawMessage(params), false)
		if err != nil {
			return
		}
		for _, s := range toolArgSets(tool.Parameters) {
			var obj map[string]any
			if err := json.Unmarshal(s.args, &obj); err != nil || obj == nil {
				t.Fatalf("%s arguments %s are not a JSON object: %v", s.name, s.args, err)
			}
			if len(s.args) > 8<<20 {
				t.Fatalf("%s arguments have %d bytes", s.name, len(s.args))
			}
		}
	})
}
