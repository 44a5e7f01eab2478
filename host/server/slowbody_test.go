package server

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that sends headers and part of a body and then stalls is cut
// off once the body's deadline passes, on the API and on a plugin upload,
// instead of holding its connection for ever.
func TestStalledBodyTimesOut(t *testing.T) {
	cfg := openConfig(t)
	cfg.Server.AdminKeys = keyHash(adminKey)
	s := newServer(t, openHost(t), cfg)
	s.bodyTimeout, s.uploadTimeout = 300*time.Millisecond, 300*time.Millisecond
	ts := startServer(t, s)
	addr := strings.TrimPrefix(ts.URL, "http://")
	for _, path := range []string{"/v1/chat/completions", "/admin/plugins/support"} {
		method := http.MethodPost
		if strings.HasPrefix(path, "/admin") {
			method = http.MethodPut
		}
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// The client's own bound, far above the server's: the test fails
		// rather than hangs if the server never gives up.
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		_, err = conn.Write([]byte(method + " " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminKey +
			"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("%s: the server still held the stalled body after 30 s", path)
			}
			continue // closed: also cut off
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: stalled body answered %d, want 400", path, resp.StatusCode)
		}
	}
}

// Warnings an operator must see (the synthetic model serving, say) are on
// /readyz and /v1/models; without any, neither has the field.
func TestWarningsServed(t *testing.T) {
	h := openHost(t)
	warned := startServer(t, newServer(t, h, openConfig(t), WithWarnings("serving the synthetic test model")))
	plain := startServer(t, newServer(t, h, openConfig(t)))
	for _, path := range []string{"/readyz", "/v1/models"} {
		r := do(t, http.MethodGet, warned.URL+path, "k", nil)
		if r.code != http.StatusOK || !strings.Contains(string(r.body), `"warnings":["serving the synthetic test model"]`) {
			t.Fatalf("%s with a warning: %d %s", path, r.code, r.body)
		}
		if r := do(t, http.MethodGet, plain.URL+path, "k", nil); r.code != http.StatusOK || strings.Contains(string(r.body), "warnings") {
			t.Fatalf("%s without warnings: %d %s", path, r.code, r.body)
		}
	}
}
