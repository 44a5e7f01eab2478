package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// The console in a real browser: Debian's chromium, headless, driven over
// the DevTools protocol (chromedp). Skipped when chromium is not installed,
// except under CI (.ci/run installs it). Screenshots of every page go to
// the test's artifact directory (go test -artifacts keeps them).

// chromiumPath finds the browser, or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (make setup-servers installs it)")
	}
	t.Skip("chromium is not installed (make setup-servers installs it)")
	return ""
}

// browser starts a headless chromium for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // root in CI containers
		chromedp.WindowSize(1440, 1000),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	// Generous: the machine may be busy (the CPU-heavy tests run beside).
	ctx, cancel3 := context.WithTimeout(bctx, 4*time.Minute)
	t.Cleanup(cancel3)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// shot saves a screenshot of the viewport as NAME.png in the test's
// artifact directory.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// waitJS polls a JavaScript expression until it is true.
func waitJS(expr string) step {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(time.Minute))
}

// step is an action whose value is not wanted.
type step = chromedp.Action[chromedp.Void]

// into runs a and stores its value in dst.
func into[T any](a chromedp.Action[T], dst *T) step {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, t)
		if dst != nil {
			*dst = v
		}
		return chromedp.Void{}, err
	}
}

// js evaluates expr and stores its value in dst.
func js[T any](expr string, dst *T) step { return into(chromedp.Evaluate[T](expr), dst) }

func run(t *testing.T, ctx context.Context, what string, steps ...step) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// adminLogin logs in with the admin key on the login page, waits for the
// first live frame, and reads the page's first contentful paint (ms) and
// the bytes it transferred for the page and its assets.
func adminLogin(paint, transfer *float64) step {
	return chromedp.Steps(
		chromedp.SendKeys("#key", adminKey),
		chromedp.Click("#login-form button"),
		chromedp.WaitVisible("#tabs"),
		waitJS(`window.__mdsa.frames > 0`),
		js(`(performance.getEntriesByName("first-contentful-paint")[0] || {startTime: -1}).startTime`, paint),
		js(`performance.getEntriesByType("navigation").concat(performance.getEntriesByType("resource"))
			.filter((e) => !e.name.includes("/api/")).reduce((n, e) => n + e.transferSize, 0)`, transfer),
	)
}

// xssQuery would run script if the page put queries in as HTML.
const xssQuery = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> my card was charged twice`

// xssTitle is a document title that would run script if inserted as markup.
const xssTitle = `Refunds <img src=x onerror="window.__xss=2">`

func TestConsoleInBrowser(t *testing.T) {
	chromiumPath(t) // skip before building anything
	dir := t.TempDir()
	for _, name := range shipped {
		b, err := os.ReadFile(filepath.Join(fixture.pluginsDir, name+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name+".wasm"), b, 0o644)
	}
	v2 := filepath.Join(t.TempDir(), "support.wasm")
	if err := testutil.BuildPluginVersion("plugins/support", v2, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	cfg := consoleConfig(t)
	cfg.Host.PluginsDir = dir
	cfg.Knowledge.Enabled = true
	cfg.Knowledge.Path = filepath.Join(t.TempDir(), "kb.db")
	h, err := host.New(context.Background(), cfg, host.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ts := startServer(t, newServer(t, h, cfg))
	ctx := browser(t)

	// Log in with a wrong key, then the admin key.
	run(t, ctx, "login page",
		chromedp.Navigate(ts.URL+"/console/"),
		chromedp.WaitVisible("#login-form"),
		chromedp.SendKeys("#key", "wrong key"),
		chromedp.Click("#login-form button"),
		waitJS(`document.getElementById("login-error").textContent.includes("wrong key")`),
	)
	shot(t, ctx, "login")
	var paint, transfer float64
	run(t, ctx, "admin login",
		adminLogin(&paint, &transfer),
	)
	t.Logf("first contentful paint %.0f ms, page transfer %.1f KB", paint, transfer/1024)
	if transfer > 300<<10 {
		t.Errorf("the console page transfers %.0f KB, over the 300 KB goal", transfer/1024)
	}

	// Live updates: requests sent now appear in the page.
	for _, q := range []struct{ key, query string }{{acmeKey, qSupport}, {acmeKey, xssQuery}, {globexKey, qMedical}} {
		if r := do(t, http.MethodPost, ts.URL+"/v1/query", q.key, map[string]any{"query": q.query, "generation": map[string]int{"max_tokens": 8}}); r.code != 200 {
			t.Fatalf("query: %d %s", r.code, r.body)
		}
	}
	run(t, ctx, "live updates",
		waitJS(`document.querySelectorAll("#req-list tbody tr").length >= 3`),
		waitJS(`Number(document.getElementById("k-rps").textContent) > 0 || document.querySelector("#table tbody tr") !== null`),
	)
	var charts bool
	run(t, ctx, "charts", js(`document.querySelectorAll(".uplot").length === 2`, &charts))
	if !charts {
		t.Error("the live page drew no charts (is uPlot embedded? make setup fetches it)")
	}
	shot(t, ctx, "live")

	// The XSS payload is shown as text and never runs.
	var shown string
	var xss, imgs int
	run(t, ctx, "requests page",
		chromedp.Click(`#tabs button[data-tab="requests"]`),
		chromedp.WaitVisible("#req-list"),
		js(`[...document.querySelectorAll("#req-list td.q")].map((td) => td.textContent).find((s) => s.includes("onerror")) || ""`, &shown),
		js(`window.__xss || 0`, &xss),
		js(`document.querySelectorAll("#req-list img, #req-list script").length`, &imgs),
	)
	if !strings.Contains(shown, `<img src=x onerror="window.__xss=1">`) || xss != 0 || imgs != 0 {
		t.Fatalf("XSS payload: shown %q, ran %d, elements %d", shown, xss, imgs)
	}

	// A request opened: its waterfall, routing evidence and answer.
	var terms int
	var answer string
	run(t, ctx, "request detail",
		js[any](`[...document.querySelectorAll("#req-list tbody tr")].find((tr) => tr.textContent.includes("charged twice for my order")).click()`, nil),
		chromedp.WaitVisible("#waterfall"),
		chromedp.WaitVisible("#explain"),
		js(`document.querySelectorAll("#explain tbody tr").length`, &terms),
		into(chromedp.Text("#detail-answer"), &answer),
	)
	if terms == 0 || answer == "" {
		t.Fatalf("detail: %d routing rows, answer %q", terms, answer)
	}
	shot(t, ctx, "request")
	// The XSS request's detail shows the query as text too.
	run(t, ctx, "XSS detail",
		js[any](`[...document.querySelectorAll("#req-list tbody tr")].find((tr) => tr.textContent.includes("onerror")).click()`, nil),
		waitJS(`document.getElementById("detail-query") && document.getElementById("detail-query").textContent.includes("<script>")`),
		js(`(window.__xss || 0) + document.querySelectorAll("#detail img, #detail script").length`, &xss),
	)
	if xss != 0 {
		t.Fatal("the XSS payload ran or became elements in the detail")
	}

	// A request answered from the knowledge base shows its citations (a
	// title as text, never markup), and one answered by calls of the
	// client's tools says so.
	if r := rawPost(t, ts.URL+"/v1/knowledge/support/documents?title="+url.QueryEscape(xssTitle), acmeKey, "text/plain",
		[]byte("Double charges for one order are refunded within 5 working days.")); r.code != http.StatusCreated {
		t.Fatalf("upload: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodPost, ts.URL+"/v1/query", acmeKey, map[string]any{"query": "I was charged twice for one order, when is it refunded?",
		"domain": "support", "generation": map[string]int{"max_tokens": 4}}); r.code != 200 || !strings.Contains(string(r.body), `"citations"`) {
		t.Fatalf("query with knowledge: %d %s", r.code, r.body)
	}
	tools := chatBody("mdsa/technical", "What's the weather for my delivery in Paris?")
	tools["max_tokens"], tools["seed"], tools["parallel_tool_calls"], tools["tool_choice"] = 200, 3, false, "required"
	tools["tools"] = []any{map[string]any{"type": "function", "function": map[string]any{"name": "get_weather",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string", "maxLength": 20}}, "required": []string{"city"}}}}}
	if r := do(t, http.MethodPost, ts.URL+"/v1/chat/completions", globexKey, tools); r.code != 200 || !strings.Contains(string(r.body), `"tool_calls"`) {
		t.Fatalf("chat with tools: %d %s", r.code, r.body)
	}
	var cited, called string
	run(t, ctx, "knowledge and tools in the detail",
		waitJS(`[...document.querySelectorAll("#req-list tbody tr")].some((tr) => tr.textContent.includes("when is it refunded")) &&
			[...document.querySelectorAll("#req-list tbody tr")].some((tr) => tr.textContent.includes("weather for my delivery"))`),
		js[any](`[...document.querySelectorAll("#req-list tbody tr")].find((tr) => tr.textContent.includes("when is it refunded")).click()`, nil),
		chromedp.WaitVisible("#detail-citations"),
		into(chromedp.Text("#detail-citations"), &cited),
		js[any](`[...document.querySelectorAll("#req-list tbody tr")].find((tr) => tr.textContent.includes("weather for my delivery")).click()`, nil),
		waitJS(`document.getElementById("detail").textContent.includes("calls of the client's tools: get_weather")`),
		into(chromedp.Text("#detail"), &called),
		js(`(window.__xss || 0) + document.querySelectorAll("#detail img, #detail script").length`, &xss),
	)
	if !strings.Contains(cited, xssTitle) || xss != 0 {
		t.Fatalf("citations %q, XSS %d", cited, xss)
	}
	shot(t, ctx, "request-tools")

	// Plugins: upload version 2 of support, see the version change; a
	// module that describes itself as another plugin is refused, with why.
	var version, result string
	run(t, ctx, "upload",
		chromedp.Click(`#tabs button[data-tab="plugins"]`),
		waitJS(`document.querySelector('#plugin-list tr[data-plugin="support"]') !== null`),
		chromedp.SendKeys("#up-name", "support"),
		chromedp.SetUploadFiles("#up-file", []string{v2}),
		chromedp.Click("#up-go"),
		waitJS(`document.getElementById("up-result").textContent.includes("2.0.0")`),
		waitJS(`document.querySelector('#plugin-list tr[data-plugin="support"] .version').textContent === "2.0.0"`),
		into(chromedp.Text(`#plugin-list tr[data-plugin="support"] .version`), &version),
	)
	if version != "2.0.0" {
		t.Fatalf("support's version after the upload: %q", version)
	}
	shot(t, ctx, "plugins")
	run(t, ctx, "refused upload",
		chromedp.SetValue("#up-name", "support"),
		chromedp.SetUploadFiles("#up-file", []string{filepath.Join(dir, "finance.wasm")}),
		chromedp.Click("#up-go"),
		waitJS(`document.getElementById("up-result").textContent.startsWith("Refused")`),
		into(chromedp.Text("#up-result"), &result),
	)
	if !strings.Contains(result, `names the plugin "finance"`) {
		t.Fatalf("refusal shown: %q", result)
	}
	shot(t, ctx, "plugin-refused")
	// Roll back to the version before the upload.
	run(t, ctx, "rollback",
		js[any](`document.querySelector('#plugin-list tr[data-plugin="support"] button.rollback').click()`, nil),
		waitJS(`document.querySelector('#plugin-list tr[data-plugin="support"] .version').textContent !== "2.0.0"`),
	)

	// Models, tenants, and the playground streaming through the stages.
	run(t, ctx, "models", chromedp.Click(`#tabs button[data-tab="models"]`), waitJS(`document.getElementById("hw").textContent.length > 0`))
	shot(t, ctx, "models")
	run(t, ctx, "tenants", chromedp.Click(`#tabs button[data-tab="tenants"]`), waitJS(`document.querySelectorAll("#tenant-list tbody tr").length === 5`))
	shot(t, ctx, "tenants")
	var stages []string
	run(t, ctx, "playground",
		chromedp.Click(`#tabs button[data-tab="playground"]`),
		chromedp.SetValue("#pg-tenant", "acme"),
		chromedp.SendKeys("#pg-query", qFinance),
		chromedp.Click("#pg-form button"),
		waitJS(`[...document.querySelectorAll("#pg-stages li")].some((li) => li.textContent.includes("done"))`),
		js(`[...document.querySelectorAll("#pg-stages li")].map((li) => li.textContent)`, &stages),
	)
	if len(stages) < 3 || !strings.Contains(stages[1], "routed to finance") {
		t.Fatalf("playground stages: %q", stages)
	}
	shot(t, ctx, "playground")

	// A tenant's login sees that tenant's traffic only.
	tctx, cancel := chromedp.NewContext(ctx) // a new tab shares cookies: log out first
	defer cancel()
	var rows []string
	run(t, tctx, "tenant view",
		chromedp.Navigate(ts.URL+"/console/"),
		chromedp.WaitVisible("#logout"),
		chromedp.Click("#logout"),
		chromedp.WaitVisible("#login-form"),
		chromedp.SendKeys("#key", globexKey),
		chromedp.Click("#login-form button"),
		chromedp.WaitVisible("#tabs"),
		waitJS(`document.querySelectorAll("#req-list tbody tr").length >= 1`),
		chromedp.Sleep(2*liveInterval), // more frames: nothing of acme's may come
		js(`[...document.querySelectorAll("#req-list tbody tr")].map((tr) => tr.children[1].textContent)`, &rows),
	)
	for _, tenant := range rows {
		if tenant != "globex" {
			t.Fatalf("globex's console lists a request of %q", tenant)
		}
	}
	if len(rows) == 0 {
		t.Fatal("globex's console lists none of its requests")
	}
}

// BenchmarkConsoleBrowser measures the console in headless Chromium: the
// first paint and bytes of the page, then whether its live view keeps up
// while the server answers 1,000 routing requests a second for 10 s (how
// late frames arrive, how long the page takes to draw one, how many of
// the requests it listed or counted). One iteration is the whole run:
//
//	go test -run '^$' -bench ConsoleBrowser -benchtime 1x ./host/server
func BenchmarkConsoleBrowser(b *testing.B) {
	cfg := consoleConfig(b)
	h := tenantHost(b)
	ts := startServer(b, newServer(b, h, cfg))
	ctx := benchBrowser(b)
	const rate, seconds = 1000, 10
	for b.Loop() {
		var paint, transfer float64
		if err := chromedp.Do(ctx,
			chromedp.Navigate(ts.URL+"/console/"),
			chromedp.WaitVisible("#login-form"),
			adminLogin(&paint, &transfer),
		); err != nil {
			b.Fatal(err)
		}
		sent, failed := paced(b, ts.URL, rate, seconds*time.Second)
		var st struct {
			Frames      float64 `json:"frames"`
			Listed      float64 `json:"listed"`
			Skipped     float64 `json:"skipped"`
			MaxLagMs    float64 `json:"maxLagMs"`
			MaxRenderMs float64 `json:"maxRenderMs"`
		}
		if err := chromedp.Do(ctx, chromedp.Sleep(time.Second), js(`window.__mdsa`, &st)); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(paint, "first-paint-ms")
		b.ReportMetric(transfer/1024, "page-KB")
		b.ReportMetric(float64(sent)/seconds, "offered-req/s")
		b.ReportMetric(float64(failed), "failed")
		b.ReportMetric(st.MaxLagMs, "max-frame-lag-ms")
		b.ReportMetric(st.MaxRenderMs, "max-render-ms")
		b.ReportMetric(st.Frames/(seconds+2), "frames/s")
		b.ReportMetric(100*(st.Listed+st.Skipped)/float64(sent), "accounted-%")
	}
}

// benchBrowser is browser for a benchmark.
func benchBrowser(b *testing.B) context.Context {
	b.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		b.Skip("chromium is not installed (make setup-servers installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1440, 1000), chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	b.Cleanup(cancel)
	bctx, cancel2 := chromedp.NewContext(actx)
	b.Cleanup(cancel2)
	if err := chromedp.Do(bctx); err != nil {
		b.Fatal(err)
	}
	return bctx
}

// paced sends rate routing requests a second (acme's) for d, from a pool
// of clients, and returns how many were sent and how many failed.
func paced(b *testing.B, base string, rate int, d time.Duration) (sent, failed int64) {
	body := []byte(`{"query":"` + qSupport + `"}`)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	work := make(chan struct{}, rate)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 32 {
		wg.Go(func() {
			for range work {
				req, _ := http.NewRequest(http.MethodPost, base+"/v1/route", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+acmeKey)
				resp, err := client.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					bad.Add(1)
				}
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	for now := range tick.C {
		if now.Sub(start) >= d {
			break
		}
		due := int64(now.Sub(start).Seconds() * float64(rate))
		for ; sent < due; sent++ {
			work <- struct{}{}
		}
	}
	tick.Stop()
	close(work)
	wg.Wait()
	return sent, bad.Load()
}
