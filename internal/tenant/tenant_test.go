package tenant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

func hashOf(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func noEnv(string) string { return "" }

// one builds a set with a single tenant "acme" (key "k-acme") and the limits.
func one(t *testing.T, clk *testutil.Clock, l config.TenantLimits) *Tenant {
	t.Helper()
	s, err := New([]config.Tenant{{Name: "acme", APIKeys: []string{hashOf("k-acme")}, Limits: l}},
		WithClock(clk.Now), WithGetenv(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	tn, ok := s.Get("acme")
	if !ok {
		t.Fatal("no tenant acme")
	}
	return tn
}

func limitErr(t *testing.T, err error, want string) *LimitError {
	t.Helper()
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("want *LimitError for %s, got %v", want, err)
	}
	if le.Limit != want {
		t.Fatalf("refused by %s, want %s (%v)", le.Limit, want, err)
	}
	return le
}

func TestOpenSet(t *testing.T) {
	s, err := New(nil, WithGetenv(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Open() {
		t.Fatal("a set without tenants must be open")
	}
	for _, key := range []string{"", "anything", "\x00\xff"} {
		tn, err := s.Authenticate(key)
		if err != nil || tn.Name != DefaultName {
			t.Fatalf("Authenticate(%q) = %v, %v; want default", key, tn, err)
		}
	}
	tn, ok := s.Get(DefaultName)
	if !ok {
		t.Fatal("Get(default) failed")
	}
	if !tn.AllowsPlugin("finance") || !tn.AllowsModel("whatever") || tn.Plugins() != nil || tn.Models() != nil {
		t.Fatal("the open tenant must allow every plugin and model")
	}
	if tn.Limits() != (config.TenantLimits{}) {
		t.Fatalf("open tenant has limits %+v", tn.Limits())
	}
	for range 1000 {
		k, err := tn.Admit(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		k.Done(1 << 20)
	}
	if all := s.All(); len(all) != 1 || all[0] != tn {
		t.Fatalf("All() = %v", all)
	}
}

func TestAuthenticate(t *testing.T) {
	s, err := New([]config.Tenant{
		{Name: "zeta", APIKeys: []string{hashOf("z1"), hashOf("z2")}},
		{Name: "acme", APIKeys: []string{hashOf("a1")}, APIKeyEnv: "ACME_KEY"},
	}, WithGetenv(func(v string) string {
		if v == "ACME_KEY" {
			return "from-env"
		}
		return ""
	}))
	if err != nil {
		t.Fatal(err)
	}
	if s.Open() {
		t.Fatal("set with tenants is not open")
	}
	for key, want := range map[string]string{"z1": "zeta", "z2": "zeta", "a1": "acme", "from-env": "acme"} {
		tn, err := s.Authenticate(key)
		if err != nil || tn.Name != want {
			t.Errorf("Authenticate(%q) = %v, %v; want %s", key, tn, err, want)
		}
	}
	for _, key := range []string{"", "z3", "Z1", "z1 ", "ACME_KEY", hashOf("z1"), strings.TrimPrefix(hashOf("z1"), "sha256:")} {
		tn, err := s.Authenticate(key)
		if !errors.Is(err, ErrUnauthorized) || tn != nil {
			t.Errorf("Authenticate(%q) = %v, %v; want ErrUnauthorized", key, tn, err)
		}
	}
	if strings.Contains(ErrUnauthorized.Error(), "acme") || strings.Contains(ErrUnauthorized.Error(), "zeta") {
		t.Error("ErrUnauthorized names a tenant")
	}
	names := []string{}
	for _, tn := range s.All() {
		names = append(names, tn.Name)
	}
	if !slices.Equal(names, []string{"acme", "zeta"}) {
		t.Errorf("All() = %v, want sorted", names)
	}
	if _, ok := s.Get("nope"); ok {
		t.Error("Get of an unknown tenant succeeded")
	}
}

func TestMissingEnvKey(t *testing.T) {
	_, err := New([]config.Tenant{
		{Name: "ok", APIKeys: []string{hashOf("x")}},
		{Name: "acme", APIKeyEnv: "ACME_API_KEY"},
	}, WithGetenv(noEnv))
	if err == nil {
		t.Fatal("want an error for an unset api_key_env")
	}
	if !strings.Contains(err.Error(), `"acme"`) || !strings.Contains(err.Error(), "ACME_API_KEY") {
		t.Fatalf("error %q must name the tenant and the variable", err)
	}
}

func TestNewRejects(t *testing.T) {
	cases := map[string]struct {
		tenants []config.Tenant
		want    string
	}{
		"bad hash":   {[]config.Tenant{{Name: "a", APIKeys: []string{"sha256:xyz"}}}, `"a": api_keys[0]`},
		"clear key":  {[]config.Tenant{{Name: "a", APIKeys: []string{"my-secret-key"}}}, `"a": api_keys[0]`},
		"non-hex":    {[]config.Tenant{{Name: "a", APIKeys: []string{"sha256:" + strings.Repeat("g", 64)}}}, "not hexadecimal"},
		"no key":     {[]config.Tenant{{Name: "a"}}, "neither"},
		"no name":    {[]config.Tenant{{APIKeys: []string{hashOf("x")}}}, "name is empty"},
		"duplicate":  {[]config.Tenant{{Name: "a", APIKeys: []string{hashOf("x")}}, {Name: "a", APIKeys: []string{hashOf("y")}}}, "twice"},
		"shared key": {[]config.Tenant{{Name: "a", APIKeys: []string{hashOf("x")}}, {Name: "b", APIKeyEnv: "B"}}, "share an API key"},
		"negative":   {[]config.Tenant{{Name: "a", APIKeys: []string{hashOf("x")}, Limits: config.TenantLimits{Concurrent: -1}}}, "concurrent"},
	}
	for name, c := range cases {
		_, err := New(c.tenants, WithGetenv(func(string) string { return "x" }))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "my-secret-key") {
			t.Errorf("%s: error echoes the configured value: %v", name, err)
		}
	}
	// The same key twice for one tenant is harmless.
	if _, err := New([]config.Tenant{{Name: "a", APIKeys: []string{hashOf("x"), hashOf("x")}}}); err != nil {
		t.Errorf("duplicate key within one tenant: %v", err)
	}
}

// TestAuthenticateComparesAll checks that every configured hash is compared
// whichever tenant matches, or none.
func TestAuthenticateComparesAll(t *testing.T) {
	var tenants []config.Tenant
	for i := range 5 {
		name := string(rune('a' + i))
		tenants = append(tenants, config.Tenant{Name: name, APIKeys: []string{hashOf(name + "1"), hashOf(name + "2")}})
	}
	s, err := New(tenants)
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	s.onCompare = func() { calls++ }
	for _, key := range []string{"a1", "a2", "c1", "e2", "wrong", ""} {
		calls = 0
		_, _ = s.Authenticate(key)
		if calls != 10 {
			t.Errorf("Authenticate(%q) compared %d hashes, want all 10", key, calls)
		}
	}
}

func TestAllowListsAndConfig(t *testing.T) {
	pc := map[string]map[string]string{"finance": {"currency": "EUR"}}
	ct := config.Tenant{Name: "acme", APIKeys: []string{hashOf("k")},
		Plugins: []string{"finance", "medical"}, Models: []string{"qwen"}, PluginConfig: pc}
	s, err := New([]config.Tenant{ct})
	if err != nil {
		t.Fatal(err)
	}
	tn, _ := s.Get("acme")
	if !tn.AllowsPlugin("finance") || tn.AllowsPlugin("support") || !tn.AllowsModel("qwen") || tn.AllowsModel("phi") {
		t.Fatal("allow-lists not applied")
	}
	p := tn.Plugins()
	p[0] = "support"
	if tn.AllowsPlugin("support") {
		t.Fatal("Plugins() returned the tenant's own slice")
	}
	ct.Plugins[1] = "support" // the caller's config changes after New
	if tn.AllowsPlugin("support") {
		t.Fatal("New kept the caller's slice")
	}
	if !slices.Equal(tn.Models(), []string{"qwen"}) {
		t.Fatalf("Models() = %v", tn.Models())
	}
	c := tn.PluginConfig("finance")
	if c["currency"] != "EUR" {
		t.Fatalf("PluginConfig = %v", c)
	}
	c["currency"] = "USD"
	pc["finance"]["currency"] = "GBP"
	if tn.PluginConfig("finance")["currency"] != "EUR" {
		t.Fatal("PluginConfig is not a copy")
	}
	if tn.PluginConfig("medical") != nil {
		t.Fatal("PluginConfig of an unconfigured plugin must be nil")
	}
}

func TestMaxTokens(t *testing.T) {
	clk := testutil.NewClock()
	tn := one(t, clk, config.TenantLimits{MaxTokens: 100})
	for req, want := range map[int]int{0: 100, 1: 1, 100: 100} {
		got, err := tn.MaxTokens(req)
		if err != nil || got != want {
			t.Errorf("MaxTokens(%d) = %d, %v; want %d", req, got, err, want)
		}
	}
	_, err := tn.MaxTokens(101)
	le := limitErr(t, err, LimitMaxTokens)
	if le.RetryAfter != 0 || le.Value != 100 || le.Tenant != "acme" {
		t.Errorf("LimitError = %+v", le)
	}
	if !strings.Contains(le.Error(), "max_tokens (100)") {
		t.Errorf("message %q", le.Error())
	}
	if _, err := tn.MaxTokens(-1); err == nil {
		t.Error("negative max_tokens accepted")
	}
	if u := tn.Usage(); u.RefusedMaxTokens != 1 {
		t.Errorf("RefusedMaxTokens = %d", u.RefusedMaxTokens)
	}

	free := one(t, clk, config.TenantLimits{})
	for req, want := range map[int]int{0: 0, 5000: 5000} {
		if got, err := free.MaxTokens(req); err != nil || got != want {
			t.Errorf("unlimited MaxTokens(%d) = %d, %v; want %d", req, got, err, want)
		}
	}
}

func TestRateLimit(t *testing.T) {
	clk := testutil.NewClock()
	tn := one(t, clk, config.TenantLimits{RequestsPerSecond: 5})
	if b := tn.Limits().Burst; b != 5 {
		t.Fatalf("default burst = %d, want ceil(5)", b)
	}
	for i := range 5 {
		k, err := tn.Admit(context.Background())
		if err != nil {
			t.Fatalf("request %d of the burst: %v", i, err)
		}
		k.Done(0)
	}
	_, err := tn.Admit(context.Background())
	le := limitErr(t, err, LimitRequestsPerSecond)
	if le.RetryAfter != 200*time.Millisecond {
		t.Fatalf("RetryAfter = %v, want 200ms at 5/s", le.RetryAfter)
	}
	if want := `tenant "acme": over requests_per_second (5): retry in 200ms`; le.Error() != want {
		t.Fatalf("message %q, want %q", le.Error(), want)
	}
	// Refusals consume nothing: halfway through the wait the retry time halves.
	clk.Advance(100 * time.Millisecond)
	for range 10 {
		_, err = tn.Admit(context.Background())
	}
	if le := limitErr(t, err, LimitRequestsPerSecond); le.RetryAfter != 100*time.Millisecond {
		t.Fatalf("RetryAfter after 100ms = %v, want 100ms", le.RetryAfter)
	}
	clk.Advance(100 * time.Millisecond)
	k, err := tn.Admit(context.Background())
	if err != nil {
		t.Fatalf("after RetryAfter: %v", err)
	}
	k.Done(0)
	if _, err := tn.Admit(context.Background()); err == nil {
		t.Fatal("second request within 200ms admitted")
	}
	u := tn.Usage()
	if u.Admitted != 6 || u.RefusedRate != 12 || u.InFlight != 0 {
		t.Fatalf("usage %+v", u)
	}
}

func TestRateFractionalAndBurst(t *testing.T) {
	clk := testutil.NewClock()
	tn := one(t, clk, config.TenantLimits{RequestsPerSecond: 0.5})
	if b := tn.Limits().Burst; b != 1 {
		t.Fatalf("default burst at 0.5/s = %d, want 1", b)
	}
	if _, err := tn.Admit(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := tn.Admit(context.Background())
	if le := limitErr(t, err, LimitRequestsPerSecond); le.RetryAfter != 2*time.Second {
		t.Fatalf("RetryAfter = %v, want 2s", le.RetryAfter)
	}

	tn = one(t, clk, config.TenantLimits{RequestsPerSecond: 1, Burst: 3})
	for range 3 {
		if _, err := tn.Admit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tn.Admit(context.Background()); err == nil {
		t.Fatal("burst of 3 exceeded")
	}
}

func TestConcurrency(t *testing.T) {
	clk := testutil.NewClock()
	tn := one(t, clk, config.TenantLimits{Concurrent: 2})
	a, err1 := tn.Admit(context.Background())
	b, err2 := tn.Admit(context.Background())
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	for range 5 {
		_, err := tn.Admit(context.Background())
		if le := limitErr(t, err, LimitConcurrent); le.RetryAfter <= 0 || le.Value != 2 {
			t.Fatalf("LimitError %+v", le)
		}
	}
	if u := tn.Usage(); u.InFlight != 2 || u.RefusedConcurrent != 5 {
		t.Fatalf("usage %+v", u)
	}
	a.Done(0)
	a.Done(0) // harmless: must not free b's slot too
	c, err := tn.Admit(context.Background())
	if err != nil {
		t.Fatalf("after Done: %v", err)
	}
	if _, err := tn.Admit(context.Background()); err == nil {
		t.Fatal("a second Done freed a slot")
	}
	b.Done(0)
	c.Done(0)
	if u := tn.Usage(); u.InFlight != 0 || u.Admitted != 3 {
		t.Fatalf("usage %+v", u)
	}
	var nilTicket *Ticket
	nilTicket.Done(5) // no panic
}

// TestRefusalsKeepRateTokens checks that a request refused by a later limit
// (concurrency, tokens) does not use up a rate token.
func TestRefusalsKeepRateTokens(t *testing.T) {
	clk := testutil.NewClock()
	tn := one(t, clk, config.TenantLimits{RequestsPerSecond: 1, Burst: 2, Concurrent: 1})
	k, err := tn.Admit(context.Background()) // 1 rate token left
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		_, err := tn.Admit(context.Background())
		limitErr(t, err, LimitConcurrent)
	}
	k.Done(0)
	if _, err := tn.Admit(context.Background()); err != nil {
		t.Fatalf("rate token lost to refused requests: %v", err)
	}

	// Same for tokens_per_minute refusals.
	tn = one(t, clk, config.TenantLimits{RequestsPerSecond: 1, Burst: 5, TokensPerMinute: 10})
	k, err = tn.Admit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k.Done(10)
	for range 10 {
		_, err := tn.Admit(context.Background())
		limitErr(t, err, LimitTokensPerMinute)
	}
	if got := tn.adm.limiter.TokensAt(clk.Now()); got != 4 {
		t.Fatalf("%v rate tokens left after tokens_per_minute refusals, want 4", got)
	}
}

func TestTokensPerMinute(t *testing.T) {
	clk := testutil.NewClock()
	tn := one(t, clk, config.TenantLimits{TokensPerMinute: 1000})
	k, err := tn.Admit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k.Done(600) // t=0
	clk.Advance(10 * time.Second)
	k, err = tn.Admit(context.Background())
	if err != nil {
		t.Fatalf("600 < 1000 tokens: %v", err)
	}
	k.Done(500) // t=10s; 1100 in the window
	if u := tn.Usage(); u.TokensLastMinute != 1100 {
		t.Fatalf("TokensLastMinute = %d", u.TokensLastMinute)
	}
	clk.Advance(5 * time.Second) // t=15s
	_, err = tn.Admit(context.Background())
	le := limitErr(t, err, LimitTokensPerMinute)
	// The 600 tokens of t=0 leave at t=60s, 45 s from now.
	if le.RetryAfter != 45*time.Second || le.Value != 1000 {
		t.Fatalf("LimitError %+v, want RetryAfter 45s", le)
	}
	clk.Advance(le.RetryAfter - time.Millisecond)
	if _, err := tn.Admit(context.Background()); err == nil {
		t.Fatal("admitted before the old tokens left the window")
	}
	clk.Advance(time.Millisecond)
	k, err = tn.Admit(context.Background())
	if err != nil {
		t.Fatalf("after RetryAfter: %v", err)
	}
	k.Done(0)
	if u := tn.Usage(); u.TokensLastMinute != 500 || u.RefusedTokens != 2 || u.Admitted != 3 {
		t.Fatalf("usage %+v", u)
	}
	clk.Advance(time.Hour)
	if u := tn.Usage(); u.TokensLastMinute != 0 {
		t.Fatalf("TokensLastMinute an hour later = %d", u.TokensLastMinute)
	}
}

func TestTokensNeedSeveralBuckets(t *testing.T) {
	clk := testutil.NewClock()
	tn := one(t, clk, config.TenantLimits{TokensPerMinute: 100})
	for _, n := range []int{30, 30, 30, 70} { // at t=0,1,2,3 s
		k, err := tn.Admit(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		k.Done(n)
		clk.Advance(time.Second)
	}
	// t=4s, 160 in the window: 130 once t=0 leaves, 100 after t=1 (still at
	// the limit), under it once t=2 has left, at t=62s.
	_, err := tn.Admit(context.Background())
	if le := limitErr(t, err, LimitTokensPerMinute); le.RetryAfter != 58*time.Second {
		t.Fatalf("RetryAfter = %v, want 58s", le.RetryAfter)
	}
}

func TestClockGoingBack(t *testing.T) {
	clk := testutil.NewClock()
	tn := one(t, clk, config.TenantLimits{RequestsPerSecond: 1, TokensPerMinute: 100})
	k, err := tn.Admit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(-time.Hour)
	k.Done(100)
	if _, err := tn.Admit(context.Background()); err == nil {
		t.Fatal("a clock stepping back must not refill the bucket or empty the window")
	}
	if u := tn.Usage(); u.TokensLastMinute != 100 {
		t.Fatalf("TokensLastMinute = %d", u.TokensLastMinute)
	}
}

// TestHammer runs 64 goroutines through Admit/Done with a concurrency cap
// and checks that the cap holds and the books balance.
func TestHammer(t *testing.T) {
	const (
		workers = 64
		each    = 300
		capN    = 4
	)
	s, err := New([]config.Tenant{{Name: "acme", APIKeys: []string{hashOf("k")},
		Limits: config.TenantLimits{Concurrent: capN, TokensPerMinute: 1 << 40}}}) // real clock
	if err != nil {
		t.Fatal(err)
	}
	tn, _ := s.Get("acme")
	var cur, peak atomic.Int64
	var admitted, refused atomic.Uint64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				k, err := tn.Admit(context.Background())
				if err != nil {
					var le *LimitError
					if !errors.As(err, &le) || le.Limit != LimitConcurrent {
						t.Errorf("unexpected refusal %v", err)
						return
					}
					refused.Add(1)
					continue
				}
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				if u := tn.Usage(); u.InFlight > capN {
					t.Errorf("InFlight %d over the cap", u.InFlight)
				}
				admitted.Add(1)
				cur.Add(-1)
				k.Done(1)
				k.Done(1)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > capN || p < 1 {
		t.Fatalf("peak in flight %d, cap %d", p, capN)
	}
	u := tn.Usage()
	if u.InFlight != 0 || u.Admitted != admitted.Load() || u.RefusedConcurrent != refused.Load() ||
		u.Admitted+u.RefusedConcurrent != workers*each {
		t.Fatalf("usage %+v, admitted %d, refused %d", u, admitted.Load(), refused.Load())
	}
	if u.TokensLastMinute != int64(u.Admitted) {
		t.Fatalf("TokensLastMinute %d, want one per admitted request (%d)", u.TokensLastMinute, u.Admitted)
	}
	t.Logf("admitted %d, refused %d, peak %d", u.Admitted, u.RefusedConcurrent, peak.Load())
}

func FuzzAuthenticate(f *testing.F) {
	keys := map[string]string{"sk-acme-123": "acme", "zeta\x00key": "zeta"}
	var tenants []config.Tenant
	for k, name := range keys {
		tenants = append(tenants, config.Tenant{Name: name, APIKeys: []string{hashOf(k)}})
	}
	s, err := New(tenants)
	if err != nil {
		f.Fatal(err)
	}
	open, err := New(nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{"", "sk-acme-123", "sk-acme-12", "sk-acme-1234", "zeta\x00key", "zeta", hashOf("sk-acme-123"), "\xff\xfe"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		tn, err := s.Authenticate(string(key))
		want, ok := keys[string(key)]
		switch {
		case ok && (err != nil || tn == nil || tn.Name != want):
			t.Fatalf("right key %q: %v, %v", key, tn, err)
		case !ok && (!errors.Is(err, ErrUnauthorized) || tn != nil):
			t.Fatalf("wrong key %q authenticated: %v, %v", key, tn, err)
		}
		if tn, err := open.Authenticate(string(key)); err != nil || tn.Name != DefaultName {
			t.Fatalf("open set refused %q: %v", key, err)
		}
	})
}

func BenchmarkAdmit(b *testing.B) {
	s, err := New([]config.Tenant{{Name: "acme", APIKeys: []string{hashOf("k")},
		Limits: config.TenantLimits{RequestsPerSecond: 1e9, Concurrent: 1 << 20, TokensPerMinute: 1 << 62}}})
	if err != nil {
		b.Fatal(err)
	}
	tn, _ := s.Get("acme")
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			k, err := tn.Admit(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			k.Done(10)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k, err := tn.Admit(context.Background())
				if err != nil {
					b.Error(err)
					return
				}
				k.Done(10)
			}
		})
	})
}

func BenchmarkAuthenticate(b *testing.B) {
	var tenants []config.Tenant
	for i := range 100 {
		name := "t" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		tenants = append(tenants, config.Tenant{Name: name, APIKeys: []string{hashOf(name)}})
	}
	s, err := New(tenants)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Authenticate("tzc"); err != nil {
			b.Fatal(err)
		}
	}
}

// A pattern in a tenant's plugins admits the plugins it matches, also those
// added after the tenant was made.
func TestAllowsPluginPattern(t *testing.T) {
	set, err := New([]config.Tenant{{Name: "acme", APIKeys: []string{"sha256:" + strings.Repeat("0", 64)}, Plugins: []string{"support", "fin*"}}})
	if err != nil {
		t.Fatal(err)
	}
	ten := set.All()[0]
	for name, want := range map[string]bool{"support": true, "finance": true, "fintech": true, "medical": false, "supportx": false} {
		if got := ten.AllowsPlugin(name); got != want {
			t.Errorf("AllowsPlugin(%q) = %v, want %v", name, got, want)
		}
	}
}
