// The suite compiles plugins in a child process that is this test binary
// (5-10x slower under the race detector) and measures RSS; make test runs
// it without the race detector.

//go:build !race

package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

// TestHostileSuite runs every class of mdsa bench hostile briefly and
// checks containment by behaviour: each attack is refused the way it must
// be, the quiet tenant never fails, tokens a plugin spent are charged, and
// the host's memory stays bounded. Latency ratios are the bench's to
// report, not this test's to assert.
func TestHostileSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every attack class")
	}
	t.Setenv("MDSA_LLAMA_LIB", testutil.LlamaLibDir(t))
	bad := filepath.Join(t.TempDir(), "hostile.wasm")
	if err := testutil.BuildPlugin("host/plugin/testdata/bad", bad); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := run(t, "--config", fix.shippedLimits, "bench", "hostile", "--json", "--duration", "150ms", "--clients", "2",
		"--quiet-plugin", filepath.Join(fix.dir, "plugins", "support.wasm"), "--hostile-plugin", bad)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep hostileReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	byClass := map[string]hostileResult{}
	for _, r := range rep.Results {
		byClass[r.Class] = r
		t.Logf("%-20s %3d requests %v fail p50 %.0f ms, %.3f CPU-s/req, %.0f tokens/req, RSS %.0f/%.0f/%.0f MB",
			r.Class, r.Requests, r.Statuses, r.FailP50MS, r.CPUPerRequest, r.TokensPerRequest, r.RSSBaseMB, r.RSSPeakMB, r.RSSAfterMB)
		if r.Requests == 0 {
			t.Errorf("%s: no attack was answered", r.Class)
		}
		if r.QuietErrors > 0 {
			t.Errorf("%s: the quiet tenant had %d failed requests", r.Class, r.QuietErrors)
		}
		// Generous: the bench's goal is 300 MB of growth at the peak and
		// 50 MB after; the Go heap under load moves by tens of MB.
		if r.RSSPeakMB-r.RSSBaseMB > 600 || r.RSSAfterMB-r.RSSBaseMB > 200 {
			t.Errorf("%s: RSS %.0f MB before, %.0f at the peak, %.0f after", r.Class, r.RSSBaseMB, r.RSSPeakMB, r.RSSAfterMB)
		}
	}
	only := func(class string, ok func(status string) bool) {
		r, found := byClass[class]
		if !found {
			t.Errorf("class %s missing from the report", class)
			return
		}
		for s := range r.Statuses {
			if !ok(s) {
				t.Errorf("%s: answered %q (all: %v; first error %q)", class, s, r.Statuses, r.Error)
			}
		}
	}
	is := func(want ...string) func(string) bool {
		return func(s string) bool {
			for _, w := range want {
				if s == w {
					return true
				}
			}
			return false
		}
	}
	for _, r := range rep.Results {
		switch {
		case strings.HasPrefix(r.Class, "compile-"), r.Class == "name-hijack":
			only(r.Class, is("422 plugin_refused"))
		case r.Class == "router-bigmanifest":
			only(r.Class, is("200"))
		case r.Class == "plugin-embedflood", r.Class == "plugin-bigprompt", r.Class == "plugin-tokens":
			// Refused host work or capped generations: the plugin may
			// still answer.
			only(r.Class, is("200", "502 plugin_error", "503 plugin_backed_off"))
		case strings.HasPrefix(r.Class, "plugin-"):
			only(r.Class, is("502 plugin_error", "503 plugin_backed_off"))
		}
	}
	only("http-longprompt", is("400 context_length_exceeded"))
	only("http-badjson", is("400 invalid_json"))
	only("http-nul", func(s string) bool { return !strings.HasPrefix(s, "5") })
	// The request allows 2 tokens per generation: 8 generations charge
	// their prompts and at most 16 completion tokens, and are charged.
	if r := byClass["plugin-tokens"]; r.TokensPerRequest <= 0 || r.TokensPerRequest > 200 {
		t.Errorf("plugin-tokens charged %.1f tokens per request", r.TokensPerRequest)
	}
}
