package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

// testDir holds the synthetic models shared by the tests and benchmarks of
// this package; TestMain removes it.
var testDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "llamacpp-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "llamacpp tests:", err)
		os.Exit(1)
	}
	testDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// synthModel writes (once per process) a synthetic model with the given
// size and quantisation and returns its path.
func synthModel(tb testing.TB, params int64, quant string) string {
	tb.Helper()
	key := fmt.Sprintf("%d-%s", params, quant)
	v, _ := synthModels.LoadOrStore(key, &synthEntry{})
	e := v.(*synthEntry)
	e.once.Do(func() {
		e.path = filepath.Join(testDir, "synth-"+key+".gguf")
		_, e.err = gguf.WriteSynth(e.path, gguf.SynthOptions{Params: params, Quant: quant, Name: "synth-" + key})
	})
	if e.err != nil {
		tb.Fatalf("writing synthetic model: %v", e.err)
	}
	return e.path
}

type synthEntry struct {
	once sync.Once
	path string
	err  error
}

var synthModels sync.Map // key -> *synthEntry

// testLibDir returns the llama.cpp library directory or skips the test.
func testLibDir(tb testing.TB) string {
	tb.Helper()
	dir, err := FindLibDir(".")
	if err != nil {
		tb.Skipf("llama.cpp libraries not installed, skipping (run `make setup`): %v", err)
	}
	return dir
}

// testLogger sends logs, llama.cpp's included, to stderr at debug level
// when -v is given and discards them otherwise. (Not to t.Log: llama.cpp's
// log routing is process-wide and outlives the test that loaded it.)
func testLogger(testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testGPULayers is $MDSA_TEST_GPU_LAYERS (scripts/gpu-check.sh sets -1 to
// run the engine tests with every layer on a GPU), else 0.
func testGPULayers(tb testing.TB) int {
	v := os.Getenv("MDSA_TEST_GPU_LAYERS")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		tb.Fatalf("MDSA_TEST_GPU_LAYERS=%q: want an integer", v)
	}
	return n
}

// openSmall opens the small synthetic test model.
func openSmall(t testing.TB, opts Options) *Engine {
	t.Helper()
	opts.LibDir = testLibDir(t)
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.Threads == 0 {
		opts.Threads = 1 // the tiny model gains nothing from more, and CI cores are shared
	}
	if opts.ContextSize == 0 {
		opts.ContextSize = 512
	}
	if opts.GPULayers == 0 {
		opts.GPULayers = testGPULayers(t)
	}
	path := synthModel(t, 0, "Q8_0")
	e, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func chatReq(maxTokens int, stop ...string) engine.Request {
	return engine.Request{
		Messages: []engine.Message{
			{Role: "system", Content: "You are a test model."},
			{Role: "user", Content: "Hello, who are you?"},
		},
		Params: engine.Params{MaxTokens: maxTokens, Stop: stop},
	}
}

// collect returns a TokenFunc that appends pieces to *out.
func collect(out *[]string) engine.TokenFunc {
	return func(p string) error {
		*out = append(*out, p)
		return nil
	}
}

func TestGenerateChat(t *testing.T) {
	e := openSmall(t, Options{Name: "synth"})
	var pieces []string
	res, err := e.Generate(context.Background(), chatReq(256), collect(&pieces))
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if res.Text != gguf.SynthReply {
		t.Fatalf("text %q, want %q", res.Text, gguf.SynthReply)
	}
	if res.FinishReason != engine.FinishStop {
		t.Fatalf("finish %q, want stop", res.FinishReason)
	}
	if got := strings.Join(pieces, ""); got != res.Text {
		t.Fatalf("streamed %q, text %q", got, res.Text)
	}
	if len(pieces) < 2 {
		t.Fatalf("reply came in %d pieces, want it streamed", len(pieces))
	}
	if res.Model != "synth" || e.Model() != "synth" {
		t.Fatalf("model %q / %q", res.Model, e.Model())
	}
	if res.TokensIn < 5 || res.TokensOut < 2 || res.TokensOut > 256 {
		t.Fatalf("tokens in %d out %d", res.TokensIn, res.TokensOut)
	}
	// Same request, same greedy answer, on a reused context (KV cleared).
	res2, err := e.Generate(context.Background(), chatReq(256), nil)
	if err != nil || res2.Text != res.Text || res2.TokensOut != res.TokensOut || res2.TokensIn != res.TokensIn {
		t.Fatalf("second run %+v, %v; first %+v", res2, err, res)
	}
}

func TestGenerateMaxTokens(t *testing.T) {
	e := openSmall(t, Options{})
	var pieces []string
	res, err := e.Generate(context.Background(), chatReq(3), collect(&pieces))
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if res.FinishReason != engine.FinishLength || res.TokensOut != 3 {
		t.Fatalf("finish %q tokens %d, want length 3", res.FinishReason, res.TokensOut)
	}
	if res.Text == "" || !strings.HasPrefix(gguf.SynthReply, res.Text) || res.Text == gguf.SynthReply {
		t.Fatalf("text %q is not a proper prefix of the reply %q", res.Text, gguf.SynthReply)
	}
	if strings.Join(pieces, "") != res.Text {
		t.Fatalf("streamed %q, text %q", pieces, res.Text)
	}
}

// TestGenerateStopString cuts the reply with a stop string that starts in one
// token and ends in the next.
func TestGenerateStopString(t *testing.T) {
	e := openSmall(t, Options{})
	var pieces []string
	if _, err := e.Generate(context.Background(), chatReq(256), collect(&pieces)); err != nil {
		t.Fatal(err)
	}
	// Find two neighbouring pieces, away from the start, to span.
	var stop, want string
	off := 0
	for i := 0; i+1 < len(pieces); i++ {
		a, b := pieces[i], pieces[i+1]
		if i >= 1 && len(a) >= 2 && len(b) >= 2 && !strings.Contains(gguf.SynthReply[:off+len(a)-2], a[len(a)-2:]+b[:2]) {
			stop = a[len(a)-2:] + b[:2]
			want = gguf.SynthReply[:off+len(a)-2]
			break
		}
		off += len(a)
	}
	if stop == "" {
		t.Fatalf("no two neighbouring pieces of 2+ bytes in %q", pieces)
	}
	var streamed []string
	res, err := e.Generate(context.Background(), chatReq(256, "never-appears", stop), collect(&streamed))
	if err != nil {
		t.Fatal(err)
	}
	if res.FinishReason != engine.FinishStop || res.Text != want {
		t.Fatalf("stop %q: finish %q text %q, want stop %q", stop, res.FinishReason, res.Text, want)
	}
	if got := strings.Join(streamed, ""); got != want {
		t.Fatalf("streamed %q, want %q (nothing of the stop string)", got, want)
	}
}

func TestGenerateCancel(t *testing.T) {
	e := openSmall(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	start := time.Now()
	res, err := e.Generate(ctx, chatReq(256), func(string) error {
		n++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	// The scheduler may have sampled a few more tokens before it saw the
	// cancellation, but none reaches the callback after it.
	if n != 1 || res.TokensOut < 1 {
		t.Fatalf("%d pieces, %d tokens after cancel; want 1 piece", n, res.TokensOut)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	// A cancelled context before start fails fast too.
	if _, err := e.Generate(ctx, chatReq(10), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("pre-cancelled: %v", err)
	}
	// The pooled context was returned and works.
	res, err = e.Generate(context.Background(), chatReq(256), nil)
	if err != nil || res.Text != gguf.SynthReply {
		t.Fatalf("after cancel: %q, %v", res.Text, err)
	}
}

func TestGenerateCallbackError(t *testing.T) {
	e := openSmall(t, Options{})
	boom := errors.New("client went away")
	_, err := e.Generate(context.Background(), chatReq(256), func(string) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want the callback's error", err)
	}
}

func TestGenerateConcurrent(t *testing.T) {
	e := openSmall(t, Options{Parallel: 2, Threads: 1})
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pieces []string
			res, err := e.Generate(context.Background(), chatReq(256), collect(&pieces))
			switch {
			case err != nil:
				errs <- fmt.Errorf("goroutine %d: %w", i, err)
			case res.Text != gguf.SynthReply || strings.Join(pieces, "") != res.Text:
				errs <- fmt.Errorf("goroutine %d: text %q streamed %q", i, res.Text, pieces)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestGenerateWaitHonoursContext(t *testing.T) {
	e := openSmall(t, Options{Parallel: 1})
	// Hold the scheduler inside its first step, so that the only sequence
	// stays busy while a second request waits.
	hold := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	e.sched.stepHook = func() {
		once.Do(func() {
			close(entered)
			<-hold
		})
	}
	first := make(chan error, 1)
	go func() {
		_, err := e.Generate(context.Background(), chatReq(256), nil)
		first <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := e.Generate(ctx, chatReq(5), nil)
	close(hold)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded while the only sequence is busy", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("first generation: %v", err)
	}
}

func TestGenerateRequestErrors(t *testing.T) {
	e := openSmall(t, Options{ContextSize: 256})
	ctx := context.Background()
	for name, req := range map[string]engine.Request{
		"empty": {},
		"both":  {Prompt: "x", Messages: []engine.Message{{Role: "user", Content: "y"}}},
		"nul":   {Messages: []engine.Message{{Role: "user", Content: "a\x00b"}}},
		"long":  {Prompt: strings.Repeat("hello world ", 400)},
	} {
		if _, err := e.Generate(ctx, req, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestGenerateRawPrompt(t *testing.T) {
	e := openSmall(t, Options{})
	res, err := e.Generate(context.Background(), engine.Request{Prompt: gguf.SynthRawPrompt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != gguf.SynthRawContinuation || res.FinishReason != engine.FinishStop {
		t.Fatalf("text %q finish %q, want %q stop", res.Text, res.FinishReason, gguf.SynthRawContinuation)
	}
}

// TestGenerateContextFull leaves four free positions in the context: the
// reply (longer than that) ends with finish "length" once the context is
// full, the last sampled token included.
func TestGenerateContextFull(t *testing.T) {
	e := openSmall(t, Options{ContextSize: 256})
	n := e.Info().ContextSize
	var prompt string
	for k := 1; ; k++ {
		prompt = strings.Repeat(" hello", k)
		toks, err := e.tokenize("p", prompt, true, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(toks) == n-4 {
			break
		}
		if len(toks) > n-4 {
			t.Fatalf("no prompt of exactly %d tokens (k=%d gives %d)", n-4, k, len(toks))
		}
	}
	res, err := e.Generate(context.Background(), engine.Request{Prompt: prompt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.FinishReason != engine.FinishLength || res.TokensIn != n-4 || res.TokensOut != 5 {
		t.Fatalf("finish %q after %d+%d tokens, context %d; want length after %d+5", res.FinishReason, res.TokensIn, res.TokensOut, n, n-4)
	}
	if !strings.HasPrefix(" "+gguf.SynthReply, res.Text) || res.Text == "" {
		t.Fatalf("text %q", res.Text)
	}
}

func TestSampling(t *testing.T) {
	e := openSmall(t, Options{})
	req := chatReq(16)
	req.Params.Temperature = 0.8
	req.Params.TopK = 40
	req.Params.TopP = 0.9
	req.Params.RepeatPenalty = 1.1
	req.Params.Seed = 42
	a, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Text != b.Text {
		t.Fatalf("same seed gave %q and %q", a.Text, b.Text)
	}
	if a.TokensOut < 1 {
		t.Fatalf("no tokens")
	}
}

func TestCountTokens(t *testing.T) {
	e := openSmall(t, Options{})
	ctx := context.Background()
	if n, err := e.CountTokens(ctx, ""); err != nil || n != 0 {
		t.Fatalf("empty: %d, %v", n, err)
	}
	one, err := e.CountTokens(ctx, gguf.SynthReply)
	if err != nil || one < 1 || one > len(gguf.SynthReply) {
		t.Fatalf("reply: %d, %v", one, err)
	}
	two, err := e.CountTokens(ctx, gguf.SynthReply+gguf.SynthReply)
	if err != nil || two < 2*one-2 || two > 2*one+2 {
		t.Fatalf("reply twice: %d tokens, once %d (%v)", two, one, err)
	}
	// Special-token text is counted as text, not as one special token.
	if n, err := e.CountTokens(ctx, "<|im_end|>"); err != nil || n < 2 {
		t.Fatalf("<|im_end|>: %d, %v", n, err)
	}
	if _, err := e.CountTokens(ctx, "a\x00b"); err == nil {
		t.Fatal("NUL accepted")
	}
}

func TestEmbed(t *testing.T) {
	e := openSmall(t, Options{})
	ctx := context.Background()
	vecs, err := e.Embed(ctx, []string{"hello world", "Once upon a time", "hello world"})
	if errors.Is(err, engine.ErrNotSupported) {
		t.Fatalf("the synthetic llama model should support mean-pooled embeddings: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(vecs) != 3 {
		t.Fatalf("%d vectors", len(vecs))
	}
	dim := e.Info().EmbeddingSize
	for i, v := range vecs {
		if len(v) != dim {
			t.Fatalf("vector %d has %d dims, want %d", i, len(v), dim)
		}
		var s float64
		for _, x := range v {
			s += float64(x) * float64(x)
		}
		if math.Abs(math.Sqrt(s)-1) > 1e-3 {
			t.Fatalf("vector %d has norm %f", i, math.Sqrt(s))
		}
	}
	for j := range vecs[0] {
		if math.Abs(float64(vecs[0][j]-vecs[2][j])) > 1e-5 {
			t.Fatalf("same input, different vectors at %d", j)
		}
	}
	if out, err := e.Embed(ctx, nil); err != nil || len(out) != 0 {
		t.Fatalf("no inputs: %v, %v", out, err)
	}
	if _, err := e.Embed(ctx, []string{""}); err == nil {
		t.Fatal("empty input accepted")
	}
}

func TestClose(t *testing.T) {
	e := openSmall(t, Options{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	if _, err := e.Generate(ctx, chatReq(5), nil); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Generate after Close: %v", err)
	}
	if _, err := e.Embed(ctx, []string{"x"}); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Embed after Close: %v", err)
	}
	if _, err := e.CountTokens(ctx, "x"); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("CountTokens after Close: %v", err)
	}
}

func TestCloseWhileGenerating(t *testing.T) {
	e := openSmall(t, Options{})
	started := make(chan struct{})
	done := make(chan error, 1)
	var inCallback atomic.Bool // the generation is inside its token callback
	go func() {
		var once sync.Once
		_, err := e.Generate(context.Background(), chatReq(256), func(string) error {
			inCallback.Store(true)
			once.Do(func() { close(started) })
			time.Sleep(20 * time.Millisecond)
			inCallback.Store(false)
			return nil
		})
		done <- err
	}()
	<-started
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for the generation, which was in its callback when Close
	// began and stopped at its next token. (Generate returns to its caller
	// just after Close's wait ends, so its result is awaited, not polled.)
	if inCallback.Load() {
		t.Fatal("Close returned while the generation was still running")
	}
	select {
	case err := <-done:
		if !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("generation during Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the generation did not return after Close")
	}
}

func TestOpenErrors(t *testing.T) {
	lib := testLibDir(t)
	ctx := context.Background()
	dir := t.TempDir()

	missing := filepath.Join(dir, "missing.gguf")
	if _, err := Open(ctx, missing, Options{LibDir: lib}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing model: %v", err)
	}

	garbage := filepath.Join(dir, "garbage.gguf")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a model ", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, garbage, Options{LibDir: lib}); err == nil || !strings.Contains(err.Error(), garbage) {
		t.Fatalf("garbage model: %v", err)
	}

	// A valid header followed by nothing: llama.cpp itself must refuse it.
	trunc := filepath.Join(dir, "truncated.gguf")
	if err := os.WriteFile(trunc, ggufHeader(3, 3, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, trunc, Options{LibDir: lib})
	if err == nil || !strings.Contains(err.Error(), trunc) {
		t.Fatalf("truncated model: %v", err)
	}
	t.Logf("truncated model error: %v", err)

	if _, err := Open(ctx, garbage, Options{LibDir: dir}); !errors.Is(err, ErrLibDirMismatch) {
		t.Fatalf("other library directory: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Open(cctx, garbage, Options{LibDir: lib}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled open: %v", err)
	}
}

func TestLibDirErrors(t *testing.T) {
	err := checkLibDir(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "make setup") || !strings.Contains(err.Error(), EnvLibDir) {
		t.Fatalf("missing dir: %v", err)
	}
	err = checkLibDir(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "libllama.so") {
		t.Fatalf("empty dir: %v", err)
	}
	t.Setenv(EnvLibDir, "")
	if _, err := resolveLibDir(""); err == nil || !strings.Contains(err.Error(), "make setup") {
		t.Fatalf("no dir: %v", err)
	}
	t.Setenv(EnvLibDir, "/some/where")
	if d, err := FindLibDir("."); err != nil || d != "/some/where" {
		t.Fatalf("FindLibDir with env: %q, %v", d, err)
	}
}

func TestMeasure(t *testing.T) {
	e := openSmall(t, Options{})
	tp, err := Measure(context.Background(), e, chatReq(256))
	if err != nil {
		t.Fatal(err)
	}
	if tp.TokensOut < 2 || tp.TokensPerSecond <= 0 || tp.FirstToken <= 0 || tp.Total < tp.FirstToken {
		t.Fatalf("%+v", tp)
	}
}

// BenchmarkGenerate measures greedy generation speed on a synthetic model
// of about 100M parameters (Q4_0), written once per test process. Each
// iteration decodes the 5-token SynthRawPrompt and generates
// SynthRawContinuation (11 tokens). tokens/s is generated tokens over wall
// time, prompt included; decode-tokens/s and first-token-ms come from
// Measure.
func BenchmarkGenerate(b *testing.B) {
	lib := testLibDir(b)
	path := synthModel(b, 100_000_000, "Q4_0")
	e, err := Open(context.Background(), path, Options{LibDir: lib, ContextSize: 512, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	req := engine.Request{Prompt: gguf.SynthRawPrompt, Params: engine.Params{MaxTokens: 64}}
	// Warm up (first-use allocations, page faults of the mapped weights).
	if _, err := e.Generate(context.Background(), req, nil); err != nil {
		b.Fatal(err)
	}
	var out int
	var decodeRate float64
	var first time.Duration
	start := time.Now()
	for b.Loop() {
		tp, err := Measure(context.Background(), e, req)
		if err != nil {
			b.Fatal(err)
		}
		out += tp.TokensOut
		decodeRate += tp.TokensPerSecond
		first += tp.FirstToken
	}
	el := time.Since(start)
	b.ReportMetric(float64(out)/el.Seconds(), "tokens/s")
	b.ReportMetric(decodeRate/float64(b.N), "decode-tokens/s")
	b.ReportMetric(first.Seconds()*1000/float64(b.N), "first-token-ms")
	b.ReportMetric(float64(out)/float64(b.N), "tokens/op")
	b.ReportMetric(float64(e.Info().Params)/1e6, "Mparams")
}

func TestChatTemplate(t *testing.T) {
	openSmall(t, Options{}) // loads the libraries
	msgs := []engine.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}}
	want := "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
	if got := chatML(msgs); got != want {
		t.Fatalf("chatML = %q", got)
	}
	got, ok := applyTemplate(gguf.SynthChatTemplate, msgs)
	if !ok || got != want {
		t.Fatalf("model template = %q, %v; want %q", got, ok, want)
	}
	long := []engine.Message{{Role: "user", Content: strings.Repeat("x", 10000)}}
	if got, ok := applyTemplate(gguf.SynthChatTemplate, long); !ok || got != chatML(long) {
		t.Fatalf("long message: ok %v, %d bytes", ok, len(got))
	}
	if _, ok := applyTemplate("{{ not a template llama.cpp knows }}", msgs); ok {
		t.Fatal("unknown template accepted")
	}
}

func TestLogSink(t *testing.T) {
	var buf strings.Builder
	s := &logSink{}
	s.logger.Store(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	c := func(level llama.LogLevel, text string) {
		b := append([]byte(text), 0)
		s.callback(int32(level), &b[0], 0)
	}
	c(llama.LogLevelInfo, "loading ")
	c(llama.LogLevelContinue, "model")
	c(llama.LogLevelContinue, "...\n")
	c(llama.LogLevelError, "bad tensor\n")
	c(llama.LogLevelError, "failed to load\n")
	s.callback(int32(llama.LogLevelInfo), nil, 0)
	out := buf.String()
	if !strings.Contains(out, `msg="loading model..."`) || !strings.Contains(out, "llama_level=info") {
		t.Fatalf("log output %q", out)
	}
	if got := s.takeErrors(); got != "bad tensor; failed to load" {
		t.Fatalf("errors %q", got)
	}
	if got := s.takeErrors(); got != "" {
		t.Fatalf("errors not forgotten: %q", got)
	}
	for i := range 10 {
		c(llama.LogLevelError, fmt.Sprintf("e%d\n", i))
	}
	if got := s.takeErrors(); got != "e6; e7; e8; e9" {
		t.Fatalf("bounded errors %q", got)
	}
}
