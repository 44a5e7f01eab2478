package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testServer serves one file at /file, with switches for the failures the
// tests need. Every field is guarded by mu; tests change them between
// fetches with set.
type testServer struct {
	*httptest.Server

	mu            sync.Mutex
	content       []byte
	etag          string
	modtime       time.Time
	ignoreRange   bool          // drop Range: always answer 200
	ignoreIfRange bool          // honour Range even when the file changed
	cutAfter      int64         // abort each response after this many body bytes (0: never)
	cutOnce       bool          // only the next response is cut
	fail          []int         // statuses answered (one per request) before serving
	stallOnce     bool          // the next response sends headers, then nothing
	chunk         int           // write the body in pieces of this size...
	delay         time.Duration // ...sleeping this long after each
	reqs          []seen

	sent atomic.Int64 // body bytes written for /file
}

type seen struct {
	path, rng, ifRange, auth string
}

func newTestServer(t *testing.T, content []byte, etag string) *testServer {
	t.Helper()
	s := &testServer{content: content, etag: etag, modtime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	mux := http.NewServeMux()
	mux.HandleFunc("/file", s.serveFile)
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		s.record(r)
		http.Redirect(w, r, "/hop", http.StatusFound)
	})
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) {
		s.record(r)
		http.Redirect(w, r, "/file", http.StatusTemporaryRedirect)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) set(f func(s *testServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *testServer) record(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, seen{path: r.URL.Path, rng: r.Header.Get("Range"),
		ifRange: r.Header.Get("If-Range"), auth: r.Header.Get("Authorization")})
}

func (s *testServer) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

func (s *testServer) serveFile(w http.ResponseWriter, r *http.Request) {
	s.record(r)
	s.mu.Lock()
	if len(s.fail) > 0 {
		code := s.fail[0]
		s.fail = s.fail[1:]
		s.mu.Unlock()
		w.Header().Set("Retry-After", "0")
		http.Error(w, http.StatusText(code), code)
		return
	}
	content, etag, modtime := s.content, s.etag, s.modtime
	cw := &cutWriter{ResponseWriter: w, s: s, ctx: r.Context(), cut: s.cutAfter, chunk: s.chunk, delay: s.delay}
	if s.cutOnce {
		s.cutAfter, s.cutOnce = 0, false
	}
	stall := s.stallOnce
	s.stallOnce = false
	if s.ignoreRange {
		r.Header.Del("Range")
	}
	if s.ignoreIfRange {
		r.Header.Del("If-Range")
	}
	s.mu.Unlock()
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	if stall {
		w.Header().Set("Content-Length", fmt.Sprint(len(content)))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	http.ServeContent(cw, r, "model.gguf", modtime, bytes.NewReader(content))
}

// cutWriter counts body bytes, paces them, and aborts the connection after
// cut bytes.
type cutWriter struct {
	http.ResponseWriter
	s     *testServer
	ctx   context.Context
	n     int64
	cut   int64
	chunk int
	delay time.Duration
}

func (c *cutWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := len(p)
		if c.chunk > 0 && n > c.chunk {
			n = c.chunk
		}
		if c.cut > 0 && c.n+int64(n) > c.cut {
			n = int(c.cut - c.n)
		}
		m, err := c.ResponseWriter.Write(p[:n])
		c.n += int64(m)
		c.s.sent.Add(int64(m))
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
		if c.cut > 0 && c.n >= c.cut {
			c.ResponseWriter.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // drop the connection mid-body
		}
		if c.delay > 0 {
			c.ResponseWriter.(http.Flusher).Flush()
			select {
			case <-c.ctx.Done():
				return written, c.ctx.Err()
			case <-time.After(c.delay):
			}
		}
	}
	return written, nil
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fastOpts(s *testServer) Options {
	return Options{Client: s.Client(), Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		StallTimeout: 10 * time.Second}
}

// checkDone asserts Dest holds want and nothing else is left beside it.
func checkDone(t *testing.T, dest string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, sha256 %s; want %d bytes, %s", dest, len(got), sum(got), len(want), sum(want))
	}
	for _, suf := range []string{PartialSuffix, MetaSuffix, LockSuffix} {
		if _, err := os.Stat(dest + suf); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (err %v)", dest+suf, err)
		}
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestFetchFull(t *testing.T) {
	content := randomBytes(3<<20+123, 1)
	s := newTestServer(t, content, `"v1"`)
	for _, withSum := range []bool{false, true} {
		t.Run(fmt.Sprint("sha256=", withSum), func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "sub", "model.gguf")
			req := Request{URL: s.URL + "/file", Dest: dest}
			if withSum {
				req.SHA256 = strings.ToUpper(sum(content)) // case does not matter
				req.Size = int64(len(content))
			}
			var last Progress
			calls := 0
			req.Progress = func(p Progress) { last = p; calls++ }
			res, err := Fetch(context.Background(), req, fastOpts(s))
			if err != nil {
				t.Fatal(err)
			}
			checkDone(t, dest, content)
			if res.SHA256 != sum(content) || res.Bytes != int64(len(content)) || res.Path != dest ||
				res.Resumed || res.AlreadyPresent || res.Attempts != 1 {
				t.Fatalf("result %+v", res)
			}
			if calls < 2 || last.Bytes != int64(len(content)) || last.Total != int64(len(content)) {
				t.Fatalf("progress: %d calls, last %+v", calls, last)
			}

			// A second fetch finds the file and downloads nothing.
			n := len(s.requests())
			res, err = Fetch(context.Background(), req, fastOpts(s))
			if err != nil || !res.AlreadyPresent || res.SHA256 != sum(content) || len(s.requests()) != n {
				t.Fatalf("refetch: %+v %v (requests %d -> %d)", res, err, n, len(s.requests()))
			}
		})
	}
}

func TestFetchResumeAfterCut(t *testing.T) {
	content := randomBytes(4<<20, 2)
	for _, withSum := range []bool{false, true} {
		t.Run(fmt.Sprint("sha256=", withSum), func(t *testing.T) {
			s := newTestServer(t, content, `"abc"`)
			s.set(func(s *testServer) { s.cutAfter = 1<<20 + 17 })
			dest := filepath.Join(t.TempDir(), "model.gguf")
			req := Request{URL: s.URL + "/file", Dest: dest}
			if withSum {
				req.SHA256 = sum(content)
			}
			o := fastOpts(s)
			o.Attempts = 1 // no retries: the first Fetch fails
			_, err := Fetch(context.Background(), req, o)
			if err == nil {
				t.Fatal("cut transfer: no error")
			}
			if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("dest exists after a failed fetch: %v", err)
			}
			kept := fileSize(t, dest+PartialSuffix)
			if kept == 0 || kept > 1<<20+17 {
				t.Fatalf("partial has %d bytes", kept)
			}

			s.set(func(s *testServer) { s.cutAfter = 0 })
			s.sent.Store(0)
			var first Progress
			req.Progress = func(p Progress) {
				if first.Total == 0 {
					first = p
				}
			}
			res, err := Fetch(context.Background(), req, o)
			if err != nil {
				t.Fatal(err)
			}
			checkDone(t, dest, content)
			if !res.Resumed || res.SHA256 != sum(content) {
				t.Fatalf("result %+v", res)
			}
			if first.Resumed != kept || first.Bytes != kept {
				t.Fatalf("first progress %+v, kept %d", first, kept)
			}
			reqs := s.requests()
			last := reqs[len(reqs)-1]
			if last.rng != fmt.Sprintf("bytes=%d-", kept) || last.ifRange != `"abc"` {
				t.Fatalf("resume request: Range %q If-Range %q, want bytes=%d- and \"abc\"", last.rng, last.ifRange, kept)
			}
			if got, want := s.sent.Load(), int64(len(content))-kept; got != want {
				t.Fatalf("server sent %d bytes on resume, want %d", got, want)
			}
		})
	}
}

func TestFetchRetriesCutWithinOneCall(t *testing.T) {
	content := randomBytes(2<<20, 3)
	s := newTestServer(t, content, `"e"`)
	s.set(func(s *testServer) { s.cutAfter, s.cutOnce = 700_000, true })
	dest := filepath.Join(t.TempDir(), "m.gguf")
	res, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest}, fastOpts(s))
	if err != nil {
		t.Fatal(err)
	}
	checkDone(t, dest, content)
	reqs := s.requests()
	if len(reqs) != 2 || reqs[1].rng != "bytes=700000-" || !res.Resumed || res.Attempts != 2 {
		t.Fatalf("requests %+v result %+v", reqs, res)
	}
}

// interrupt leaves a partial download of s's file at dest.
func interrupt(t *testing.T, s *testServer, dest string, at int64) {
	t.Helper()
	s.set(func(s *testServer) { s.cutAfter, s.cutOnce = at, true })
	o := fastOpts(s)
	o.Attempts = 1
	if _, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest}, o); err == nil {
		t.Fatal("cut transfer: no error")
	}
	if n := fileSize(t, dest+PartialSuffix); n != at {
		t.Fatalf("partial: %d bytes, want %d", n, at)
	}
}

func TestFetchServerIgnoresRange(t *testing.T) {
	content := randomBytes(1<<20, 4)
	s := newTestServer(t, content, `"x"`)
	dest := filepath.Join(t.TempDir(), "m.gguf")
	interrupt(t, s, dest, 300_000)
	s.set(func(s *testServer) { s.ignoreRange = true })
	res, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest, SHA256: sum(content)}, fastOpts(s))
	if err != nil {
		t.Fatal(err)
	}
	checkDone(t, dest, content)
	if res.Resumed || res.Attempts != 1 {
		t.Fatalf("result %+v", res)
	}
	if r := s.requests(); r[len(r)-1].rng != "bytes=300000-" {
		t.Fatalf("no Range was asked: %+v", r)
	}
}

func TestFetchFileChangedOnServer(t *testing.T) {
	// Same length, so only the validators tell the versions apart.
	oldC, newC := randomBytes(1<<20, 5), randomBytes(1<<20, 6)
	for _, honourIfRange := range []bool{true, false} {
		t.Run(fmt.Sprint("if-range=", honourIfRange), func(t *testing.T) {
			s := newTestServer(t, oldC, `"old"`)
			dest := filepath.Join(t.TempDir(), "m.gguf")
			interrupt(t, s, dest, 400_000)
			s.set(func(s *testServer) {
				s.content, s.etag, s.modtime = newC, `"new"`, s.modtime.Add(time.Hour)
				s.ignoreIfRange = !honourIfRange
			})
			res, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest}, fastOpts(s))
			if err != nil {
				t.Fatal(err)
			}
			checkDone(t, dest, newC)
			if res.Resumed || res.SHA256 != sum(newC) {
				t.Fatalf("result %+v", res)
			}
			reqs := s.requests()[1:]
			if reqs[0].ifRange != `"old"` {
				t.Fatalf("If-Range %q, want \"old\"", reqs[0].ifRange)
			}
			// With If-Range the server itself sends the new file whole (one
			// request). Without, its 206 of the new file is noticed by the
			// ETag and the file is fetched again from 0 (a second request).
			wantReqs := 1
			if !honourIfRange {
				wantReqs = 2
			}
			if len(reqs) != wantReqs || (wantReqs == 2 && reqs[1].rng != "") {
				t.Fatalf("requests after the cut: %+v", reqs)
			}
		})
	}
}

func TestFetchResumeValidators(t *testing.T) {
	content := randomBytes(1<<20, 18)
	lastMod := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat)
	cases := []struct {
		name        string
		etag        string
		modtime     bool
		withSum     bool
		wantIfRange string // "" and wantRange false: the partial is discarded
		wantRange   bool
	}{
		{"weak etag uses Last-Modified", `W/"weak"`, true, false, lastMod, true},
		{"Last-Modified only", "", true, false, lastMod, true},
		{"no validator, checksum", "", false, true, "", true},
		{"no validator, no checksum", "", false, false, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestServer(t, content, c.etag)
			if !c.modtime {
				s.set(func(s *testServer) { s.modtime = time.Time{} })
			}
			dest := filepath.Join(t.TempDir(), "m.gguf")
			interrupt(t, s, dest, 200_000)
			req := Request{URL: s.URL + "/file", Dest: dest}
			if c.withSum {
				req.SHA256 = sum(content)
			}
			res, err := Fetch(context.Background(), req, fastOpts(s))
			if err != nil {
				t.Fatal(err)
			}
			checkDone(t, dest, content)
			last := s.requests()[1]
			if (last.rng == "bytes=200000-") != c.wantRange || last.ifRange != c.wantIfRange || res.Resumed != c.wantRange {
				t.Fatalf("Range %q If-Range %q resumed %v", last.rng, last.ifRange, res.Resumed)
			}
		})
	}
}

func TestFetchChecksumMismatch(t *testing.T) {
	content := randomBytes(500_000, 7)
	s := newTestServer(t, content, "")
	dest := filepath.Join(t.TempDir(), "m.gguf")
	bad := strings.Repeat("ab", 32)
	_, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest, SHA256: bad}, fastOpts(s))
	var me *MismatchError
	if !errors.As(err, &me) || me.What != "sha256" || me.Expected != bad || me.Got != sum(content) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "expected "+bad) || !strings.Contains(err.Error(), "got "+sum(content)) {
		t.Fatalf("message does not show expected vs got: %v", err)
	}
	for _, p := range []string{dest, dest + PartialSuffix, dest + MetaSuffix, dest + LockSuffix} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a rejected download", p)
		}
	}
}

func TestFetchSizeMismatch(t *testing.T) {
	content := randomBytes(10_000, 8)
	s := newTestServer(t, content, "")
	dest := filepath.Join(t.TempDir(), "m.gguf")
	_, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest, Size: 9_999}, fastOpts(s))
	var me *MismatchError
	if !errors.As(err, &me) || me.What != "size" || me.Expected != "9999" {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(dest + PartialSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("partial left after a size mismatch")
	}
}

func TestFetchHTTPErrors(t *testing.T) {
	content := randomBytes(1000, 9)
	cases := []struct {
		code  int
		token string
		want  []string
	}{
		{404, "", []string{"404", "repository, file or revision may be wrong", "gated", "HF_TOKEN"}},
		{401, "", []string{"401", "gated or private", "HF_TOKEN"}},
		{403, "secret", []string{"403", "gated", "HF_TOKEN is a valid token"}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			s := newTestServer(t, content, "")
			s.set(func(s *testServer) { s.fail = []int{c.code, c.code, c.code} })
			dest := filepath.Join(t.TempDir(), "m.gguf")
			o := fastOpts(s)
			o.Token = c.token
			_, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest}, o)
			var se *StatusError
			if !errors.As(err, &se) || se.Code != c.code || se.Temporary() {
				t.Fatalf("err = %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message lacks %q: %v", w, err)
				}
			}
			reqs := s.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests: a %d must not be retried", len(reqs), c.code)
			}
			if c.token != "" && reqs[0].auth != "Bearer "+c.token {
				t.Fatalf("Authorization %q", reqs[0].auth)
			}
			entries, _ := os.ReadDir(filepath.Dir(dest))
			if len(entries) != 0 {
				t.Fatalf("files left: %v", entries)
			}
		})
	}
}

func TestFetchRetries5xx(t *testing.T) {
	content := randomBytes(100_000, 10)
	s := newTestServer(t, content, "")
	s.set(func(s *testServer) { s.fail = []int{503, 502} })
	dest := filepath.Join(t.TempDir(), "m.gguf")
	res, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest}, fastOpts(s))
	if err != nil {
		t.Fatal(err)
	}
	checkDone(t, dest, content)
	if res.Attempts != 3 || len(s.requests()) != 3 {
		t.Fatalf("attempts %d, requests %d; want 3", res.Attempts, len(s.requests()))
	}

	// Bounded: a server that keeps failing is given up on.
	s.set(func(s *testServer) { s.fail = []int{503, 503, 503, 503, 503, 503} })
	o := fastOpts(s)
	o.Attempts = 3
	dest2 := filepath.Join(t.TempDir(), "m.gguf")
	_, err = Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest2}, o)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	if got := len(s.requests()) - 3; got != 3 {
		t.Fatalf("%d requests, want 3", got)
	}
}

func TestFetchFollowsRedirects(t *testing.T) {
	content := randomBytes(200_000, 11)
	s := newTestServer(t, content, `"r"`)
	dest := filepath.Join(t.TempDir(), "m.gguf")
	o := fastOpts(s)
	o.Token = "tok"
	if _, err := Fetch(context.Background(), Request{URL: s.URL + "/redirect", Dest: dest, SHA256: sum(content)}, o); err != nil {
		t.Fatal(err)
	}
	checkDone(t, dest, content)
	reqs := s.requests()
	if len(reqs) != 3 || reqs[2].path != "/file" || reqs[2].auth != "Bearer tok" {
		t.Fatalf("requests %+v", reqs)
	}
}

func TestFetchCancelKeepsPartial(t *testing.T) {
	content := randomBytes(8<<20, 12)
	s := newTestServer(t, content, `"slow"`)
	s.set(func(s *testServer) { s.chunk, s.delay = 32<<10, 20*time.Millisecond })
	dest := filepath.Join(t.TempDir(), "m.gguf")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	o := fastOpts(s)
	o.ProgressInterval = time.Millisecond
	req := Request{URL: s.URL + "/file", Dest: dest, SHA256: sum(content), Progress: func(p Progress) {
		if p.Bytes >= 100_000 && cancelled.IsZero() {
			cancelled = time.Now()
			cancel()
		}
	}}
	_, err := Fetch(ctx, req, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(cancelled); d > time.Second {
		t.Fatalf("Fetch returned %v after cancel", d)
	}
	kept := fileSize(t, dest+PartialSuffix)
	if kept < 100_000 || !strings.Contains(err.Error(), "resume") {
		t.Fatalf("partial %d bytes; err %v", kept, err)
	}
	if _, err := os.Stat(dest + MetaSuffix); err != nil {
		t.Fatalf("validators not kept: %v", err)
	}

	s.set(func(s *testServer) { s.chunk, s.delay = 0, 0 })
	req.Progress = nil
	res, err := Fetch(context.Background(), req, o)
	if err != nil {
		t.Fatal(err)
	}
	checkDone(t, dest, content)
	if !res.Resumed {
		t.Fatalf("not resumed: %+v", res)
	}
}

func TestFetchStallTimeout(t *testing.T) {
	content := randomBytes(50_000, 13)
	s := newTestServer(t, content, "")
	s.set(func(s *testServer) { s.stallOnce = true })
	dest := filepath.Join(t.TempDir(), "m.gguf")
	o := fastOpts(s)
	o.StallTimeout = 200 * time.Millisecond
	start := time.Now()
	res, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest}, o)
	if err != nil {
		t.Fatal(err)
	}
	checkDone(t, dest, content)
	if res.Attempts != 2 || time.Since(start) > 5*time.Second {
		t.Fatalf("attempts %d after %v", res.Attempts, time.Since(start))
	}
}

func TestFetchConcurrentSameDest(t *testing.T) {
	content := randomBytes(2<<20, 14)
	s := newTestServer(t, content, `"c"`)
	s.set(func(s *testServer) { s.chunk, s.delay = 256<<10, 5*time.Millisecond })
	dest := filepath.Join(t.TempDir(), "m.gguf")
	const n = 4
	var wg sync.WaitGroup
	results := make([]Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest}, fastOpts(s))
		})
	}
	wg.Wait()
	downloads := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("fetch %d: %v", i, errs[i])
		}
		if results[i].SHA256 != sum(content) {
			t.Fatalf("fetch %d: %+v", i, results[i])
		}
		if !results[i].AlreadyPresent {
			downloads++
		}
	}
	checkDone(t, dest, content)
	if downloads != 1 || len(s.requests()) != 1 || s.sent.Load() != int64(len(content)) {
		t.Fatalf("%d downloads, %d requests, %d bytes sent; want one", downloads, len(s.requests()), s.sent.Load())
	}
}

func TestFetchWaitingForLockHonoursContext(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "m.gguf")
	lk, err := acquireLock(context.Background(), dest+LockSuffix, true)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.release()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = Fetch(ctx, Request{URL: "http://127.0.0.1:1/x", Dest: dest}, Options{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Remove(context.Background(), dest); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove while locked: %v", err)
	}
}

func TestFetchCompletePartial(t *testing.T) {
	// A partial file that is already whole (the process stopped before the
	// rename): the server answers 416 and the file is finished as is.
	content := randomBytes(300_000, 15)
	s := newTestServer(t, content, `"w"`)
	dest := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(dest+PartialSuffix, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeMeta(dest+MetaSuffix, meta{URL: s.URL + "/file", ETag: `"w"`, Total: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	s.sent.Store(0)
	res, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest}, fastOpts(s))
	if err != nil {
		t.Fatal(err)
	}
	checkDone(t, dest, content)
	if !res.Resumed || res.SHA256 != sum(content) || s.requests()[0].rng != "bytes=300000-" {
		t.Fatalf("result %+v requests %+v", res, s.requests())
	}
}

func TestFetchDiscardsUnverifiablePartial(t *testing.T) {
	// A partial file with no saved validators and no checksum cannot be
	// trusted: it is thrown away, not continued.
	content := randomBytes(100_000, 16)
	s := newTestServer(t, content, `"v"`)
	dest := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(dest+PartialSuffix, bytes.Repeat([]byte{0xEE}, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest}, fastOpts(s))
	if err != nil {
		t.Fatal(err)
	}
	checkDone(t, dest, content)
	if res.Resumed || s.requests()[0].rng != "" {
		t.Fatalf("result %+v requests %+v", res, s.requests())
	}
}

func TestFetchReplacesWrongExistingFile(t *testing.T) {
	content := randomBytes(10_000, 17)
	s := newTestServer(t, content, "")
	dest := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(dest, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest, SHA256: sum(content)}, fastOpts(s))
	if err != nil || res.AlreadyPresent {
		t.Fatalf("%+v %v", res, err)
	}
	checkDone(t, dest, content)
}

func TestFetchBadRequests(t *testing.T) {
	dir := t.TempDir()
	for _, r := range []Request{
		{URL: "", Dest: filepath.Join(dir, "a")},
		{URL: "ftp://example.com/x", Dest: filepath.Join(dir, "a")},
		{URL: "http://127.0.0.1:1/x", Dest: ""},
		{URL: "http://127.0.0.1:1/x", Dest: filepath.Join(dir, "a"), SHA256: "abc"},
		{URL: "http://127.0.0.1:1/x", Dest: filepath.Join(dir, "a"), Size: -1},
	} {
		if _, err := Fetch(context.Background(), r, Options{}); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "m.gguf")
	for _, p := range []string{dest, dest + PartialSuffix, dest + MetaSuffix} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := Remove(context.Background(), dest)
	if err != nil || len(removed) != 3 {
		t.Fatalf("removed %v, %v", removed, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left: %v", entries)
	}
	if removed, err := Remove(context.Background(), filepath.Join(dir, "nope", "x")); err != nil || len(removed) != 0 {
		t.Fatalf("missing: %v %v", removed, err)
	}
}

func TestHuggingFaceURL(t *testing.T) {
	got, err := HuggingFaceURL("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf", "")
	if want := "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf"; err != nil || got != want {
		t.Fatalf("got %q %v, want %q", got, err, want)
	}
	got, err = HuggingFaceURLAt("http://127.0.0.1:8080/", "o/r", "sub dir/f#1.gguf", "refs/pr/1")
	if want := "http://127.0.0.1:8080/o/r/resolve/refs%2Fpr%2F1/sub%20dir/f%231.gguf"; err != nil || got != want {
		t.Fatalf("got %q %v, want %q", got, err, want)
	}
	for _, bad := range [][3]string{
		{"noslash", "f", ""}, {"a/b/c", "f", ""}, {"a/..", "f", ""}, {"a/b", "", ""},
		{"a/b", "../f", ""}, {"a/b", "/f", ""}, {"a/b", "x//f", ""}, {"a/b", "f", "ma\nin"},
	} {
		if u, err := HuggingFaceURL(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("%q: accepted as %q", bad, u)
		}
	}
	if _, err := HuggingFaceURLAt("ftp://x", "a/b", "f", ""); err == nil {
		t.Error("ftp endpoint accepted")
	}
}

func TestTokenFromEnv(t *testing.T) {
	env := map[string]string{"HUGGING_FACE_HUB_TOKEN": "old"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if got := TokenFromEnv(lookup); got != "old" {
		t.Fatalf("got %q", got)
	}
	env["HF_TOKEN"] = " new\n"
	if got := TokenFromEnv(lookup); got != "new" {
		t.Fatalf("got %q", got)
	}
}

func TestParseContentRange(t *testing.T) {
	for in, want := range map[string]contentRange{
		"bytes 0-99/100":   {0, 99, 100},
		"bytes 100-199/*":  {100, 199, -1},
		"bytes */500":      {-1, -1, 500},
		"BYTES  5-5/6":     {5, 5, 6},
		" bytes 10-19/20 ": {10, 19, 20},
	} {
		got, err := parseContentRange(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "bytes", "bytes 1-2", "items 0-1/2", "bytes 5-4/10", "bytes 0-10/10",
		"bytes */*", "bytes -1-2/3", "bytes +1-2/3", "bytes 1-2/x", "bytes 99999999999999999999-1/2", "bytes 1 -2/3"} {
		if got, err := parseContentRange(in); err == nil {
			t.Errorf("%q: accepted as %+v", in, got)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 100-199/*", "bytes */500", "bytes 5-4/10", "bytes 1-2", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cr, err := parseContentRange(s)
		if err != nil {
			return
		}
		if cr.start < 0 != (cr.end < 0) || cr.start > cr.end || (cr.total >= 0 && cr.end >= cr.total) ||
			(cr.start < 0 && cr.total < 0) {
			t.Fatalf("%q: inconsistent %+v", s, cr)
		}
		// What was accepted says the same when written out canonically.
		canon := fmt.Sprintf("bytes %d-%d/%d", cr.start, cr.end, cr.total)
		switch {
		case cr.start < 0:
			canon = fmt.Sprintf("bytes */%d", cr.total)
		case cr.total < 0:
			canon = fmt.Sprintf("bytes %d-%d/*", cr.start, cr.end)
		}
		if again, err := parseContentRange(canon); err != nil || again != cr {
			t.Fatalf("%q -> %+v -> %q -> %+v %v", s, cr, canon, again, err)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "Wed, 21 Oct 2015 07:28:00 GMT", "", "-1", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2015, 10, 21, 7, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d := parseRetryAfter(s, now); d < 0 || d > 24*time.Hour {
			t.Fatalf("%q: %v", s, d)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2015, 10, 21, 7, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "Wed, 21 Oct 2015 07:28:00 GMT": 28 * time.Minute,
		"Wed, 21 Oct 2015 06:00:00 GMT": 0, "soon": 0, "99999999": 24 * time.Hour,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}

// BenchmarkFetchLoopback measures a whole fetch (HTTP over loopback, write,
// SHA-256, fsync, rename) of a 50 MB file; MB/s is the figure to read.
func BenchmarkFetchLoopback(b *testing.B) {
	content := randomBytes(50<<20, 99)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "m.gguf", time.Time{}, bytes.NewReader(content))
	}))
	defer srv.Close()
	dir := b.TempDir()
	want := sum(content)
	b.SetBytes(int64(len(content)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		dest := filepath.Join(dir, fmt.Sprint(i, ".gguf"))
		res, err := Fetch(context.Background(), Request{URL: srv.URL, Dest: dest, SHA256: want}, Options{Client: srv.Client()})
		if err != nil {
			b.Fatal(err)
		}
		if res.Bytes != int64(len(content)) {
			b.Fatal(res)
		}
		os.Remove(dest)
	}
}

func TestFetchCorruptMetaDiscardsPartial(t *testing.T) {
	content := randomBytes(100_000, 19)
	s := newTestServer(t, content, `"m"`)
	dest := filepath.Join(t.TempDir(), "m.gguf")
	interrupt(t, s, dest, 40_000)
	if err := os.WriteFile(dest+MetaSuffix, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Fetch(context.Background(), Request{URL: s.URL + "/file", Dest: dest}, fastOpts(s))
	if err != nil {
		t.Fatal(err)
	}
	checkDone(t, dest, content)
	if res.Resumed || s.requests()[1].rng != "" {
		t.Fatalf("resumed from a partial whose metadata is unreadable: %+v %+v", res, s.requests())
	}
}
