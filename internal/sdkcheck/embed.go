package sdkcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// The embed protocol of the SDKs' test plugins (testdata/features): the
// prompt export, given the query EmbedQuery, calls the SDK's mdsa_embed
// wrapper with the content of every history turn, in order, and answers
// one assistant message reporting what the wrapper returned:
//
//	ok MODEL
//	DIM BITS BITS ...     one line per vector; BITS is the decimal value
//	                      of a float32's bits (math.Float32bits)
//
// or, when the wrapper returned the SDK's error value,
//
//	error CODE: MESSAGE

// EmbedQuery is the query that makes a test plugin call mdsa_embed.
const EmbedQuery = "embed please"

// EmbedReport is a test plugin's report of one mdsa_embed call.
type EmbedReport struct {
	OK      bool
	Model   string
	Vectors [][]float32
	Code    string // when !OK
	Message string // when !OK
}

// ParseEmbedReport parses the message of the embed protocol.
func ParseEmbedReport(s string) (EmbedReport, error) {
	if rest, ok := strings.CutPrefix(s, "error "); ok {
		code, msg, ok := strings.Cut(rest, ": ")
		if !ok {
			return EmbedReport{}, fmt.Errorf("embed report %q: no ': ' after the code", s)
		}
		return EmbedReport{Code: code, Message: msg}, nil
	}
	rest, ok := strings.CutPrefix(s, "ok ")
	if !ok {
		return EmbedReport{}, fmt.Errorf("embed report %q: want \"ok \" or \"error \"", s)
	}
	lines := strings.Split(rest, "\n")
	r := EmbedReport{OK: true, Model: lines[0], Vectors: [][]float32{}}
	for i, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) == 0 {
			return EmbedReport{}, fmt.Errorf("embed report %q: vector %d: empty line", s, i)
		}
		dim, err := strconv.Atoi(f[0])
		if err != nil || dim != len(f)-1 {
			return EmbedReport{}, fmt.Errorf("embed report %q: vector %d: dimension %q for %d values", s, i, f[0], len(f)-1)
		}
		v := make([]float32, dim)
		for j, b := range f[1:] {
			bits, err := strconv.ParseUint(b, 10, 32)
			if err != nil {
				return EmbedReport{}, fmt.Errorf("embed report %q: vector %d value %d: %w", s, i, j, err)
			}
			v[j] = math.Float32frombits(uint32(bits))
		}
		r.Vectors = append(r.Vectors, v)
	}
	return r, nil
}

// sameBits reports whether a and b hold the same float32 bit patterns
// (so that -0 and 0 differ, and NaNs compare).
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func embedPromptInput(inputs []string) abi.PromptRequest {
	req := abi.PromptRequest{Query: EmbedQuery}
	for _, in := range inputs {
		req.History = append(req.History, abi.Message{Role: abi.RoleUser, Content: in})
	}
	return req
}

// embedVia runs the embed protocol on p (through the host's runtime).
func embedVia(t *testing.T, ctx context.Context, p *plugin.Plugin, inputs []string) EmbedReport {
	t.Helper()
	resp, err := p.Prompt(ctx, embedPromptInput(inputs))
	if err != nil {
		t.Fatalf("prompt %q with %d inputs: %v", EmbedQuery, len(inputs), err)
	}
	if len(resp.Messages) != 1 || resp.Messages[0].Role != abi.RoleAssistant {
		t.Fatalf("want one assistant message, got %+v", resp.Messages)
	}
	r, err := ParseEmbedReport(resp.Messages[0].Content)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Embed checks a test plugin's mdsa_embed wrapper (see EmbedQuery for the
// protocol the plugin must implement; it must declare capability "embed"):
//
//   - through the host's runtime with FakeServices: the inputs arrive
//     intact (JSON escaping) and the vectors come back intact (count,
//     dimensions, every float32 bit pattern); a refusal by the service, an
//     unavailable service and the host's refusal of an empty input list come
//     back as the SDK's error value with the host's code and message;
//   - with fake host functions (RawPluginWithHost): number syntax (signs,
//     exponents, subnormals, long mantissas), empty lists, refusals of any
//     code or with no code, a null error member, and every kind of
//     undecodable reply (bad_reply, never a trap).
func Embed(t *testing.T, wasm []byte) {
	t.Helper()
	ctx := context.Background()

	t.Run("host", func(t *testing.T) {
		const dim = 12
		svc := &FakeServices{EmbedDim: dim}
		p := Load(t, "features.wasm", wasm, svc)
		inputs := []string{
			"plain text",
			"Quote \" backslash \\ slash / newline \n tab \t ctl \x01 é 中文 🙂 \u2028 </script> {{context.x}}",
			"not UTF-8: \xff\xfe end",
		}
		r := embedVia(t, ctx, p, inputs)
		req, n := svc.LastEmbed()
		if n != 1 || len(req.Input) != len(inputs) {
			t.Fatalf("embed requests: %d, last %+v", n, req)
		}
		for i, in := range inputs {
			// encoding/json replaces each invalid byte with U+FFFD.
			var want string
			if b, err := json.Marshal(in); err != nil || json.Unmarshal(b, &want) != nil {
				t.Fatalf("round trip of %q: %v", in, err)
			}
			if req.Input[i] != want {
				t.Fatalf("input %d arrived as %q, want %q", i, req.Input[i], want)
			}
		}
		if !r.OK || r.Model != "fake-embed" || len(r.Vectors) != len(inputs) {
			t.Fatalf("embed: %+v", r)
		}
		for i, v := range r.Vectors {
			if want := FakeVector(req.Input[i], dim); !sameBits(v, want) {
				t.Fatalf("vector %d:\n got %v\nwant %v", i, v, want)
			}
		}

		// The service refuses: the SDK's error value carries the code and
		// the host's message.
		dctx := plugin.WithRequestInfo(ctx, plugin.RequestInfo{Tenant: "denied"})
		resp, err := p.Prompt(dctx, embedPromptInput([]string{"x"}))
		if err != nil || len(resp.Messages) != 1 {
			t.Fatalf("refused embed: %+v %v", resp, err)
		}
		if r, err := ParseEmbedReport(resp.Messages[0].Content); err != nil || r.OK || r.Code != abi.ErrModelDenied ||
			!strings.HasPrefix(r.Message, abi.HostEmbed+": ") || !strings.HasSuffix(r.Message, "tenant may not use the embedding model") {
			t.Fatalf("refused embed: %+v %v", r, err)
		}
		// No inputs: the request is {"input":[]}, which the host refuses.
		if r := embedVia(t, ctx, p, nil); r.OK || r.Code != abi.ErrBadRequest || !strings.Contains(r.Message, "input") {
			t.Fatalf("embed without inputs: %+v", r)
		}
		if _, n := svc.LastEmbed(); n != 2 {
			t.Fatalf("the service saw %d embed calls, want 2", n)
		}

		// No embedding service.
		p = Load(t, "features.wasm", wasm, &FakeServices{})
		if r := embedVia(t, ctx, p, []string{"x"}); r.OK || r.Code != abi.ErrUnavailable ||
			!strings.HasPrefix(r.Message, abi.HostEmbed+": ") || !strings.HasSuffix(r.Message, "no embedder") {
			t.Fatalf("unavailable embed: %+v", r)
		}
	})

	t.Run("raw", func(t *testing.T) {
		var (
			mu    sync.Mutex
			reply []byte
			got   [][]byte
		)
		p := RawPluginWithHost(t, wasm, func(function string, request []byte) []byte {
			mu.Lock()
			defer mu.Unlock()
			if function != abi.HostEmbed {
				return []byte(`{"error":{"code":"unavailable","message":"not in this test"}}`)
			}
			got = append(got, append([]byte(nil), request...))
			return reply
		})
		call := func(t *testing.T, r string, nilReply bool, inputs ...string) EmbedReport {
			t.Helper()
			mu.Lock()
			reply, got = []byte(r), nil
			if nilReply {
				reply = nil
			}
			mu.Unlock()
			in, err := json.Marshal(embedPromptInput(inputs))
			if err != nil {
				t.Fatal(err)
			}
			out, msg := CallRaw(t, p, "prompt", in)
			if msg != "" {
				t.Fatalf("reply %q: the export failed: %s", Clip([]byte(r)), msg)
			}
			resp, err := abi.DecodePromptResponse(out)
			if err != nil || len(resp.Messages) != 1 {
				t.Fatalf("reply %q: output %s: %v", Clip([]byte(r)), out, err)
			}
			rep, err := ParseEmbedReport(resp.Messages[0].Content)
			if err != nil {
				t.Fatal(err)
			}
			// The request the plugin sent: exactly {"input":[...]}.
			mu.Lock()
			defer mu.Unlock()
			var req abi.EmbedRequest
			if len(got) != 1 || json.Unmarshal(got[0], &req) != nil || req.Input == nil ||
				fmt.Sprint(req.Input) != fmt.Sprint(inputs) {
				t.Fatalf("embed requests sent: %q, want one with input %q", got, inputs)
			}
			var raw map[string]json.RawMessage
			if json.Unmarshal(got[0], &raw) != nil || len(raw) != 1 {
				t.Fatalf("embed request %s: want only the input member", got[0])
			}
			return rep
		}

		// Number syntax: each literal must decode as Go's
		// strconv.ParseFloat(s, 32) does.
		nums := []string{
			"0", "-0", "1", "-1", "0.1", "-0.375", "1.5e-7", "2.5E-3", "7e+0", "3E2", "123.456e-2", "-2.5e12",
			"1e+30", "1.17549435e-38", "3.4028235e38", "-3.4028235e+38", "1e-45", "7e-42", "1e-50",
			"-123456789012345678901234567890", "0.333333333333333333333333333", "0.00000000000000000000001234",
			"16777217", "0.30000001192092896", "1e22", "1e23", "9007199254740993",
		}
		want := make([]float32, len(nums))
		for i, s := range nums {
			f, err := strconv.ParseFloat(s, 32)
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			want[i] = float32(f)
		}
		r := call(t, `{"model":"m \"q\"","vectors":[[`+strings.Join(nums, ",")+`],[ -4.5 , 6 ]]}`, false, "a", "b")
		if !r.OK || r.Model != `m "q"` || len(r.Vectors) != 2 || !sameBits(r.Vectors[1], []float32{-4.5, 6}) {
			t.Fatalf("numbers: %+v", r)
		}
		for i := range nums {
			if math.Float32bits(r.Vectors[0][i]) != math.Float32bits(want[i]) {
				t.Errorf("%s decoded as %g (%#x), want %g (%#x)", nums[i], r.Vectors[0][i], math.Float32bits(r.Vectors[0][i]),
					want[i], math.Float32bits(want[i]))
			}
		}

		ok := []struct {
			name, reply string
			inputs      []string
			dims        []int
		}{
			{"empty vector", `{"model":"m","vectors":[[]]}`, []string{"a"}, []int{0}},
			{"no inputs", `{"model":"m","vectors":[]}`, nil, nil},
			{"no inputs, null vectors", `{"model":"m","vectors":null}`, nil, nil},
			{"no inputs, no vectors", `{}`, nil, nil},
			{"null error", `{"error":null,"vectors":[[1,2,3]],"extra":{"x":[true]}}`, []string{"é\n\"🙂"}, []int{3}},
		}
		for _, tc := range ok {
			r := call(t, tc.reply, false, tc.inputs...)
			if !r.OK || len(r.Vectors) != len(tc.dims) {
				t.Errorf("%s: %+v", tc.name, r)
				continue
			}
			for i, d := range tc.dims {
				if len(r.Vectors[i]) != d {
					t.Errorf("%s: vector %d has %d values, want %d", tc.name, i, len(r.Vectors[i]), d)
				}
			}
		}

		refusals := []struct{ reply, code, msg string }{
			{`{"error":{"code":"capability_denied","message":"mdsa_embed needs capability \"embed\""}}`, abi.ErrCapability,
				`mdsa_embed needs capability "embed"`},
			{`{"error":{"code":"budget_exceeded","message":"é 🙂"},"vectors":[[1]]}`, abi.ErrBudget, "é 🙂"},
			{`{"error":{"message":"boom"}}`, abi.ErrEngine, "boom"},
			{`{"error":{"code":"","message":"boom"}}`, abi.ErrEngine, "boom"},
		}
		for _, tc := range refusals {
			if r := call(t, tc.reply, false, "a"); r.OK || r.Code != tc.code || r.Message != tc.msg {
				t.Errorf("reply %s: %+v, want code %q message %q", tc.reply, r, tc.code, tc.msg)
			}
		}

		bad := []struct {
			reply    string
			nilReply bool
			inputs   int
			msg      string // the message starts with it
		}{
			{"", true, 1, "mdsa_embed: undecodable reply: unexpected end of JSON input"},
			{"", false, 1, "mdsa_embed: undecodable reply: unexpected end of JSON input"},
			{"not json", false, 1, "mdsa_embed: undecodable reply: invalid literal"},
			{`{"vectors":[[1,2]`, false, 1, "mdsa_embed: undecodable reply: unexpected end of JSON input"},
			{`{"vectors":[[1,2]]} x`, false, 1, "mdsa_embed: undecodable reply: unexpected data after the JSON value"},
			{`{"vectors":[[01]]}`, false, 1, "mdsa_embed: undecodable reply: "},
			{`{"vectors":[[1.]]}`, false, 1, "mdsa_embed: undecodable reply: invalid number"},
			{`{"vectors":[[-]]}`, false, 1, "mdsa_embed: undecodable reply: invalid number"},
			{`{"vectors":[[1e]]}`, false, 1, "mdsa_embed: undecodable reply: invalid number"},
			{`{"vectors":[[NaN]]}`, false, 1, "mdsa_embed: undecodable reply: "},
			{`{"vectors":` + strings.Repeat("[", 5000) + `1` + strings.Repeat("]", 5000) + `}`, false, 1,
				"mdsa_embed: undecodable reply: JSON nested too deeply"},
			{`[]`, false, 1, "mdsa_embed: undecodable reply: not a JSON object"},
			{`"vectors"`, false, 1, "mdsa_embed: undecodable reply: not a JSON object"},
			{`{"vectors":{"0":[1]}}`, false, 1, "mdsa_embed: undecodable reply: vectors: want an array"},
			{`{"vectors":"[[1]]"}`, false, 1, "mdsa_embed: undecodable reply: vectors: want an array"},
			{`{"vectors":[1]}`, false, 1, "mdsa_embed: undecodable reply: vectors[0]: want an array of numbers"},
			{`{"vectors":[[1],null]}`, false, 2, "mdsa_embed: undecodable reply: vectors[1]: want an array of numbers"},
			{`{"vectors":[[1,"2"]]}`, false, 1, "mdsa_embed: undecodable reply: vectors[0][1]: want a number"},
			{`{"vectors":[[1,null]]}`, false, 1, "mdsa_embed: undecodable reply: vectors[0][1]: want a number"},
			{`{"vectors":[[1],[[2]]]}`, false, 2, "mdsa_embed: undecodable reply: vectors[1][0]: want a number"},
			{`{"vectors":[[1e39]]}`, false, 1, "mdsa_embed: undecodable reply: vectors[0][0]: number out of float range"},
			{`{"vectors":[[-1e400]]}`, false, 1, "mdsa_embed: undecodable reply: vectors[0][0]: number out of float range"},
			{`{"vectors":[[1],[2]]}`, false, 1, "mdsa_embed: the host returned 2 vectors for 1 inputs"},
			{`{"vectors":[[1]]}`, false, 2, "mdsa_embed: the host returned 1 vectors for 2 inputs"},
			{`{"model":"m"}`, false, 1, "mdsa_embed: the host returned 0 vectors for 1 inputs"},
		}
		for _, tc := range bad {
			inputs := []string{"a", "b", "c"}[:tc.inputs]
			if r := call(t, tc.reply, tc.nilReply, inputs...); r.OK || r.Code != "bad_reply" || !strings.HasPrefix(r.Message, tc.msg) {
				t.Errorf("reply %q: %+v, want bad_reply %q...", Clip([]byte(tc.reply)), r, tc.msg)
			}
		}
		// The instance survived all of it.
		if r := call(t, `{"vectors":[[0.5]]}`, false, "a"); !r.OK || !sameBits(r.Vectors[0], []float32{0.5}) {
			t.Fatalf("after bad replies: %+v", r)
		}
	})
}

// FuzzEmbedReply fuzzes a test plugin's mdsa_embed reply decoder (the
// plugin implements the protocol of EmbedQuery): whatever the host replies,
// the prompt export must succeed with a report of either one vector (for
// the one input) or an error, never trap or hang.
func FuzzEmbedReply(f *testing.F, wasm []byte) {
	for _, s := range []string{
		`{"model":"m","vectors":[[1,-2.5e-3,3E+30,-0,1e-45]]}`, `{"vectors":[[]]}`, `{"vectors":[]}`, `{"vectors":null}`,
		`{"error":{"code":"model_denied","message":"no"}}`, `{"error":null,"vectors":[[1]]}`, `{"error":{}}`, `{"error":7}`,
		`{"vectors":[[1e39]]}`, `{"vectors":[["1"]]}`, `{"vectors":[1]}`, `{"vectors":{}}`, `[]`, ``, `nul`, `{"vectors":[[1,2]`,
		`{"vectors":[[0.` + strings.Repeat("0", 400) + `1e400]]}`, `{"vectors":[[` + strings.Repeat("9", 400) + `e-400]]}`,
	} {
		f.Add([]byte(s))
	}
	var (
		mu    sync.Mutex
		reply []byte
	)
	p := RawPluginWithHost(f, wasm, func(function string, request []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		return reply
	})
	in, err := json.Marshal(embedPromptInput([]string{"a"}))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			// Large replies only cost time; Embed covers thousands of values.
			return
		}
		mu.Lock()
		reply = data
		mu.Unlock()
		out, msg := CallRaw(t, p, "prompt", in)
		if msg != "" {
			t.Fatalf("reply %q: the export failed: %s", Clip(data), msg)
		}
		resp, err := abi.DecodePromptResponse(out)
		if err != nil || len(resp.Messages) != 1 {
			t.Fatalf("reply %q: output %s: %v", Clip(data), out, err)
		}
		r, err := ParseEmbedReport(resp.Messages[0].Content)
		if err != nil {
			t.Fatal(err)
		}
		if r.OK && len(r.Vectors) != 1 {
			t.Fatalf("reply %q: %d vectors for 1 input", Clip(data), len(r.Vectors))
		}
		if !r.OK && r.Code == "" {
			t.Fatalf("reply %q: an error without a code: %+v", Clip(data), r)
		}
	})
}
