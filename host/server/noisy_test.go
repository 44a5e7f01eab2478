// The race detector slows Go code, and with it wazero's exits to Go,
// 5-10x and unevenly, which says nothing about latency; make test runs this
// measurement without it.

//go:build !race

package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
)

const (
	quietKey = "quiet-demo-key"
	noisyKey = "noisy-demo-key"
	// noisyTimeout is plugins.timeout on the noisy host: how long a
	// spinning plugin call runs before the sandbox stops it.
	noisyTimeout = 200 * time.Millisecond
	// noiseSamples is how many requests of each kind the quiet tenant
	// times, with and without noise: p99 of 300 is the 3rd-worst value.
	noiseSamples = 300
	// noisePhases is how many times quiet and noisy phases alternate.
	noisePhases = 3
	// noiseJitter is added to the 2x bound. A test machine's scheduler
	// (2 shared cores in CI, other test binaries running beside this one)
	// moves a sub-millisecond p99 by that much between two quiet runs; the
	// ratios measured are logged.
	noiseJitter = 2 * time.Millisecond
)

// noisyConfig has tenant "quiet" (the shipped plugins, no limits) and
// tenant "noisy", whose only plugin spins forever in prompt and whose
// limits allow 4 requests per second, 2 at a time.
func noisyConfig(t testing.TB, dir string) config.Config {
	cfg := baseConfig(t, dir)
	cfg.Plugins.Timeout = config.Duration{Duration: noisyTimeout}
	cfg.Tenants = []config.Tenant{
		{Name: "quiet", APIKeys: keyHash(quietKey), Plugins: shipped},
		{Name: "noisy", APIKeys: keyHash(noisyKey), Plugins: []string{"loop"},
			Limits: config.TenantLimits{RequestsPerSecond: 4, Burst: 4, Concurrent: 2}},
	}
	return cfg
}

// p99 is the 99th percentile (nearest rank) of ds.
func p99(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*99+99)/100 - 1
	return s[min(max(i, 0), len(s)-1)]
}

// TestNoisyNeighbour checks that a tenant whose plugin spins forever, and
// which floods the server beyond its rate limit, does not starve another
// tenant: the quiet tenant's p99 latency of /v1/route and /v1/query under
// noise stays within twice its p99 without noise, plus noiseJitter.
//
// Quiet and noisy phases alternate noisePhases times and the samples of
// each kind are pooled, so that the machine's own load drifting during
// the test weighs on both sides alike. What keeps the noise off the quiet
// tenant: the spinning calls are throttled to plugins.throttle_share of a
// CPU past plugins.throttle_after (the plugin is instrumented with yield
// points), and its refused requests are held for server.refusal_delay,
// which slows its 8 clients from some 17,000 requests per second to a few
// dozen.
func TestNoisyNeighbour(t *testing.T) {
	if testing.Short() {
		t.Skip("measures latency for several seconds")
	}
	dir := filepath.Join(filepath.Dir(fixture.pluginsDir), "noisy-plugins")
	h := sharedHost(t, "noisy", func() config.Config {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		files := map[string]string{"loop.wasm": fixture.loopWasm}
		for _, n := range shipped {
			files[n+".wasm"] = filepath.Join(fixture.pluginsDir, n+".wasm")
		}
		for name, src := range files {
			if err := os.Link(src, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		return noisyConfig(t, dir)
	}, host.WithModelFile(fixture.modelPath))
	ts := startServer(t, newServer(t, h, noisyConfig(t, dir)))
	client := &http.Client{Timeout: 30 * time.Second}

	post := func(key, path string, body []byte) (int, []byte, time.Duration, error) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, time.Since(t0), err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, b, time.Since(t0), err
	}
	routeBody, _ := json.Marshal(map[string]string{"query": qSupport})
	queryBody, _ := json.Marshal(map[string]any{"query": qSupport, "generation": map[string]int{"max_tokens": 4}})
	var quietRoute, quietQuery, noisyRoute, noisyQuery []time.Duration
	// measure times n of the quiet tenant's requests of each kind,
	// alternating route and query.
	measure := func(n int, route, query *[]time.Duration) {
		for range n {
			for _, c := range []struct {
				path string
				body []byte
				into *[]time.Duration
			}{{"/v1/route", routeBody, route}, {"/v1/query", queryBody, query}} {
				code, b, d, err := post(quietKey, c.path, c.body)
				if err != nil || code != http.StatusOK {
					t.Fatalf("quiet %s: %d %v %.200s", c.path, code, err, b)
				}
				*c.into = append(*c.into, d)
			}
		}
	}

	// A streamed request to the spinning plugin fails before any text:
	// a plain 502 error, not an event stream.
	streamed := chatBody("mdsa/loop", "spin")
	streamed["stream"] = true
	sb, _ := json.Marshal(streamed)
	code, b, d, err := post(noisyKey, "/v1/chat/completions", sb)
	if err != nil || code != http.StatusBadGateway || !strings.Contains(string(b), `"code":"plugin_error"`) ||
		!strings.Contains(string(b), "timed out") || d < noisyTimeout {
		t.Fatalf("streamed request to the spinning plugin: %d after %v: %v %s", code, d, err, b)
	}
	var ignored []time.Duration
	measure(10, &ignored, &ignored) // warm up: model load, instances, connections

	// Noise: 8 goroutines forcing the spinning plugin as fast as they get
	// answers. Each answer must be an error: 502 (the plugin timed out),
	// 429 (over the noisy tenant's limits) or 503 (the plugin failed too
	// often in a row and is backed off).
	noiseBody, _ := json.Marshal(chatBody("mdsa/loop", "spin"))
	var (
		timedOut, limited, unexpectd atomic.Int64
		backedOff                    atomic.Int64
		slowest                      atomic.Int64
		firstBad                     atomic.Value
		noiseTime                    time.Duration
	)
	// noisyPhase runs the noise and measures the quiet tenant under it; it
	// returns how long the noise ran.
	noisyPhase := func() time.Duration {
		var (
			stop atomic.Bool
			wg   sync.WaitGroup
		)
		start := time.Now()
		for range 8 {
			wg.Go(func() {
				for !stop.Load() {
					code, b, d, err := post(noisyKey, "/v1/chat/completions", noiseBody)
					if int64(d) > slowest.Load() {
						slowest.Store(int64(d))
					}
					switch {
					case err == nil && code == http.StatusBadGateway && strings.Contains(string(b), "timed out"):
						timedOut.Add(1)
					case err == nil && code == http.StatusTooManyRequests:
						limited.Add(1)
					case err == nil && code == http.StatusServiceUnavailable && strings.Contains(string(b), "plugin_backed_off"):
						backedOff.Add(1)
					default:
						unexpectd.Add(1)
						firstBad.CompareAndSwap(nil, string(b)+" "+errString(err))
					}
				}
			})
		}
		time.Sleep(noisyTimeout) // let the noise start
		measure(noiseSamples/noisePhases, &noisyRoute, &noisyQuery)
		stop.Store(true)
		wg.Wait()
		return time.Since(start)
	}
	// within reports whether the quiet tenant's p99s under noise are
	// within the bound.
	within := func() bool {
		return p99(noisyRoute) <= 2*p99(quietRoute)+noiseJitter && p99(noisyQuery) <= 2*p99(quietQuery)+noiseJitter
	}
	// A burst of unrelated work on the machine (another build, say) can
	// land in one noisy phase and not in its quiet one; a regression fails
	// every time. So a run over the bound is measured once more, afresh.
	for attempt := 1; attempt <= 2; attempt++ {
		if attempt == 2 {
			if within() {
				break
			}
			t.Logf("over the bound (route p99 %v vs %v, query p99 %v vs %v): measuring once more",
				p99(noisyRoute), p99(quietRoute), p99(noisyQuery), p99(quietQuery))
			quietRoute, quietQuery, noisyRoute, noisyQuery = nil, nil, nil, nil
		}
		for range noisePhases {
			measure(noiseSamples/noisePhases, &quietRoute, &quietQuery)
			noiseTime += noisyPhase()
		}
	}

	stats := metricsSource{h}.PluginStats
	t.Logf("quiet tenant without noise: route p99 %v (max %v), query p99 %v (max %v)",
		p99(quietRoute), slices.Max(quietRoute), p99(quietQuery), slices.Max(quietQuery))
	t.Logf("quiet tenant with noise:    route p99 %v (max %v), query p99 %v (max %v)",
		p99(noisyRoute), slices.Max(noisyRoute), p99(noisyQuery), slices.Max(noisyQuery))
	t.Logf("ratios: route %.2fx, query %.2fx", float64(p99(noisyRoute))/float64(p99(quietRoute)),
		float64(p99(noisyQuery))/float64(p99(quietQuery)))
	t.Logf("noisy tenant over %v of noise: %d plugin timeouts (502), %d refused (429), %d backed off (503), slowest answer %v",
		noiseTime.Round(time.Millisecond), timedOut.Load(), limited.Load(), backedOff.Load(), time.Duration(slowest.Load()))
	if ps, err := stats("noisy"); err == nil {
		t.Logf("spinning plugin: %d calls throttled, made to wait %v in all", ps["loop"].Throttled, ps["loop"].ThrottledTime.Round(time.Millisecond))
	}
	if n := unexpectd.Load(); n > 0 {
		t.Fatalf("%d noisy requests got something other than 502, 429 or 503, e.g. %v", n, firstBad.Load())
	}
	if timedOut.Load() == 0 || limited.Load() == 0 {
		t.Fatal("the noise did not both run into the plugin timeout and over the rate limit")
	}
	// Refusals are held (server.refusal_delay): 8 clients get a few dozen
	// per second, not thousands.
	if perSec := float64(limited.Load()) / noiseTime.Seconds(); perSec > 8/config.Default().Server.RefusalDelay.Seconds()*2 {
		t.Errorf("%.0f refusals per second: they are not held", perSec)
	}
	// A noisy request waits for at most its own call plus the one ahead of
	// it for the tenant's two instances: never a hang.
	if s := time.Duration(slowest.Load()); s > 10*noisyTimeout {
		t.Fatalf("a noisy request took %v", s)
	}
	for _, c := range []struct {
		name         string
		quiet, noisy []time.Duration
	}{{"route", quietRoute, noisyRoute}, {"query", quietQuery, noisyQuery}} {
		if q, n := p99(c.quiet), p99(c.noisy); n > 2*q+noiseJitter {
			t.Errorf("%s: p99 %v under noise, %v without: over 2x + %v", c.name, n, q, noiseJitter)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
