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
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/gguf"
	"github.com/mdsa-go/mdsa/internal/hostile"
	"github.com/mdsa-go/mdsa/internal/procfs"
	"github.com/mdsa-go/mdsa/internal/stats"
	"github.com/mdsa-go/mdsa/internal/tenant"
)

// hostileClass is one kind of attack mdsa bench hostile runs.
type hostileClass struct {
	Name string
	// Kind: "compile" (PUT a module through the admin API), "plugin" (a
	// query to a misbehaving plugin of the hostile tenant), "http" (a
	// request the API must refuse).
	Kind string
	What string
	// wasm is the module a compile class PUTs, under name put.
	wasm []byte
	put  string
	// mode is the test plugin's behaviour a plugin class queries.
	mode string
	// body is what an http class POSTs to /v1/chat/completions.
	body []byte
}

// hostileModes are the behaviours of the hostile test plugin the bench
// queries (host/plugin/testdata/bad), with what each does.
var hostileModes = []struct{ mode, what string }{
	{"loop", "spins forever in prompt"},
	{"spinfail", "spins 800 ms, then fails (a fresh instance per failure)"},
	{"fill", "clears 32 MiB with memory.fill again and again"},
	{"trap", "panics"},
	{"oom", "allocates until its memory cap"},
	{"recurse", "recurses without end (the wasm call stack)"},
	{"bigout", "returns 3 MiB"},
	{"bigerr", "fails with a 4 MiB error message"},
	{"badjson", "returns invalid JSON"},
	{"badutf8", "returns invalid UTF-8"},
	{"flood", "calls mdsa_count_tokens 20 times"},
	{"nocap", "calls a host function it did not declare"},
	{"embedflood", "embeds 512 texts of 2 KB, 8 times"},
	{"bigprompt", "generates from a 1 MiB prompt, 8 times"},
	{"tokens", "generates 4,096 tokens 8 times (the request says 2)"},
}

// hostileClasses lists every class: compile bombs, name hijack, a
// max-size manifest, misbehaving plugins, bad HTTP requests.
func hostileClasses(quietWasm, badWasm []byte) []hostileClass {
	var cs []hostileClass
	for _, b := range hostile.Bombs() {
		cs = append(cs, hostileClass{Name: b.Name, Kind: "compile", What: b.What, wasm: b.Wasm, put: "bomb"})
	}
	cs = append(cs,
		hostileClass{Name: "name-hijack", Kind: "compile", What: "the quiet tenant's plugin uploaded under another name",
			wasm: quietWasm, put: "aaasupport"},
		hostileClass{Name: "router-bigmanifest", Kind: "compile", What: "a manifest at every cap (1,024 keywords, 880 examples) hot-added and retrained",
			wasm: badWasm, put: "bigmanifest"},
	)
	for _, m := range hostileModes {
		cs = append(cs, hostileClass{Name: "plugin-" + m.mode, Kind: "plugin", What: m.what, mode: m.mode})
	}
	long, _ := json.Marshal(map[string]any{"model": "mdsa/support",
		"messages": []map[string]string{{"role": "user", "content": strings.Repeat("tell me more about it ", 30_000)}}})
	nul, _ := json.Marshal(map[string]any{"model": "mdsa/support",
		"messages": []map[string]string{{"role": "user", "content": "refund\x00please"}}})
	cs = append(cs,
		hostileClass{Name: "http-longprompt", Kind: "http", What: "a prompt far past the model's context", body: long},
		hostileClass{Name: "http-nul", Kind: "http", What: "a NUL byte in the content", body: nul},
		hostileClass{Name: "http-badjson", Kind: "http", What: "a body that is not JSON", body: []byte(`{"model":"mdsa","messages":[`)},
	)
	return cs
}

// hostileResult is what one class did to the host.
type hostileResult struct {
	Class    string         `json:"class"`
	Kind     string         `json:"kind"`
	What     string         `json:"what"`
	Requests int            `json:"requests"`
	Statuses map[string]int `json:"statuses"` // HTTP status (and error code) -> count
	Error    string         `json:"first_error,omitempty"`
	// FailP50MS is the median time a hostile request took to be answered.
	FailP50MS float64 `json:"time_to_fail_p50_ms"`
	FailMaxMS float64 `json:"time_to_fail_max_ms"`
	// CPUPerRequest is the host's CPU-seconds per hostile request, the
	// quiet tenant's share taken out.
	CPUPerRequest float64 `json:"cpu_s_per_request"`
	// TokensPerRequest is the tokens charged to the hostile tenant per
	// request (mdsa_tokens_total).
	TokensPerRequest float64 `json:"tokens_per_request"`
	RSSBaseMB        float64 `json:"rss_base_mb"`
	RSSPeakMB        float64 `json:"rss_peak_mb"`
	RSSAfterMB       float64 `json:"rss_after_mb"`
	// The quiet tenant's latency without and with this class's traffic.
	QuietP50MS      float64 `json:"quiet_p50_ms"`
	QuietP99MS      float64 `json:"quiet_p99_ms"`
	QuietNoisyP50MS float64 `json:"quiet_noisy_p50_ms"`
	QuietNoisyP99MS float64 `json:"quiet_noisy_p99_ms"`
	QuietErrors     int     `json:"quiet_errors"`
	// The router's own time for the quiet tenant's /v1/route requests
	// (its latency_us), without and with this class's traffic.
	QuietRouteP50US      float64 `json:"quiet_route_p50_us"`
	QuietNoisyRouteP50US float64 `json:"quiet_noisy_route_p50_us"`
}

// hostileReport is what mdsa bench hostile prints.
type hostileReport struct {
	Results     []hostileResult `json:"results"`
	Cores       int             `json:"cores"`
	DurationSec float64         `json:"duration_s"`
	Clients     int             `json:"clients"`
	Timeout     string          `json:"plugins_timeout"`
	MemoryMB    int             `json:"plugins_memory_mb"`
	PoolSize    int             `json:"plugins_pool_size"`
}

func (a *app) benchHostileCmd() *cobra.Command {
	var (
		js                 bool
		duration           time.Duration
		clients            int
		quietPath, badPath string
		only               []string
	)
	cmd := &cobra.Command{
		Use:   "hostile",
		Short: "Attack the server with every hostile class and report what each costs it",
		Long: `Start the HTTP server in this process with two tenants: "quiet" (the shipped support plugin) and
"hostile" (every behaviour of the hostile test plugin, built with make hostile), an admin key and a tiny
synthetic model. Then, for each class of attack (compile bombs and a name hijack through the admin API,
a max-size manifest, misbehaving plugins, bad HTTP requests), run the quiet tenant alone for --duration,
then again while --clients hostile clients repeat the attack, and report: how the attacks were
answered, the time to fail, the server's CPU-seconds per hostile request (the quiet tenant's share
taken out), the tokens charged to the hostile tenant per request, the process RSS before, at its peak
and after the class, and the quiet tenant's p50/p99 latency without and with the attack.

The sandbox limits are the configuration's (plugins.*); the plugins directory, tenants and cache are
the bench's own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if duration <= 0 || clients < 1 || clients > 64 {
				return fmt.Errorf("bench hostile: --duration %s --clients %d: want > 0 and 1 to 64", duration, clients)
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if quietPath == "" {
				quietPath = filepath.Join(cfg.Resolve(cfg.Host.PluginsDir), "support", "support.wasm")
			}
			quietWasm, err := os.ReadFile(quietPath)
			if err != nil {
				return fmt.Errorf("bench hostile: the quiet tenant's plugin (--quiet-plugin; make plugins builds it): %w", err)
			}
			badWasm, err := os.ReadFile(badPath)
			if err != nil {
				return fmt.Errorf("bench hostile: the hostile test plugin (--hostile-plugin; make hostile builds it): %w", err)
			}
			classes := hostileClasses(quietWasm, badWasm)
			if len(only) > 0 {
				var kept []hostileClass
				for _, c := range classes {
					for _, o := range only {
						if c.Name == o || c.Kind == o {
							kept = append(kept, c)
							break
						}
					}
				}
				if len(kept) == 0 {
					return fmt.Errorf("bench hostile: --only %s matches no class or kind", strings.Join(only, ","))
				}
				classes = kept
			}
			rep, err := a.runHostileBench(cmd.Context(), cfg, quietWasm, badWasm, classes, duration, clients)
			if err != nil {
				return err
			}
			if js {
				return writeJSON(a.out, rep)
			}
			printHostile(a.out, rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&duration, "duration", 2*time.Second, "time the quiet tenant is measured, alone and under each attack")
	f.IntVar(&clients, "clients", 4, "hostile clients repeating each plugin and HTTP attack (compile attacks: 1)")
	f.StringVar(&quietPath, "quiet-plugin", "", "the quiet tenant's plugin (default: support.wasm of host.plugins_dir)")
	f.StringVar(&badPath, "hostile-plugin", "bin/hostile.wasm", "the hostile test plugin (make hostile builds it)")
	f.StringSliceVar(&only, "only", nil, "run only these classes or kinds (compile, plugin, http)")
	f.BoolVar(&js, "json", false, "print JSON")
	return cmd
}

// hostileKeys are the API keys of the bench's tenants and admin.
type hostileKeys struct{ quiet, hostile, admin string }

// runHostileBench starts the server and runs every class.
func (a *app) runHostileBench(ctx context.Context, cfg config.Config, quietWasm, badWasm []byte, classes []hostileClass, d time.Duration, clients int) (hostileReport, error) {
	dir, err := os.MkdirTemp("", "mdsa-bench-hostile-")
	if err != nil {
		return hostileReport{}, fmt.Errorf("bench hostile: %w", err)
	}
	defer os.RemoveAll(dir)
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return hostileReport{}, fmt.Errorf("bench hostile: %w", err)
	}
	files := map[string][]byte{"support.wasm": quietWasm}
	modes := []string{"bigmanifest"}
	for _, m := range hostileModes {
		files[m.mode+".wasm"] = badWasm
		modes = append(modes, m.mode)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(plugins, name), b, 0o644); err != nil {
			return hostileReport{}, fmt.Errorf("bench hostile: %w", err)
		}
	}
	model := filepath.Join(dir, "synthetic.gguf")
	if _, err := gguf.WriteSynth(model, gguf.SynthOptions{}); err != nil {
		return hostileReport{}, fmt.Errorf("bench hostile: writing the synthetic model: %w", err)
	}
	var keys hostileKeys
	for _, k := range []*string{&keys.quiet, &keys.hostile, &keys.admin} {
		if *k, err = benchKey(); err != nil {
			return hostileReport{}, err
		}
	}
	hash := func(k string) []string {
		return []string{tenant.HashKey(k)}
	}
	cfg.Host.PluginsDir = plugins
	cfg.Host.CacheDir = filepath.Join(dir, "cache")
	cfg.Engine.Threads = 1
	cfg.Engine.MaxTokens = 16
	cfg.Server.AdminKeys = hash(keys.admin)
	cfg.Server.AdminKeyEnv = ""
	cfg.Plugins.Config = map[string]map[string]string{}
	for _, m := range modes {
		cfg.Plugins.Config[m] = map[string]string{"mode": m}
	}
	cfg.Tenants = []config.Tenant{
		{Name: "quiet", APIKeys: hash(keys.quiet), Plugins: []string{"support"}},
		// The hostile tenant has its own instances of support too (for the
		// HTTP classes), as tenants do.
		{Name: "hostile", APIKeys: hash(keys.hostile), Plugins: append(modes, "support")},
	}
	// Every attack logs an error; printing them would measure the
	// terminal. --log-level shows them.
	log := slog.New(slog.DiscardHandler)
	if a.logLevel != "" {
		log = a.logger(cfg)
	}
	h, srv, err := a.openServer(ctx, cfg, log, nil, host.WithModelFile(model))
	if err != nil {
		return hostileReport{}, err
	}
	defer h.Close()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return hostileReport{}, fmt.Errorf("bench hostile: listening on 127.0.0.1: %w", err)
	}
	sctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(sctx, ln) }()
	defer func() {
		stop()
		<-errc
	}()
	b := &hostileBench{url: "http://" + ln.Addr().String(), keys: keys,
		client: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * clients}}}
	defer b.client.CloseIdleConnections()
	// Warm up: the quiet path compiles nothing more and the model is loaded.
	b.quiet(ctx, 200*time.Millisecond)
	rep := hostileReport{Cores: runtime.NumCPU(), DurationSec: d.Seconds(), Clients: clients,
		Timeout: cfg.Plugins.Timeout.String(), MemoryMB: cfg.Plugins.MemoryMB, PoolSize: cfg.Plugins.PoolSize}
	for _, c := range classes {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Results = append(rep.Results, b.run(ctx, c, d, clients))
	}
	return rep, nil
}

// hostileBench sends the quiet and the hostile traffic.
type hostileBench struct {
	url    string
	keys   hostileKeys
	client *http.Client
}

// quietOutcome is the quiet tenant's traffic during one phase.
type quietOutcome struct {
	lat    []time.Duration
	route  []time.Duration // the router's own time, as /v1/route reports it
	errors int
}

// quiet runs the quiet tenant's client for d: /v1/route and /v1/query (2
// tokens) in turn, back to back.
func (b *hostileBench) quiet(ctx context.Context, d time.Duration) quietOutcome {
	route, _ := json.Marshal(map[string]string{"query": benchServeQuery})
	query, _ := json.Marshal(map[string]any{"query": benchServeQuery, "generation": map[string]int{"max_tokens": 2}})
	var out quietOutcome
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		path, body := "/v1/route", route
		if i%2 == 1 {
			path, body = "/v1/query", query
		}
		t0 := time.Now()
		code, answer, err := b.do(ctx, http.MethodPost, path, b.keys.quiet, body)
		if err != nil || code != http.StatusOK {
			out.errors++
			continue
		}
		out.lat = append(out.lat, time.Since(t0))
		var routed struct {
			LatencyUS float64 `json:"latency_us"`
		}
		if path == "/v1/route" && json.Unmarshal(answer, &routed) == nil {
			out.route = append(out.route, time.Duration(routed.LatencyUS*float64(time.Microsecond)))
		}
	}
	return out
}

// do sends one request and reads the whole answer.
func (b *hostileBench) do(ctx context.Context, method, path, key string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out, err
}

// attack sends one request of class c and returns how it was answered.
func (b *hostileBench) attack(ctx context.Context, c hostileClass) (status string, detail string) {
	var (
		code int
		body []byte
		err  error
	)
	switch c.Kind {
	case "compile":
		code, body, err = b.do(ctx, http.MethodPut, "/admin/plugins/"+c.put, b.keys.admin, c.wasm)
	case "plugin":
		q, _ := json.Marshal(map[string]any{"query": "make " + c.mode + " misbehave", "domain": c.mode,
			"generation": map[string]int{"max_tokens": 2}})
		code, body, err = b.do(ctx, http.MethodPost, "/v1/query", b.keys.hostile, q)
	default:
		code, body, err = b.do(ctx, http.MethodPost, "/v1/chat/completions", b.keys.hostile, c.body)
	}
	if err != nil {
		return "transport error", err.Error()
	}
	status = strconv.Itoa(code)
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		status += " " + e.Error.Code
		detail = e.Error.Message
	}
	return status, detail
}

// run measures one class: the quiet tenant alone, then under attack.
func (b *hostileBench) run(ctx context.Context, c hostileClass, d time.Duration, clients int) hostileResult {
	res := hostileResult{Class: c.Name, Kind: c.Kind, What: c.What, Statuses: map[string]int{}}
	settle()
	res.RSSBaseMB = mb(processRSSBytes())
	cpu0 := processCPU()
	base := b.quiet(ctx, d)
	cpuQuiet := processCPU() - cpu0
	tokens0 := b.tokens(ctx, "hostile")

	var peak atomic.Uint64
	peak.Store(processRSSBytes())
	sampling, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sampling.Done():
				return
			case <-t.C:
				if r := processRSSBytes(); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()

	cpu1 := processCPU()
	n := clients
	if c.Kind == "compile" {
		n = 1
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
	)
	end := time.Now().Add(d)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// At least one attack, even when it outlasts the phase.
			for first := true; first || time.Now().Before(end); first = false {
				if ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				status, detail := b.attack(ctx, c)
				took := time.Since(t0)
				mu.Lock()
				lats = append(lats, took)
				res.Statuses[status]++
				if res.Error == "" && detail != "" {
					res.Error = detail
				}
				mu.Unlock()
			}
		}()
	}
	noisy := b.quiet(ctx, d)
	wg.Wait()
	cpuNoisy := processCPU() - cpu1
	stopSampling()
	<-sampled
	res.RSSPeakMB = mb(peak.Load())
	settle()
	res.RSSAfterMB = mb(processRSSBytes())

	res.Requests = len(lats)
	if res.Requests > 0 {
		res.FailP50MS = ms(stats.Percentile(lats, 0.5))
		res.FailMaxMS = ms(stats.Percentile(lats, 1))
		quietShare := 0.0
		if len(base.lat)+base.errors > 0 {
			quietShare = cpuQuiet.Seconds() / float64(len(base.lat)+base.errors) * float64(len(noisy.lat)+noisy.errors)
		}
		res.CPUPerRequest = max(0, cpuNoisy.Seconds()-quietShare) / float64(res.Requests)
		res.TokensPerRequest = (b.tokens(ctx, "hostile") - tokens0) / float64(res.Requests)
	}
	if len(base.lat) > 0 {
		res.QuietP50MS, res.QuietP99MS = ms(stats.Percentile(base.lat, 0.5)), ms(stats.Percentile(base.lat, 0.99))
	}
	if len(noisy.lat) > 0 {
		res.QuietNoisyP50MS, res.QuietNoisyP99MS = ms(stats.Percentile(noisy.lat, 0.5)), ms(stats.Percentile(noisy.lat, 0.99))
	}
	if len(base.route) > 0 && len(noisy.route) > 0 {
		res.QuietRouteP50US = us(stats.Percentile(base.route, 0.5))
		res.QuietNoisyRouteP50US = us(stats.Percentile(noisy.route, 0.5))
	}
	res.QuietErrors = base.errors + noisy.errors
	return res
}

// tokens reads the tokens charged to tenant from /metrics.
func (b *hostileBench) tokens(ctx context.Context, tenant string) float64 {
	code, body, err := b.do(ctx, http.MethodGet, "/metrics", "", nil)
	if err != nil || code != http.StatusOK {
		return 0
	}
	var total float64
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "mdsa_tokens_total{") || !strings.Contains(line, `tenant="`+tenant+`"`) ||
			strings.Contains(line, `kind="prompt_cached"`) {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				total += v
			}
		}
	}
	return total
}

// settle lets the garbage collector give freed memory back, so that RSS
// readings before and after a class compare.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(100 * time.Millisecond)
}

// processCPU is the CPU time (user and system) this process and its
// finished children (plugin compiles) have used.
func processCPU() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

// processRSSBytes is this process's resident memory (0 where /proc is
// missing).
func processRSSBytes() uint64 {
	n, _ := procfs.RSS(os.Getpid())
	return n
}

func mb(b uint64) float64        { return float64(b) / (1 << 20) }
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// printHostile writes the report as a table.
func printHostile(w io.Writer, rep hostileReport) {
	fmt.Fprintf(w, "mdsa bench hostile: %d cores, %v per phase, %d hostile clients; plugins.timeout %s, memory_mb %d\n\n",
		rep.Cores, time.Duration(rep.DurationSec*float64(time.Second)), rep.Clients, rep.Timeout, rep.MemoryMB)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "class\trequests\tanswered\tfail p50/max ms\tCPU s/req\ttokens/req\tRSS base/peak/after MB\tquiet p50 ms\tquiet p99 ms\tp99 ratio\troute p50 us")
	for _, r := range rep.Results {
		var answered []string
		for _, s := range sortedKeys(r.Statuses) {
			answered = append(answered, fmt.Sprintf("%dx %s", r.Statuses[s], s))
		}
		ratio := 0.0
		if r.QuietP99MS > 0 {
			ratio = r.QuietNoisyP99MS / r.QuietP99MS
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f/%.1f\t%.3f\t%.0f\t%.0f/%.0f/%.0f\t%.2f -> %.2f\t%.2f -> %.2f\t%.2f\t%.0f -> %.0f\n",
			r.Class, r.Requests, strings.Join(answered, ", "), r.FailP50MS, r.FailMaxMS, r.CPUPerRequest, r.TokensPerRequest,
			r.RSSBaseMB, r.RSSPeakMB, r.RSSAfterMB, r.QuietP50MS, r.QuietNoisyP50MS, r.QuietP99MS, r.QuietNoisyP99MS, ratio,
			r.QuietRouteP50US, r.QuietNoisyRouteP50US)
	}
	tw.Flush()
}
