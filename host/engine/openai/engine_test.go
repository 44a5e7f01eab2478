package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
)

func open(t *testing.T, opts Options, fakes ...*fake) *Engine {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "m"
	}
	for _, f := range fakes {
		opts.Backends = append(opts.Backends, Backend{URL: f.srv.URL + "/v1"})
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = -1 // tests that want checks ask for them
	}
	e, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func chat(system, user string, maxTokens int) engine.Request {
	return engine.Request{Messages: []engine.Message{{Role: "system", Content: system}, {Role: "user", Content: user}},
		Params: engine.Params{MaxTokens: maxTokens}}
}

// Each kind streams its answer through, with the token counts its shape
// carries and the request extensions it understands.
func TestGenerateKinds(t *testing.T) {
	for _, tc := range []struct {
		kind            string
		in, cached, out int
		extra, absent   string
	}{
		{KindLlamaServer, 42, 30, 3, "cache_prompt", "repetition_penalty"},
		{KindVLLM, 42, 20, 3, "repetition_penalty", "cache_prompt"},
		{KindOllama, 0, 0, 3, "", "top_k"},
		{KindOpenAI, 42, 0, 3, "", "top_k"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			f := newFake(t, tc.kind)
			e := open(t, Options{Kind: tc.kind, Model: "upstream-id"}, f)
			var pieces []string
			req := chat("You are a bank.", "hi", 16)
			req.Params.TopK, req.Params.RepeatPenalty = 40, 1.1
			res, err := e.Generate(context.Background(), req, func(p string) error {
				pieces = append(pieces, p)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Text != "Hello, world" || strings.Join(pieces, "|") != "Hello|,| world" || res.Model != "m" ||
				res.FinishReason != engine.FinishStop {
				t.Errorf("result %+v, pieces %q", res, pieces)
			}
			if res.TokensIn != tc.in || res.TokensCached != tc.cached || res.TokensOut != tc.out {
				t.Errorf("tokens in/cached/out %d/%d/%d, want %d/%d/%d", res.TokensIn, res.TokensCached, res.TokensOut, tc.in, tc.cached, tc.out)
			}
			b := f.lastBody()
			if b["model"] != "upstream-id" || b["stream"] != true || b["max_tokens"] != float64(16) {
				t.Errorf("request body %v", b)
			}
			if _, ok := b[tc.extra]; tc.extra != "" && !ok {
				t.Errorf("%s: no %s in %v", tc.kind, tc.extra, b)
			}
			if _, ok := b[tc.absent]; ok {
				t.Errorf("%s: %s sent: %v", tc.kind, tc.absent, b)
			}
		})
	}
}

func TestGenerateRawPromptAndLength(t *testing.T) {
	f := newFake(t, KindLlamaServer)
	e := open(t, Options{Kind: KindLlamaServer}, f)
	res, err := e.Generate(context.Background(), engine.Request{Prompt: "Once", Params: engine.Params{MaxTokens: 3}}, nil)
	if err != nil || res.Text != "Hello, world" || res.FinishReason != engine.FinishLength {
		t.Fatalf("%+v %v", res, err)
	}
	if b := f.lastBody(); b["prompt"] != "Once" || b["messages"] != nil {
		t.Errorf("a raw prompt went as %v", b)
	}
	if _, err := e.Generate(context.Background(), engine.Request{}, nil); !errors.Is(err, engine.ErrInvalidInput) {
		t.Errorf("an empty request: %v", err)
	}
}

// A backend that fails before its first token is replaced by another, and
// counted; one that fails after it is not retried (its text was sent on).
func TestRetryBeforeFirstTokenOnly(t *testing.T) {
	bad, good := newFake(t, KindVLLM), newFake(t, KindVLLM)
	bad.status.Store(500)
	bad.errBody.Store(`{"object":"error","message":"CUDA out of memory","type":"InternalServerError","code":500}`)
	e := open(t, Options{Kind: KindVLLM, Retries: 1}, bad, good)
	for i := range 4 {
		if _, err := e.Generate(context.Background(), chat("s", fmt.Sprint(i), 8), nil); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if good.served.Load() != 4 {
		t.Errorf("the good backend served %d of 4", good.served.Load())
	}
	st := e.Backends()
	if st[0].Failed == 0 || !strings.Contains(st[0].LastErr, "CUDA out of memory") {
		t.Errorf("the failing backend: %+v", st[0])
	}

	cut := newFake(t, KindVLLM)
	cut.cutAfter.Store(1)
	spare := newFake(t, KindVLLM)
	e2 := open(t, Options{Kind: KindVLLM, Balance: BalancePrefix}, cut, spare)
	// Find a prompt whose affinity is the cutting backend.
	var got []string
	var err error
	for i := 0; i < 50; i++ {
		got = nil
		_, err = e2.Generate(context.Background(), chat(fmt.Sprint("system ", i), "q", 8), func(p string) error {
			got = append(got, p)
			return nil
		})
		if err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "mid-answer") || strings.Join(got, "") != "Hello" {
		t.Fatalf("a stream cut after its first token: %v (got %q)", err, got)
	}
	if spare.served.Load() == 0 {
		t.Log("no prompt landed on the spare backend") // not an error: affinity decided
	}
}

// A refused connection ejects the backend at once; after the cool-down
// it is tried again, and stays in once it answers.
func TestEjectionAndReadmission(t *testing.T) {
	good := newFake(t, KindOpenAI)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	e, err := Open(context.Background(), Options{Name: "m", HealthInterval: -1, EjectTime: 50 * time.Millisecond,
		Backends: []Backend{{URL: deadURL}, {URL: good.srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for i := range 6 {
		if _, err := e.Generate(context.Background(), chat("s", fmt.Sprint(i), 8), nil); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	st := e.Backends()
	if st[0].Failed != 1 || !st[0].Ejected {
		t.Errorf("the dead backend failed %d times (want 1, then ejected): %+v", st[0].Failed, st[0])
	}
	// After the cool-down it gets a trial request (ties rotate, so within
	// a few requests), fails and is ejected for twice as long: its new
	// end is at least the sleep plus the longer cool-down past the first.
	first := st[0].EjectedUntil
	time.Sleep(60 * time.Millisecond)
	for i := 0; i < 4 && e.Backends()[0].Failed < 2; i++ {
		if _, err := e.Generate(context.Background(), chat("s", fmt.Sprint("x", i), 8), nil); err != nil {
			t.Fatal(err)
		}
	}
	st = e.Backends()
	if st[0].Failed != 2 || st[0].EjectedUntil.Sub(first) < 100*time.Millisecond {
		t.Errorf("after its trial: %+v (first ejection until %v)", st[0], first)
	}
}

// Active checks mark a backend down and back up.
func TestHealthChecks(t *testing.T) {
	a, b := newFake(t, KindLlamaServer), newFake(t, KindLlamaServer)
	a.healthy.Store(false)
	b.reportLoad.Store(7)
	e := open(t, Options{Kind: KindLlamaServer, HealthInterval: 10 * time.Millisecond}, a, b)
	waitFor(t, "a down, b's load read", func() bool {
		st := e.Backends()
		return !st[0].Healthy && st[1].Healthy && st[1].Reported == 7
	})
	if _, err := e.Generate(context.Background(), chat("s", "q", 8), nil); err != nil || a.served.Load() != 0 {
		t.Fatalf("a request went to the loading backend (%d) or failed: %v", a.served.Load(), err)
	}
	a.healthy.Store(true)
	waitFor(t, "a back", func() bool { return e.Backends()[0].Healthy })
	// b reports 7 requests of its own: the least loaded is a.
	if _, err := e.Generate(context.Background(), chat("s", "q", 8), nil); err != nil || a.served.Load() != 1 {
		t.Fatalf("the idle backend served %d: %v", a.served.Load(), err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Every backend down: a clear error naming each reason, at once.
func TestAllBackendsDown(t *testing.T) {
	a, b := newFake(t, KindVLLM), newFake(t, KindVLLM)
	a.healthy.Store(false)
	b.healthy.Store(false)
	e := open(t, Options{Kind: KindVLLM, HealthInterval: 10 * time.Millisecond}, a, b)
	waitFor(t, "both down", func() bool {
		st := e.Backends()
		return !st[0].Healthy && !st[1].Healthy
	})
	_, err := e.Generate(context.Background(), chat("s", "q", 8), nil)
	if !errors.Is(err, ErrUnavailable) || strings.Count(err.Error(), "health check failed") != 2 {
		t.Fatalf("%v", err)
	}
}

// A request no backend would take is not retried and fails no backend.
func TestContextErrors(t *testing.T) {
	for _, tc := range []struct {
		kind, body   string
		tokens, nctx int
	}{
		{KindLlamaServer, `{"error":{"code":400,"message":"request (4476 tokens) exceeds the available context size (4096 tokens)","type":"exceed_context_size_error","n_prompt_tokens":4476,"n_ctx":4096}}`, 4476, 4096},
		{KindVLLM, `{"object":"error","message":"This model's maximum context length is 2048 tokens. However, you requested 3000 tokens (2990 in the messages, 10 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}`, 3000, 2048},
		{KindOpenAI, `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`, 0, 0},
	} {
		a, b := newFake(t, tc.kind), newFake(t, tc.kind)
		a.status.Store(400)
		a.errBody.Store(tc.body)
		b.status.Store(400)
		b.errBody.Store(tc.body)
		e := open(t, Options{Kind: tc.kind}, a, b)
		_, err := e.Generate(context.Background(), chat("s", "long", 8), nil)
		var cle *engine.ContextLengthError
		if !errors.As(err, &cle) || !errors.Is(err, engine.ErrInvalidInput) || cle.Tokens != tc.tokens || cle.Context != tc.nctx {
			t.Errorf("%s: %v (%+v)", tc.kind, err, cle)
		}
		st := e.Backends()
		if len(a.bodies)+len(b.bodies) != 1 || st[0].Failed+st[1].Failed != 0 {
			t.Errorf("%s: %d requests sent, failures %d/%d", tc.kind, len(a.bodies)+len(b.bodies), st[0].Failed, st[1].Failed)
		}
	}
	f := newFake(t, KindOllama)
	f.status.Store(400)
	f.errBody.Store(`{"error":"invalid temperature"}`)
	e := open(t, Options{Kind: KindOllama}, f)
	if _, err := e.Generate(context.Background(), chat("s", "q", 8), nil); !errors.Is(err, engine.ErrInvalidInput) || !strings.Contains(err.Error(), "invalid temperature") {
		t.Errorf("ollama's 400: %v", err)
	}
}

// No first token in time: tried on another backend. A stream that goes
// quiet past the idle timeout ends with an error; the client's
// cancellation closes the upstream request.
func TestTimeoutsAndCancel(t *testing.T) {
	slow, fast := newFake(t, KindOpenAI), newFake(t, KindOpenAI)
	slow.firstDelay.Store(int64(time.Hour))
	// A second: the fast backend answers at once even on a loaded machine.
	e := open(t, Options{FirstTokenTimeout: time.Second, Retries: 1}, slow, fast)
	for i := range 3 {
		if _, err := e.Generate(context.Background(), chat("s", fmt.Sprint(i), 8), nil); err != nil {
			t.Fatal(err)
		}
	}
	if fast.served.Load() != 3 {
		t.Errorf("the fast backend served %d of 3", fast.served.Load())
	}
	waitFor(t, "the slow request cancelled upstream", func() bool { return slow.cancelled.Load() >= 1 })

	stall := newFake(t, KindOpenAI)
	stall.stall.Store(true)
	e2 := open(t, Options{IdleTimeout: 100 * time.Millisecond}, stall)
	if _, err := e2.Generate(context.Background(), chat("s", "q", 8), nil); err == nil || !strings.Contains(err.Error(), "idle") {
		t.Errorf("an idle stream: %v", err)
	}

	stall2 := newFake(t, KindOpenAI)
	stall2.stall.Store(true)
	e3 := open(t, Options{}, stall2)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := e3.Generate(ctx, chat("s", "q", 8), func(string) error {
		cancel() // the client leaves after the first token
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled request: %v", err)
	}
	waitFor(t, "the upstream request closed", func() bool { return stall2.cancelled.Load() == 1 })
	if e3.Backends()[0].Failed != 0 {
		t.Error("a client's cancellation was counted against the backend")
	}
}

// A backend at its cap takes no more; the others do; all at their caps:
// unavailable.
func TestConcurrencyCap(t *testing.T) {
	a, b := newFake(t, KindOpenAI), newFake(t, KindOpenAI)
	a.stall.Store(true)
	b.stall.Store(true)
	e := open(t, Options{MaxConcurrent: 2}, a, b)
	var wg sync.WaitGroup
	started := make(chan struct{}, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			e.Generate(context.Background(), chat("s", fmt.Sprint(i), 8), func(string) error {
				once.Do(func() { started <- struct{}{} })
				return nil
			})
		}()
	}
	for range 4 {
		<-started
	}
	if a.running.Load() != 2 || b.running.Load() != 2 {
		t.Errorf("in flight: %d and %d, want 2 and 2", a.running.Load(), b.running.Load())
	}
	_, err := e.Generate(context.Background(), chat("s", "fifth", 8), nil)
	if !errors.Is(err, ErrUnavailable) || strings.Count(err.Error(), "at its limit of 2") != 2 {
		t.Errorf("a fifth request: %v", err)
	}
	a.unblock()
	b.unblock()
	wg.Wait()
}

// Prefix affinity: each domain's requests stay on one backend while the
// load is even, and a hot domain spills over instead of overloading it.
func TestPrefixAffinity(t *testing.T) {
	var fakes []*fake
	for range 4 {
		fakes = append(fakes, newFake(t, KindVLLM))
	}
	e := open(t, Options{Kind: KindVLLM, Balance: BalancePrefix}, fakes...)
	domains := []string{"You answer finance questions.", "You answer medical questions.", "You help customers.", "You fix computers."}
	for i := range 40 {
		if _, err := e.Generate(context.Background(), chat(domains[i%4], fmt.Sprint(i), 8), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range domains {
		holders := 0
		for _, f := range fakes {
			if f.prefixes[d] > 0 {
				holders++
			}
		}
		if holders != 1 {
			t.Errorf("domain %q went to %d backends, want 1", d, holders)
		}
	}
	// Four domains on four backends: one each (plain consistent hashing
	// would put two on one backend 91% of the time).
	for i, f := range fakes {
		if len(f.prefixes) != 1 {
			t.Errorf("backend %d holds %d domains, want 1: %v", i, len(f.prefixes), f.prefixes)
		}
	}

	// One hot domain takes all the traffic: its owner keeps at most about
	// 1.25x the mean share of the recent requests, the rest spill.
	before := make([]int32, len(fakes))
	for i, f := range fakes {
		before[i] = f.served.Load()
	}
	for i := range 80 {
		if _, err := e.Generate(context.Background(), chat(domains[0], fmt.Sprint("hot ", i), 8), nil); err != nil {
			t.Fatal(err)
		}
	}
	spread := 0
	for i, f := range fakes {
		n := f.served.Load() - before[i]
		if n > 40 {
			t.Errorf("backend %d served %d of 80 hot requests: over the bound", i, n)
		}
		if n > 0 {
			spread++
		}
	}
	if spread < 2 {
		t.Errorf("the hot domain stayed on %d backend(s)", spread)
	}
}

func TestEmbedAndCountTokens(t *testing.T) {
	for _, kind := range []string{KindLlamaServer, KindVLLM, KindOllama} {
		f := newFake(t, kind)
		e := open(t, Options{Kind: kind}, f)
		inputs := make([]string, 70) // two requests of at most 64
		for i := range inputs {
			inputs[i] = strings.Repeat("x", i)
		}
		vecs, err := e.Embed(context.Background(), inputs)
		if err != nil || len(vecs) != 70 {
			t.Fatalf("%s: %d vectors, %v", kind, len(vecs), err)
		}
		for i, v := range vecs {
			if v[0] != float32(i) {
				t.Fatalf("%s: vector %d is %v: out of order", kind, i, v)
			}
		}
		n, err := e.CountTokens(context.Background(), "one two three four five")
		want := 5
		if kind == KindOllama {
			want = (len("one two three four five") + 3) / 4 // no /tokenize: estimated
		}
		if err != nil || n != want {
			t.Errorf("%s: %d tokens, %v; want %d", kind, n, err, want)
		}
	}
	// The prompt budget (a plugin's host work) is checked before sending.
	f := newFake(t, KindVLLM)
	e := open(t, Options{Kind: KindVLLM}, f)
	req := chat("a b c", "d e f", 8)
	req.Params.MaxPromptTokens = 5
	if _, err := e.Generate(context.Background(), req, nil); !errors.Is(err, engine.ErrOverBudget) || len(f.bodies) != 0 {
		t.Errorf("a prompt over its budget: %v (%d sent)", err, len(f.bodies))
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "no name"},
		{Options{Name: "m"}, "no backends"},
		{Options{Name: "m", Kind: "tgi", Backends: []Backend{{URL: "http://x"}}}, "unknown backend kind"},
		{Options{Name: "m", Balance: "random", Backends: []Backend{{URL: "http://x"}}}, "unknown balance"},
		{Options{Name: "m", Backends: []Backend{{URL: "ftp://x"}}}, "bad URL"},
		{Options{Name: "m", Backends: []Backend{{URL: "http://x:1/v1"}, {URL: "http://x:1/"}}}, "listed twice"},
	} {
		if _, err := Open(context.Background(), tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.opts, err, tc.want)
		}
	}
	e, err := Open(context.Background(), Options{Name: "m", HealthInterval: -1, Backends: []Backend{{URL: "http://127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if _, err := e.Generate(context.Background(), chat("s", "q", 1), nil); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestSumMetrics(t *testing.T) {
	body := "# HELP x\nvllm:num_requests_waiting{model_name=\"a\"} 3.0\nvllm:num_requests_waiting{model_name=\"b\"} 2\n" +
		"vllm:num_requests_running 4\nvllm:num_requests_waiting_total 100\nother 9\nvllm:num_requests_running{x=\"}\"} NaN\n"
	if n := sumMetrics([]byte(body), loadMetrics(KindVLLM)); n != 9 {
		t.Errorf("sum %d, want 9", n)
	}
}

// The ring spreads keys evenly enough: each of 4 backends owns 15-35% of
// 4,000 similar keys.
func TestRingSpread(t *testing.T) {
	urls := []string{"http://127.0.0.1:40001", "http://127.0.0.1:40002", "http://127.0.0.1:40003", "http://127.0.0.1:40004"}
	r := newRing(urls)
	counts := make([]int, len(urls))
	for i := range 4000 {
		r.walk(hash64(fmt.Sprint("system prompt ", i)), len(urls), func(j int) bool {
			counts[j]++
			return true
		})
	}
	for i, c := range counts {
		if c < 600 || c > 1400 {
			t.Errorf("backend %d owns %d of 4000 keys: %v", i, c, counts)
		}
	}
}

// A backend that streams without end is cut at maxAnswerBytes.
func TestAnswerBound(t *testing.T) {
	f := newFake(t, KindOpenAI)
	big := strings.Repeat("x", 1<<20)
	f.words = make([]string, maxAnswerBytes>>20+2)
	for i := range f.words {
		f.words[i] = big
	}
	e := open(t, Options{Retries: -1}, f)
	_, err := e.Generate(context.Background(), chat("s", "q", 8), nil)
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("%v", err)
	}
}

// Ollama: a server where the model is not loaded (not in /api/ps) counts
// as busy, so requests go where it is loaded.
func TestOllamaPrefersLoaded(t *testing.T) {
	cold, warm := newFake(t, KindOllama), newFake(t, KindOllama)
	warm.ollamaLoaded.Store(true)
	e := open(t, Options{Kind: KindOllama, HealthInterval: 10 * time.Millisecond}, cold, warm)
	waitFor(t, "the cold server's penalty", func() bool { return e.Backends()[0].Reported == coldPenalty })
	for i := range 6 {
		if _, err := e.Generate(context.Background(), chat("s", fmt.Sprint(i), 8), nil); err != nil {
			t.Fatal(err)
		}
	}
	if cold.served.Load() != 0 || warm.served.Load() != 6 {
		t.Errorf("cold served %d, warm %d", cold.served.Load(), warm.served.Load())
	}
	if !ollamaLoaded([]byte(`{"models":[{"name":"qwen2.5:7b"}]}`), "qwen2.5:7b") || ollamaLoaded([]byte(`{"models":[]}`), "m") ||
		!ollamaLoaded([]byte(`{"models":[{"name":"m:latest"}]}`), "m") {
		t.Error("ollamaLoaded")
	}
}

func TestBusySlots(t *testing.T) {
	// llama-server's GET /slots (tools/server/README.md): one object per slot.
	body := `[{"id":0,"n_ctx":4096,"is_processing":true},{"id":1,"n_ctx":4096,"is_processing":false},{"id":2,"is_processing":true}]`
	if n := busySlots([]byte(body)); n != 2 {
		t.Errorf("busy %d, want 2", n)
	}
	if n := busySlots([]byte(`{"error":"slots disabled"}`)); n != 0 {
		t.Errorf("an error answer: %d", n)
	}
}

// A grammar goes to llama-server as "grammar" and to vLLM as
// "structured_outputs": {"grammar": ...}; Ollama takes a response format's
// schema as response_format but no bare grammar (a toolset's); plain
// OpenAI-compatible servers take neither. A kind that cannot enforce the
// constraint refuses it before sending anything.
func TestGrammarKinds(t *testing.T) {
	const g = `root ::= "yes" | "no"`
	schema := json.RawMessage(`{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}`)
	for _, tc := range []struct {
		kind   string
		schema json.RawMessage
		sent   bool
	}{
		{KindLlamaServer, nil, true}, {KindLlamaServer, schema, true},
		{KindVLLM, nil, true}, {KindVLLM, schema, true},
		{KindOllama, nil, false}, {KindOllama, schema, true},
		{KindOpenAI, nil, false}, {KindOpenAI, schema, false},
	} {
		t.Run(fmt.Sprintf("%s schema %v", tc.kind, tc.schema != nil), func(t *testing.T) {
			f := newFake(t, tc.kind)
			e := open(t, Options{Kind: tc.kind}, f)
			req := chat("You are a bank.", "yes or no?", 4)
			req.Params.Grammar, req.Params.Schema = g, tc.schema
			if Constrains(tc.kind, req.Params) != tc.sent {
				t.Fatalf("Constrains = %v, want %v", !tc.sent, tc.sent)
			}
			_, err := e.Generate(context.Background(), req, nil)
			if !tc.sent {
				if !errors.Is(err, engine.ErrNotSupported) || !strings.Contains(err.Error(), tc.kind) {
					t.Fatalf("%s: %v, want ErrNotSupported naming the kind", tc.kind, err)
				}
				if b := f.lastBody(); b != nil {
					t.Fatalf("%s: a request was sent for a constraint it cannot take: %v", tc.kind, b)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b := f.lastBody()
			so, _ := b["structured_outputs"].(map[string]any)
			rf, _ := b["response_format"].(map[string]any)
			js, _ := rf["json_schema"].(map[string]any)
			var ok bool
			switch tc.kind {
			case KindLlamaServer:
				ok = b["grammar"] == g && so == nil && rf == nil
			case KindVLLM:
				ok = so["grammar"] == g && b["grammar"] == nil && rf == nil
			case KindOllama:
				var want any
				_ = json.Unmarshal(schema, &want)
				ok = rf["type"] == "json_schema" && reflect.DeepEqual(js["schema"], want) && b["grammar"] == nil && so == nil
			}
			if !ok {
				t.Fatalf("%s body %v", tc.kind, b)
			}
			// Without a constraint none of the fields is sent.
			if _, err := e.Generate(context.Background(), chat("You are a bank.", "hi", 4), nil); err != nil {
				t.Fatal(err)
			}
			if b := f.lastBody(); b["grammar"] != nil || b["structured_outputs"] != nil || b["response_format"] != nil {
				t.Fatalf("%s without a constraint: %v", tc.kind, b)
			}
		})
	}
}
