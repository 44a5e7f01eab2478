package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
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
	"github.com/mdsa-go/mdsa/internal/wire"
)

const adminKey = "admin-demo-key"

// variant is wasm with a custom section: a new version of the same module.
func variant(wasm []byte, tag string) []byte {
	body := binary.AppendUvarint(nil, 4)
	body = append(body, "test"...)
	body = append(body, tag...)
	out := append(slices.Clone(wasm), 0)
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}

// adminServer serves a host over a private copy of the shipped plugins with
// the admin API on.
func adminServer(t *testing.T) (url, dir string) {
	t.Helper()
	_, url, dir = adminHost(t)
	return url, dir
}

// adminHost is adminServer with its host.
func adminHost(t *testing.T) (h *host.Host, url, dir string) {
	t.Helper()
	dir = t.TempDir()
	for _, name := range shipped {
		b, err := os.ReadFile(filepath.Join(fixture.pluginsDir, name+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name+".wasm"), b, 0o644)
	}
	cfg := baseConfig(t, dir)
	cfg.Server.AdminKeys = keyHash(adminKey)
	h, err := host.New(context.Background(), cfg, host.WithLogger(quietLogger()), host.WithModelFile(fixture.modelPath))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, startServer(t, newServer(t, h, cfg)).URL, dir
}

func TestAdminAPIOffAndKeys(t *testing.T) {
	ts := startServer(t, newServer(t, openHost(t), openConfig(t)))
	if r := do(t, http.MethodGet, ts.URL+"/admin/plugins", adminKey, nil); r.code != http.StatusForbidden ||
		r.errorDoc(t).Error.Code != "admin_disabled" {
		t.Fatalf("admin API without keys: %d %s", r.code, r.body)
	}
	url, _ := adminServer(t)
	for _, key := range []string{"", "wrong", acmeKey} {
		if r := do(t, http.MethodGet, url+"/admin/plugins", key, nil); r.code != http.StatusUnauthorized {
			t.Fatalf("admin key %q: %d %s", key, r.code, r.body)
		}
	}
	r := do(t, http.MethodGet, url+"/admin/plugins", adminKey, nil)
	var list struct{ Plugins []host.PluginInfo }
	if r.code != http.StatusOK || json.Unmarshal(r.body, &list) != nil || len(list.Plugins) != 4 || list.Plugins[0].Version == "" {
		t.Fatalf("list: %d %s", r.code, r.body)
	}
}

func TestAdminSwapUnderTraffic(t *testing.T) {
	url, dir := adminServer(t)
	orig, _ := os.ReadFile(filepath.Join(dir, "support.wasm"))

	var ok, failed atomic.Int64
	var firstFail atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			body := map[string]any{"query": "I was charged twice for my order, can I get a refund?"}
			path := "/v1/route"
			if g%2 == 0 {
				path = "/v1/query"
				body["domain"] = "support"
				body["generation"] = map[string]int{"max_tokens": 2}
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := do(t, http.MethodPost, url+path, "", body)
				if r.code != http.StatusOK || !strings.Contains(string(r.body), `"support"`) {
					failed.Add(1)
					firstFail.CompareAndSwap(nil, string(r.body))
					continue
				}
				ok.Add(1)
			}
		})
	}
	var last string
	for i := range 10 {
		r := do(t, http.MethodPut, url+"/admin/plugins/support", adminKey, variant(orig, string(rune('a'+i))))
		var ch wire.Change
		if r.code != http.StatusOK || json.Unmarshal(r.body, &ch) != nil || ch.Action != "swapped" || ch.SHA256 == last {
			t.Fatalf("swap %d: %d %s", i, r.code, r.body)
		}
		last = ch.SHA256
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests during 10 swaps through the admin API, %d failed", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed during swaps, first: %v", failed.Load(), firstFail.Load())
	}
	r := do(t, http.MethodGet, url+"/admin/plugins/support", adminKey, nil)
	var info host.PluginInfo
	if r.code != http.StatusOK || json.Unmarshal(r.body, &info) != nil || info.SHA256 != last {
		t.Fatalf("support after swaps: %d %s", r.code, r.body)
	}
}

func TestAdminRefusesRemovesAndReloads(t *testing.T) {
	url, dir := adminServer(t)
	t0 := time.Now()
	r := do(t, http.MethodPut, url+"/admin/plugins/support", adminKey, []byte("not wasm"))
	if r.code != http.StatusUnprocessableEntity || r.errorDoc(t).Error.Code != "plugin_refused" {
		t.Fatalf("garbage: %d %s", r.code, r.body)
	}
	// A refused upload is held like a 429, so an upload loop cannot make
	// the host check modules as fast as it can send them.
	if held, delay := time.Since(t0), config.Default().Server.RefusalDelay.Duration; held < delay {
		t.Errorf("a refused upload was answered in %v, before server.refusal_delay (%v)", held, delay)
	}
	if r := do(t, http.MethodPost, url+"/v1/route", "", map[string]string{"query": "where is my refund for order 1234"}); r.code != http.StatusOK ||
		!strings.Contains(string(r.body), `"domain":"support"`) {
		t.Fatalf("support after a refused version: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodPut, url+"/admin/plugins/bad name", adminKey, []byte("x")); r.code == http.StatusOK {
		t.Fatalf("bad name accepted: %s", r.body)
	}
	if r := do(t, http.MethodDelete, url+"/admin/plugins/technical", adminKey, nil); r.code != http.StatusOK {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodGet, url+"/admin/plugins/technical", adminKey, nil); r.code != http.StatusNotFound {
		t.Fatalf("get after delete: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodGet, url+"/v1/models", "", nil); strings.Contains(string(r.body), "mdsa/technical") {
		t.Fatalf("/v1/models still lists technical: %s", r.body)
	}
	if r := do(t, http.MethodDelete, url+"/admin/plugins/technical", adminKey, nil); r.code != http.StatusNotFound {
		t.Fatalf("second delete: %d %s", r.code, r.body)
	}
	b, _ := os.ReadFile(filepath.Join(fixture.pluginsDir, "technical.wasm"))
	os.WriteFile(filepath.Join(dir, "technical.wasm"), b, 0o644)
	r = do(t, http.MethodPost, url+"/admin/plugins/reload", adminKey, nil)
	var rep wire.ReloadReport
	if r.code != http.StatusOK || json.Unmarshal(r.body, &rep) != nil || len(rep.Changes) != 1 || rep.Changes[0].Action != "added" {
		t.Fatalf("reload: %d %s", r.code, r.body)
	}
}
