package gguf

// End-to-end checks of synthetic models through the real llama.cpp libraries
// (via yzma). They skip when the libraries are absent; CI installs them with
// `make setup`. BenchmarkSynthLlamaCpp measures decode speed of a ~100M
// parameter model:
//
//	go test -run '^$' -bench SynthLlamaCpp -benchtime 1x ./internal/gguf

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
)

// The libraries are loaded once per test process (yzma keeps them in
// package state).
var (
	llamaOnce sync.Once
	llamaErr  error
)

func needLlama(tb testing.TB) {
	tb.Helper()
	llamaOnce.Do(func() {
		dir, err := llamacpp.FindLibDir(".")
		if err != nil {
			llamaErr = err
			return
		}
		if err := llama.Load(dir); err != nil {
			llamaErr = err
			return
		}
		if os.Getenv("MDSA_LLAMA_LOG") == "" { // set it to see llama.cpp's own log
			llama.LogSet(llama.LogSilent())
		}
		llama.Init()
	})
	if llamaErr != nil {
		tb.Skipf("llama.cpp libraries not available (run `make setup` or set MDSA_LLAMA_LIB): %v", llamaErr)
	}
}

type genResult struct {
	prompt    string
	promptTok []llama.Token
	text      string
	tokens    []llama.Token
	eog       bool // stopped on an end-of-generation token
	decode    time.Duration
}

// generate decodes greedily from prompt (chat messages when chat is set) for
// up to maxTokens, stopping at an end-of-generation token unless ignoreEOG.
type genOpts struct {
	maxTokens int
	ignoreEOG bool
	// sample samples (temperature 1.5, top-k 40, top-p 0.95, repetition
	// penalties) instead of decoding greedily.
	sample bool
	// threads is the llama.cpp thread count, 1 when 0. The correctness tests
	// use one thread: ggml's spinning thread barriers slow down badly when
	// other processes compete for the cores.
	threads int32
}

func generate(tb testing.TB, path string, chat []llama.ChatMessage, raw string, o genOpts) genResult {
	tb.Helper()
	model, err := llama.ModelLoadFromFile(path, llama.ModelDefaultParams())
	if err != nil {
		tb.Fatalf("load %s: %v", path, err)
	}
	defer func() { _ = llama.ModelFree(model) }()
	cp := llama.ContextDefaultParams()
	cp.NCtx = 1024
	cp.NBatch = 512
	cp.NThreads = max(1, o.threads)
	cp.NThreadsBatch = cp.NThreads
	lctx, err := llama.InitFromModel(model, cp)
	if err != nil {
		tb.Fatalf("context for %s: %v", path, err)
	}
	defer func() { _ = llama.Free(lctx) }()
	vocab := llama.ModelGetVocab(model)

	var res genResult
	parseSpecial := false
	if chat != nil {
		tmpl := llama.ModelChatTemplate(model, "")
		if tmpl != SynthChatTemplate {
			tb.Fatalf("model chat template = %q, want %q", tmpl, SynthChatTemplate)
		}
		buf := make([]byte, 4096)
		n := llama.ChatApplyTemplate(tmpl, chat, true, buf)
		if n <= 0 || int(n) > len(buf) {
			tb.Fatalf("apply chat template: %d", n)
		}
		res.prompt = string(buf[:n])
		parseSpecial = true
	} else {
		res.prompt = raw
	}
	res.promptTok = llama.Tokenize(vocab, res.prompt, true, parseSpecial)

	sampler := llama.SamplerChainInit(llama.SamplerChainDefaultParams())
	defer llama.SamplerFree(sampler)
	if o.sample {
		llama.SamplerChainAdd(sampler, llama.SamplerInitPenalties(llama.VocabNTokens(vocab), 64, 1.3, 0.2, 0.2))
		llama.SamplerChainAdd(sampler, llama.SamplerInitTopK(40))
		llama.SamplerChainAdd(sampler, llama.SamplerInitTopP(0.95, 1))
		llama.SamplerChainAdd(sampler, llama.SamplerInitTemp(1.5))
		llama.SamplerChainAdd(sampler, llama.SamplerInitDist(uint32(time.Now().UnixNano())))
	} else {
		llama.SamplerChainAdd(sampler, llama.SamplerInitGreedy())
	}

	var sb strings.Builder
	batch := llama.BatchGetOne(res.promptTok)
	piece := make([]byte, 64)
	start := time.Now()
	for len(res.tokens) < o.maxTokens {
		if rc, err := llama.Decode(lctx, batch); err != nil || rc != 0 {
			tb.Fatalf("decode: rc %d, %v", rc, err)
		}
		if len(res.tokens) == 0 {
			start = time.Now() // time generation only, not the prompt
		}
		tok := llama.SamplerSample(sampler, lctx, -1)
		if llama.VocabIsEOG(vocab, tok) && !o.ignoreEOG {
			res.eog = true
			break
		}
		res.tokens = append(res.tokens, tok)
		n := llama.TokenToPiece(vocab, tok, piece, 0, false)
		sb.Write(piece[:max(0, n)])
		batch = llama.BatchGetOne([]llama.Token{tok})
	}
	res.decode = time.Since(start)
	res.text = sb.String()
	return res
}

func chatPrompt() []llama.ChatMessage {
	return []llama.ChatMessage{
		llama.NewChatMessage("system", "You are a helpful assistant."),
		llama.NewChatMessage("user", "What is the capital of France? Answer in one word!"),
	}
}

func checkSynthModel(t *testing.T, path string) {
	t.Helper()
	chat := generate(t, path, chatPrompt(), "", genOpts{maxTokens: 64})
	t.Logf("chat: %q -> %q (EOG %v)", chat.prompt, chat.text, chat.eog)
	wantPrompt := "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
		"<|im_start|>user\nWhat is the capital of France? Answer in one word!<|im_end|>\n" +
		"<|im_start|>assistant\n"
	if chat.prompt != wantPrompt {
		t.Errorf("templated prompt = %q, want %q", chat.prompt, wantPrompt)
	}
	if chat.promptTok[0] != SynthBOSID || chat.promptTok[1] != SynthImStartID {
		t.Errorf("prompt tokens start %v, want BOS, <|im_start|>", chat.promptTok[:2])
	}
	if chat.text != SynthReply || !chat.eog {
		t.Errorf("chat reply = %q (stopped on EOG: %v), want %q then <|im_end|>", chat.text, chat.eog, SynthReply)
	}
	if n := len(chat.tokens); n != len(synthSentence()) {
		t.Errorf("chat reply has %d tokens, want %d", n, len(synthSentence()))
	}

	raw := generate(t, path, nil, SynthRawPrompt, genOpts{maxTokens: 64})
	voc := buildSynthVocab()
	want := []llama.Token{SynthBOSID}
	for _, w := range []string{"▁Once", "▁upon", "▁a", "▁time"} {
		want = append(want, llama.Token(voc.ids[w]))
	}
	if !slices.Equal(raw.promptTok, want) {
		t.Errorf("raw prompt tokens = %v, want %v (whole-word tokens)", raw.promptTok, want)
	}
	if raw.text != SynthRawContinuation || !raw.eog {
		t.Errorf("raw continuation = %q (EOG %v), want %q", raw.text, raw.eog, SynthRawContinuation)
	}

	other := generate(t, path, nil, "Hello world, how are you", genOpts{maxTokens: 64})
	if other.text != " "+SynthReply || !other.eog {
		t.Errorf("continuation of another raw prompt = %q (EOG %v), want %q", other.text, other.eog, " "+SynthReply)
	}

	sampled := generate(t, path, []llama.ChatMessage{llama.NewChatMessage("user", "Tell me a story.")}, "", genOpts{maxTokens: 64, sample: true})
	if sampled.text != SynthReply || !sampled.eog {
		t.Errorf("sampled chat reply = %q (EOG %v), want %q", sampled.text, sampled.eog, SynthReply)
	}
}

func TestSynthLlamaCpp(t *testing.T) {
	needLlama(t)
	dir := t.TempDir()
	for _, q := range []string{"F32", "F16", "Q8_0", "Q4_0"} {
		t.Run(q, func(t *testing.T) {
			path := filepath.Join(dir, q+".gguf")
			info, err := WriteSynth(path, SynthOptions{Quant: q})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d params, %d bytes", q, info.Params, info.Bytes)
			checkSynthModel(t, path)
		})
	}
	t.Run("GQA", func(t *testing.T) {
		path := filepath.Join(dir, "gqa.gguf")
		if _, err := WriteSynth(path, SynthOptions{KVHeads: 1, ContextLength: 512}); err != nil {
			t.Fatal(err)
		}
		checkSynthModel(t, path)
	})
}

// TestSynthLlamaCppLarge checks a ~100M parameter model. It writes about
// 57 MB (about a second) and is skipped with -short and under the race
// detector, which slows the writer's quantisation loops some 40 times.
func TestSynthLlamaCppLarge(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("writes a 100M-parameter model; skipped with -short or -race")
	}
	needLlama(t)
	path := filepath.Join(t.TempDir(), "synth-100m.gguf")
	start := time.Now()
	info, err := WriteSynth(path, SynthOptions{Params: 100_000_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %+v in %v", info, time.Since(start))
	checkSynthModel(t, path)
}

// BenchmarkSynthLlamaCpp reports greedy decode speed (tokens/s; 2 threads
// unless the name says otherwise) of synthetic models through llama.cpp,
// ignoring end-of-generation so that every iteration decodes the same number
// of tokens. With 2 threads on a 2-core machine the figures collapse (by 5-20
// times) whenever another process competes for a core: ggml's threads spin at
// their barriers.
func BenchmarkSynthLlamaCpp(b *testing.B) {
	needLlama(b)
	dir := b.TempDir()
	for _, c := range []struct {
		name    string
		params  int64
		quant   string
		threads int32
	}{
		{"100M-Q4_0", 100_000_000, "Q4_0", 2},
		{"100M-Q4_0-1thread", 100_000_000, "Q4_0", 1},
		{"100M-Q8_0", 100_000_000, "Q8_0", 2},
		{"tiny-Q4_0", 0, "Q4_0", 2},
	} {
		b.Run(c.name, func(b *testing.B) {
			path := filepath.Join(dir, c.name+".gguf")
			start := time.Now()
			info, err := WriteSynth(path, SynthOptions{Params: c.params, Quant: c.quant})
			if err != nil {
				b.Fatal(err)
			}
			writeTime := time.Since(start)
			const n = 128
			b.ResetTimer()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				r := generate(b, path, nil, SynthRawPrompt, genOpts{maxTokens: n, ignoreEOG: true, threads: c.threads})
				if !strings.HasPrefix(r.text, SynthRawContinuation) {
					b.Fatalf("output %q does not start with %q", r.text, SynthRawContinuation)
				}
				total += r.decode
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "tok/s")
			b.ReportMetric(writeTime.Seconds(), "write-s")
			b.ReportMetric(float64(info.Bytes)/1e6, "file-MB")
		})
	}
}
