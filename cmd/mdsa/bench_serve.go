package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/gguf"
	"github.com/mdsa-go/mdsa/internal/procfs"
	"github.com/mdsa-go/mdsa/internal/tenant"
)

// benchServeQuery is the query every client sends: a support request of
// the kind the shipped support plugin is for.
const benchServeQuery = "I was charged twice for my order last week and still have no refund. How do I get my money back?"

// Endpoints mdsa bench serve measures, in the order it measures them.
const (
	benchEPRoute = "/v1/route"
	benchEPChat  = "/v1/chat/completions"
)

// benchServeTenant names the one tenant the bench configures, so that every
// request pays for authentication and admission as in production.
const benchServeTenant = "bench"

// serveBenchResult is one endpoint measured at one concurrency level.
type serveBenchResult struct {
	Endpoint    string  `json:"endpoint"`
	Concurrency int     `json:"concurrency"`
	Requests    int64   `json:"requests"` // answered, errors included
	Errors      int64   `json:"errors"`   // transport errors and non-2xx answers
	RPS         float64 `json:"rps"`
	P50MS       float64 `json:"p50_ms"` // of successful requests
	P99MS       float64 `json:"p99_ms"`
	// CPUUSPerRequest is this process's CPU time (server and clients) per
	// request, in microseconds.
	CPUUSPerRequest float64 `json:"cpu_us_per_request"`
	FirstError      string  `json:"first_error,omitempty"`
}

// serveBenchReport is what mdsa bench serve prints.
type serveBenchReport struct {
	Results     []serveBenchResult `json:"results"`
	Cores       int                `json:"cores"`
	Model       string             `json:"model"`
	Plugins     int                `json:"plugins"`
	MaxTokens   int                `json:"max_tokens"`
	DurationSec float64            `json:"duration_s"` // measured time per endpoint and level
	WarmupSec   float64            `json:"warmup_s"`
	// Console is the cost of one open operator console (--console).
	Console *consoleBenchReport `json:"console,omitempty"`
}

func (a *app) benchServeCmd() *cobra.Command {
	var (
		model       string
		js          bool
		duration    time.Duration
		concurrency []int
		maxTokens   int
		withConsole bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Measure the HTTP server: requests/s and latency of /v1/route and /v1/chat/completions",
		Long: `Start the HTTP server in this process on a loopback port, with the configured plugins and a tiny
synthetic model (unless --model-file; engine.threads 1 and --max-tokens per answer, so that the figures
are about the server rather than the model), then for each concurrency level C run C clients for
--duration against POST /v1/route, then against POST /v1/chat/completions (model "mdsa", a support
query). Each level is warmed up first (a fifth of --duration, 100 ms to 1 s) and the warm-up is not
counted. The configured [[tenants]] are replaced by one tenant without limits, so every request is
authenticated and admitted but never refused. Non-2xx answers count as errors. Logs are at
warn level at most (no line per request) unless --log-level says otherwise.

The clients run in this process too: they share the machine's cores with the server.

With --console, a second server on the same host has the operator console on, and every endpoint and
level is measured on both, alternating (console off, then on with one live view open, twice), to
report the throughput the console costs and how its live view kept up: frames received, how late,
and how many of the requests served it listed or counted as skipped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if duration <= 0 {
				return fmt.Errorf("bench serve: --duration %s: want > 0", duration)
			}
			if len(concurrency) == 0 {
				return fmt.Errorf("bench serve: --concurrency: want at least one level")
			}
			for _, c := range concurrency {
				if c < 1 || c > 4096 {
					return fmt.Errorf("bench serve: --concurrency %d: want 1 to 4096", c)
				}
			}
			if maxTokens < 1 {
				return fmt.Errorf("bench serve: --max-tokens %d: want >= 1", maxTokens)
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			modelName := model
			if model == "" {
				dir, err := os.MkdirTemp("", "mdsa-bench-serve-")
				if err != nil {
					return fmt.Errorf("bench serve: %w", err)
				}
				defer os.RemoveAll(dir)
				model = filepath.Join(dir, "synthetic.gguf")
				info, err := gguf.WriteSynth(model, gguf.SynthOptions{})
				if err != nil {
					return fmt.Errorf("bench serve: writing the synthetic model: %w", err)
				}
				modelName = fmt.Sprintf("synthetic (%d parameters, %s, %d bytes)", info.Params, info.Quant, info.Bytes)
			} else {
				model = absPath(model)
			}
			key, err := benchKey()
			if err != nil {
				return err
			}
			cfg.Tenants = []config.Tenant{{Name: benchServeTenant, APIKeys: []string{tenant.HashKey(key)}}}
			cfg.Engine.Threads = 1 // spinning decode threads would starve the server and clients
			cfg.Engine.MaxTokens = maxTokens
			if a.logLevel == "" && (cfg.Host.LogLevel == "debug" || cfg.Host.LogLevel == "info") {
				// One log line per request would flood the terminal and
				// measure the terminal; --log-level asks for them.
				cfg.Host.LogLevel = "warn"
			}

			log := a.logger(cfg)
			h, srv, err := a.openServer(ctx, cfg, log, nil, host.WithModelFile(model))
			if err != nil {
				return err
			}
			defer h.Close()
			var lc net.ListenConfig
			ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
			if err != nil {
				return fmt.Errorf("bench serve: listening on 127.0.0.1: %w", err)
			}
			sctx, stop := context.WithCancel(ctx)
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(sctx, ln) }()
			defer func() {
				stop()
				if err := <-errc; err != nil {
					fmt.Fprintf(a.errw, "warning: bench serve: stopping the server: %v\n", err)
				}
			}()

			b := newServeBench("http://"+ln.Addr().String(), key, maxTokens, slices.Max(concurrency))
			defer b.close()
			rep := serveBenchReport{Cores: runtime.NumCPU(), Model: modelName, Plugins: len(h.Plugins()),
				MaxTokens: maxTokens, DurationSec: duration.Seconds(), WarmupSec: warmupFor(duration).Seconds()}
			if withConsole {
				cr, err := a.benchConsole(ctx, h, cfg, log, key, maxTokens, concurrency, duration, b)
				if err != nil {
					return err
				}
				rep.Console = cr
				if js {
					return writeJSON(a.out, rep)
				}
				printConsoleBench(a.out, rep)
				return nil
			}
			for _, c := range concurrency {
				for _, ep := range []string{benchEPRoute, benchEPChat} {
					r, err := b.level(ctx, ep, c, duration)
					if err != nil {
						return err
					}
					if r.FirstError != "" {
						fmt.Fprintf(a.errw, "bench serve: %s at concurrency %d: first error: %s\n", ep, c, r.FirstError)
					}
					rep.Results = append(rep.Results, r)
				}
			}
			if js {
				return writeJSON(a.out, rep)
			}
			printServeBench(a.out, rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model-file", "", "GGUF model answering the chat completions (default: a tiny synthetic one)")
	f.DurationVar(&duration, "duration", 5*time.Second, "measured time per endpoint and concurrency level")
	f.IntSliceVar(&concurrency, "concurrency", []int{1, 8, 64}, "concurrency levels: clients sending requests back to back")
	f.IntVar(&maxTokens, "max-tokens", 16, "tokens per completion (engine.max_tokens and the request's max_tokens)")
	f.BoolVar(&js, "json", false, "print JSON")
	f.BoolVar(&withConsole, "console", false, "measure the cost of one open operator console (console off and on, alternating)")
	return cmd
}

// benchKey makes a random API key for the bench tenant.
func benchKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("bench serve: making an API key: %w", err)
	}
	return "bench-" + hex.EncodeToString(b[:]), nil
}

// warmupFor is how long each level is warmed up before it is measured.
func warmupFor(d time.Duration) time.Duration {
	return min(max(d/5, 100*time.Millisecond), time.Second)
}

// serveBench sends the bench's requests to one server.
type serveBench struct {
	// answered counts every request answered, warm-ups included.
	answered  atomic.Int64
	base, key string
	bodies    map[string][]byte
	tr        *http.Transport
	client    *http.Client
}

func newServeBench(base, key string, maxTokens, maxConc int) *serveBench {
	route, _ := json.Marshal(map[string]string{"query": benchServeQuery})
	chat, _ := json.Marshal(map[string]any{
		"model":      "mdsa",
		"messages":   []map[string]string{{"role": "user", "content": benchServeQuery}},
		"max_tokens": maxTokens,
	})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2 * maxConc
	tr.MaxIdleConnsPerHost = 2 * maxConc // one connection per client, kept between requests
	return &serveBench{
		base: base, key: key,
		bodies: map[string][]byte{benchEPRoute: route, benchEPChat: chat},
		tr:     tr,
		client: &http.Client{Transport: tr, Timeout: 2 * time.Minute},
	}
}

func (b *serveBench) close() { b.tr.CloseIdleConnections() }

// level warms the endpoint up at concurrency c, then measures it for d.
func (b *serveBench) level(ctx context.Context, ep string, c int, d time.Duration) (serveBenchResult, error) {
	if _, err := b.run(ctx, ep, c, warmupFor(d)); err != nil {
		return serveBenchResult{}, err
	}
	return b.run(ctx, ep, c, d)
}

// run has c clients send requests to ep back to back until d has passed;
// requests started before then are waited for and counted.
func (b *serveBench) run(ctx context.Context, ep string, c int, d time.Duration) (serveBenchResult, error) {
	res := serveBenchResult{Endpoint: ep, Concurrency: c}
	var (
		requests, errs atomic.Int64
		firstErr       atomic.Pointer[string]
		mu             sync.Mutex
		lat            []time.Duration
		wg             sync.WaitGroup
	)
	cpu0, _ := procfs.CPU(os.Getpid())
	start := time.Now()
	end := start.Add(d)
	for range c {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil && time.Now().Before(end) {
				t0 := time.Now()
				err := b.send(ctx, ep)
				took := time.Since(t0)
				if ctx.Err() != nil {
					break
				}
				requests.Add(1)
				b.answered.Add(1)
				if err != nil {
					errs.Add(1)
					msg := err.Error()
					firstErr.CompareAndSwap(nil, &msg)
					continue
				}
				mine = append(mine, took)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench serve: %s at concurrency %d: %w", ep, c, err)
	}
	res.Requests, res.Errors = requests.Load(), errs.Load()
	res.RPS = float64(res.Requests) / elapsed.Seconds()
	if cpu1, ok := procfs.CPU(os.Getpid()); ok && res.Requests > 0 {
		res.CPUUSPerRequest = float64((cpu1 - cpu0).Microseconds()) / float64(res.Requests)
	}
	slices.Sort(lat)
	res.P50MS, res.P99MS = percentileMS(lat, 0.50), percentileMS(lat, 0.99)
	if e := firstErr.Load(); e != nil {
		res.FirstError = *e
	}
	return res, nil
}

// send makes one request and reads the whole answer; a transport error or
// a non-2xx status is an error that carries the start of the body.
func (b *serveBench) send(ctx context.Context, ep string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+ep, bytes.NewReader(b.bodies[ep]))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+b.key)
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return fmt.Errorf("reading the answer: %w", err)
		}
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, resp.Body) // so the connection can be reused
	return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
}

// percentileMS is the nearest-rank p-quantile of sorted, in milliseconds
// (0 when empty).
func percentileMS(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i].Nanoseconds()) / 1e6
}

func printServeBench(w io.Writer, r serveBenchReport) {
	fmt.Fprintf(w, "mdsa serve on loopback: %d plugins, model %s, max_tokens %d, %d cores shared by server and clients\n",
		r.Plugins, r.Model, r.MaxTokens, r.Cores)
	fmt.Fprintf(w, "%.1f s per endpoint and level after %.1f s of warm-up\n\n", r.DurationSec, r.WarmupSec)
	fmt.Fprintf(w, "%-22s %5s %9s %7s %10s %9s %9s\n", "endpoint", "C", "requests", "errors", "req/s", "p50 ms", "p99 ms")
	for _, x := range r.Results {
		fmt.Fprintf(w, "%-22s %5d %9d %7d %10.1f %9.2f %9.2f\n", x.Endpoint, x.Concurrency, x.Requests, x.Errors, x.RPS, x.P50MS, x.P99MS)
	}
}
