package abi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const goodManifest = `{"abi":1,"name":"finance","version":"1.2.0","description":"money",
"keywords":["stock","bond"],"examples":["what is a bond?"],
"model":{"tier":"domain","prefer":["qwen2.5-1.5b"],"min_context":2048},
"generation":{"max_tokens":256,"temperature":0.2,"top_p":0.9,"top_k":40,"stop":["</s>"]},
"capabilities":["generate","count_tokens"],"future_field":{"x":1}}`

func TestDecodeManifestGood(t *testing.T) {
	m, err := DecodeManifest([]byte(goodManifest))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "finance" || m.Version != "1.2.0" || len(m.Keywords) != 2 || m.Model.MinContext != 2048 ||
		m.Generation.Temperature == nil || *m.Generation.Temperature != 0.2 || len(m.Capabilities) != 2 {
		t.Fatalf("decoded wrong: %+v", m)
	}
}

func TestDecodeManifestVersion(t *testing.T) {
	_, err := DecodeManifest([]byte(strings.Replace(goodManifest, `"abi":1`, `"abi":99`, 1)))
	if !errors.Is(err, ErrUnsupportedABI) {
		t.Fatalf("want ErrUnsupportedABI, got %v", err)
	}
	if want := "unsupported ABI version 99 (host supports 1)"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	_, err = DecodeManifest([]byte(strings.Replace(goodManifest, `"abi":1,`, ``, 1)))
	if !errors.Is(err, ErrUnsupportedABI) || !strings.Contains(err.Error(), "missing ABI version") {
		t.Fatalf("missing abi: got %v", err)
	}
}

// mutate replaces old with new in goodManifest, failing if old is absent.
func mutate(t *testing.T, old, new string) []byte {
	t.Helper()
	if !strings.Contains(goodManifest, old) {
		t.Fatalf("test bug: %q not in manifest", old)
	}
	return []byte(strings.Replace(goodManifest, old, new, 1))
}

func TestDecodeManifestBad(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen+1)
	cases := []struct {
		name, old, new, want string
	}{
		{"name missing", `"name":"finance",`, ``, "manifest: name: required"},
		{"name upper", `"finance"`, `"Finance"`, "name: \"Finance\" must match"},
		{"name space", `"finance"`, `"fin ance"`, "name:"},
		{"name long", `"finance"`, `"` + long + `"`, "name:"},
		{"name slash", `"finance"`, `"../etc"`, "name:"},
		{"version missing", `"version":"1.2.0",`, ``, "version: required"},
		{"keywords missing", `"keywords":["stock","bond"],`, ``, "keywords: required"},
		{"keywords null", `["stock","bond"]`, `null`, "keywords: required"},
		{"examples missing", `"examples":["what is a bond?"],`, ``, "examples: required"},
		{"keyword empty", `["stock","bond"]`, `["stock",""]`, "keywords[1]: required"},
		{"keyword long", `"bond"`, `"` + strings.Repeat("b", MaxKeywordLen+1) + `"`, "keywords[1]: 129 bytes"},
		{"nothing to route", `["stock","bond"],"examples":["what is a bond?"]`, `[],"examples":[]`, "both empty"},
		{"keyword type", `["stock","bond"]`, `["stock",3]`, "keywords"},
		{"tier", `"tier":"domain"`, `"tier":"huge"`, "model.tier: unknown tier \"huge\""},
		{"min context", `"min_context":2048`, `"min_context":-1`, "model.min_context"},
		{"temperature", `"temperature":0.2`, `"temperature":11`, "generation.temperature"},
		{"top_p", `"top_p":0.9`, `"top_p":1.5`, "generation.top_p"},
		{"top_k", `"top_k":40`, `"top_k":-4`, "generation.top_k"},
		{"max tokens", `"max_tokens":256`, `"max_tokens":99999999`, "generation.max_tokens"},
		{"stop empty", `"stop":["</s>"]`, `"stop":[""]`, "generation.stop[0]: empty stop string"},
		{"capability unknown", `"count_tokens"]`, `"files"]`, "capabilities[1]: unknown capability \"files\""},
		{"capability dup", `"count_tokens"]`, `"generate"]`, "capabilities[1]: duplicate"},
		{"capabilities missing", `"capabilities":["generate","count_tokens"],`, ``, "capabilities: required"},
		{"abi string", `"abi":1`, `"abi":"1"`, "manifest: abi:"},
		{"abi float", `"abi":1`, `"abi":1.5`, "manifest: abi:"},
		{"trailing", `"x":1}}`, `"x":1}} {}`, "trailing data"},
		{"trailing junk", `"x":1}}`, `"x":1}}x`, "trailing data"},
		{"truncated", `"x":1}}`, `"x":1}`, "unexpected end"},
		{"invalid utf8", `"money"`, "\"mo\xffney\"", "invalid UTF-8 at byte 61"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeManifest(mutate(t, tc.old, tc.new))
			if err == nil {
				t.Fatalf("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestDecodeNotObject(t *testing.T) {
	for _, in := range []string{"", "   ", "null", "[]", `"x"`, "1", "\xff"} {
		if _, err := DecodeManifest([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
		if _, err := DecodePromptResponse([]byte(in)); err == nil {
			t.Errorf("prompt response %q accepted", in)
		}
	}
}

func TestDecodePromptResponse(t *testing.T) {
	r, err := DecodePromptResponse([]byte(`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"generation":{"max_tokens":9}}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Messages) != 2 || r.Generation.MaxTokens != 9 {
		t.Fatalf("decoded wrong: %+v", r)
	}
	bad := map[string]string{
		`{"messages":[]}`: "messages: at least one message",
		`{}`:              "messages: at least one message",
		`{"messages":[{"role":"robot","content":"x"}]}`:                         "messages[0].role: unknown role \"robot\"",
		`{"messages":[{"role":"user","content":"x"}],"generation":{"top_p":2}}`: "generation.top_p",
		`{"messages":[{"role":"user","content":5}]}`:                            "prompt response: messages.content",
	}
	for in, want := range bad {
		_, err := DecodePromptResponse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}

func TestDecodeValidation(t *testing.T) {
	v, err := DecodeValidation([]byte(`{"ok":false,"score":0.25,"issues":[{"code":"no_disclaimer","severity":"warning","message":"add one"}],"response":"fixed"}`))
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || v.Score != 0.25 || len(v.Issues) != 1 || v.Response == nil || *v.Response != "fixed" {
		t.Fatalf("decoded wrong: %+v", v)
	}
	bad := map[string]string{
		`{"ok":true,"score":1.5}`:  "validation: score: 1.5 out of range",
		`{"ok":true,"score":-0.1}`: "validation: score",
		`{"ok":true,"score":1,"issues":[{"code":"x","severity":"fatal","message":""}]}`: "issues[0].severity: unknown severity \"fatal\"",
		`{"ok":true,"score":1,"issues":[{"code":"","severity":"info","message":""}]}`:   "issues[0].code: required",
		`{"ok":"yes","score":1}`: "validation: ok:",
	}
	for in, want := range bad {
		_, err := DecodeValidation([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}

func TestDecodeHandleResponse(t *testing.T) {
	r, err := DecodeHandleResponse([]byte(`{"response":"42","validation":{"ok":true,"score":1,"issues":[]}}`))
	if err != nil || r.Response != "42" || !r.Validation.OK {
		t.Fatalf("got %+v, %v", r, err)
	}
	_, err = DecodeHandleResponse([]byte(`{"response":"42","validation":{"ok":true,"score":7}}`))
	if err == nil || !strings.Contains(err.Error(), "handle response: validation.score") {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeHostRequests(t *testing.T) {
	g, err := DecodeGenerateRequest([]byte(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":16,"temperature":0,"seed":7}`))
	if err != nil || g.MaxTokens != 16 || g.Seed == nil || *g.Seed != 7 || g.Temperature == nil {
		t.Fatalf("got %+v, %v", g, err)
	}
	if _, err := DecodeGenerateRequest([]byte(`{"prompt":"Once upon","stop":["\n\n"," "]}`)); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		`{}`: "generate request: messages: one of messages or prompt is required",
		`{"prompt":"a","messages":[{"role":"user","content":"b"}]}`:                                   "mutually exclusive",
		`{"prompt":"a","max_tokens":-1}`:                                                              "generate request: max_tokens",
		`{"prompt":"a","stop":["x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x","x"]}`: "stop: 17 entries",
		`{"prompt":"a","seed":-1}`:                                                                    "seed",
	}
	for in, want := range bad {
		_, err := DecodeGenerateRequest([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
	if _, err := DecodeEmbedRequest([]byte(`{"input":["a","b"]}`)); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		`{"input":[]}`:       "embed request: input: at least one",
		`{}`:                 "embed request: input: required",
		`{"input":["a",""]}`: "input[1]: required",
	} {
		_, err := DecodeEmbedRequest([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
	c, err := DecodeCountTokensRequest([]byte(`{"text":"hello"}`))
	if err != nil || c.Text != "hello" {
		t.Fatalf("got %+v, %v", c, err)
	}
	if _, err := DecodeCountTokensRequest([]byte(`{"text":1}`)); err == nil {
		t.Fatal("accepted number text")
	}
}

func TestValidName(t *testing.T) {
	for _, s := range []string{"a", "finance", "my-plugin_2", strings.Repeat("z", 64)} {
		if !ValidName(s) {
			t.Errorf("%q rejected", s)
		}
	}
	for _, s := range []string{"", "A", "a b", "a.b", "é", strings.Repeat("z", 65), "a/b"} {
		if ValidName(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestQuoteTruncatesAndEscapes(t *testing.T) {
	q := quote(strings.Repeat("é", 40) + "\x00")
	if len(q) > 80 || !strings.HasSuffix(q, "...") {
		t.Fatalf("quote = %q", q)
	}
	if q := quote("a\x00b"); q != `"a\x00b"` {
		t.Fatalf("quote = %q", q)
	}
}

// fuzzDecode checks the properties every decoder must have: it never panics,
// and what it accepts survives a round trip through encoding/json.
func fuzzDecode[T any](f *testing.F, seeds []string, decode func([]byte) (T, error)) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decode(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted value does not encode: %v", err)
		}
		if _, err := decode(again); err != nil {
			t.Fatalf("accepted %q but rejected its re-encoding %q: %v", data, again, err)
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	fuzzDecode(f, []string{goodManifest, `{"abi":99}`, `{"abi":1,"name":"x","version":"1","keywords":[],"examples":["e"],"capabilities":[]}`, `{}`, `[`, "\xff"}, DecodeManifest)
}

func FuzzDecodePromptResponse(f *testing.F) {
	fuzzDecode(f, []string{`{"messages":[{"role":"user","content":"hi"}],"generation":{"max_tokens":3,"top_p":0.5}}`, `{"messages":[]}`, `{} x`}, DecodePromptResponse)
}

func FuzzDecodeValidation(f *testing.F) {
	fuzzDecode(f, []string{`{"ok":true,"score":1,"issues":[{"code":"c","severity":"info","message":"m"}],"response":"r"}`, `{"score":2}`}, DecodeValidation)
}

func FuzzDecodeHandleResponse(f *testing.F) {
	fuzzDecode(f, []string{`{"response":"x","validation":{"ok":true,"score":0.5,"issues":[]}}`, `{"response":1}`}, DecodeHandleResponse)
}

func FuzzDecodeGenerateRequest(f *testing.F) {
	fuzzDecode(f, []string{`{"messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stop":["\n"],"seed":1}`, `{"prompt":"p","temperature":0.7}`, `{}`}, DecodeGenerateRequest)
}

func FuzzDecodeEmbedRequest(f *testing.F) {
	fuzzDecode(f, []string{`{"input":["a","b"]}`, `{"input":[""]}`}, DecodeEmbedRequest)
}

func FuzzDecodeCountTokensRequest(f *testing.F) {
	fuzzDecode(f, []string{`{"text":"hello"}`, `{"text":null}`}, DecodeCountTokensRequest)
}
