package host

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// TestPluginNeedingConfigToDescribe loads a plugin that cannot describe
// itself without config (the test plugin "bad" picks its behaviour, and
// its name, from config "mode"): without [plugins.config] it fails to load,
// with it it loads at start and through Reload, for the untenanted set and
// for a tenant.
func TestPluginNeedingConfigToDescribe(t *testing.T) {
	ctx := context.Background()
	wasm := filepath.Join(t.TempDir(), "bad.wasm")
	if err := testutil.BuildPlugin("host/plugin/testdata/bad", wasm); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Link(filepath.Join(fixture.pluginsDir, "support.wasm"), filepath.Join(dir, "support.wasm")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(wasm, filepath.Join(dir, "minimal.wasm")); err != nil {
		t.Fatal(err)
	}
	open := func(defaults map[string]map[string]string) *Host {
		cfg := testConfig(t, dir)
		cfg.Plugins.Config = defaults
		cfg.Tenants = []config.Tenant{{Name: "acme", APIKeys: []string{"sha256:" + strings.Repeat("0", 64)},
			Plugins: []string{"support", "minimal"}, PluginConfig: map[string]map[string]string{"minimal": {"extra": "1"}}}}
		// The test plugin is too bare for the conformance checks of a swap.
		pass := func(context.Context, *plugin.Plugin, []byte) error { return nil }
		h, err := New(ctx, cfg, WithLogger(quietLogger()), WithEngine(&fakeEngine{}), WithPluginChecker(pass))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	names := func(h *Host, tenant string) []string {
		ps, err := tenantPlugins(h, tenant)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}

	h := open(nil)
	if err := h.LoadErrors(); err == nil || !strings.Contains(err.Error(), "minimal.wasm") {
		t.Fatalf("without config the plugin must fail to load, naming its file: %v", err)
	}
	if got := names(h, "acme"); !slices.Equal(got, []string{"support"}) {
		t.Fatalf("acme has %v", got)
	}

	h = open(map[string]map[string]string{"minimal": {"mode": "minimal"}})
	if err := h.LoadErrors(); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"", "acme"} {
		if got := names(h, tenant); !slices.Equal(got, []string{"minimal", "support"}) {
			t.Fatalf("tenant %q has %v", tenant, got)
		}
	}

	// Through Reload: the new file is described with its default config.
	if err := os.Remove(filepath.Join(dir, "minimal.wasm")); err != nil {
		t.Fatal(err)
	}
	if rep, err := h.Reload(ctx); err != nil || len(rep.Changes) != 1 || rep.Changes[0].Action != "removed" {
		t.Fatalf("removal: %+v %v", rep, err)
	}
	if err := os.Link(wasm, filepath.Join(dir, "minimal.wasm")); err != nil {
		t.Fatal(err)
	}
	rep, err := h.Reload(ctx)
	if err != nil || len(rep.Changes) != 1 || rep.Changes[0].Name != "minimal" || rep.Changes[0].Action != "added" {
		t.Fatalf("reload: %+v %v", rep, err)
	}
	if got := names(h, "acme"); !slices.Equal(got, []string{"minimal", "support"}) {
		t.Fatalf("after reload acme has %v", got)
	}
}

func TestPluginConfigLayers(t *testing.T) {
	h := &Host{cfg: config.Config{Plugins: config.Plugins{Config: map[string]map[string]string{
		"faq":    {"source": "builtin", "lang": "en"},
		"legacy": {"mode": "old"},
	}}}}
	acme := &config.Tenant{PluginConfig: map[string]map[string]string{"faq": {"lang": "de", "key": "k"}}}
	for _, c := range []struct {
		t          *config.Tenant
		name, path string
		want       map[string]string
	}{
		{nil, "", "/p/faq.wasm", map[string]string{"source": "builtin", "lang": "en"}},               // by file, before describe
		{nil, "", "/p/faq/faq.wasm", map[string]string{"source": "builtin", "lang": "en"}},           // dir/<name>/<name>.wasm
		{acme, "faq", "/p/x.wasm", map[string]string{"source": "builtin", "lang": "de", "key": "k"}}, // tenant over default
		{acme, "other", "/p/legacy.wasm", map[string]string{"mode": "old"}},                          // by file when the name has none
		{nil, "", "/p/none.wasm", nil},
	} {
		if got := h.pluginConfig(c.t, c.name, c.path); !maps.Equal(got, c.want) {
			t.Errorf("pluginConfig(%v, %q, %q) = %v, want %v", c.t != nil, c.name, c.path, got, c.want)
		}
	}
	// The defaults are not modified by a tenant's layer.
	if h.cfg.Plugins.Config["faq"]["lang"] != "en" {
		t.Fatal("a tenant's config leaked into the defaults")
	}
}
