package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/server"
	"github.com/mdsa-go/mdsa/internal/console"
	"github.com/mdsa-go/mdsa/internal/tenant"
)

// consoleBenchReport is the part of mdsa bench serve --console's report
// about the console.
type consoleBenchReport struct {
	Rounds  int                  `json:"rounds"` // measurements per phase, endpoint and level
	Results []consoleBenchResult `json:"results"`
	// Over every "on" phase: what the one live view received.
	Frames       int64   `json:"frames"`
	FramesPerSec float64 `json:"frames_per_second"`
	LagP50MS     float64 `json:"lag_p50_ms"` // frame made -> frame decoded by the viewer
	LagMaxMS     float64 `json:"lag_max_ms"`
	BytesPerSec  float64 `json:"bytes_per_second"`
	// Served counts the requests the console's server answered (warm-ups
	// included), Recorded those its console counted; Listed those the
	// frames listed one by one (at most 200 a frame).
	Served        int64   `json:"served"`
	Recorded      int64   `json:"recorded"`
	Listed        int64   `json:"listed"`
	PeakRPSViewed float64 `json:"peak_rps_viewed"`
}

// consoleBenchResult is one endpoint and level with the console off and
// on: the medians of the rounds, and the cost of each round.
type consoleBenchResult struct {
	Endpoint    string    `json:"endpoint"`
	Concurrency int       `json:"concurrency"`
	RPSOff      float64   `json:"rps_off"`
	RPSOn       float64   `json:"rps_on"`
	CostPct     float64   `json:"cost_pct"` // 100 * (1 - median on / median off)
	RoundCosts  []float64 `json:"round_costs_pct"`
	P50OffMS    float64   `json:"p50_off_ms"`
	P50OnMS     float64   `json:"p50_on_ms"`
	// CPU time of the process per request (median), and its growth.
	CPUOffUS   float64 `json:"cpu_us_per_request_off"`
	CPUOnUS    float64 `json:"cpu_us_per_request_on"`
	CPUCostPct float64 `json:"cpu_cost_pct"`
}

const consoleBenchRounds = 4

// benchConsole serves h a second time with the console on, then measures
// every endpoint and level on the server without (off) and with it,
// alternating in ABBA order so that neither phase always goes first,
// with one live view open during the "on" phases.
func (a *app) benchConsole(ctx context.Context, h *host.Host, cfg config.Config, log *slog.Logger, key string,
	maxTokens int, levels []int, d time.Duration, off *serveBench) (*consoleBenchReport, error) {
	adminKey, err := benchKey()
	if err != nil {
		return nil, err
	}
	ccfg := cfg
	ccfg.Console.Enabled = true
	ccfg.Server.AdminKeys = []string{tenant.HashKey(adminKey)}
	ccfg.Server.AdminKeyEnv = ""
	srv, err := server.New(h, ccfg, server.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("bench serve --console: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench serve --console: listening on 127.0.0.1: %w", err)
	}
	sctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(sctx, ln) }()
	defer func() {
		stop()
		<-errc
	}()
	base := "http://" + ln.Addr().String()
	on := newServeBench(base, key, maxTokens, slices.Max(levels))
	defer on.close()
	v, err := newConsoleViewer(ctx, base, adminKey)
	if err != nil {
		return nil, err
	}

	rep := &consoleBenchReport{Rounds: consoleBenchRounds}
	var onTime time.Duration
	measureOn := func(ep string, c int) (serveBenchResult, error) {
		if err := v.open(ctx); err != nil {
			return serveBenchResult{}, err
		}
		t0 := time.Now()
		r, err := on.level(ctx, ep, c, d)
		onTime += time.Since(t0)
		v.close(uint64(on.answered.Load()))
		return r, err
	}
	for _, c := range levels {
		for _, ep := range []string{benchEPRoute, benchEPChat} {
			var offs, ons []serveBenchResult
			for i := range consoleBenchRounds {
				var ro, rn serveBenchResult
				var err error
				if i%4 == 0 || i%4 == 3 { // ABBA: off first, on first, on first, off first
					if ro, err = off.level(ctx, ep, c, d); err == nil {
						rn, err = measureOn(ep, c)
					}
				} else if rn, err = measureOn(ep, c); err == nil {
					ro, err = off.level(ctx, ep, c, d)
				}
				if err != nil {
					return nil, err
				}
				offs, ons = append(offs, ro), append(ons, rn)
			}
			res := consoleBenchResult{Endpoint: ep, Concurrency: c}
			med := func(rs []serveBenchResult, f func(serveBenchResult) float64) float64 {
				xs := make([]float64, len(rs))
				for i, r := range rs {
					xs[i] = f(r)
				}
				slices.Sort(xs)
				if n := len(xs); n%2 == 0 {
					return (xs[n/2-1] + xs[n/2]) / 2
				}
				return xs[len(xs)/2]
			}
			rps := func(r serveBenchResult) float64 { return r.RPS }
			p50 := func(r serveBenchResult) float64 { return r.P50MS }
			res.RPSOff, res.RPSOn = med(offs, rps), med(ons, rps)
			res.P50OffMS, res.P50OnMS = med(offs, p50), med(ons, p50)
			cpu := func(r serveBenchResult) float64 { return r.CPUUSPerRequest }
			res.CPUOffUS, res.CPUOnUS = med(offs, cpu), med(ons, cpu)
			if res.CPUOffUS > 0 {
				res.CPUCostPct = 100 * (res.CPUOnUS/res.CPUOffUS - 1)
			}
			if res.RPSOff > 0 {
				res.CostPct = 100 * (1 - res.RPSOn/res.RPSOff)
			}
			for i := range offs {
				if offs[i].RPS > 0 {
					res.RoundCosts = append(res.RoundCosts, 100*(1-ons[i].RPS/offs[i].RPS))
				}
			}
			rep.Results = append(rep.Results, res)
		}
	}
	rep.Served = on.answered.Load()
	v.report(rep, onTime)
	return rep, nil
}

// consoleViewer is one open console: logged in, reading the live view
// and decoding every frame as the page does.
type consoleViewer struct {
	base   string
	client *http.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	frames  int64
	bytes   int64
	lags    []float64
	listed  int64
	total   uint64
	lastSeq uint64
	peakRPS float64
}

func newConsoleViewer(ctx context.Context, base, adminKey string) (*consoleViewer, error) {
	jar, _ := cookiejar.New(nil)
	v := &consoleViewer{base: base, client: &http.Client{Jar: jar}}
	body, _ := json.Marshal(map[string]string{"key": adminKey})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/console/api/login", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Origin", base)
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench serve --console: logging in: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench serve --console: logging in: %s", resp.Status)
	}
	return v, nil
}

// open starts reading the live view.
func (v *consoleViewer) open(ctx context.Context) error {
	lctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(lctx, http.MethodGet, v.base+"/console/api/live", nil)
	if err != nil {
		cancel()
		return err
	}
	v.mu.Lock()
	if v.lastSeq > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(v.lastSeq, 10))
	}
	v.mu.Unlock()
	resp, err := v.client.Do(req)
	if err != nil {
		cancel()
		return fmt.Errorf("bench serve --console: opening the live view: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return fmt.Errorf("bench serve --console: opening the live view: %s", resp.Status)
	}
	v.cancel, v.done = cancel, make(chan struct{})
	go func() {
		defer close(v.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var f console.Frame
			if json.Unmarshal([]byte(line), &f) != nil {
				continue
			}
			lag := float64(time.Now().UnixMilli() - f.Now)
			v.mu.Lock()
			v.listed += int64(len(f.Requests))
			v.total = f.Total
			v.frames++
			v.bytes += int64(len(line)) + 8
			v.lags = append(v.lags, lag)
			v.lastSeq = f.Seq
			for _, p := range f.Series {
				v.peakRPS = max(v.peakRPS, float64(p.Requests))
			}
			v.mu.Unlock()
		}
	}()
	return nil
}

// close stops reading the live view once a frame has counted want
// requests (or 10 s have passed: a frame is due every half second).
func (v *consoleViewer) close(want uint64) {
	if v.cancel == nil {
		return
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		v.mu.Lock()
		got := v.total
		v.mu.Unlock()
		if got >= want {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	v.cancel()
	<-v.done
	v.cancel = nil
}

func (v *consoleViewer) report(rep *consoleBenchReport, on time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	rep.Frames, rep.Listed, rep.Recorded, rep.PeakRPSViewed = v.frames, v.listed, int64(v.total), v.peakRPS
	if s := on.Seconds(); s > 0 {
		rep.FramesPerSec = float64(v.frames) / s
		rep.BytesPerSec = float64(v.bytes) / s
	}
	lags := slices.Clone(v.lags)
	slices.Sort(lags)
	if len(lags) > 0 {
		rep.LagP50MS = lags[len(lags)/2]
		rep.LagMaxMS = lags[len(lags)-1]
	}
}

func printConsoleBench(w io.Writer, r serveBenchReport) {
	c := r.Console
	fmt.Fprintf(w, "mdsa serve on loopback, console off and on (one live view open), %d rounds each in ABBA order: %d plugins, model %s, max_tokens %d, %d cores\n",
		c.Rounds, r.Plugins, r.Model, r.MaxTokens, r.Cores)
	fmt.Fprintf(w, "%.1f s per endpoint, level, phase and round after %.1f s of warm-up; medians\n\n", r.DurationSec, r.WarmupSec)
	fmt.Fprintf(w, "%-22s %5s %11s %11s %7s %10s %10s %10s %10s %8s  %s\n", "endpoint", "C", "req/s off", "req/s on", "cost",
		"p50 off ms", "p50 on ms", "CPU off us", "CPU on us", "CPU cost", "req/s cost per round")
	for _, x := range c.Results {
		rounds := make([]string, len(x.RoundCosts))
		for i, rc := range x.RoundCosts {
			rounds[i] = fmt.Sprintf("%+.1f%%", rc)
		}
		fmt.Fprintf(w, "%-22s %5d %11.1f %11.1f %6.1f%% %10.2f %10.2f %10.1f %10.1f %7.1f%%  %s\n", x.Endpoint, x.Concurrency, x.RPSOff, x.RPSOn,
			x.CostPct, x.P50OffMS, x.P50OnMS, x.CPUOffUS, x.CPUOnUS, x.CPUCostPct, strings.Join(rounds, " "))
	}
	fmt.Fprintf(w, "\nlive view: %d frames (%.1f/s, %.1f KB/s), frame lag p50 %.0f ms, max %.0f ms; peak %.0f requests/s shown\n",
		c.Frames, c.FramesPerSec, c.BytesPerSec/1024, c.LagP50MS, c.LagMaxMS, c.PeakRPSViewed)
	fmt.Fprintf(w, "requests: %d answered by the console's server, %d counted by its console, %d listed one by one\n",
		c.Served, c.Recorded, c.Listed)
}
