// Package console is the state behind the operator console that mdsa
// serve shows in the browser: a recorder of recent requests with
// per-second aggregates (live charts, the request list, explanations),
// login sessions with CSRF tokens, and the page's embedded assets. The
// server (host/server) feeds it and serves its HTTP routes.
package console

import (
	"math"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Caps on what one recorded request keeps, so that the recorder's memory
// is bounded by Recent whatever the requests carry.
const (
	maxQuery    = 4 << 10
	maxResponse = 8 << 10
	maxError    = 1 << 10
	maxIssues   = 32
	maxIssueMsg = 300
	maxSnippet  = 120
	maxAlts     = 8
	maxLabel    = 100
	maxSteps    = 16  // tool steps kept
	maxStepText = 300 // a step's arguments and result
	maxCites    = 20  // citations kept
)

// Stage indexes, in request order.
const (
	StageRoute = iota
	StagePrompt
	StageGenerate
	StageValidate
	StageTotal
	numStages
)

// StageNames name the stages in frames.
var stageNames = [numStages]string{"route", "prompt", "generate", "validate", "total"}

// Event is one request the server answered (or refused).
type Event struct {
	Seq      uint64    `json:"seq"`
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Tenant   string    `json:"tenant"`
	Endpoint string    `json:"endpoint"`
	Domain   string    `json:"domain"`
	// Status is ok, flagged, out_of_scope or error; Code the HTTP status.
	Status     string  `json:"status"`
	Code       int     `json:"code"`
	Confidence float64 `json:"confidence"`
	// Refused names the limit or check that refused the request, if any.
	Refused string `json:"refused,omitempty"`
	Error   string `json:"error,omitempty"`
	Cache   string `json:"cache,omitempty"`
	// Stages are the route, prompt, generate, validate and total times.
	Stages           [numStages]time.Duration `json:"-"`
	PromptTokens     int                      `json:"prompt_tokens"`
	CompletionTokens int                      `json:"completion_tokens"`
	CachedTokens     int                      `json:"cached_tokens"`

	// Detail, shown when the request is opened.
	Query        string          `json:"query"`
	QueryCut     bool            `json:"query_cut,omitempty"`
	Forced       bool            `json:"forced,omitempty"`
	Alternatives []router.Scored `json:"alternatives,omitempty"`
	Validation   abi.Validation  `json:"validation"`
	Response     string          `json:"response"`
	ResponseCut  bool            `json:"response_cut,omitempty"`
	Model        string          `json:"model,omitempty"`
	FinishReason string          `json:"finish_reason,omitempty"`
	// Conversation says how earlier turns weighed in the routing;
	// HistoryDropped counts messages left out to fit the context.
	Conversation   *router.Conversation `json:"conversation,omitempty"`
	HistoryDropped int                  `json:"history_dropped,omitempty"`
	// ToolSteps are the domain's tools the host ran; ToolCalls the
	// client's tools the model called (the answer).
	ToolSteps []ToolStep `json:"tool_steps,omitempty"`
	ToolCalls []string   `json:"tool_calls,omitempty"`
	// Citations are the knowledge-base passages the prompt was given.
	Citations []Citation `json:"citations,omitempty"`
}

// ToolStep is one call of a domain's tool, cut to the recorder's caps.
type ToolStep struct {
	Round     int    `json:"round"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Content   string `json:"content"`
	IsError   bool   `json:"is_error,omitempty"`
}

// Citation is one passage a prompt was given.
type Citation struct {
	KB       string  `json:"kb"`
	Document string  `json:"document"`
	Title    string  `json:"title"`
	Chunk    int     `json:"chunk"`
	Score    float64 `json:"score"`
}

// Summary is the part of an Event the live request list shows.
type Summary struct {
	Seq        uint64             `json:"seq"`
	ID         string             `json:"id"`
	Time       int64              `json:"t"` // Unix milliseconds
	Tenant     string             `json:"tenant"`
	Endpoint   string             `json:"endpoint"`
	Domain     string             `json:"domain"`
	Status     string             `json:"status"`
	Code       int                `json:"code"`
	Confidence float64            `json:"confidence"`
	Refused    string             `json:"refused,omitempty"`
	MS         map[string]float64 `json:"ms"`
	Tokens     int                `json:"tokens"`
	Snippet    string             `json:"snippet"`
}

// Detail is a recorded request as the console opens it.
type Detail struct {
	Event
	MS map[string]float64 `json:"ms"`
}

// The per-second history.
const (
	historySeconds = 60
	// Latency histograms: bin i holds times in [binBase*binGrowth^i,
	// binBase*binGrowth^(i+1)); about ±18% resolution from 10 us to
	// about 2 minutes.
	numBins   = 48
	binBase   = 10e-6
	binGrowth = 1.4
)

// counts are the outcomes of some requests.
type counts struct {
	Requests   uint32 `json:"requests"`
	OK         uint32 `json:"ok"`
	Flagged    uint32 `json:"flagged"`
	OutOfScope uint32 `json:"out_of_scope"`
	Errors     uint32 `json:"errors"`
	Refused    uint32 `json:"refused"`
	TokensIn   uint32 `json:"tokens_in"`
	TokensOut  uint32 `json:"tokens_out"`
}

func (c *counts) add(o counts) {
	c.Requests += o.Requests
	c.OK += o.OK
	c.Flagged += o.Flagged
	c.OutOfScope += o.OutOfScope
	c.Errors += o.Errors
	c.Refused += o.Refused
	c.TokensIn += o.TokensIn
	c.TokensOut += o.TokensOut
}

type hist [numStages][numBins]uint32

type tenantDomain struct{ tenant, domain string }

// second aggregates the requests that finished in one second.
type second struct {
	unix int64
	lat  map[string]*hist         // by tenant
	byTD map[tenantDomain]*counts // by tenant and domain
}

// Recorder keeps the recent requests and per-second aggregates of the
// last minute. It is safe for concurrent use; Record takes a mutex for a
// few small writes.
type Recorder struct {
	mu   sync.Mutex
	ring []Event
	seq  uint64
	secs [historySeconds + 1]second
	// totals counts every request recorded, per tenant (tenant names
	// come from the configuration, so the map is small).
	totals map[string]uint64
	now    func() time.Time
}

// NewRecorder keeps the last recent requests (at least 1).
func NewRecorder(recent int) *Recorder {
	return &Recorder{ring: make([]Event, max(recent, 1)), totals: map[string]uint64{}, now: time.Now}
}

// Record adds a finished request; strings are cut to the recorder's caps.
func (r *Recorder) Record(ev Event) {
	ev.Query, ev.QueryCut = cut(ev.Query, maxQuery)
	ev.Response, ev.ResponseCut = cut(ev.Response, maxResponse)
	ev.Error, _ = cut(ev.Error, maxError)
	ev.Tenant, _ = cut(ev.Tenant, maxLabel)
	ev.Domain, _ = cut(ev.Domain, maxLabel)
	if len(ev.Alternatives) > maxAlts {
		ev.Alternatives = ev.Alternatives[:maxAlts]
	}
	if len(ev.Validation.Issues) > maxIssues {
		ev.Validation.Issues = ev.Validation.Issues[:maxIssues]
	}
	if ev.Validation.Issues != nil {
		issues := slices.Clone(ev.Validation.Issues)
		for i := range issues {
			issues[i].Message, _ = cut(issues[i].Message, maxIssueMsg)
			issues[i].Code, _ = cut(issues[i].Code, maxLabel)
		}
		ev.Validation.Issues = issues
	}
	ev.ToolSteps = slices.Clone(ev.ToolSteps[:min(len(ev.ToolSteps), maxSteps)])
	for i := range ev.ToolSteps {
		st := &ev.ToolSteps[i]
		st.Name, _ = cut(st.Name, maxLabel)
		st.Arguments, _ = cut(st.Arguments, maxStepText)
		st.Content, _ = cut(st.Content, maxStepText)
	}
	ev.ToolCalls = slices.Clone(ev.ToolCalls[:min(len(ev.ToolCalls), maxSteps)])
	for i := range ev.ToolCalls {
		ev.ToolCalls[i], _ = cut(ev.ToolCalls[i], maxLabel)
	}
	ev.Citations = slices.Clone(ev.Citations[:min(len(ev.Citations), maxCites)])
	for i := range ev.Citations {
		c := &ev.Citations[i]
		c.KB, _ = cut(c.KB, maxLabel)
		c.Document, _ = cut(c.Document, maxLabel)
		c.Title, _ = cut(c.Title, maxLabel)
	}
	if ev.Time.IsZero() {
		ev.Time = r.now()
	}
	c := counts{Requests: 1, TokensIn: clampU32(ev.PromptTokens), TokensOut: clampU32(ev.CompletionTokens)}
	switch {
	case ev.Refused != "":
		c.Refused = 1
	case ev.Status == "error":
		c.Errors = 1
	case ev.Status == "flagged":
		c.Flagged = 1
	case ev.Status == "out_of_scope":
		c.OutOfScope = 1
	default:
		c.OK = 1
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	ev.Seq = r.seq
	r.totals[ev.Tenant]++
	r.ring[r.seq%uint64(len(r.ring))] = ev
	s := r.second(ev.Time.Unix())
	td := tenantDomain{ev.Tenant, ev.Domain}
	agg := s.byTD[td]
	if agg == nil {
		agg = &counts{}
		s.byTD[td] = agg
	}
	agg.add(c)
	h := s.lat[ev.Tenant]
	if h == nil {
		h = &hist{}
		s.lat[ev.Tenant] = h
	}
	for st, d := range ev.Stages {
		if d > 0 || st == StageTotal {
			h[st][bin(d)]++
		}
	}
}

// second returns the bucket of the Unix second sec, reset when it held an
// older one. r.mu is held.
func (r *Recorder) second(sec int64) *second {
	s := &r.secs[uint64(sec)%uint64(len(r.secs))]
	if s.unix != sec || s.byTD == nil {
		*s = second{unix: sec, lat: map[string]*hist{}, byTD: map[tenantDomain]*counts{}}
	}
	return s
}

func bin(d time.Duration) int {
	x := d.Seconds()
	if x <= binBase {
		return 0
	}
	i := int(math.Log(x/binBase) / math.Log(binGrowth))
	return min(max(i, 0), numBins-1)
}

// binValue is the geometric middle of bin i, in milliseconds.
func binValue(i int) float64 {
	return binBase * math.Pow(binGrowth, float64(i)+0.5) * 1e3
}

// quantile of the times counted in h (ms); 0 when h is empty.
func quantile(h *[numBins]uint32, q float64) float64 {
	var n uint64
	for _, c := range h {
		n += uint64(c)
	}
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var acc uint64
	for i, c := range h {
		acc += uint64(c)
		if acc >= max(rank, 1) {
			return binValue(i)
		}
	}
	return binValue(numBins - 1)
}

func clampU32(n int) uint32 {
	return uint32(min(max(n, 0), math.MaxUint32))
}

// cut shortens s to at most n bytes on a rune boundary.
func cut(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}

// Scope says whose traffic a viewer sees: everyone's (All) or one
// tenant's.
type Scope struct {
	All    bool
	Tenant string
}

func (sc Scope) sees(tenant string) bool { return sc.All || sc.Tenant == tenant }

// Point is one second of the live charts.
type Point struct {
	T         int64   `json:"t"` // Unix seconds
	Requests  uint32  `json:"requests"`
	Errors    uint32  `json:"errors"`
	Refused   uint32  `json:"refused"`
	TokensOut uint32  `json:"tokens_out"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
}

// Row is one tenant and domain over the last minute.
type Row struct {
	Tenant string `json:"tenant"`
	Domain string `json:"domain"`
	counts
}

// StageStats are a stage's latency percentiles over the last 10 seconds.
type StageStats struct {
	Stage string  `json:"stage"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	N     uint64  `json:"n"`
}

// Frame is what one live update carries.
type Frame struct {
	Now int64 `json:"now"` // Unix milliseconds
	// Series is the last minute, one point per second, oldest first (the
	// current second last, still filling).
	Series []Point `json:"series"`
	// RPS and TokensPerSecond are over the last 10 full seconds.
	RPS             float64      `json:"rps"`
	TokensPerSecond float64      `json:"tokens_per_second"`
	Stages          []StageStats `json:"stages"`
	Table           []Row        `json:"table"`
	// Requests are those recorded after the frame's cursor, newest last
	// (at most the frame's maximum: the newest); Seq is the cursor for
	// the next frame. Total counts every request of the scope recorded
	// since the server started: its growth between frames less the
	// requests listed is how many arrived too fast to list.
	Requests []Summary `json:"requests"`
	Seq      uint64    `json:"seq"`
	Total    uint64    `json:"total"`
}

// Snapshot builds the frame that a viewer of scope sees, with the
// requests recorded after seq (at most maxRequests, the newest).
func (r *Recorder) Snapshot(sc Scope, seq uint64, maxRequests int) Frame {
	now := r.now()
	nowSec := now.Unix()
	f := Frame{Now: now.UnixMilli(), Series: make([]Point, 0, historySeconds)}
	var stages hist
	var last10 counts
	table := map[tenantDomain]*counts{}

	r.mu.Lock()
	for sec := nowSec - historySeconds + 1; sec <= nowSec; sec++ {
		p := Point{T: sec}
		s := &r.secs[uint64(sec)%uint64(len(r.secs))]
		if s.unix == sec && s.byTD != nil {
			var sum counts
			for td, c := range s.byTD {
				if !sc.sees(td.tenant) {
					continue
				}
				sum.add(*c)
				row := table[td]
				if row == nil {
					row = &counts{}
					table[td] = row
				}
				row.add(*c)
			}
			var total [numBins]uint32
			for t, h := range s.lat {
				if !sc.sees(t) {
					continue
				}
				for i, c := range h[StageTotal] {
					total[i] += c
				}
				if sec > nowSec-11 && sec < nowSec {
					for st := range h {
						for i, c := range h[st] {
							stages[st][i] += c
						}
					}
				}
			}
			p.Requests, p.Errors, p.Refused, p.TokensOut = sum.Requests, sum.Errors, sum.Refused, sum.TokensOut
			p.P50, p.P99 = quantile(&total, 0.5), quantile(&total, 0.99)
			if sec > nowSec-11 && sec < nowSec {
				last10.add(sum)
			}
		}
		f.Series = append(f.Series, p)
	}
	f.Requests, f.Seq = r.since(sc, seq, maxRequests)
	if sc.All {
		f.Total = r.seq
	} else {
		f.Total = r.totals[sc.Tenant]
	}
	r.mu.Unlock()

	f.RPS = float64(last10.Requests) / 10
	f.TokensPerSecond = float64(last10.TokensOut) / 10
	for st := range stages {
		var n uint64
		for _, c := range stages[st] {
			n += uint64(c)
		}
		f.Stages = append(f.Stages, StageStats{Stage: stageNames[st], N: n,
			P50: quantile(&stages[st], 0.5), P95: quantile(&stages[st], 0.95), P99: quantile(&stages[st], 0.99)})
	}
	for td, c := range table {
		f.Table = append(f.Table, Row{Tenant: td.tenant, Domain: td.domain, counts: *c})
	}
	slices.SortFunc(f.Table, func(a, b Row) int {
		if a.Tenant != b.Tenant {
			if a.Tenant < b.Tenant {
				return -1
			}
			return 1
		}
		if a.Domain < b.Domain {
			return -1
		}
		if a.Domain > b.Domain {
			return 1
		}
		return 0
	})
	return f
}

// since lists the requests of scope recorded after seq, at most max of
// them (the newest), oldest first; r.mu is held.
func (r *Recorder) since(sc Scope, seq uint64, maxN int) ([]Summary, uint64) {
	n := uint64(len(r.ring))
	first := seq + 1
	if r.seq >= n && first <= r.seq-n {
		first = r.seq - n + 1 // older ones are overwritten
	}
	var picked []*Event
	for s := r.seq; s >= first && s > 0 && len(picked) < maxN; s-- {
		ev := &r.ring[s%n]
		if ev.Seq != s || !sc.sees(ev.Tenant) {
			continue
		}
		picked = append(picked, ev)
	}
	out := make([]Summary, 0, len(picked))
	for i := len(picked) - 1; i >= 0; i-- {
		out = append(out, summarize(picked[i]))
	}
	return out, r.seq
}

func summarize(ev *Event) Summary {
	snip, cutOff := cut(ev.Query, maxSnippet)
	if cutOff {
		snip += "…"
	}
	return Summary{Seq: ev.Seq, ID: ev.ID, Time: ev.Time.UnixMilli(), Tenant: ev.Tenant, Endpoint: ev.Endpoint,
		Domain: ev.Domain, Status: ev.Status, Code: ev.Code, Confidence: ev.Confidence, Refused: ev.Refused,
		MS: stageMS(ev.Stages), Tokens: ev.PromptTokens + ev.CompletionTokens, Snippet: snip}
}

func stageMS(st [numStages]time.Duration) map[string]float64 {
	m := make(map[string]float64, numStages)
	for i, d := range st {
		m[stageNames[i]] = float64(d.Microseconds()) / 1e3
	}
	return m
}

// Get returns the recorded request with id, if the viewer of scope may see
// it and it is still kept.
func (r *Recorder) Get(sc Scope, id string) (Detail, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := uint64(len(r.ring))
	for s := r.seq; s > 0 && s+n > r.seq; s-- {
		ev := &r.ring[s%n]
		if ev.Seq == s && ev.ID == id && sc.sees(ev.Tenant) {
			d := Detail{Event: *ev, MS: stageMS(ev.Stages)}
			d.Alternatives = slices.Clone(ev.Alternatives)
			return d, true
		}
	}
	return Detail{}, false
}
