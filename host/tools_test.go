package host

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/structured"
	"github.com/mdsa-go/mdsa/internal/testutil"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// scriptedEngine answers each Generate with the next of its texts (the
// last one again when they run out) and records the requests.
type scriptedEngine struct {
	fakeEngine
	mu    sync.Mutex
	texts []string
	reqs  []engine.Request
}

func (s *scriptedEngine) Generate(ctx context.Context, req engine.Request, on engine.TokenFunc) (engine.Result, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	text := s.texts[min(len(s.reqs), len(s.texts))-1]
	s.mu.Unlock()
	if on != nil {
		for _, piece := range strings.SplitAfter(text, " ") {
			if err := on(piece); err != nil {
				return engine.Result{}, err
			}
		}
	}
	return engine.Result{Text: text, Model: "fake", TokensIn: 100, TokensOut: 10, FinishReason: engine.FinishStop}, nil
}

func (s *scriptedEngine) requests() []engine.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]engine.Request(nil), s.reqs...)
}

func loanCall(args string) string {
	return structured.RenderCalls([]structured.Call{{Name: "loan_payment", Arguments: args}})
}

func lastMessage(r engine.Request) engine.Message { return r.Messages[len(r.Messages)-1] }

// The finance domain's loan_payment tool runs in the host's loop: the
// model's call, the plugin's result fed back, the model's answer; every
// turn constrained and metered, only the answer streamed.
func TestDomainToolLoop(t *testing.T) {
	eng := &scriptedEngine{texts: []string{
		loanCall(`{"principal":200000,"annual_rate_percent":6,"years":30}`),
		"You would pay 1,199.10 a month.",
	}}
	h := newHost(t, WithEngine(eng))
	var streamed strings.Builder
	res, err := h.Stream(context.Background(), Request{Query: "What would I pay monthly on a 200k mortgage at 6% over 30 years?", Domain: "finance"},
		func(piece string) error { streamed.WriteString(piece); return nil })
	if err != nil {
		t.Fatal(err)
	}
	reqs := eng.requests()
	if len(reqs) != 2 || len(res.ToolSteps) != 1 {
		t.Fatalf("%d turns, steps %+v", len(reqs), res.ToolSteps)
	}
	step := res.ToolSteps[0]
	if step.Name != "loan_payment" || step.IsError || !strings.Contains(step.Content, `"monthly_payment":1199.1`) || step.Round != 1 {
		t.Fatalf("step %+v", step)
	}
	if sys := reqs[0].Messages[0]; sys.Role != abi.RoleSystem || !strings.Contains(sys.Content, "# Tools") || !strings.Contains(sys.Content, `"name":"loan_payment"`) {
		t.Errorf("the system message does not offer the tool: %q", sys.Content)
	}
	for i, r := range reqs {
		if !strings.Contains(r.Params.Grammar, "tool_call") {
			t.Errorf("turn %d is not constrained to the tools' grammar", i)
		}
	}
	if m := lastMessage(reqs[1]); m.Role != abi.RoleUser || !strings.Contains(m.Content, "<tool_response>") || !strings.Contains(m.Content, "1199.1") {
		t.Errorf("the result is not fed back: %+v", m)
	}
	if !strings.HasPrefix(res.Response, "You would pay 1,199.10 a month.") || streamed.String() != "You would pay 1,199.10 a month." {
		t.Errorf("answer %q, streamed %q", res.Response, streamed.String())
	}
	if res.Tokens.Prompt != 200 || res.Tokens.Completion != 20 {
		t.Errorf("tokens %+v: every turn must be metered", res.Tokens)
	}
	if res.Status != StatusOK || len(res.ToolCalls) != 0 {
		t.Errorf("status %s, calls %+v", res.Status, res.ToolCalls)
	}
}

// A model that keeps calling tools gets plugins.max_tool_steps rounds; the
// turn after must answer (no calls allowed).
func TestToolLoopStepLimit(t *testing.T) {
	eng := &scriptedEngine{texts: []string{loanCall(`{"principal":1000,"annual_rate_percent":5,"years":1}`)}}
	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Plugins.MaxToolSteps = 2
	h, err := New(context.Background(), cfg, WithLogger(quietLogger()), WithEngine(eng))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	res, err := h.Process(context.Background(), Request{Query: "loan payment on 1000?", Domain: "finance"})
	if err != nil {
		t.Fatal(err)
	}
	reqs := eng.requests()
	if len(reqs) != 3 || len(res.ToolSteps) != 2 {
		t.Fatalf("%d turns and %d steps, want 3 and 2", len(reqs), len(res.ToolSteps))
	}
	if g := reqs[2].Params.Grammar; g != "" {
		t.Errorf("the last turn may still call tools: %q", g)
	}
	if res.Tokens.Completion != 30 {
		t.Errorf("completion tokens %d, want all three turns' 30", res.Tokens.Completion)
	}
	// max_tokens bounds all turns together.
	eng2 := &scriptedEngine{texts: eng.texts}
	h2 := newHost(t, WithEngine(eng2))
	res, err = h2.Process(context.Background(), Request{Query: "loan payment on 1000?", Domain: "finance", Generation: abi.Generation{MaxTokens: 15}})
	if err != nil {
		t.Fatal(err)
	}
	if reqs := eng2.requests(); len(reqs) != 2 || reqs[1].Params.MaxTokens != 5 || res.FinishReason != engine.FinishLength {
		t.Fatalf("%d turns (max_tokens %d), finish %s", len(reqs), reqs[len(reqs)-1].Params.MaxTokens, res.FinishReason)
	}
}

// Arguments the tool's schema refuses never reach the plugin: the model
// reads why and may try again.
func TestToolArgumentsChecked(t *testing.T) {
	eng := &scriptedEngine{texts: []string{loanCall(`{"principal":-5,"annual_rate_percent":6,"years":30}`), "Sorry."}}
	h := newHost(t, WithEngine(eng))
	res, err := h.Process(context.Background(), Request{Query: "loan?", Domain: "finance"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ToolSteps) != 1 || !res.ToolSteps[0].IsError || !strings.Contains(res.ToolSteps[0].Content, "principal") {
		t.Fatalf("steps %+v", res.ToolSteps)
	}
	if st := h.Plugins(); len(st) == 0 {
		t.Fatal("no plugins")
	}
}

// Calls of the client's tools are the answer; a client tool may not take
// the name of one of the domain's.
func TestClientToolCalls(t *testing.T) {
	weather, err := structured.NewTool("get_weather", "", json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`), true)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := structured.NewToolset([]structured.Tool{weather}, structured.Choice{Mode: structured.ChoiceAuto}, true)
	if err != nil {
		t.Fatal(err)
	}
	call := structured.RenderCalls([]structured.Call{{Name: "get_weather", Arguments: `{"city":"Paris"}`}})
	eng := &scriptedEngine{texts: []string{call}}
	h := newHost(t, WithEngine(eng))
	var streamed strings.Builder
	res, err := h.Stream(context.Background(), Request{Query: "What's the weather like for my trip to Paris?", Domain: "support", Tools: ts},
		func(p string) error { streamed.WriteString(p); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ToolCalls) != 1 || res.ToolCalls[0].Name != "get_weather" || res.ToolCalls[0].Arguments != `{"city":"Paris"}` ||
		res.FinishReason != FinishToolCalls || res.Response != "" || streamed.Len() != 0 {
		t.Fatalf("calls %+v, finish %s, response %q, streamed %q", res.ToolCalls, res.FinishReason, res.Response, streamed.String())
	}
	// The client runs the tool and sends the result back.
	eng.texts = []string{"It will be sunny in Paris."}
	eng.reqs = nil
	turns := []structured.Turn{{Calls: res.ToolCalls, Results: []structured.Result{{CallID: res.ToolCalls[0].ID, Content: "sunny, 24 C"}}}}
	res, err = h.Process(context.Background(), Request{Query: "What's the weather like for my trip to Paris?", Domain: "support", Tools: ts, Turns: turns})
	if err != nil || !strings.HasPrefix(res.Response, "It will be sunny") {
		t.Fatalf("%q %v", res.Response, err)
	}
	msgs := eng.requests()[0].Messages
	if n := len(msgs); msgs[n-2].Role != abi.RoleAssistant || !strings.Contains(msgs[n-2].Content, "get_weather") || !strings.Contains(msgs[n-1].Content, "sunny, 24 C") {
		t.Fatalf("the turns are not in the prompt: %+v", msgs[n-2:])
	}

	clash, _ := structured.NewTool("loan_payment", "", nil, false)
	cts, _ := structured.NewToolset([]structured.Tool{clash}, structured.Choice{}, true)
	_, err = h.Process(context.Background(), Request{Query: "loan?", Domain: "finance", Tools: cts})
	var ce *ToolClashError
	if !errors.As(err, &ce) || ce.Domain != "finance" {
		t.Fatalf("a clash with the domain's tool: %v", err)
	}
}

// An answer that does not meet the format is flagged; the format's
// instruction and grammar reach the engine.
func TestFormatChecked(t *testing.T) {
	f, err := structured.NewSchemaFormat("reply", json.RawMessage(`{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false}`), true)
	if err != nil {
		t.Fatal(err)
	}
	eng := &scriptedEngine{texts: []string{`{"a": 7}`}}
	h := newHost(t, WithEngine(eng))
	res, err := h.Process(context.Background(), Request{Query: "Is an index fund a good first investment?", Domain: "finance", Format: f})
	if err != nil {
		t.Fatal(err)
	}
	// finance appends a disclaimer to free text; not to JSON.
	if res.Response != `{"a": 7}` || res.Status != StatusOK {
		t.Fatalf("response %q, status %s, issues %+v", res.Response, res.Status, res.Validation.Issues)
	}
	r := eng.requests()[0]
	// finance's own tool is offered too: calls, or an answer of the format.
	if !strings.Contains(r.Params.Grammar, "tool_call") || !strings.Contains(r.Params.Grammar, "| answer") || !strings.Contains(r.Messages[0].Content, "JSON Schema") {
		t.Errorf("grammar or instruction missing:\n%s", r.Params.Grammar)
	}
	eng.texts = []string{`not json`}
	res, err = h.Process(context.Background(), Request{Query: "Is an index fund a good first investment?", Domain: "finance", Format: f})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusFlagged || !hasIssue(res.Validation, "format_unmet") {
		t.Fatalf("status %s, issues %+v", res.Status, res.Validation.Issues)
	}
	// A revision that breaks the format is dropped.
	v := abi.Validation{OK: true, Score: 1, Issues: []abi.Issue{}}
	rev := `{"a": 7} Not advice.`
	v.Response = &rev
	if got := checkFormat(f, `{"a": 7}`, &v, engine.FinishStop); got != `{"a": 7}` || !hasIssue(v, "revision_dropped") || !v.OK {
		t.Fatalf("checkFormat kept %q, %+v", got, v)
	}
}

func hasIssue(v abi.Validation, code string) bool {
	for _, i := range v.Issues {
		if i.Code == code {
			return true
		}
	}
	return false
}

// With real llama.cpp and the synthetic model (random text), a strict
// schema format and the domain's tools give valid output end to end.
func TestStructuredWithLlamaCpp(t *testing.T) {
	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Engine.LibDir = testutil.LlamaLibDir(t)
	cfg.Engine.ContextSize = 8192 // the synthetic tokenizer spends a token on every few bytes
	cfg.Engine.MaxTokens = 2000
	h, err := New(context.Background(), cfg, WithLogger(quietLogger()), WithModelFile(fixture.modelPath))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, err := structured.NewSchemaFormat("plan", json.RawMessage(`{"type":"object","properties":{"steps":{"type":"array","items":{"type":"string","maxLength":20},"maxItems":3},"done":{"type":"boolean"}},"required":["steps","done"],"additionalProperties":false}`), true)
	if err != nil {
		t.Fatal(err)
	}
	temp := float32(1)
	for i := range 3 {
		seed := uint32(i + 1)
		res, err := h.Process(context.Background(), Request{Query: "How do I return a damaged order?", Domain: "support", Format: f,
			Generation: abi.Generation{MaxTokens: 400, Temperature: &temp, Seed: &seed}})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Check(res.Response); err != nil || res.FinishReason != engine.FinishStop {
			t.Fatalf("%q (%s): %v", res.Response, res.FinishReason, err)
		}
	}
	// The domain's tool, forced: the model must call it every round it may,
	// with arguments of its shape, and then answer.
	ts := &structured.Toolset{Choice: structured.Choice{Mode: structured.ChoiceFunction, Name: "loan_payment"}}
	seed := uint32(3)
	res, err := h.Process(context.Background(), Request{Query: "What is the monthly payment on my loan?", Domain: "finance", Tools: ts,
		Generation: abi.Generation{MaxTokens: 1000, Temperature: &temp, Seed: &seed}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ToolSteps) != cfg.Plugins.MaxToolSteps || res.Response == "" {
		t.Fatalf("%d steps, answer %q", len(res.ToolSteps), res.Response)
	}
	for _, s := range res.ToolSteps {
		var args map[string]any
		if json.Unmarshal([]byte(s.Arguments), &args) != nil || args["principal"] == nil {
			t.Fatalf("step %+v", s)
		}
	}
	t.Logf("steps: %+v", res.ToolSteps)
}
