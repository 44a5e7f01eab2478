package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestServeCommand(t *testing.T) {
	t.Setenv("MDSA_LLAMA_LIB", testutil.LlamaLibDir(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errw lockedBuffer
	root := newRoot(&out, &errw)
	root.SetArgs([]string{"--config", fix.config, "serve", "--listen", "127.0.0.1:0", "--model-file", fix.model, "--watch=false"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	addrRE := regexp.MustCompile(`serving on (http://[0-9.:]+)`)
	var base string
	for deadline := time.Now().Add(2 * time.Minute); base == ""; {
		if m := addrRE.FindStringSubmatch(errw.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve stopped early: %v\n%s", err, errw.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", errw.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	get := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(http.MethodGet, "/healthz", ""); code != http.StatusOK {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, body := get(http.MethodPost, "/v1/route", `{"query":"I was charged twice for my order, can I get a refund?"}`); code != http.StatusOK ||
		!strings.Contains(body, `"domain":"support"`) {
		t.Fatalf("/v1/route: %d %s", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v\n%s", err, errw.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not stop after its context ended")
	}
	if !strings.Contains(errw.String(), "stopped") {
		t.Fatalf("no stop message:\n%s", errw.String())
	}
}
