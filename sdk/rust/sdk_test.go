package rust_test

// These tests build the Rust SDK's plugins (examples/plugins/hr and the
// test plugin testdata/echo) for wasm32-unknown-unknown with Debian's rustc
// and run them through the MDSA host (host/plugin) and through the Extism
// go-sdk directly (for inputs the host never sends). They skip, saying why,
// when rustc or its wasm32 standard library is missing (sdk/rust/setup.sh
// installs both) and in -short mode.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/internal/sdkcheck"
	"github.com/mdsa-go/mdsa/internal/testutil"

	extism "github.com/extism/go-sdk"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// hrDisclaimer is the text the hr plugin appends when an answer lacks it.
const hrDisclaimer = "This is general information, not legal or HR advice for your situation. " +
	"Policies and employment law differ by employer and country: check your contract, the employee " +
	"handbook or your HR team, and for a dispute an employment adviser or union representative."

// tmpDir holds the built modules and the compilation cache of this test
// binary; TestMain removes it.
var tmpDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mdsa-rust-sdk-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// toolchain returns the rustc to use ($RUSTC, default /usr/bin/rustc), or
// why there is none able to build wasm32-unknown-unknown.
var toolchain = sync.OnceValues(func() (string, error) {
	rc := os.Getenv("RUSTC")
	if rc == "" {
		rc = "/usr/bin/rustc"
	}
	if _, err := os.Stat(rc); err != nil {
		return "", fmt.Errorf("rustc not found at %s: run sdk/rust/setup.sh (Debian: apt-get install rustc libstd-rust-dev-wasm32) or set RUSTC", rc)
	}
	out, err := exec.Command(rc, "--print", "sysroot").Output()
	if err != nil {
		return "", fmt.Errorf("%s --print sysroot: %v", rc, err)
	}
	std := filepath.Join(strings.TrimSpace(string(out)), "lib", "rustlib", "wasm32-unknown-unknown", "lib")
	if _, err := os.Stat(std); err != nil {
		return "", fmt.Errorf("%s has no wasm32-unknown-unknown standard library (%s missing): run sdk/rust/setup.sh (apt-get install libstd-rust-dev-wasm32)", rc, std)
	}
	return rc, nil
})

// builds build each module at most once per test binary.
var builds = map[string]func() ([]byte, error){
	// hr through its own build script, as a user would.
	"hr": sync.OnceValues(func() ([]byte, error) {
		rc, err := toolchain()
		if err != nil {
			return nil, err
		}
		root, err := testutil.ModuleRoot()
		if err != nil {
			return nil, err
		}
		out := filepath.Join(tmpDir, "hr.wasm")
		cmd := exec.Command("sh", filepath.Join(root, "examples", "plugins", "hr", "build.sh"), out)
		cmd.Env = append(os.Environ(), "RUSTC="+rc)
		msg, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("examples/plugins/hr/build.sh: %v\n%s", err, msg)
		}
		if bytes.Contains(msg, []byte("warning")) {
			return nil, fmt.Errorf("examples/plugins/hr/build.sh: the build warns:\n%s", msg)
		}
		return os.ReadFile(out)
	}),
	// echo directly with rustc.
	"echo": sync.OnceValues(func() ([]byte, error) {
		rc, err := toolchain()
		if err != nil {
			return nil, err
		}
		out := filepath.Join(tmpDir, "echo.wasm")
		cmd := exec.Command(rc, "--edition", "2021", "--crate-name", "echo", "--crate-type", "cdylib",
			"--target", "wasm32-unknown-unknown", "-C", "opt-level=s", "-C", "lto", "-C", "codegen-units=1",
			"-C", "strip=symbols", "-C", "target-feature=+bulk-memory", "-C", "link-arg=-zstack-size=262144",
			"-D", "warnings", "-o", out, filepath.Join("testdata", "echo", "main.rs"))
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("rustc testdata/echo/main.rs: %v\n%s", err, msg)
		}
		return os.ReadFile(out)
	}),
}

// wasm returns the built module name ("hr" or "echo"), skipping the test
// when it cannot be built here.
func wasm(tb testing.TB, name string) []byte {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds Rust wasm plugins; skipped in -short mode")
	}
	if _, err := toolchain(); err != nil {
		tb.Skip(err)
	}
	b, err := builds[name]()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// services answers host calls without a model and records them. Generate
// echoes the last message, or refuses with model_denied when it contains
// "DENY".
type services struct {
	mu     sync.Mutex
	gens   []abi.GenerateRequest
	counts []string
	embeds [][]string
}

func (s *services) Generate(ctx context.Context, c plugin.Call, req abi.GenerateRequest) (abi.GenerateResponse, error) {
	s.mu.Lock()
	s.gens = append(s.gens, req)
	s.mu.Unlock()
	last := req.Prompt
	if n := len(req.Messages); n > 0 {
		last = req.Messages[n-1].Content
	}
	if strings.Contains(last, "DENY") {
		return abi.GenerateResponse{}, &plugin.CodedError{Code: abi.ErrModelDenied, Err: errors.New("tenant may not use model fake")}
	}
	return abi.GenerateResponse{Text: "echo: " + last, Model: "fake", TokensIn: 3, TokensOut: 2, FinishReason: "stop"}, nil
}

func (s *services) Embed(ctx context.Context, c plugin.Call, req abi.EmbedRequest) (abi.EmbedResponse, error) {
	s.mu.Lock()
	s.embeds = append(s.embeds, req.Input)
	s.mu.Unlock()
	v := make([][]float32, len(req.Input))
	for i := range v {
		v[i] = []float32{float32(len(req.Input[i])), 0.5, -1}
	}
	return abi.EmbedResponse{Model: "fake-embed", Vectors: v}, nil
}

func (s *services) CountTokens(ctx context.Context, c plugin.Call, req abi.CountTokensRequest) (abi.CountTokensResponse, error) {
	s.mu.Lock()
	s.counts = append(s.counts, req.Text)
	s.mu.Unlock()
	return abi.CountTokensResponse{Count: len(strings.Fields(req.Text))}, nil
}

// load loads module through the MDSA host with svc serving host calls.
func load(tb testing.TB, name string, module []byte, svc plugin.Services) *plugin.Plugin {
	tb.Helper()
	ctx := context.Background()
	rt, err := plugin.NewRuntime(ctx, plugin.Options{CacheDir: filepath.Join(tmpDir, "cache"), Services: svc, PoolSize: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Close(ctx); err != nil {
			tb.Error(err)
		}
	})
	p, err := rt.LoadBytes(ctx, name+".wasm", module)
	if err != nil {
		tb.Fatalf("load %s: %v", name, err)
	}
	return p
}

func TestRustUnitTests(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the SDK's Rust unit tests; skipped in -short mode")
	}
	rc, err := toolchain()
	if err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C linker (cc) for a native Rust test binary")
	}
	bin := filepath.Join(t.TempDir(), "mdsa_test")
	if msg, err := exec.Command(rc, "--edition", "2021", "--test", "-D", "warnings", "-o", bin, "mdsa.rs").CombinedOutput(); err != nil {
		t.Fatalf("rustc --test mdsa.rs: %v\n%s", err, msg)
	}
	msg, err := exec.Command(bin, "--test-threads=2").CombinedOutput()
	if err != nil {
		t.Fatalf("Rust unit tests failed: %v\n%s", err, msg)
	}
	if !bytes.Contains(msg, []byte("test result: ok")) {
		t.Fatalf("unexpected Rust test output:\n%s", msg)
	}
	t.Logf("%s", bytes.TrimSpace(msg[bytes.LastIndex(msg, []byte("test result")):]))
}

func TestDescribe(t *testing.T) {
	p := load(t, "hr", wasm(t, "hr"), nil)
	m := p.Manifest()
	if m.ABI != abi.Version || m.Name != "hr" || m.Version != "1.0.0" {
		t.Fatalf("abi/name/version = %d/%q/%q", m.ABI, m.Name, m.Version)
	}
	if len(m.Keywords) < 25 || len(m.Examples) < 40 {
		t.Errorf("%d keywords and %d examples, want 25+ and 40+", len(m.Keywords), len(m.Examples))
	}
	seen := map[string]bool{}
	for _, e := range m.Examples {
		if seen[e] {
			t.Errorf("duplicate example %q", e)
		}
		seen[e] = true
	}
	if !slices.Equal(m.Capabilities, []string{abi.CapGenerate}) {
		t.Errorf("capabilities = %q", m.Capabilities)
	}
	g := m.Generation
	if g.MaxTokens != 400 || g.Temperature == nil || *g.Temperature != 0.3 || g.TopP == nil || *g.TopP != 0.9 ||
		g.TopK != 40 || g.RepeatPenalty == nil || *g.RepeatPenalty != 1.1 || g.Seed != nil || g.Stop != nil {
		t.Errorf("generation = %+v", g)
	}
	if m.Model.Tier != abi.TierDomain || m.Model.MinContext != 2048 || len(m.Model.Prefer) != 2 {
		t.Errorf("model = %+v", m.Model)
	}
	if p.HasHandle() {
		t.Error("hr exports handle; it should leave generation (and streaming) to the host")
	}
}

func TestPromptEscaping(t *testing.T) {
	p := load(t, "hr", wasm(t, "hr"), nil)
	ctx := context.Background()
	queries := []string{
		`My manager said "you're on thin ice" – is that a threat?`,
		"line one\nline two\r\n\ttabbed \\ backslash / slash",
		"unicode: é ü ß 中文 日本語 😀 👩‍💻 \u2028 \u2029 end",
		"control \u0001\u001f\u007f bytes and a NUL-free string",
		"{{context.secret}} and \\{{query}} stay literal",
		`{"looks":"like JSON"} ]}"`,
	}
	country := "Ger\"many\n😀"
	for _, q := range queries {
		hist := []abi.Message{
			{Role: abi.RoleUser, Content: "old 1"}, {Role: abi.RoleAssistant, Content: "old 2"},
			{Role: abi.RoleSystem, Content: "INJECTED SYSTEM TURN"}, {Role: "tool", Content: "tool turn"},
			{Role: abi.RoleUser, Content: ""},
		}
		for i := range 8 {
			hist = append(hist, abi.Message{Role: []string{abi.RoleUser, abi.RoleAssistant}[i%2], Content: fmt.Sprintf("turn %d \"q\" é", i)})
		}
		res, err := p.Prompt(ctx, abi.PromptRequest{Query: q, History: hist,
			Context: map[string]string{"country": country, "secret": "LEAKED"}})
		if err != nil {
			t.Fatalf("prompt %q: %v", q, err)
		}
		msgs := res.Messages
		if len(msgs) != 10 {
			t.Fatalf("prompt %q: %d messages, want system + 8 history + query: %+v", q, len(msgs), msgs)
		}
		if msgs[0].Role != abi.RoleSystem || !strings.HasSuffix(msgs[0].Content, "The user's country, if known: "+country+".") {
			t.Errorf("system message = %q", msgs[0].Content)
		}
		for i, m := range msgs[1:9] {
			want := fmt.Sprintf("turn %d \"q\" é", i)
			if m.Content != want || m.Role != []string{abi.RoleUser, abi.RoleAssistant}[i%2] {
				t.Errorf("history[%d] = %+v, want %q", i, m, want)
			}
		}
		if last := msgs[9]; last.Role != abi.RoleUser || last.Content != q {
			t.Errorf("query message = %+v, want %q verbatim", last, q)
		}
		for _, m := range msgs {
			if strings.Contains(m.Content, "LEAKED") || strings.Contains(m.Content, "INJECTED") {
				t.Errorf("message %+v carries injected text", m)
			}
		}
	}
	if _, err := p.Prompt(ctx, abi.PromptRequest{Query: " \n\t"}); err == nil || !strings.Contains(err.Error(), "prompt: the query is empty") {
		t.Errorf("blank query: err = %v", err)
	}
	// Without the context key the template's default is used.
	res, err := p.Prompt(ctx, abi.PromptRequest{Query: "hi"})
	if err != nil || !strings.HasSuffix(res.Messages[0].Content, "if known: not stated.") || len(res.Messages) != 2 {
		t.Errorf("no context: %+v, %v", res, err)
	}
}

func TestValidate(t *testing.T) {
	p := load(t, "hr", wasm(t, "hr"), nil)
	ctx := context.Background()
	type issue struct{ code, severity string }
	long := strings.Repeat("Annual leave rules depend on your contract. ", 70) // 3080 characters
	for _, tc := range []struct {
		name     string
		response string
		ok       bool
		score    float64
		issues   []issue
		revised  string // "" = unchanged
		msg      string // substring of the first issue's message
	}{
		{name: "disclaimer appended", response: "Most full-time staff get 20 to 25 days a year.  \n",
			ok: true, score: 1, issues: []issue{{"disclaimer_added", "info"}},
			revised: "Most full-time staff get 20 to 25 days a year.\n\n" + hrDisclaimer},
		{name: "model's own disclaimer counts", response: "Ask payroll. This is general information; check your handbook.",
			ok: true, score: 1},
		{name: "alternative wording, case ignored", response: "Talk to HR first (NOT LEGAL ADVICE).", ok: true, score: 1},
		{name: "unicode and quotes survive", response: "Résumé “gaps” are fine: \"ok\"\n\ttab 😀 \u2028 中文",
			ok: true, score: 1, issues: []issue{{"disclaimer_added", "info"}},
			revised: "Résumé “gaps” are fine: \"ok\"\n\ttab 😀 \u2028 中文\n\n" + hrDisclaimer},
		{name: "emails redacted", response: "Write to hr@acme.com or Jo.Lee+hr@mail.acme.co.uk. Not legal advice.",
			ok: true, score: 0.85, issues: []issue{{"pii_redacted", "warning"}},
			revised: "Write to [email redacted] or [email redacted]. Not legal advice.", msg: "redacted 2 email addresses"},
		{name: "not an email", response: "Use the @HR channel or user@localhost. Not legal advice.", ok: true, score: 1},
		{name: "banned certainty", response: "Relax, they can't fire you for that. Not legal advice.",
			ok: false, score: 0.5, issues: []issue{{"banned_term", "error"}}, msg: `"they can t fire you"`},
		{name: "empty", response: "  \n ", ok: false, score: 0.5,
			issues: []issue{{"too_short", "error"}, {"disclaimer_added", "info"}}, revised: "\n\n" + hrDisclaimer},
		{name: "too long", response: long, ok: true, score: 0.85,
			issues: []issue{{"too_long", "warning"}, {"disclaimer_added", "info"}}, msg: "response had 3080 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := p.Validate(ctx, abi.ValidateRequest{Query: "q", Response: tc.response, Domain: "hr"})
			if err != nil {
				t.Fatal(err)
			}
			var got []issue
			for _, is := range v.Issues {
				got = append(got, issue{is.Code, is.Severity})
			}
			if v.OK != tc.ok || v.Score != tc.score || !slices.Equal(got, tc.issues) {
				t.Errorf("ok=%v score=%v issues=%+v, want %v %v %+v", v.OK, v.Score, v.Issues, tc.ok, tc.score, tc.issues)
			}
			if tc.msg != "" && (len(v.Issues) == 0 || !strings.Contains(v.Issues[0].Message, tc.msg)) {
				t.Errorf("issues %+v: want a message containing %q", v.Issues, tc.msg)
			}
			switch {
			case tc.name == "too long":
				if v.Response == nil || utf8.RuneCountInString(strings.TrimSuffix(*v.Response, "\n\n"+hrDisclaimer)) > 2500 ||
					!strings.HasSuffix(*v.Response, "contract.\n\n"+hrDisclaimer) {
					t.Errorf("cut response = %v", v.Response)
				}
			case tc.revised == "":
				if v.Response != nil {
					t.Errorf("response revised to %q, want unchanged", *v.Response)
				}
			case v.Response == nil || *v.Response != tc.revised:
				t.Errorf("revised = %v, want %q", v.Response, tc.revised)
			}
		})
	}
}

// stubHost gives raw Extism instances the MDSA host functions; each
// refuses with unavailable.
func stubHost() []extism.HostFunction {
	i64 := []extism.ValueType{extism.ValueTypeI64}
	var fns []extism.HostFunction
	for _, name := range []string{abi.HostGenerate, abi.HostEmbed, abi.HostCountTokens} {
		fns = append(fns, extism.NewHostFunctionWithStack(name, func(ctx context.Context, p *extism.CurrentPlugin, stack []uint64) {
			off, err := p.WriteBytes([]byte(`{"error":{"code":"unavailable","message":"stub"}}`))
			if err != nil {
				panic(err)
			}
			stack[0] = off
		}, i64, i64))
	}
	return fns
}

// raw is one Extism instance of a module, for calls with arbitrary input
// bytes; it is remade after a failure that kills it.
type raw struct {
	cp   *extism.CompiledPlugin
	inst *extism.Plugin
}

func newRaw(tb testing.TB, module []byte) *raw {
	tb.Helper()
	ctx := context.Background()
	// A timeout makes wazero stop a spinning call (and so turns a hang into
	// an error).
	cp, err := plugin.Sandbox{Timeout: 20 * time.Second, HostFunctions: stubHost()}.Compile(ctx, module)
	if err != nil {
		tb.Fatalf("compile: %v", err)
	}
	r := &raw{cp: cp}
	tb.Cleanup(func() {
		if r.inst != nil {
			r.inst.Close(ctx)
		}
		cp.Close(ctx)
	})
	if err := r.fresh(); err != nil {
		tb.Fatal(err)
	}
	return r
}

func (r *raw) fresh() error {
	if r.inst != nil {
		r.inst.Close(context.Background())
	}
	var err error
	r.inst, err = r.cp.Instance(context.Background(), extism.PluginInstanceConfig{})
	return err
}

// call runs export on input. trap reports that the instance died (trap,
// exit or timeout); it is replaced.
func (r *raw) call(export string, input []byte) (rc uint32, out []byte, trap bool, err error) {
	rc, out, err = r.inst.Call(export, input)
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, "wasm stack trace") || strings.HasPrefix(msg, "wasm error") ||
			strings.Contains(msg, "module closed") || strings.Contains(msg, "deadline exceeded") {
			trap = true
			if ferr := r.fresh(); ferr != nil {
				err = errors.Join(err, ferr)
			}
		}
	}
	return rc, out, trap, err
}

func TestInvalidInput(t *testing.T) {
	r := newRaw(t, wasm(t, "hr"))
	deep := strings.Repeat("[", 100000)
	for _, tc := range []struct {
		input, want string
	}{
		{"", "empty input: want a JSON object"},
		{" \n", "empty input: want a JSON object"},
		{"{", "invalid JSON at byte 1"},
		{"not json", "invalid JSON at byte 0"},
		{`{"query":"x"} trailing`, "trailing data"},
		{`{"query":"x",}`, "invalid JSON"},
		{`{"query":"unterminated}`, "unterminated string"},
		{`{"query":"bad \q escape"}`, "invalid escape"},
		{"{\"query\":\"raw \x01 control\"}", "control character"},
		{"{\"query\":\"\xff\xfe\"}", "invalid UTF-8 at byte 10"},
		{`[{"query":"x"}]`, "want a JSON object, got an array"},
		{`"just a string"`, "want a JSON object, got a string"},
		{`{"query":42}`, `field "query": want a string, got a number`},
		{`{"query":"x","history":{"role":"user"}}`, `field "history": want an array`},
		{`{"query":"x","history":["hi"]}`, `field "history"[0]: want an object`},
		{`{"query":"x","context":{"country":1}}`, `field "context"["country"]: want a string`},
		{`{"query":"x","n":1e999}`, "number out of range"},
		{`{"query":"x","deep":` + deep, "nesting deeper than 128 levels"},
	} {
		for _, export := range []string{abi.ExportPrompt, abi.ExportValidate} {
			if export == abi.ExportValidate && (strings.Contains(tc.want, "history") || strings.Contains(tc.want, "context")) {
				continue // validate ignores those fields
			}
			rc, out, trap, err := r.call(export, []byte(tc.input))
			switch {
			case trap:
				t.Errorf("%s(%.40q): trapped: %v", export, tc.input, err)
			case err == nil || rc == 0:
				t.Errorf("%s(%.40q): rc=%d out=%s err=%v, want an error", export, tc.input, rc, out, err)
			case !strings.HasPrefix(err.Error(), export+": ") || !strings.Contains(err.Error(), tc.want):
				t.Errorf("%s(%.40q): error %q, want %q in it", export, tc.input, err, tc.want)
			}
		}
	}
	// The deepest nesting the parser takes fits the plugin's stack.
	deepest := `{"query":"x","deep":` + strings.Repeat("[", 127) + strings.Repeat("]", 127) + `}`
	for _, export := range []string{abi.ExportPrompt, abi.ExportValidate} {
		if rc, _, trap, err := r.call(export, []byte(deepest)); rc != 0 || err != nil || trap {
			t.Errorf("%s(nesting 128): rc=%d err=%v", export, rc, err)
		}
	}
	// The instance survived every refusal and still works.
	rc, out, _, err := r.call(abi.ExportPrompt, []byte(`{"query":"Can I carry over leave?","unknown":[1,{"a":null}]}`))
	if err != nil || rc != 0 {
		t.Fatalf("valid call after errors: rc=%d err=%v", rc, err)
	}
	if _, err := abi.DecodePromptResponse(out); err != nil {
		t.Fatalf("output %s: %v", out, err)
	}
	// describe ignores its input.
	if _, out, _, err := r.call(abi.ExportDescribe, []byte("garbage")); err != nil || !bytes.HasPrefix(out, []byte(`{"abi":1,"name":"hr"`)) {
		t.Errorf("describe: %s, %v", out, err)
	}
	// An unknown export.
	if _, _, _, err := r.call("nope", nil); err == nil {
		t.Error("unknown export: no error")
	}
}

func TestHandleAndHostCalls(t *testing.T) {
	svc := &services{}
	p := load(t, "echo", wasm(t, "echo"), svc)
	ctx := context.Background()
	if !p.HasHandle() {
		t.Fatal("echo has no handle export")
	}
	q := "Say \"hi\"\nthen 😀 é {{query}}"
	res, err := p.Handle(ctx, abi.PromptRequest{Query: q, Context: map[string]string{"mode": "loud \"x\"", "embed": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "echo: " + q + "\n\nEcho disclaimer."; res.Response != want {
		t.Errorf("response = %q, want %q", res.Response, want)
	}
	var codes []string
	for _, is := range res.Validation.Issues {
		codes = append(codes, is.Code+": "+is.Message)
	}
	wantCodes := []string{
		"disclaimer_added: required disclaimer appended",
		"tokens: query has 6 tokens",
		"embedded: 2 vectors of dims [3,3] from fake-embed",
		"generated: model fake finish stop out 2",
	}
	if !slices.Equal(codes, wantCodes) || !res.Validation.OK || res.Validation.Score != 1 {
		t.Errorf("validation = %+v\nissues %q\nwant   %q", res.Validation, codes, wantCodes)
	}
	svc.mu.Lock()
	gens, counts, embeds := svc.gens, svc.counts, svc.embeds
	svc.mu.Unlock()
	if len(gens) != 1 || len(counts) != 1 || counts[0] != q || len(embeds) != 1 || !slices.Equal(embeds[0], []string{q, "second"}) {
		t.Fatalf("host calls: gens %+v counts %q embeds %q", gens, counts, embeds)
	}
	g := gens[0]
	wantMsgs := []abi.Message{{Role: "system", Content: "Echo system. Mode: loud \"x\"."}, {Role: "user", Content: q}}
	if !slices.Equal(g.Messages, wantMsgs) || g.MaxTokens != 7 || g.Temperature == nil || *g.Temperature != 0.5 {
		t.Errorf("generate request = %+v (temperature %v)", g, g.Temperature)
	}

	// A model_denied refusal is answered without the model.
	res, err = p.Handle(ctx, abi.PromptRequest{Query: "DENY me"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Response, "The model is not available") || res.Validation.Score != 0.85 ||
		!strings.HasPrefix(res.Validation.Issues[1].Message, "model_denied: ") ||
		!strings.HasSuffix(res.Validation.Issues[1].Message, "tenant may not use model fake") {
		t.Errorf("fallback = %+v", res)
	}
	// The custom prompt's max_tokens reaches the host through prompt too.
	pr, err := p.Prompt(ctx, abi.PromptRequest{Query: "x"})
	if err != nil || pr.Generation.MaxTokens != 7 || len(pr.Messages) != 2 {
		t.Errorf("prompt = %+v, %v", pr, err)
	}
	// No host at all: the refusal of count_tokens fails handle, with the code.
	p2 := load(t, "echo", wasm(t, "echo"), nil)
	if _, err := p2.Handle(ctx, abi.PromptRequest{Query: "x"}); err == nil || !strings.Contains(err.Error(), "handle: unavailable") {
		t.Errorf("no services: err = %v", err)
	}
}

// TestTools checks plugin tools (ABI 1.1) through the host: the manifest's
// abi_minor and tools, a good call, a failed call for bad arguments, an
// unknown name, the query and a host call from a tool; the tool export
// with inputs the host never sends; and that a plugin without tools
// declares none.
func TestTools(t *testing.T) {
	svc := &services{}
	p := load(t, "echo", wasm(t, "echo"), svc)
	sdkcheck.CheckToolManifest(t, p)
	sdkcheck.CheckToolCalls(t, p, sdkcheck.ToolCallOptions{QuerySuffix: " (0 arguments, 4 tokens)"})
	svc.mu.Lock()
	counts := slices.Clone(svc.counts)
	svc.mu.Unlock()
	if q := "What is \"2+2\"?\n🙂"; !slices.Equal(counts, []string{q}) {
		t.Errorf("count_tokens from the tool export: %q", counts)
	}

	// The export itself, with inputs the host never sends (the stub host
	// refuses count_tokens: a failed call, not a failed export).
	r := newRaw(t, wasm(t, "echo"))
	for _, tc := range []struct{ input, want string }{
		{`{"name":"nope","arguments":{}}`, `tool: no tool named "nope"`},
		{`{"arguments":{}}`, `tool: no tool named ""`},
		{`{"name":5}`, `tool: field "name": want a string, got a number`},
		{`{"name":"add","query":[]}`, `tool: field "query": want a string, got an array`},
		{`[]`, "tool: decode input: want a JSON object, got an array"},
		{`{"name":"add"`, "tool: decode input: invalid JSON at byte 13"},
	} {
		rc, out, trap, err := r.call(abi.ExportTool, []byte(tc.input))
		if trap || rc == 0 || err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("tool(%s): rc=%d out=%s trap=%v err=%v, want %q", tc.input, rc, out, trap, err, tc.want)
		}
	}
	rc, out, _, err := r.call(abi.ExportTool, []byte(`{"name":"query","arguments":null,"query":"q"}`))
	if res, derr := abi.DecodeToolResponse(out); rc != 0 || err != nil || derr != nil ||
		res != (abi.ToolResponse{Content: "count_tokens: unavailable: stub", IsError: true}) {
		t.Errorf("raw query: rc=%d %s %v %v", rc, out, err, derr)
	}

	// A plugin without tools declares none and keeps abi_minor 0 (its
	// tool export knows no name).
	hr := load(t, "hr", wasm(t, "hr"), nil)
	if hm := hr.Manifest(); hm.ABIMinor != 0 || hm.Tools != nil || hr.Tools() != nil {
		t.Errorf("hr declares tools: %d %+v", hm.ABIMinor, hm.Tools)
	}
	if _, _, _, err := newRaw(t, wasm(t, "hr")).call(abi.ExportTool, []byte(`{"name":"add","arguments":{}}`)); err == nil ||
		err.Error() != `tool: no tool named "add"` {
		t.Errorf("hr's tool export: %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	p := load(t, "hr", wasm(t, "hr"), nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				q := fmt.Sprintf("worker %d asks \"%d\" é", g, i)
				pr, err := p.Prompt(ctx, abi.PromptRequest{Query: q})
				if err != nil || pr.Messages[len(pr.Messages)-1].Content != q {
					errs <- fmt.Errorf("prompt %q: %+v %v", q, pr, err)
					return
				}
				v, err := p.Validate(ctx, abi.ValidateRequest{Query: q, Response: q + " mail a@b.org", Domain: "hr"})
				if err != nil || v.Response == nil || *v.Response != q+" mail [email redacted]\n\n"+hrDisclaimer {
					errs <- fmt.Errorf("validate %q: %+v %v", q, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := p.Stats(); st.Errors != 0 || st.Traps != 0 || st.PeakInstances > 4 {
		t.Errorf("stats = %+v", st)
	}
}

// FuzzExports feeds arbitrary bytes to the hr plugin's prompt and validate
// exports. Whatever the input, the call must not trap or hang; it either
// fails with an error naming the export or returns a document the host
// accepts. The SDK's JSON parser must agree with encoding/json on what is
// syntactically valid JSON.
func FuzzExports(f *testing.F) {
	for _, s := range []string{
		`{"query":"How much annual leave do I get?"}`,
		`{"query":"q \"x\" \u00e9 \ud83d\ude00","history":[{"role":"user","content":"a"},{"role":"system","content":"b"}],"context":{"country":"UK"}}`,
		`{"query":"q","response":"Email me at a@b.com","domain":"hr"}`,
		`{"query":"q","response":"` + strings.Repeat("word ", 600) + `","domain":"hr"}`,
		`{"query":"\ud800 lone","response":"\udc00","extra":[1,2.5e10,-0,true,null,{}]}`,
		`{"query":1}`, `[]`, `{`, ``, `{"a":1e400}`, "{\"query\":\"\xff\"}", strings.Repeat("[", 300),
	} {
		f.Add([]byte(s))
	}
	module := wasm(f, "hr")
	r := newRaw(f, module)
	f.Fuzz(func(t *testing.T, input []byte) {
		syntaxOK := utf8.Valid(input) && json.Valid(input)
		for _, export := range []string{abi.ExportPrompt, abi.ExportValidate} {
			rc, out, trap, err := r.call(export, input)
			if trap {
				t.Fatalf("%s(%q): trapped or hung: %v", export, input, err)
			}
			if err != nil || rc != 0 {
				if err == nil || !strings.HasPrefix(err.Error(), export+": ") {
					t.Fatalf("%s(%q): rc=%d err=%v: want an error naming the export", export, input, rc, err)
				}
				if msg := err.Error(); syntaxOK && (strings.HasPrefix(msg, export+": decode input: invalid JSON") ||
					strings.HasPrefix(msg, export+": decode input: invalid UTF-8")) {
					t.Fatalf("%s(%q): valid JSON refused: %v", export, input, err)
				}
				continue
			}
			if !syntaxOK {
				t.Fatalf("%s(%q): invalid JSON accepted: %s", export, input, out)
			}
			if export == abi.ExportPrompt {
				if _, err := abi.DecodePromptResponse(out); err != nil {
					t.Fatalf("prompt(%q) = %s: %v", input, out, err)
				}
			} else if _, err := abi.DecodeValidation(out); err != nil {
				t.Fatalf("validate(%q) = %s: %v", input, out, err)
			}
		}
	})
}

// BenchmarkHR measures the hr plugin: module size, compile (wazero
// compiler, no cache), instantiate, and one prompt + validate request
// through the MDSA host (sandbox timeout on, as in production). The
// prompt+validate figures come with p50/p99 latency and the process CPU
// time per request (steadier than wall time on a shared machine); when the
// Go finance plugin is built (plugins/finance/finance.wasm) the same
// request runs on it too, interleaved, for comparison.
func BenchmarkHR(b *testing.B) {
	module := wasm(b, "hr")
	ctx := context.Background()
	b.Run("compile", func(b *testing.B) {
		for b.Loop() {
			cp, err := plugin.Sandbox{Timeout: 5 * time.Second, HostFunctions: stubHost()}.Compile(ctx, module)
			if err != nil {
				b.Fatal(err)
			}
			cp.Close(ctx)
		}
		b.ReportMetric(float64(len(module)), "wasm_bytes")
	})
	b.Run("instantiate", func(b *testing.B) {
		cp, err := plugin.Sandbox{Timeout: 5 * time.Second, HostFunctions: stubHost()}.Compile(ctx, module)
		if err != nil {
			b.Fatal(err)
		}
		defer cp.Close(ctx)
		for b.Loop() {
			inst, err := cp.Instance(ctx, extism.PluginInstanceConfig{})
			if err != nil {
				b.Fatal(err)
			}
			inst.Close(ctx)
		}
	})
	// The request of host.BenchmarkPluginOverhead.
	preq := abi.PromptRequest{Query: "I was charged twice for my order and want my money back, what can I do?",
		History: []abi.Message{{Role: abi.RoleUser, Content: "Hi"}, {Role: abi.RoleAssistant, Content: "Hello! How can I help?"}}}
	vreq := abi.ValidateRequest{Query: preq.Query, Domain: "hr",
		Response: "I'm sorry about the double charge. Please send us the order number and we will refund the duplicate payment within 5 business days."}
	root, err := testutil.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	goPlugin, _ := os.ReadFile(filepath.Join(root, "plugins", "finance", "finance.wasm"))
	for round := range 2 {
		for _, m := range []struct {
			name string
			wasm []byte
		}{{"hr", module}, {"go-finance", goPlugin}} {
			b.Run(fmt.Sprintf("prompt+validate/%s/%d", m.name, round), func(b *testing.B) {
				if m.wasm == nil {
					b.Skip("plugins/finance/finance.wasm is not built (sdk/go/build-plugins.sh)")
				}
				p := load(b, m.name, m.wasm, nil)
				request := func() {
					if _, err := p.Prompt(ctx, preq); err != nil {
						b.Fatal(err)
					}
					if _, err := p.Validate(ctx, vreq); err != nil {
						b.Fatal(err)
					}
				}
				request() // warm: the Go plugin initialises its runtime
				var lat []time.Duration
				cpu0 := cpuTime()
				for b.Loop() {
					t0 := time.Now()
					request()
					lat = append(lat, time.Since(t0))
				}
				cpu := cpuTime() - cpu0
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_us")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_us")
				b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu_us/op")
			})
		}
	}
}

// cpuTime returns the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
