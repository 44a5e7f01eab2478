package clusterbench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/server"
	"github.com/mdsa-go/mdsa/internal/stats"
	"github.com/mdsa-go/mdsa/internal/tenant"
)

// Options shape a run.
type Options struct {
	// Duration of each load phase.
	Duration time.Duration
	// Requests is the number of request pairs of the overhead phase.
	Requests int
	// Config is the base configuration of the gateway (engine settings,
	// directories); its models, backends and tenants are replaced.
	Config config.Config
	// Log receives progress lines; nil discards.
	Log io.Writer
	// RedisURL, when set, adds the shared-limits phase: two replicas on
	// this Redis, one tenant limited to 20 requests per second.
	RedisURL string
}

// Report is what a run measured.
type Report struct {
	Overhead Overhead   `json:"overhead"`
	Affinity []Affinity `json:"affinity"`
	Scaling  []Scaling  `json:"scaling"`
	Failover Failover   `json:"failover"`
	// Shared is absent without Options.RedisURL.
	Shared *Shared `json:"shared_limits,omitempty"`
}

// Shared is a tenant limited to 20 requests per second hammered through
// two replicas that share the limit in Redis.
type Shared struct {
	Replicas      int     `json:"replicas"`
	LimitPerSec   float64 `json:"limit_per_s"`
	AdmittedPerS  float64 `json:"admitted_per_s"`
	Refused       int     `json:"refused_429"`
	Errors        int     `json:"errors"`
	WithinPercent float64 `json:"off_by_percent"`
}

// Overhead compares a backend called directly with the same backend
// through the gateway, requests interleaved.
type Overhead struct {
	Requests int `json:"requests"`
	// Whole answers (not streamed), p50 in milliseconds.
	DirectP50MS  float64 `json:"direct_p50_ms"`
	GatewayP50MS float64 `json:"gateway_p50_ms"`
	AddedP50MS   float64 `json:"added_p50_ms"`
	// Time to the first token of a stream, p50 in milliseconds.
	DirectTTFTMS  float64 `json:"direct_ttft_p50_ms"`
	GatewayTTFTMS float64 `json:"gateway_ttft_p50_ms"`
	AddedTTFTMS   float64 `json:"added_ttft_p50_ms"`
}

// Affinity is one balancing strategy under mixed load over 4 backends and
// 4 domains: how many requests found their domain's prompt warm (counted
// by the backends, each of which keeps one prompt warm) and how even the
// load was.
type Affinity struct {
	Balance  string  `json:"balance"`
	Requests int     `json:"requests"`
	WarmPct  float64 `json:"warm_pct"`
	// MaxOverMean is the busiest backend's requests over the mean.
	MaxOverMean float64 `json:"max_over_mean"`
}

// Scaling is the throughput through the gateway with n backends of fixed
// latency and capacity.
type Scaling struct {
	Backends      int     `json:"backends"`
	RequestsPerS  float64 `json:"requests_per_s"`
	Ratio         float64 `json:"ratio_to_one"`
	Errors        int     `json:"errors"`
	CeilingPerSec float64 `json:"ceiling_per_s"` // what the backends can serve at most
}

// Failover is a backend killed under streaming load and restarted.
type Failover struct {
	Requests int `json:"requests"`
	// FailedBeforeFirstToken is requests answered with an error status:
	// those the gateway could have retried elsewhere.
	FailedBeforeFirstToken int `json:"failed_before_first_token"`
	// CutStreams ended with an error event after some tokens: in flight
	// on the killed backend.
	CutStreams int `json:"cut_streams"`
	// CutWithoutError ended without [DONE] and without an error event.
	CutWithoutError int `json:"cut_without_error"`
	// EjectedAfterMS: from the kill until the gateway's metrics show the
	// backend down; ReadmittedAfterMS: from the restart until they show
	// it up; ServedAfterMS: until it served a request again.
	EjectedAfterMS    float64 `json:"ejected_after_ms"`
	ReadmittedAfterMS float64 `json:"readmitted_after_ms"`
	ServedAfterMS     float64 `json:"served_after_ms"`
}

// domains are the system prompts of the affinity phase.
var domains = []string{
	"You are MDSA's finance assistant. Answer questions about budgets, loans, savings and investing.",
	"You are MDSA's medical assistant. Give general health information and say when to see a doctor.",
	"You are MDSA's support assistant. Help customers with orders, refunds, deliveries and accounts.",
	"You are MDSA's technical assistant. Help with software errors, networks and devices.",
}

// gateway is an MDSA server in front of backends.
type gateway struct {
	url  string
	h    *host.Host
	srv  *http.Server
	done chan struct{}
}

// startGateway serves a host whose model "remote" runs on urls.
func startGateway(ctx context.Context, base config.Config, urls []string, balance string) (*gateway, error) {
	return startGatewayWith(ctx, base, urls, balance, nil)
}

// startGatewayWith is startGateway with changes to the configuration.
func startGatewayWith(ctx context.Context, base config.Config, urls []string, balance string, edit func(*config.Config)) (*gateway, error) {
	cfg := base
	dir, err := os.MkdirTemp("", "mdsa-bench-cluster-")
	if err != nil {
		return nil, err
	}
	cfg.Host.PluginsDir = dir // no plugins: the raw model is what is measured
	cfg.Tenants = nil
	cfg.Backends = map[string]config.Backend{"pool": {Kind: "openai", URLs: urls, Balance: balance, MaxConcurrent: 1024}}
	cfg.Models = map[string]config.Model{"remote": {Tier: "domain", Backend: "pool"}}
	cfg.Engine.Model = "remote"
	if edit != nil {
		edit(&cfg)
	}
	h, err := host.New(ctx, cfg, host.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s, err := server.New(h, cfg, server.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		h.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	g := &gateway{url: "http://" + ln.Addr().String(), h: h, srv: &http.Server{Handler: s.Handler()}, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		g.srv.Serve(ln)
		h.Close()
		os.RemoveAll(dir)
	}()
	return g, nil
}

func (g *gateway) close() {
	g.srv.Close()
	<-g.done
}

// Run measures every phase.
func Run(ctx context.Context, o Options) (Report, error) {
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	if o.Requests <= 0 {
		o.Requests = 300
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	var rep Report
	var err error
	logf("overhead: %d requests each way, interleaved", o.Requests)
	if rep.Overhead, err = overhead(ctx, o, client); err != nil {
		return rep, err
	}
	for _, bal := range []string{"least-outstanding", "prefix"} {
		logf("affinity: %s, %v", bal, o.Duration)
		a, err := affinity(ctx, o, client, bal)
		if err != nil {
			return rep, err
		}
		rep.Affinity = append(rep.Affinity, a)
	}
	for _, n := range []int{1, 2, 4} {
		logf("scaling: %d backends, %v", n, o.Duration)
		s, err := scaling(ctx, o, client, n)
		if err != nil {
			return rep, err
		}
		if len(rep.Scaling) > 0 && rep.Scaling[0].RequestsPerS > 0 {
			s.Ratio = s.RequestsPerS / rep.Scaling[0].RequestsPerS
		} else {
			s.Ratio = 1
		}
		rep.Scaling = append(rep.Scaling, s)
	}
	logf("failover: 3 backends, one killed and restarted")
	if rep.Failover, err = failover(ctx, o, client); err != nil {
		return rep, err
	}
	if o.RedisURL != "" {
		logf("shared limits: 2 replicas on %s, one tenant at 20 requests/s, %v", o.RedisURL, o.Duration)
		sh, err := sharedLimits(ctx, o, client)
		if err != nil {
			return rep, err
		}
		rep.Shared = &sh
	}
	return rep, nil
}

// chatBody is a chat completion request for model with a system prompt.
func chatBody(model, system, user string, stream bool) []byte {
	b, _ := json.Marshal(map[string]any{"model": model, "stream": stream, "max_tokens": 64, "temperature": 0,
		"messages": []map[string]string{{"role": "system", "content": system}, {"role": "user", "content": user}}})
	return b
}

// outcome is how one request ended.
type outcome struct {
	status   int           // HTTP status
	ttft     time.Duration // to the first content chunk (streams)
	total    time.Duration
	done     bool // a stream reached [DONE]
	errEvent bool // a stream carried an error event
	tokens   int  // content chunks
}

// send posts a chat completion and reads the whole answer.
func send(ctx context.Context, client *http.Client, url string, body []byte, stream bool) (outcome, error) {
	var out outcome
	t0 := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	out.status = resp.StatusCode
	if !stream || resp.StatusCode != http.StatusOK {
		_, err := io.Copy(io.Discard, resp.Body)
		out.total = time.Since(t0)
		return out, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			out.done = true
			break
		}
		if strings.HasPrefix(data, `{"error"`) {
			out.errEvent = true
			continue
		}
		if strings.Contains(data, `"content":"`) {
			if out.tokens == 0 {
				out.ttft = time.Since(t0)
			}
			out.tokens++
		}
	}
	out.total = time.Since(t0)
	return out, nil
}

func overhead(ctx context.Context, o Options, client *http.Client) (Overhead, error) {
	b, err := StartBackend(BackendOptions{Latency: 2 * time.Millisecond, Tokens: 16, Capacity: 64})
	if err != nil {
		return Overhead{}, err
	}
	defer b.Close()
	g, err := startGateway(ctx, o.Config, []string{b.URL()}, "")
	if err != nil {
		return Overhead{}, err
	}
	defer g.close()
	var direct, via, directTTFT, viaTTFT []time.Duration
	// Warm both paths' connections first.
	for _, u := range []string{b.URL(), g.url} {
		if _, err := send(ctx, client, u, chatBody("remote", domains[0], "hi", false), false); err != nil {
			return Overhead{}, err
		}
	}
	for i := range o.Requests {
		user := "question " + strconv.Itoa(i)
		for _, stream := range []bool{false, true} {
			for _, u := range []string{b.URL(), g.url} {
				res, err := send(ctx, client, u, chatBody("remote", domains[0], user, stream), stream)
				if err != nil {
					return Overhead{}, err
				}
				if res.status != http.StatusOK {
					return Overhead{}, fmt.Errorf("clusterbench: overhead: %s answered %d", u, res.status)
				}
				switch {
				case !stream && u == b.URL():
					direct = append(direct, res.total)
				case !stream:
					via = append(via, res.total)
				case u == b.URL():
					directTTFT = append(directTTFT, res.ttft)
				default:
					viaTTFT = append(viaTTFT, res.ttft)
				}
			}
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	p := func(ds []time.Duration) float64 { return ms(stats.Percentile(ds, 0.5)) }
	ov := Overhead{Requests: o.Requests, DirectP50MS: p(direct), GatewayP50MS: p(via), DirectTTFTMS: p(directTTFT), GatewayTTFTMS: p(viaTTFT)}
	ov.AddedP50MS = ov.GatewayP50MS - ov.DirectP50MS
	ov.AddedTTFTMS = ov.GatewayTTFTMS - ov.DirectTTFTMS
	return ov, nil
}

// load runs clients sending requests made by next until d has passed.
func load(ctx context.Context, client *http.Client, url string, clients int, d time.Duration, stream bool,
	next func(r *rand.Rand) []byte) []outcome {
	var mu sync.Mutex
	var outs []outcome
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 7))
			for time.Now().Before(end) && ctx.Err() == nil {
				res, err := send(ctx, client, url, next(r), stream)
				if err != nil {
					res.status = -1
				}
				mu.Lock()
				outs = append(outs, res)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return outs
}

func affinity(ctx context.Context, o Options, client *http.Client, balance string) (Affinity, error) {
	var bs []*Backend
	var urls []string
	defer func() {
		for _, b := range bs {
			b.Close()
		}
	}()
	for range 4 {
		b, err := StartBackend(BackendOptions{Latency: 5 * time.Millisecond, Tokens: 8, TokenGap: time.Millisecond, Capacity: 16, CacheSlots: 1})
		if err != nil {
			return Affinity{}, err
		}
		bs = append(bs, b)
		urls = append(urls, b.URL())
	}
	g, err := startGateway(ctx, o.Config, urls, balance)
	if err != nil {
		return Affinity{}, err
	}
	defer g.close()
	outs := load(ctx, client, g.url, 16, o.Duration, false, func(r *rand.Rand) []byte {
		return chatBody("remote", domains[r.IntN(len(domains))], "question "+strconv.Itoa(r.IntN(1e6)), false)
	})
	a := Affinity{Balance: balance}
	total, warm, most := 0, 0, 0
	for _, b := range bs {
		n, w := b.Counts()
		total += n
		warm += w
		most = max(most, n)
	}
	for _, res := range outs {
		if res.status == http.StatusOK {
			a.Requests++
		}
	}
	if total > 0 {
		a.WarmPct = 100 * float64(warm) / float64(total)
		a.MaxOverMean = float64(most) / (float64(total) / float64(len(bs)))
	}
	return a, nil
}

func scaling(ctx context.Context, o Options, client *http.Client, n int) (Scaling, error) {
	const capacity, latency = 4, 40 * time.Millisecond
	var urls []string
	for range n {
		b, err := StartBackend(BackendOptions{Latency: latency, Tokens: 1, Capacity: capacity})
		if err != nil {
			return Scaling{}, err
		}
		defer b.Close()
		urls = append(urls, b.URL())
	}
	g, err := startGateway(ctx, o.Config, urls, "")
	if err != nil {
		return Scaling{}, err
	}
	defer g.close()
	t0 := time.Now()
	outs := load(ctx, client, g.url, 32, o.Duration, false, func(r *rand.Rand) []byte {
		return chatBody("remote", domains[0], "question "+strconv.Itoa(r.IntN(1e6)), false)
	})
	el := time.Since(t0)
	s := Scaling{Backends: n, CeilingPerSec: float64(n*capacity) / latency.Seconds()}
	ok := 0
	for _, res := range outs {
		if res.status == http.StatusOK {
			ok++
		} else {
			s.Errors++
		}
	}
	s.RequestsPerS = float64(ok) / el.Seconds()
	return s, nil
}

func failover(ctx context.Context, o Options, client *http.Client) (Failover, error) {
	var bs []*Backend
	var urls []string
	defer func() {
		for _, b := range bs {
			b.Close()
		}
	}()
	for range 3 {
		b, err := StartBackend(BackendOptions{Latency: 5 * time.Millisecond, Tokens: 20, TokenGap: 10 * time.Millisecond, Capacity: 64})
		if err != nil {
			return Failover{}, err
		}
		bs = append(bs, b)
		urls = append(urls, b.URL())
	}
	g, err := startGateway(ctx, o.Config, urls, "")
	if err != nil {
		return Failover{}, err
	}
	defer g.close()
	victim := bs[0]
	d := max(o.Duration, 3*time.Second)
	var fo Failover
	start := time.Now()
	killAt, restartAt := start.Add(d/3), start.Add(2*d/3)
	var ejected, readmitted, served atomic.Int64
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		defer func() { recover() }() // a watch failure only loses its figures
		killed, restarted := false, false
		for watchCtx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
			now := time.Now()
			switch {
			case !killed && now.After(killAt):
				killed = true
				victim.Kill()
			case killed && !restarted && now.After(restartAt):
				restarted = true
				if victim.Restart() != nil {
					return
				}
				victim.Reset()
			}
			up, ok := backendUp(watchCtx, client, g.url, victim.URL())
			if killed && ok && !up && ejected.Load() == 0 {
				ejected.Store(int64(now.Sub(killAt)))
			}
			if restarted && ok && up && readmitted.Load() == 0 {
				readmitted.Store(int64(now.Sub(restartAt)))
			}
			if restarted && served.Load() == 0 {
				if n, _ := victim.Counts(); n > 0 {
					served.Store(int64(now.Sub(restartAt)))
				}
			}
		}
	}()
	outs := load(ctx, client, g.url, 12, d, true, func(r *rand.Rand) []byte {
		return chatBody("remote", domains[r.IntN(len(domains))], "question "+strconv.Itoa(r.IntN(1e6)), true)
	})
	// Give the readmission its time: a health check once the ejection's
	// cool-down is over (it doubles while the server stays down), then
	// traffic. Generous for a busy machine; it ends as soon as it served.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && served.Load() == 0; {
		send(ctx, client, g.url, chatBody("remote", domains[0], "after", true), true)
	}
	stopWatch()
	<-watched
	fo.Requests = len(outs)
	for _, res := range outs {
		switch {
		case res.status != http.StatusOK:
			fo.FailedBeforeFirstToken++
		case res.errEvent:
			fo.CutStreams++
		case !res.done:
			fo.CutWithoutError++
		}
	}
	toMS := func(v int64) float64 {
		if v == 0 {
			return -1
		}
		return float64(time.Duration(v).Microseconds()) / 1000
	}
	fo.EjectedAfterMS, fo.ReadmittedAfterMS, fo.ServedAfterMS = toMS(ejected.Load()), toMS(readmitted.Load()), toMS(served.Load())
	return fo, nil
}

// backendUp reads mdsa_backend_up of backend from the gateway's metrics.
func backendUp(ctx context.Context, client *http.Client, gw, backend string) (up, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, gw+"/metrics", nil)
	if err != nil {
		return false, false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, false
	}
	defer resp.Body.Close()
	want := `mdsa_backend_up{backend="` + backend + `",model="remote"} `
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, found := strings.CutPrefix(sc.Text(), want); found {
			return v == "1", true
		}
	}
	return false, false
}

// benchKey is the API key of the shared-limits phase's tenant.
const benchKey = "mdsa-bench-cluster-key"

func sharedLimits(ctx context.Context, o Options, client *http.Client) (Shared, error) {
	const limit = 20.0
	b, err := StartBackend(BackendOptions{Latency: time.Millisecond, Tokens: 1, Capacity: 256})
	if err != nil {
		return Shared{}, err
	}
	defer b.Close()
	prefix := fmt.Sprintf("mdsa-bench-%d:", time.Now().UnixNano()) // one for both replicas
	edit := func(c *config.Config) {
		c.Tenants = []config.Tenant{{Name: "bench", APIKeys: []string{tenant.HashKey(benchKey)},
			Limits: config.TenantLimits{RequestsPerSecond: limit, Burst: 1}}}
		c.Server.Limits, c.Server.LimitsFail = "redis", "closed"
		c.Server.RefusalDelay = config.Duration{} // count refusals, do not pace them
		c.Redis.URL = o.RedisURL
		c.Redis.KeyPrefix = prefix
		c.Redis.Timeout = config.Duration{Duration: time.Second}
	}
	var urls []string
	for range 2 {
		g, err := startGatewayWith(ctx, o.Config, []string{b.URL()}, "", edit)
		if err != nil {
			return Shared{}, err
		}
		defer g.close()
		urls = append(urls, g.url)
	}
	var ok, refused, failed atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(o.Duration)
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := urls[c%len(urls)]
			body := chatBody("remote", domains[0], "question", false)
			for time.Now().Before(end) && ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				req.Header.Set("Authorization", "Bearer "+benchKey)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
					time.Sleep(2 * time.Millisecond)
				default:
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0).Seconds()
	sh := Shared{Replicas: 2, LimitPerSec: limit, AdmittedPerS: float64(ok.Load()) / el, Refused: int(refused.Load()), Errors: int(failed.Load())}
	sh.WithinPercent = 100 * (sh.AdmittedPerS - limit) / limit
	return sh, nil
}
