package sdk

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

func testPlugin() Plugin {
	return Plugin{
		Manifest: abi.Manifest{
			Name: "demo", Version: "1.2.3", Keywords: []string{"demo"}, Examples: []string{"a demo"},
			Model:        abi.ModelPref{Tier: abi.TierDomain},
			Generation:   abi.Generation{MaxTokens: 64, Temperature: F32(0.2)},
			Capabilities: []string{abi.CapGenerate},
		},
		System:     "You help {{context.user|a guest}}.",
		Template:   "Question: {{query}}",
		MaxHistory: 2,
		Validators: []Validator{MinLength(1), RequireDisclaimer("Demo only.")},
	}
}

func mustCompile(t *testing.T, p Plugin) *Compiled {
	t.Helper()
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func invoke[T any](t *testing.T, c *Compiled, h *Host, export string, in any) T {
	t.Helper()
	b, _ := json.Marshal(in)
	out, err := c.Invoke(h, export, b)
	if err != nil {
		t.Fatalf("%s: %v", export, err)
	}
	var v T
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s output %s: %v", export, out, err)
	}
	return v
}

func TestCompileErrors(t *testing.T) {
	p := testPlugin()
	p.Manifest.ABI = 2
	p.Manifest.Name = "Bad Name"
	p.Manifest.Version = " "
	p.Manifest.Capabilities = []string{"generate", "teleport"}
	p.Manifest.Model.Tier = "huge"
	p.Template = "{{nope}}"
	p.System = "{{query"
	p.MaxHistory = -1
	p.Validators = append(p.Validators, MinLength(0), Validator{Name: "nil"})
	_, err := Compile(p)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"abi 2", `name "Bad Name"`, "version is empty", `"teleport"`, `tier "huge"`,
		"Template:", "System:", "MaxHistory", "min_length", `"nil": Check is nil`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestCompileRunsHostChecks(t *testing.T) {
	p := testPlugin()
	p.Manifest.Capabilities = []string{abi.CapGenerate, abi.CapGenerate}
	if _, err := Compile(p); err == nil || !strings.Contains(err.Error(), "duplicate capability") {
		t.Errorf("duplicate capability: %v", err)
	}
	p = testPlugin()
	p.Manifest.Generation.TopP = F32(2)
	if _, err := Compile(p); err == nil || !strings.Contains(err.Error(), "top_p") {
		t.Errorf("bad top_p: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	p := testPlugin()
	c := mustCompile(t, p)
	m := invoke[abi.Manifest](t, c, nil, abi.ExportDescribe, nil)
	p.Manifest.ABI = abi.Version
	if !reflect.DeepEqual(m, p.Manifest) || !reflect.DeepEqual(c.Manifest(), p.Manifest) {
		t.Errorf("describe = %+v, want %+v", m, p.Manifest)
	}
	// Later changes to the caller's values do not leak into the plugin.
	p.Manifest.Keywords[0] = "changed"
	if c.Manifest().Keywords[0] != "demo" {
		t.Error("manifest aliased the caller's slice")
	}
	empty := mustCompile(t, Plugin{Manifest: abi.Manifest{Name: "e", Version: "1", Keywords: []string{"k"}}})
	out, _ := empty.Invoke(nil, abi.ExportDescribe, nil)
	if !strings.Contains(string(out), `"examples":[]`) || !strings.Contains(string(out), `"capabilities":[]`) {
		t.Errorf("nil lists must encode as []: %s", out)
	}
}

func TestDefaultPrompt(t *testing.T) {
	c := mustCompile(t, testPlugin())
	got := invoke[abi.PromptResponse](t, c, nil, abi.ExportPrompt, abi.PromptRequest{
		Query: "What is {{context.user}}?",
		History: []abi.Message{
			{Role: abi.RoleUser, Content: "oldest, dropped by MaxHistory"},
			{Role: abi.RoleSystem, Content: "injected system turn"},
			{Role: abi.RoleAssistant, Content: "earlier answer"},
			{Role: "tool", Content: "unknown role"},
		},
		Context: map[string]string{"user": "Ada"},
	})
	want := []abi.Message{
		{Role: abi.RoleSystem, Content: "You help Ada."},
		{Role: abi.RoleAssistant, Content: "earlier answer"},
		{Role: abi.RoleUser, Content: "Question: What is {{context.user}}?"},
	}
	if !reflect.DeepEqual(got.Messages, want) {
		t.Errorf("messages %+v\nwant %+v", got.Messages, want)
	}
	noSys := mustCompile(t, Plugin{Manifest: abi.Manifest{Name: "n", Version: "1", Examples: []string{"e"}}})
	got = invoke[abi.PromptResponse](t, noSys, nil, abi.ExportPrompt, abi.PromptRequest{Query: "hi"})
	if !reflect.DeepEqual(got.Messages, []abi.Message{{Role: abi.RoleUser, Content: "hi"}}) {
		t.Errorf("no system prompt: %+v", got.Messages)
	}
}

func TestDefaultValidate(t *testing.T) {
	c := mustCompile(t, testPlugin())
	v := invoke[abi.Validation](t, c, nil, abi.ExportValidate, abi.ValidateRequest{Query: "q", Response: "Answer.", Domain: "demo"})
	if !v.OK || v.Response == nil || *v.Response != "Answer.\n\nDemo only." || len(v.Issues) != 1 {
		t.Errorf("validate: %+v", v)
	}
	v = invoke[abi.Validation](t, c, nil, abi.ExportValidate, abi.ValidateRequest{Query: "q", Response: ""})
	if v.OK {
		t.Errorf("empty answer passed: %+v", v)
	}
}

func TestInvokeErrors(t *testing.T) {
	p := testPlugin()
	p.Validate = func(env *Env, req abi.ValidateRequest) (abi.Validation, error) {
		if req.Response == "explode" {
			var xs []int
			_ = xs[len(req.Response)] // index out of range
		}
		return abi.Validation{}, errors.New("custom failure")
	}
	c := mustCompile(t, p)
	for _, tc := range []struct {
		export, in string
		want       []string
	}{
		{abi.ExportPrompt, `{"query":"  "}`, []string{"prompt: the query is empty"}},
		{abi.ExportPrompt, ``, []string{"prompt: empty input"}},
		{abi.ExportPrompt, `{"query":`, []string{"prompt: decode input"}},
		{abi.ExportPrompt, `{"query":5}`, []string{"prompt: decode input"}},
		{abi.ExportValidate, `{"response":"x"}`, []string{"validate: custom failure"}},
		{abi.ExportValidate, `{"response":"explode"}`, []string{"validate: plugin panicked: runtime error: index out of range", "at github.com/mdsa-go/mdsa/sdk/go.TestInvokeErrors", "plugin_test.go"}},
		{abi.ExportHandle, `{"query":"q"}`, []string{"handle:", "mdsa_generate", "no MDSA host"}},
		{"launch", `{}`, []string{`unknown export "launch"`}},
	} {
		out, err := c.Invoke(nil, tc.export, []byte(tc.in))
		if err == nil || out != nil {
			t.Errorf("%s %s: out %s, err %v", tc.export, tc.in, out, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s %s: error %q lacks %q", tc.export, tc.in, err, w)
			}
		}
	}
	if !errors.Is(func() error { _, err := c.Invoke(nil, abi.ExportHandle, []byte(`{"query":"q"}`)); return err }(), ErrNoHost) {
		t.Error("native host call must wrap ErrNoHost")
	}
}

// fakeHost answers like a host: it echoes generate requests, embeds to
// two dimensions, counts words, and refuses what mentions "REFUSE".
func fakeHost(t *testing.T, calls *[]string) *Host {
	return NewHost(func(fn string, req []byte) ([]byte, error) {
		*calls = append(*calls, fn)
		if strings.Contains(string(req), "REFUSE") {
			return []byte(`{"error":{"code":"budget_exceeded","message":"no tokens left"}}`), nil
		}
		switch fn {
		case abi.HostGenerate:
			var r abi.GenerateRequest
			if err := json.Unmarshal(req, &r); err != nil {
				t.Fatalf("generate request %s: %v", req, err)
			}
			last := r.Messages[len(r.Messages)-1].Content
			return json.Marshal(abi.GenerateResponse{Text: "echo " + last + " t=" + fmtF32(r.Temperature), Model: "m", FinishReason: "stop"})
		case abi.HostEmbed:
			return []byte(`{"model":"e","vectors":[[1,2],[3,4]]}`), nil
		case abi.HostCountTokens:
			return []byte(`{"count":3}`), nil
		}
		return nil, errors.New("unexpected function")
	})
}

func fmtF32(f *float32) string {
	if f == nil {
		return "nil"
	}
	b, _ := json.Marshal(*f)
	return string(b)
}

func TestHandle(t *testing.T) {
	var calls []string
	h := fakeHost(t, &calls)
	p := testPlugin()
	c := mustCompile(t, p)
	// No custom Handle: prompt, generate with the manifest's settings
	// overlaid by the prompt's, then validate.
	r := invoke[abi.HandleResponse](t, c, h, abi.ExportHandle, abi.PromptRequest{Query: "hi"})
	if r.Response != "echo Question: hi t=0.2\n\nDemo only." || !r.Validation.OK {
		t.Errorf("default handle: %+v", r)
	}
	p.Prompt = func(env *Env, req abi.PromptRequest) (abi.PromptResponse, error) {
		pr, err := env.DefaultPrompt(req)
		pr.Generation.Temperature = F32(0.9)
		return pr, err
	}
	p.Handle = func(env *Env, req abi.PromptRequest) (abi.HandleResponse, error) {
		if req.Query == "embed" {
			e, err := env.Embed("a", "b")
			if err != nil {
				return abi.HandleResponse{}, err
			}
			n, err := env.CountTokens("a b c")
			return abi.HandleResponse{Response: e.Model + string(rune('0'+len(e.Vectors))) + string(rune('0'+n))}, err
		}
		return env.DefaultHandle(req)
	}
	c = mustCompile(t, p)
	r = invoke[abi.HandleResponse](t, c, h, abi.ExportHandle, abi.PromptRequest{Query: "hi"})
	if !strings.HasPrefix(r.Response, "echo Question: hi t=0.9") {
		t.Errorf("prompt override not applied: %q", r.Response)
	}
	r = invoke[abi.HandleResponse](t, c, h, abi.ExportHandle, abi.PromptRequest{Query: "embed"})
	if r.Response != "e23" || r.Validation.Issues == nil {
		t.Errorf("custom handle: %+v", r)
	}
	_, err := c.Invoke(h, abi.ExportHandle, []byte(`{"query":"REFUSE"}`))
	if ErrorCode(err) != abi.ErrBudget || !strings.Contains(err.Error(), "no tokens left") {
		t.Errorf("host refusal: %v (code %q)", err, ErrorCode(err))
	}
}

func TestHostCalls(t *testing.T) {
	reply := func(s string, err error) *Host {
		return NewHost(func(string, []byte) ([]byte, error) { return []byte(s), err })
	}
	if _, err := reply(`{"text":"x"}`, nil).Generate(abi.GenerateRequest{}); err == nil {
		t.Error("empty generate request accepted")
	}
	if r, err := reply(`{"text":"x","tokens_out":3}`, nil).Generate(abi.GenerateRequest{Prompt: "p"}); err != nil || r.Text != "x" || r.TokensOut != 3 {
		t.Errorf("generate: %+v %v", r, err)
	}
	if _, err := reply(`{"error":{"message":"?"}}`, nil).Generate(abi.GenerateRequest{Prompt: "p"}); ErrorCode(err) != "unknown" {
		t.Errorf("code-less error: %v", err)
	}
	if _, err := reply(`not json`, nil).CountTokens("x"); err == nil || ErrorCode(err) != "" {
		t.Errorf("bad reply: %v", err)
	}
	if _, err := reply(`{"vectors":[[1]]}`, nil).Embed("a", "b"); err == nil {
		t.Error("vector count mismatch accepted")
	}
	boom := errors.New("transport down")
	if _, err := reply("", boom).CountTokens("x"); !errors.Is(err, boom) {
		t.Errorf("transport error: %v", err)
	}
	var he *HostError
	_, err := reply(`{"error":{"code":"capability_denied","message":"embed not declared"}}`, nil).Embed("a")
	if !errors.As(err, &he) || he.Function != abi.HostEmbed || he.Code != abi.ErrCapability {
		t.Errorf("HostError: %#v", err)
	}
	for _, f := range []func() error{
		func() error { _, err := Generate(abi.GenerateRequest{Prompt: "p"}); return err },
		func() error { _, err := Embed("a"); return err },
		func() error { _, err := CountTokens("a"); return err },
	} {
		if err := f(); !errors.Is(err, ErrNoHost) {
			t.Errorf("native package-level call: %v", err)
		}
	}
}

func TestMergeGeneration(t *testing.T) {
	base := abi.Generation{MaxTokens: 100, Temperature: F32(0.2), TopK: 40, Stop: []string{"x"}}
	seed := uint32(7)
	got := MergeGeneration(base, abi.Generation{MaxTokens: 10, TopP: F32(0.5), Seed: &seed, RepeatPenalty: F32(1.1)})
	if got.MaxTokens != 10 || *got.Temperature != 0.2 || *got.TopP != 0.5 || got.TopK != 40 || got.Stop[0] != "x" || *got.Seed != 7 || *got.RepeatPenalty != 1.1 {
		t.Errorf("merge: %+v", got)
	}
	if !reflect.DeepEqual(MergeGeneration(base, abi.Generation{}), base) {
		t.Error("empty override changed base")
	}
}

func TestRegister(t *testing.T) {
	registration.mu.Lock()
	savedC, savedErr, savedSet := registration.c, registration.err, registration.set
	registration.c, registration.err, registration.set = nil, nil, false
	registration.mu.Unlock()
	defer func() {
		registration.mu.Lock()
		registration.c, registration.err, registration.set = savedC, savedErr, savedSet
		registration.mu.Unlock()
	}()

	if _, err := Registered(); err == nil || !strings.Contains(err.Error(), "no plugin registered") {
		t.Errorf("before Register: %v", err)
	}
	Register(testPlugin())
	c, err := Registered()
	if err != nil || c.Manifest().Name != "demo" {
		t.Fatalf("after Register: %v", err)
	}
	Register(testPlugin())
	if _, err := Registered(); err == nil || !strings.Contains(err.Error(), "more than once") {
		t.Errorf("second Register: %v", err)
	}
}
