package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/engine/llamacpp"
	"github.com/mdsa-go/mdsa/internal/enginebench"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// fakeReference answers /v1/chat/completions as llama-server does, in JSON
// or as an event stream, with usage and cached tokens: every prompt is 100
// tokens, 90 of them cached; answers are max_tokens long.
func fakeReference(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			MaxTokens int  `json:"max_tokens"`
			Stream    bool `json:"stream"`
		}
		if r.URL.Path != "/v1/chat/completions" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		usage := fmt.Sprintf(`{"prompt_tokens":100,"completion_tokens":%d,"prompt_tokens_details":{"cached_tokens":90}}`, req.MaxTokens)
		if !req.Stream {
			fmt.Fprintf(w, `{"choices":[{"message":{"role":"assistant","content":"x"}}],"usage":%s}`, usage)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl, _ := w.(http.Flusher)
		for range req.MaxTokens {
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\" x\"}}]}\n\n")
			if fl != nil {
				fl.Flush()
			}
			time.Sleep(50 * time.Microsecond) // tokens take time, even on a coarse clock
		}
		fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":%s}\n\ndata: [DONE]\n\n", usage)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// benchEngineConfig is a configuration whose engine holds the bench's
// prompt (about 1300 tokens of the synthetic vocabulary) and needs no
// hardware detection.
func benchEngineConfig(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "mdsa.toml")
	conf := "[host]\nlog_level = \"error\"\n\n[engine]\nthreads = 1\ncontext_size = 2048\nparallel = 2\ngpu_layers = 0\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBenchEngine(t *testing.T) {
	t.Setenv("MDSA_LLAMA_LIB", testutil.LlamaLibDir(t))
	conf := benchEngineConfig(t)
	ref := fakeReference(t)
	out, stderr, err := run(t, "--config", conf, "bench", "engine", "--json", "--model-file", fix.model,
		"--against", ref.URL, "--duration", "200ms", "--requests", "2", "--clients", "1,2",
		"--max-tokens", "4", "--decode-tokens", "8")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep enginebench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Setup.ModelFile != fix.model || rep.Setup.Threads != 1 || rep.Setup.Cores < 1 {
		t.Errorf("setup: %+v", rep.Setup)
	}
	if len(rep.Targets) != 2 || rep.Targets[0].Role != "mdsa" || rep.Targets[1].Role != "reference" || rep.Targets[1].URL != ref.URL {
		t.Fatalf("targets: %+v", rep.Targets)
	}
	for _, key := range []string{`"p50_ms"`, `"cpu_s_per_request"`, `"evaluated_tokens"`, `"tokens_per_s"`, `"first_token_ms"`, `"model_file"`} {
		if !strings.Contains(out, key) {
			t.Errorf("no %s in the JSON report", key)
		}
	}
	l := rep.Latency
	if l.MDSA.Requests != 2 || l.MDSA.Errors != 0 || l.MDSA.P50MS <= 0 || l.MDSA.P99MS < l.MDSA.P50MS || l.MDSA.PromptTokens < 100 {
		t.Errorf("mdsa latency: %+v", l.MDSA)
	}
	if l.Reference == nil || l.Reference.Requests != 2 || l.Reference.EvaluatedTokens != 10 {
		t.Fatalf("reference latency: %+v", l.Reference)
	}
	if len(l.Compare) == 0 || l.Compare[0].Figure != "p50 ms" || l.Compare[0].Ratio == nil || *l.Compare[0].Ratio <= 0 || l.Compare[0].Better != "lower" {
		t.Errorf("latency comparison: %+v", l.Compare)
	}
	if len(rep.Throughput) != 2 {
		t.Fatalf("throughput: %+v", rep.Throughput)
	}
	for _, lvl := range rep.Throughput {
		if lvl.MDSA.Requests == 0 || lvl.MDSA.RPS <= 0 || lvl.Reference == nil || lvl.Reference.Requests == 0 || lvl.Reference.Errors != 0 {
			t.Errorf("%d clients: %+v %+v", lvl.Clients, lvl.MDSA, lvl.Reference)
		}
		// The fake reference runs in this process, which is found
		// through /proc; where /proc is not readable, CPU is n/a and
		// the report says why.
		if lvl.Reference != nil && lvl.Reference.CPUSecondsPerRequest == nil && rep.Targets[1].CPUNote == "" {
			t.Errorf("%d clients: no reference CPU and no note", lvl.Clients)
		}
	}
	if rep.Decode == nil || rep.Decode.Reference == nil || rep.Decode.MDSA.CompletionTokens <= 0 || rep.Decode.Reference.CompletionTokens != 8 ||
		rep.Decode.MDSA.TokensPerSecond <= 0 || rep.Decode.Reference.TokensPerSecond <= 0 {
		t.Errorf("decode: %+v", rep.Decode)
	}
	if a := rep.Aggregate; a == nil || a.Reference == nil || a.MDSA.Many.Requests != 16 || a.Reference.Many.Requests != 16 {
		t.Errorf("aggregate: %+v", rep.Aggregate)
	}
}

func TestBenchEngineErrors(t *testing.T) {
	conf := benchEngineConfig(t)
	for _, args := range [][]string{
		{"--duration", "0s"}, {"--clients", "0"}, {"--requests", "0"}, {"--max-tokens", "0"}, {"--decode-tokens", "-1"},
		{"--against-pid", "-3"}, {"--model-file", filepath.Join(t.TempDir(), "missing.gguf")},
		{"--model-file", fix.model, "--against", "ftp://example.com"}, {"--against-pid", "1"},
	} {
		if _, _, err := run(t, append([]string{"--config", conf, "bench", "engine"}, args...)...); err == nil {
			t.Errorf("bench engine %v succeeded", args)
		}
	}

	// A reference that is not there fails the run, naming its URL.
	t.Setenv("MDSA_LLAMA_LIB", testutil.LlamaLibDir(t))
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	_, _, err := run(t, "--config", conf, "bench", "engine", "--model-file", fix.model, "--against", dead.URL,
		"--duration", "100ms", "--requests", "1", "--clients", "1", "--skip-decode")
	if err == nil || !strings.Contains(err.Error(), dead.URL) {
		t.Fatalf("unreachable reference: %v", err)
	}
}

func TestBenchEngineReferenceCommand(t *testing.T) {
	got := referenceCommand("/m/x.gguf", llamacpp.Options{Threads: 3, ContextSize: 2048, GPULayers: -1})
	if want := "llama-server -m /m/x.gguf --port 8089 -t 3 -np 4 -c 8192 -ngl 999"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := referenceCommand("m", llamacpp.Options{Threads: 1}); got != "llama-server -m m --port 8089 -t 1 -np 4" {
		t.Errorf("defaults: %s", got)
	}
}
