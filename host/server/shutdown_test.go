package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

// gateEngine streams the synthetic reply's first word, then waits for the
// test to open the gate (or for its context to end), so a test holds a
// generation in flight as long as it likes.
type gateEngine struct {
	mu       sync.Mutex
	started  chan struct{} // a value per generation that has sent its first piece
	release  chan struct{} // closed to let the waiting generations finish
	canceled chan error    // a value per generation ended by its context
}

func (g *gateEngine) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.started, g.release, g.canceled = make(chan struct{}, 16), make(chan struct{}), make(chan error, 16)
}

func (g *gateEngine) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.release)
}

func (g *gateEngine) Model() string { return "gate" }

func (g *gateEngine) Generate(ctx context.Context, req engine.Request, on engine.TokenFunc) (engine.Result, error) {
	g.mu.Lock()
	started, release, canceled := g.started, g.release, g.canceled
	g.mu.Unlock()
	pieces := strings.SplitAfter(gguf.SynthReply, " ")
	emit := func(p string) error {
		if on == nil {
			return nil
		}
		return on(p)
	}
	if err := emit(pieces[0]); err != nil {
		return engine.Result{}, err
	}
	started <- struct{}{}
	select {
	case <-release:
	case <-ctx.Done():
		canceled <- ctx.Err()
		return engine.Result{}, ctx.Err()
	}
	for _, p := range pieces[1:] {
		if err := emit(p); err != nil {
			return engine.Result{}, err
		}
	}
	return engine.Result{Text: gguf.SynthReply, Model: "gate", TokensIn: 10, TokensOut: len(pieces), FinishReason: engine.FinishStop}, nil
}

func (g *gateEngine) Embed(context.Context, []string) ([][]float32, error) {
	return nil, engine.ErrNotSupported
}

func (g *gateEngine) CountTokens(_ context.Context, s string) (int, error) {
	return len(strings.Fields(s)), nil
}

func (g *gateEngine) Close() error { return nil }

var gate = &gateEngine{}

// gateHost serves the support plugin with the gate engine.
func gateHost(t *testing.T) (*host.Host, config.Config) {
	t.Helper()
	dir := filepath.Join(filepath.Dir(fixture.pluginsDir), "support-only")
	cfg := baseConfig(t, dir)
	h := sharedHost(t, "gate", func() config.Config {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(fixture.pluginsDir, "support.wasm"), filepath.Join(dir, "support.wasm")); err != nil {
			t.Fatal(err)
		}
		return cfg
	}, host.WithEngine(gate))
	gate.reset()
	return h, cfg
}

// startStream sends a streamed chat request and returns its reader once
// the first piece of the answer has arrived.
func startStream(t *testing.T, ctx context.Context, url string) (*bufio.Reader, func()) {
	t.Helper()
	body := chatBody("mdsa/support", qSupport)
	body["stream"] = true
	data, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(string(data)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	var got bool
	readSSE(t, rd, func(data string) bool {
		got = strings.Contains(data, `"content":"Once `)
		return !got
	})
	if !got {
		t.Fatal("the first piece never arrived")
	}
	select {
	case <-gate.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the generation did not start")
	}
	return rd, func() { resp.Body.Close() }
}

// finishStream reads the rest of a stream: the text and whether it ended
// with [DONE].
func finishStream(t *testing.T, rd *bufio.Reader) (string, bool) {
	t.Helper()
	var text strings.Builder
	text.WriteString("Once ")
	done := false
	readSSE(t, rd, func(data string) bool {
		if data == "[DONE]" {
			done = true
			return false
		}
		var ch chatChunk
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			t.Fatalf("chunk %s: %v", data, err)
		}
		if len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
		return true
	})
	return text.String(), done
}

func TestGracefulShutdown(t *testing.T) {
	h, cfg := gateHost(t)
	s := newServer(t, h, cfg, WithDrainDelay(500*time.Millisecond))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	rd, closeStream := startStream(t, context.Background(), url)
	defer closeStream()
	m := do(t, http.MethodGet, url+"/metrics", "", nil)
	if !strings.Contains(string(m.body), `mdsa_inflight_requests{endpoint="chat.completions",tenant="default"} 1`) {
		t.Fatal("the stream in flight is not in mdsa_inflight_requests")
	}

	cancel()
	// Draining: /readyz answers 503 to a new connection...
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	saw503 := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !saw503; time.Sleep(10 * time.Millisecond) {
		resp, err := fresh.Get(url + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the drain: %v", err)
		}
		resp.Body.Close()
		saw503 = resp.StatusCode == http.StatusServiceUnavailable
	}
	if !saw503 || s.Ready() {
		t.Fatal("/readyz never answered 503 after the shutdown began")
	}
	// ...then new connections are refused, while the stream goes on.
	refused := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !refused; time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			refused = true
		} else {
			c.Close()
		}
	}
	if !refused {
		t.Fatal("new connections were still accepted after the drain delay")
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned while a stream was in flight: %v", err)
	default:
	}

	gate.open()
	text, done := finishStream(t, rd)
	if text != gguf.SynthReply || !done {
		t.Fatalf("the stream in flight did not finish cleanly: %q, [DONE] %v", text, done)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the last request finished")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("a connection was accepted after Serve returned")
	}
}

func TestShutdownGraceExpires(t *testing.T) {
	h, cfg := gateHost(t)
	cfg.Server.ShutdownGrace = config.Duration{Duration: 300 * time.Millisecond}
	s := newServer(t, h, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	_, closeStream := startStream(t, context.Background(), "http://"+ln.Addr().String())
	defer closeStream()
	cancel()
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "shutdown_grace") {
			t.Fatalf("Serve after the grace: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the grace")
	}
	select {
	case err := <-gate.canceled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("generation ended by %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the generation cut off by the shutdown was not cancelled")
	}
}

func TestClientDisconnectCancelsGeneration(t *testing.T) {
	h, cfg := gateHost(t)
	ts := startServer(t, newServer(t, h, cfg))
	ctx, cancel := context.WithCancel(context.Background())
	_, closeStream := startStream(t, ctx, ts.URL)
	defer closeStream()
	cancel()
	select {
	case err := <-gate.canceled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("generation ended by %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client went away but the generation went on")
	}
}
