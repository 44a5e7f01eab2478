package console

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestRecorder(n int) (*Recorder, *clock) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	r := NewRecorder(n)
	r.now = c.now
	return r, c
}

func ev(id, tenant, domain, status string, total time.Duration) Event {
	e := Event{ID: id, Tenant: tenant, Domain: domain, Status: status, Code: 200, Query: "q " + id,
		CompletionTokens: 10, PromptTokens: 100}
	e.Stages[StageRoute] = 100 * time.Microsecond
	e.Stages[StageTotal] = total
	return e
}

func TestRecorderScopesAndCursor(t *testing.T) {
	r, _ := newTestRecorder(100)
	r.Record(ev("a1", "acme", "finance", "ok", 10*time.Millisecond))
	r.Record(ev("g1", "globex", "medical", "flagged", 20*time.Millisecond))
	r.Record(ev("a2", "acme", "support", "error", 30*time.Millisecond))

	f := r.Snapshot(Scope{All: true}, 0, 10)
	if len(f.Requests) != 3 || f.Requests[0].ID != "a1" || f.Requests[2].ID != "a2" || f.Seq != 3 {
		t.Fatalf("all: %+v", f.Requests)
	}
	acme := r.Snapshot(Scope{Tenant: "acme"}, 0, 10)
	if len(acme.Requests) != 2 || acme.Requests[0].ID != "a1" || acme.Requests[1].ID != "a2" {
		t.Fatalf("acme: %+v", acme.Requests)
	}
	for _, row := range acme.Table {
		if row.Tenant != "acme" {
			t.Fatalf("acme's table has %+v", row)
		}
	}
	if len(acme.Table) != 2 || acme.Table[1].Errors != 1 || acme.Table[0].OK != 1 {
		t.Fatalf("acme's table: %+v", acme.Table)
	}
	// The cursor: only what came after.
	r.Record(ev("a3", "acme", "finance", "ok", time.Millisecond))
	next := r.Snapshot(Scope{Tenant: "acme"}, acme.Seq, 10)
	if len(next.Requests) != 1 || next.Requests[0].ID != "a3" {
		t.Fatalf("after the cursor: %+v", next.Requests)
	}
	if _, ok := r.Get(Scope{Tenant: "acme"}, "g1"); ok {
		t.Fatal("acme got globex's request")
	}
	if d, ok := r.Get(Scope{Tenant: "globex"}, "g1"); !ok || d.Query != "q g1" || d.MS["total"] != 20 {
		t.Fatalf("globex's request: %+v %v", d, ok)
	}
}

func TestRecorderBoundsAndSkips(t *testing.T) {
	r, _ := newTestRecorder(50)
	for i := range 1000 {
		e := ev("id"+strings.Repeat("x", i%3), "t", "d", "ok", time.Millisecond)
		e.ID = "r" + string(rune('a'+i%26)) + strings.Repeat("0", i%5)
		r.Record(e)
	}
	f := r.Snapshot(Scope{All: true}, 0, 20)
	if len(f.Requests) != 20 || f.Total != 1000 || f.Seq != 1000 || f.Requests[19].Seq != 1000 {
		t.Fatalf("1000 requests, 50 kept, 20 listed: %d listed, total %d, seq %d", len(f.Requests), f.Total, f.Seq)
	}
	if f := r.Snapshot(Scope{Tenant: "t"}, 990, 20); len(f.Requests) != 10 || f.Total != 1000 {
		t.Fatalf("after 990: %d listed, total %d", len(f.Requests), f.Total)
	}
	if f := r.Snapshot(Scope{Tenant: "other"}, 0, 20); len(f.Requests) != 0 || f.Total != 0 {
		t.Fatalf("another tenant: %d listed, total %d", len(f.Requests), f.Total)
	}
	// Big strings are cut on a rune boundary.
	e := ev("big", "t", "d", "ok", time.Millisecond)
	e.Query = strings.Repeat("é", maxQuery)
	e.Response = strings.Repeat("ü", maxResponse)
	e.Validation.Issues = make([]abi.Issue, 1000)
	for i := range e.Validation.Issues {
		e.Validation.Issues[i].Message = strings.Repeat("m", 5000)
	}
	for range 100 {
		e.ToolSteps = append(e.ToolSteps, ToolStep{Name: strings.Repeat("n", 500), Arguments: strings.Repeat("a", 5000), Content: strings.Repeat("ö", 5000)})
		e.ToolCalls = append(e.ToolCalls, strings.Repeat("c", 500))
		e.Citations = append(e.Citations, Citation{Title: strings.Repeat("t", 5000), Document: "doc", KB: "kb"})
	}
	steps := e.ToolSteps
	r.Record(e)
	d, ok := r.Get(Scope{All: true}, "big")
	if !ok || len(d.Query) > maxQuery || !utf8.ValidString(d.Query) || !d.QueryCut || len(d.Response) > maxResponse ||
		!utf8.ValidString(d.Response) || len(d.Validation.Issues) != maxIssues || len(d.Validation.Issues[0].Message) != maxIssueMsg {
		t.Fatalf("caps: query %d, response %d, issues %d", len(d.Query), len(d.Response), len(d.Validation.Issues))
	}
	if len(d.ToolSteps) != maxSteps || len(d.ToolSteps[0].Content) > maxStepText || !utf8.ValidString(d.ToolSteps[0].Content) ||
		len(d.ToolSteps[0].Arguments) > maxStepText || len(d.ToolSteps[0].Name) > maxLabel || len(d.ToolCalls) != maxSteps ||
		len(d.Citations) != maxCites || len(d.Citations[0].Title) > maxLabel {
		t.Fatalf("caps: %d steps, %d calls, %d citations", len(d.ToolSteps), len(d.ToolCalls), len(d.Citations))
	}
	if len(steps[0].Content) != 10000 {
		t.Fatal("recording changed the caller's tool steps")
	}
}

func TestRecorderSeriesAndPercentiles(t *testing.T) {
	r, c := newTestRecorder(1000)
	// 100 requests a second for 20 seconds: 99 at ~10 ms, 1 at ~1 s.
	for s := range 20 {
		c.t = time.Unix(1_800_000_000+int64(s), 0)
		for i := range 100 {
			d := 10 * time.Millisecond
			if i == 0 {
				d = time.Second
			}
			e := ev("x", "t", "d", "ok", d)
			if i < 3 {
				e.Refused = "rate_limited"
			}
			r.Record(e)
		}
	}
	c.t = c.t.Add(time.Second)
	f := r.Snapshot(Scope{All: true}, 0, 0)
	if len(f.Series) != historySeconds {
		t.Fatalf("series of %d points", len(f.Series))
	}
	if f.RPS != 100 || f.TokensPerSecond != 1000 {
		t.Fatalf("rps %v, tokens/s %v", f.RPS, f.TokensPerSecond)
	}
	p := f.Series[len(f.Series)-2]
	if p.Requests != 100 || p.Refused != 3 || p.P50 < 8 || p.P50 > 12 || p.P99 < 8 || p.P99 > 12 {
		t.Fatalf("a full second: %+v", p)
	}
	total := f.Stages[StageTotal]
	if total.N != 1000 || total.P50 < 8 || total.P50 > 12 || total.P99 < 8 || total.P99 > 12 {
		t.Fatalf("total stage: %+v", total)
	}
	if f.Stages[StageGenerate].N != 0 {
		t.Fatalf("no generate stage was recorded: %+v", f.Stages[StageGenerate])
	}
	// A minute later the history is empty again.
	c.t = c.t.Add(2 * time.Minute)
	f = r.Snapshot(Scope{All: true}, 0, 0)
	for _, p := range f.Series {
		if p.Requests != 0 {
			t.Fatalf("old seconds still counted: %+v", p)
		}
	}
}

func TestSessions(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	ss := NewSessions(3, time.Hour)
	ss.now = c.now
	a := ss.Create(true, "")
	if got, ok := ss.Get(a.Token); !ok || got != a || !got.Scope().All {
		t.Fatal("admin session not found")
	}
	if !a.CheckCSRF(a.CSRF) || a.CheckCSRF("") || a.CheckCSRF(a.Token) {
		t.Fatal("CSRF check")
	}
	if _, ok := ss.Get(a.Token + "x"); ok {
		t.Fatal("a wrong token was accepted")
	}
	// At most 3: the oldest goes first.
	var last *Session
	for i := range 3 {
		c.t = c.t.Add(time.Second)
		last = ss.Create(false, "t"+string(rune('0'+i)))
	}
	if _, ok := ss.Get(a.Token); ok || ss.Len() != 3 {
		t.Fatalf("oldest kept, %d sessions", ss.Len())
	}
	if s, ok := ss.Get(last.Token); !ok || s.Scope().All || s.Scope().Tenant != "t2" {
		t.Fatal("tenant session")
	}
	c.t = c.t.Add(time.Hour)
	if _, ok := ss.Get(last.Token); ok {
		t.Fatal("an expired session was accepted")
	}
	ss.Delete(last.Token)
}

func TestAssetsGzipAndETag(t *testing.T) {
	var a Assets
	for _, name := range []string{"index.html", "app.js", "app.css"} {
		if !a.Has(name) {
			t.Fatalf("%s is not embedded", name)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/console/assets/app.js", nil)
	req.Header.Set("Accept-Encoding", "br, gzip")
	w := httptest.NewRecorder()
	a.Serve(w, req, "app.js")
	if w.Code != 200 || w.Header().Get("Content-Encoding") != "gzip" || w.Header().Get("ETag") == "" {
		t.Fatalf("gzip: %d %v", w.Code, w.Header())
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(zr)
	if !strings.Contains(string(js), "textContent") {
		t.Fatal("not the console's script")
	}
	req.Header.Set("If-None-Match", w.Header().Get("ETag"))
	w2 := httptest.NewRecorder()
	a.Serve(w2, req, "app.js")
	if w2.Code != http.StatusNotModified {
		t.Fatalf("conditional: %d", w2.Code)
	}
	if a.Serve(httptest.NewRecorder(), req, "../console.go") {
		t.Fatal("served a file that is not an asset")
	}
}

// FuzzRecord records events with arbitrary text and reads them back: no
// panic, every kept string valid and within its cap.
func FuzzRecord(f *testing.F) {
	f.Add("acme", "finance", "what is <b>APR</b>?", "answer", "issue")
	f.Add("", "", "\xff\xfe", "é", "")
	f.Fuzz(func(t *testing.T, tenant, domain, query, response, msg string) {
		r := NewRecorder(4)
		e := Event{ID: "x", Tenant: tenant, Domain: domain, Query: strings.Repeat(query, 1+maxQuery/(len(query)+1)),
			Response: response, Status: "ok"}
		e.Validation.Issues = []abi.Issue{{Message: strings.Repeat(msg, 10)}}
		r.Record(e)
		d, ok := r.Get(Scope{All: true}, "x")
		if !ok || len(d.Query) > maxQuery || len(d.Response) > maxResponse || len(d.Tenant) > maxLabel ||
			len(d.Validation.Issues[0].Message) > maxIssueMsg {
			t.Fatalf("caps broken: %d %d", len(d.Query), len(d.Response))
		}
		if utf8.ValidString(query) && !utf8.ValidString(d.Query) {
			t.Fatal("cut inside a rune")
		}
		f := r.Snapshot(Scope{Tenant: d.Tenant}, 0, 10)
		if len(f.Requests) != 1 || len(f.Requests[0].Snippet) > maxSnippet+len("…") {
			t.Fatalf("snapshot: %+v", f.Requests)
		}
	})
}

// BenchmarkRecord is what recording one request costs the server.
func BenchmarkRecord(b *testing.B) {
	r := NewRecorder(500)
	e := ev("id", "acme", "support", "ok", 3*time.Millisecond)
	e.Validation.Issues = []abi.Issue{{Code: "c", Severity: "info", Message: "m"}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Record(e)
		}
	})
}

// BenchmarkFrame is what one live frame costs the server: a snapshot of a
// full recorder (60 busy seconds, 5 tenants, 4 domains) and its JSON.
func BenchmarkFrame(b *testing.B) {
	r, c := newTestRecorder(500)
	tenants := []string{"acme", "globex", "initech", "umbrella", "hooli"}
	domains := []string{"finance", "medical", "support", "technical"}
	for s := range 60 {
		c.t = time.Unix(1_800_000_000+int64(s), 0)
		for i := range 1000 {
			r.Record(ev("id", tenants[i%5], domains[i%4], "ok", time.Duration(i)*time.Microsecond))
		}
	}
	b.ReportAllocs()
	var seq uint64
	for b.Loop() {
		f := r.Snapshot(Scope{All: true}, seq, 200)
		seq = f.Seq - 300 // as if 300 requests came since the last frame
		if _, err := json.Marshal(f); err != nil {
			b.Fatal(err)
		}
	}
}
