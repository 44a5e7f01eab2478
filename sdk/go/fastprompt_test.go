package sdk

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// fastPromptPlugins cover the template shapes fastPrompt renders: context
// placeholders with and without defaults, the query inside text, an empty
// system prompt, and one that renders empty.
func fastPromptPlugins(t testing.TB) []*Compiled {
	var out []*Compiled
	for _, p := range []Plugin{
		{System: "You help {{context.user|a guest}} in {{context.lang}}.", Template: "Q: {{query}} <{{context.user}}>", MaxHistory: 2},
		{System: "Plain \"system\" prompt\twith\nescapes, é and \u2028.", Template: "{{query}}"},
		{Template: "{{context.k|x}}{{query}}"},
		{System: "{{context.only}}", Template: "{{query}}", MaxHistory: 1},
	} {
		p.Manifest = abi.Manifest{Name: "demo", Version: "1", Keywords: []string{"demo"}}
		c, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

var fastPromptSeeds = []string{
	`{"query":"hi"}`,
	`{"query":"What is {{context.user}}?","history":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"system","content":"no"},{"role":"user","content":""},{"role":"user","content":"c"}],"context":{"user":"Ann","lang":"","k":"v"}}`,
	`{"history":[],"context":{},"query":"tab\there \"quoted\" \\ \/ \u00e9 \ud83d\ude00 é 😀 \u003c\u0026"}`,
	` { "query" : "spaced" , "history" : [ { "role" : "user" , "content" : "x" } ] } `,
	`{"query":"dup ctx","context":{"user":"a","user":""}}`,
	`{"query":"dup ctx","context":{"user":"","user":"b"}}`,
	`{"query":"lone \ud800 surrogate"}`,
	`{"query":" leading space"}`,
	`{"query":"   "}`,
	`{"query":""}`,
	`{"query":"\u0020x"}`,
	`{"history":[{"role":"user","content":"x"}]}`,
	`{"query":"q","extra":1}`,
	`{"query":"q","history":null}`,
	`{"query":"bad \x"}`,
	`{"query":"q","history":[{"role":"us\u0065r","content":"x"}]}`,
	`{"query":"q","history":[{"content":"no role"},{"role":"assistant"}]}`,
	`{"query":"q"} trailing`,
	`{"query":"q",}`,
	`{"query":"bad utf8 ` + "\xff" + `"}`,
	`{"query":"ctl ` + "\x01" + `"}`,
	`{"query":"q","context":{"k\u0031":"v"}}`,
	`{"query":"日本語の質問"}`,
	`{"query":"\u3000\u00a0"}`,
	"{\"query\":\"\u3000\u00a0 \u2003x\"}",
	"{\"query\":\"\u3000\u00a0\"}",
	"{\"query\":\"\t\"}",
	"{\"query\":\"\u0085\"}",
}

func TestFastPromptSeeds(t *testing.T) {
	accepted := 0
	for _, s := range fastPromptSeeds {
		for _, c := range fastPromptPlugins(t) {
			if checkFastPrompt(t, c, []byte(s)) {
				accepted++
			}
		}
	}
	// Non-ASCII queries take the fast path too.
	if _, ok := fastPromptPlugins(t)[0].fastPrompt([]byte(`{"query":"日本語の質問"}`), nil); !ok {
		t.Error("fast path refused a non-ASCII query")
	}
	if accepted < 20 {
		t.Errorf("fast path took only %d of the seeds", accepted)
	}
	// The host's own encoding of a typical request takes the fast path.
	in, _ := json.Marshal(abi.PromptRequest{Query: "Why <b> & \"c\"?\nok", History: []abi.Message{{Role: abi.RoleUser, Content: "hi"}},
		Context: map[string]string{"user": "Bo"}})
	if _, ok := fastPromptPlugins(t)[0].fastPrompt(in, nil); !ok {
		t.Errorf("fast path refused %s", in)
	}
}

// checkFastPrompt fails t when fastPrompt accepts in but its output does
// not decode to what the decoding path produces. It reports whether the
// fast path took in.
func checkFastPrompt(t *testing.T, c *Compiled, in []byte) bool {
	t.Helper()
	fast, ok := c.fastPrompt(in, nil)
	slow, err := c.promptDecoded(nil, in, nil, false)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("fast path accepted %q, decoding path failed: %v", in, err)
	}
	if !json.Valid(fast) || !bytes.Equal(bytes.ToValidUTF8(fast, nil), fast) {
		t.Fatalf("fast output for %q is not valid UTF-8 JSON: %q", in, fast)
	}
	var got, want abi.PromptResponse
	if err := json.Unmarshal(fast, &got); err != nil {
		t.Fatalf("fast output %s: %v", fast, err)
	}
	if err := json.Unmarshal(slow, &want); err != nil {
		t.Fatalf("decoding path output %s: %v", slow, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("input %q:\nfast %+v\nslow %+v", in, got, want)
	}
	if _, err := abi.DecodePromptResponse(fast); err != nil && !strings.Contains(err.Error(), "empty") {
		if _, err2 := abi.DecodePromptResponse(slow); err2 == nil {
			t.Fatalf("host refuses fast output %s: %v", fast, err)
		}
	}
	return true
}

// FuzzFastPrompt checks the prompt export's no-decoding path against the
// decoding path on arbitrary input: whatever it accepts must produce the
// same messages.
func FuzzFastPrompt(f *testing.F) {
	for _, s := range fastPromptSeeds {
		f.Add([]byte(s))
	}
	cs := fastPromptPlugins(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, c := range cs {
			checkFastPrompt(t, c, in)
		}
	})
}

// TestScanWords checks the 8-word scan against a plain loop.
func TestScanWords(t *testing.T) {
	text := "Loans and taxes: a guaranteed index fund, credits, 12 apples... " +
		"the quick brown foxes jump over lazy dogs while ants sleep"
	ws := analyze(text).words
	var bl bloom
	for _, w := range []string{"taxes", "index", "dogs", "the", "sleep"} {
		bl.add(wordHashes(w)[0])
	}
	for _, plural := range []uint8{0, 1} {
		for _, minLen := range []int32{0, 4} {
			for start := 0; start <= len(ws); start++ {
				for n := 0; n <= len(ws); n++ {
					sub := ws[:n]
					want := n
					for k := min(start, n); k < n; k++ {
						w := sub[k]
						if (bl.may(w.h) || w.plural&plural != 0) && w.end-w.start >= minLen {
							want = k
							break
						}
					}
					if got := scanWords(sub, min(start, n), &bl, plural, minLen); got != want {
						t.Fatalf("scanWords(%d words, from %d, plural %d, min %d) = %d, want %d", n, start, plural, minLen, got, want)
					}
				}
			}
		}
	}
}
