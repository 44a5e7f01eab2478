package sdk

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

var decodeSeeds = []string{
	`{"query":"hi"}`,
	`{"query":"hi","history":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}],"context":{"k":"v","x":""}}`,
	` { "query" : "tab\there \"quoted\" \\ \/ \u00e9 \ud83d\ude00 é 😀" , "history" : [ ] , "context" : { } } `,
	`{"query":"q","response":"r","domain":"d"}`,
	`{"response":"line1\nline2\r\n\b\f","query":"","domain":"finance"}`,
	`{"query":"dup","query":"x"}`,
	`{"Query":"case"}`,
	`{"query":null}`,
	`{"query":"q","history":null}`,
	`{"query":"q","extra":1}`,
	`{"query":"lone \ud800 surrogate"}`,
	`{"query":"bad utf8 ` + "\xff" + `"}`,
	`{"query":"ctl ` + "\x01" + `"}`,
	`{"query":"q"} trailing`,
	`{"query":"q",}`,
	`[]`,
	``,
	`{"context":{"a":"1","a":"2"}}`,
	`{"history":[{"role":"user","content":"x","extra":"y"}]}`,
	`{"query":"\u0041\u00"}`,
}

func TestFastDecodeMatchesEncodingJSON(t *testing.T) {
	accepted := 0
	for _, s := range decodeSeeds {
		if checkDecodeEquivalence(t, []byte(s)) {
			accepted++
		}
	}
	if accepted < 5 {
		t.Errorf("fast path accepted only %d seeds", accepted)
	}
	// The common forms must take the fast path.
	for _, s := range decodeSeeds[:3] {
		var r abi.PromptRequest
		if !fastPromptRequest([]byte(s), &r, false) {
			t.Errorf("fast path refused %s", s)
		}
	}
	var v abi.ValidateRequest
	if !fastValidateRequest([]byte(decodeSeeds[3]), &v, false) || v != (abi.ValidateRequest{Query: "q", Response: "r", Domain: "d"}) {
		t.Errorf("fast validate decode: %+v", v)
	}
}

// checkDecodeEquivalence fails t when a fast decoder accepts data but
// encoding/json decodes it differently (or not at all), and when the
// decodeInput result differs from encoding/json's. It reports whether a
// fast decoder accepted data.
func checkDecodeEquivalence(t *testing.T, data []byte) bool {
	t.Helper()
	var fastP, ownedP, slowP abi.PromptRequest
	pOK := fastPromptRequest(data, &fastP, false)
	pErr := json.Unmarshal(data, &slowP)
	if pOK && (pErr != nil || !reflect.DeepEqual(fastP, slowP)) {
		t.Fatalf("prompt request %q: fast %+v, encoding/json %+v (%v)", data, fastP, slowP, pErr)
	}
	// Strings that point into an owned buffer decode the same.
	if fastPromptRequest(bytes.Clone(data), &ownedP, true) != pOK || pOK && !reflect.DeepEqual(ownedP, fastP) {
		t.Fatalf("prompt request %q: owned %+v, copied %+v", data, ownedP, fastP)
	}
	var viaP abi.PromptRequest
	if err := decodePromptRequest(data, &viaP, false); (err == nil) != (pErr == nil && len(strings.TrimSpace(string(data))) > 0) ||
		err == nil && !reflect.DeepEqual(viaP, slowP) {
		t.Fatalf("decodePromptRequest(%q) = %+v, %v; encoding/json %+v, %v", data, viaP, err, slowP, pErr)
	}
	var fastV, ownedV, slowV abi.ValidateRequest
	vOK := fastValidateRequest(data, &fastV, false)
	vErr := json.Unmarshal(data, &slowV)
	if vOK && (vErr != nil || fastV != slowV) {
		t.Fatalf("validate request %q: fast %+v, encoding/json %+v (%v)", data, fastV, slowV, vErr)
	}
	if fastValidateRequest(bytes.Clone(data), &ownedV, true) != vOK || vOK && ownedV != fastV {
		t.Fatalf("validate request %q: owned %+v, copied %+v", data, ownedV, fastV)
	}
	return pOK || vOK
}

// FuzzDecodeInput checks the fast input decoders against encoding/json on
// arbitrary bytes: whatever the fast path accepts must decode identically.
func FuzzDecodeInput(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodeEquivalence(t, data)
	})
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "ctl\x00\x01\x1f\x7f", "tab\tnl\nret\r", "é😀\u2028", "bad\xffutf8\xc3", strings.Repeat("abcdefgh", 9) + `"`} {
		checkStringRoundTrip(t, s)
	}
}

func checkStringRoundTrip(t *testing.T, s string) {
	t.Helper()
	enc := appendString(nil, s)
	var got string
	if err := json.Unmarshal(enc, &got); err != nil {
		t.Fatalf("appendString(%q) = %s: invalid JSON: %v", s, enc, err)
	}
	// encoding/json's own round trip defines the expected text (invalid
	// UTF-8 becomes U+FFFD).
	std, _ := json.Marshal(s)
	var want string
	_ = json.Unmarshal(std, &want)
	if got != want {
		t.Fatalf("appendString(%q) decodes to %q, want %q", s, got, want)
	}
}

// FuzzEncodeOutput checks that the output encoders produce JSON that
// encoding/json decodes to the same values.
func FuzzEncodeOutput(f *testing.F) {
	f.Add("ok", "a\"b\\c\n", 0.5, true)
	f.Add("", "bad\xff", math.NaN(), false)
	f.Add("é😀", strings.Repeat("x", 40), 1e-7, true)
	f.Fuzz(func(t *testing.T, a, b string, score float64, revised bool) {
		checkStringRoundTrip(t, a)
		checkStringRoundTrip(t, b)
		norm := func(s string) string {
			std, _ := json.Marshal(s)
			var out string
			_ = json.Unmarshal(std, &out)
			return out
		}
		v := abi.Validation{OK: revised, Score: score, Issues: []abi.Issue{{Code: a, Severity: b, Message: a + b}}}
		if revised {
			v.Response = &b
		}
		var gotV abi.Validation
		if err := json.Unmarshal(encodeValidation(&v), &gotV); err != nil {
			t.Fatalf("encodeValidation: %v", err)
		}
		wantScore := score
		if math.IsNaN(score) || math.IsInf(score, 0) {
			wantScore = 0
		}
		if gotV.OK != v.OK || gotV.Score != wantScore || len(gotV.Issues) != 1 ||
			gotV.Issues[0] != (abi.Issue{Code: norm(a), Severity: norm(b), Message: norm(a + b)}) ||
			(gotV.Response != nil) != revised || revised && *gotV.Response != norm(b) {
			t.Fatalf("encodeValidation round trip: %+v from %+v", gotV, v)
		}
		p := abi.PromptResponse{Messages: []abi.Message{{Role: a, Content: b}}}
		out, err := encodePromptResponse(&p)
		var gotP abi.PromptResponse
		if err != nil || json.Unmarshal(out, &gotP) != nil || len(gotP.Messages) != 1 ||
			gotP.Messages[0] != (abi.Message{Role: norm(a), Content: norm(b)}) {
			t.Fatalf("encodePromptResponse round trip: %s", out)
		}
		h := abi.HandleResponse{Response: a, Validation: abi.Validation{Issues: []abi.Issue{}}}
		var gotH abi.HandleResponse
		if err := json.Unmarshal(encodeHandleResponse(&h), &gotH); err != nil || gotH.Response != norm(a) {
			t.Fatalf("encodeHandleResponse round trip: %+v, %v", gotH, err)
		}
	})
}

func TestEncodePromptResponseGeneration(t *testing.T) {
	p := abi.PromptResponse{
		Messages:   []abi.Message{{Role: abi.RoleUser, Content: "q"}},
		Generation: abi.Generation{MaxTokens: 7, Temperature: F32(0.5), Stop: []string{"\n"}},
	}
	out, err := encodePromptResponse(&p)
	if err != nil {
		t.Fatal(err)
	}
	var got abi.PromptResponse
	if err := json.Unmarshal(out, &got); err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("got %+v (%v) from %s", got, err, out)
	}
	p.Generation = abi.Generation{}
	out, _ = encodePromptResponse(&p)
	if want := `{"messages":[{"role":"user","content":"q"}],"generation":{}}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
}

func TestAppendScore(t *testing.T) {
	for _, f := range []float64{1, 0, math.Copysign(0, -1), 0.85, 0.5, 1 - PenaltyWarning, 1 - PenaltyError,
		(1 - PenaltyWarning) * (1 - PenaltyWarning), 0.425, 1e-7, 0.1 + 0.2} {
		if got, want := string(appendScore(nil, f)), strconv.FormatFloat(f, 'g', -1, 64); got != want {
			t.Errorf("appendScore(%v) = %s, want %s", f, got, want)
		}
	}
}
