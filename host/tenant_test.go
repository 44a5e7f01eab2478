package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/host/router"
)

func tenantHost(t *testing.T) *Host {
	t.Helper()
	return tenantHostIn(t, fixture.pluginsDir)
}

func tenantHostIn(t *testing.T, dir string) *Host {
	t.Helper()
	cfg := testConfig(t, dir)
	hash := "sha256:" + strings.Repeat("0", 64)
	cfg.Tenants = []config.Tenant{
		{Name: "acme", APIKeys: []string{hash}, Plugins: []string{"finance", "support"},
			PluginConfig: map[string]map[string]string{"finance": {"currency": "EUR"}}},
		{Name: "globex", APIKeys: []string{hash}, Plugins: []string{"medical", "technical", "nosuch"}},
		{Name: "empty", APIKeys: []string{hash}, Plugins: []string{"nosuch"}},
	}
	h, err := New(context.Background(), cfg, WithLogger(quietLogger()), WithEngine(&fakeEngine{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestTenantsSeeOnlyTheirDomains(t *testing.T) {
	ctx := context.Background()
	h := tenantHost(t)
	if got := h.Tenants(); !slices.Equal(got, []string{"acme", "empty", "globex"}) {
		t.Fatalf("tenants %v", got)
	}
	names := func(tenant string) []string {
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
	if got := names("acme"); !slices.Equal(got, []string{"finance", "support"}) {
		t.Fatalf("acme plugins %v", got)
	}
	if got := names("globex"); !slices.Equal(got, []string{"medical", "technical"}) {
		t.Fatalf("globex plugins %v", got)
	}
	if got := names(""); len(got) != 4 {
		t.Fatalf("all plugins %v", got)
	}
	// A medical query never routes to medical for acme, by routing...
	q := "I've had a fever and a sore throat for three days"
	if d, _ := routeTenant(ctx, h, "globex", q); d.Domain != "medical" {
		t.Fatalf("globex: %+v", d)
	}
	d, err := routeTenant(ctx, h, "acme", q)
	if err != nil || d.Domain == "medical" || slices.ContainsFunc(d.Alternatives, func(s router.Scored) bool { return s.Domain == "medical" }) {
		t.Fatalf("acme routed to medical: %+v %v", d, err)
	}
	// The plugins acme may not use are out of its scope: its router learnt
	// them as background, so it refuses rather than answer with finance.
	for _, q := range []string{q, "is it safe to take ibuprofen with coffee", "my python script throws a segmentation fault"} {
		if d, _ := routeTenant(ctx, h, "acme", q); !d.OutOfScope {
			t.Errorf("acme did not refuse %q: %+v", q, d)
		}
	}
	res, err := processTenant(ctx, h, "acme", Request{Query: q})
	if err != nil || res.Domain == "medical" {
		t.Fatalf("acme process: %+v %v", res, err)
	}
	// ...or by forcing it.
	if _, err := processTenant(ctx, h, "acme", Request{Domain: "medical", Query: q}); !errors.Is(err, ErrUnknownDomain) {
		t.Fatalf("acme forcing medical: %v", err)
	}
	if _, err := processTenant(ctx, h, "nobody", Request{Query: q}); !errors.Is(err, ErrUnknownTenant) {
		t.Fatalf("unknown tenant: %v", err)
	}
	// A tenant with no plugins refuses everything.
	if res, err := processTenant(ctx, h, "empty", Request{Query: q}); err != nil || res.Status != StatusOutOfScope {
		t.Fatalf("empty tenant: %+v %v", res, err)
	}
}

func TestTenantsHaveTheirOwnInstances(t *testing.T) {
	ctx := context.Background()
	h := tenantHost(t)
	acme0, _ := pluginStats(h, "acme")
	all0, _ := pluginStats(h, "")
	if _, err := processTenant(ctx, h, "acme", Request{Domain: "support", Query: "where is my order"}); err != nil {
		t.Fatal(err)
	}
	acme, err := pluginStats(h, "acme")
	if err != nil {
		t.Fatal(err)
	}
	all, _ := pluginStats(h, "")
	if acme["support"].Calls <= acme0["support"].Calls || all["support"].Calls != all0["support"].Calls {
		t.Fatalf("acme's call was counted on a shared instance: acme %+v, untenanted %+v", acme["support"], all["support"])
	}
	if _, err := pluginStats(h, "nobody"); !errors.Is(err, ErrUnknownTenant) {
		t.Fatalf("unknown tenant stats: %v", err)
	}
}

// A plugin hot-added to a multi-tenant host is usable by the tenants whose
// plugins list names it or has a matching pattern, and the change says
// which; when none may use it, the change says so and what to do.
func TestHotAddedPluginTenants(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	copyFile(t, filepath.Join(fixture.pluginsDir, "support.wasm"), filepath.Join(dir, "support.wasm"))
	cfg := testConfig(t, dir)
	hash := "sha256:" + strings.Repeat("0", 64)
	cfg.Tenants = []config.Tenant{
		{Name: "all", APIKeys: []string{hash}, Plugins: []string{"*"}},
		{Name: "fin", APIKeys: []string{hash}, Plugins: []string{"fin*", "support"}},
		{Name: "sup", APIKeys: []string{hash}, Plugins: []string{"support"}},
	}
	h, err := New(ctx, cfg, WithLogger(quietLogger()), WithEngine(&fakeEngine{}))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fin, err := os.ReadFile(filepath.Join(fixture.pluginsDir, "finance.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := h.InstallPlugin(ctx, "finance", fin)
	if err != nil || ch.Action != "added" {
		t.Fatalf("install finance: %+v %v", ch, err)
	}
	if !slices.Equal(ch.Tenants, []string{"all", "fin"}) || ch.Note != "" {
		t.Fatalf("change %+v: want tenants [all fin] and no note", ch)
	}
	for tenant, want := range map[string]bool{"all": true, "fin": true, "sup": false} {
		ps, err := tenantPlugins(h, tenant)
		if err != nil {
			t.Fatal(err)
		}
		has := slices.ContainsFunc(ps, func(p PluginInfo) bool { return p.Name == "finance" })
		if has != want {
			t.Errorf("tenant %s has finance: %v, want %v", tenant, has, want)
		}
	}
	if d, err := routeTenant(ctx, h, "fin", "how should I diversify my retirement portfolio"); err != nil || d.Domain != "finance" {
		t.Errorf("fin routes a finance query to %+v (%v)", d, err)
	}

	// No tenant may use medical: added, and the change says so.
	med, err := os.ReadFile(filepath.Join(fixture.pluginsDir, "medical.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.Tenants = h.cfg.Tenants[1:]
	ch, err = h.InstallPlugin(ctx, "medical", med)
	if err != nil || len(ch.Tenants) != 0 || !strings.Contains(ch.Note, `no tenant may use plugin "medical"`) {
		t.Fatalf("install medical with no tenant allowed: %+v %v", ch, err)
	}
}

func TestTenantAllows(t *testing.T) {
	for _, c := range []struct {
		plugins []string
		name    string
		want    bool
	}{
		{nil, "finance", true},
		{[]string{"*"}, "finance", true},
		{[]string{"fin*"}, "finance", true},
		{[]string{"fin*"}, "medical", false},
		{[]string{"team-?"}, "team-a", true},
		{[]string{"support"}, "support", true},
		{[]string{"support"}, "supportx", false},
		{[]string{"[a-c]*"}, "billing", true},
	} {
		if got := (config.Tenant{Plugins: c.plugins}).Allows(c.name); got != c.want {
			t.Errorf("plugins %v allows %q: %v, want %v", c.plugins, c.name, got, c.want)
		}
	}
}

// The tenant helpers below go through Host.Tenant, so that an unknown
// tenant's error reaches the tests that check it.

func tenantPlugins(h *Host, name string) ([]PluginInfo, error) {
	tn, err := h.Tenant(name)
	if err != nil {
		return nil, err
	}
	return tn.Plugins(), nil
}

func routeTenant(ctx context.Context, h *Host, name, query string) (router.Decision, error) {
	tn, err := h.Tenant(name)
	if err != nil {
		return router.Decision{}, err
	}
	return tn.Route(ctx, query)
}

func processTenant(ctx context.Context, h *Host, name string, req Request) (Result, error) {
	tn, err := h.Tenant(name)
	if err != nil {
		return Result{}, err
	}
	return tn.Process(ctx, req)
}

func pluginStats(h *Host, name string) (map[string]plugin.Stats, error) {
	tn, err := h.Tenant(name)
	if err != nil {
		return nil, err
	}
	return tn.PluginStats(), nil
}

// OnRoute sees the decision once, before the plugin runs: routed, forced,
// or out of scope; an error from it ends the request.
func TestOnRoute(t *testing.T) {
	ctx := context.Background()
	h := tenantHost(t)
	acme, err := h.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	var seen []router.Decision
	hook := func(d router.Decision) error { seen = append(seen, d); return nil }

	res, err := acme.Process(ctx, Request{Query: "where is my order, it has not arrived", OnRoute: hook})
	if err != nil || len(seen) != 1 || seen[0].Domain != res.Domain || seen[0].Confidence != res.Confidence || res.Domain != "support" {
		t.Fatalf("routed: %+v, seen %+v, %v", res, seen, err)
	}
	seen = nil
	if _, err := acme.Process(ctx, Request{Query: "hello", Domain: "finance", OnRoute: hook}); err != nil ||
		len(seen) != 1 || seen[0].Domain != "finance" || seen[0].Confidence != 1 {
		t.Fatalf("forced: seen %+v, %v", seen, err)
	}
	seen = nil
	res, err = acme.Process(ctx, Request{Query: "I've had a fever and a sore throat for three days", OnRoute: hook})
	if err != nil || res.Status != StatusOutOfScope || len(seen) != 1 || !seen[0].OutOfScope {
		t.Fatalf("out of scope: %+v, seen %+v, %v", res, seen, err)
	}
	stop := errors.New("client gone")
	before := acme.PluginStats()["support"].Calls
	if _, err := acme.Process(ctx, Request{Query: "where is my order", OnRoute: func(router.Decision) error { return stop }}); !errors.Is(err, stop) {
		t.Fatalf("hook error: %v", err)
	}
	if after := acme.PluginStats()["support"].Calls; after != before {
		t.Fatalf("the plugin ran after the hook failed: %d -> %d calls", before, after)
	}
}
