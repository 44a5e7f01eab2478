package redislimits

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/tenant"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

func store(t *testing.T, url string, o Options) *Store {
	t.Helper()
	o.URL = url
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second // a loaded test machine
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Two stores are two replicas: the limits hold across them.
func TestLimitsAcrossReplicas(t *testing.T) {
	r := testutil.StartRedis(t)
	a, b := store(t, r.URL, Options{}), store(t, r.URL, Options{})
	ctx := context.Background()

	// One a second, burst 2: the third request, a second or less after
	// the first, is refused however slowly this machine runs them.
	rate := config.TenantLimits{RequestsPerSecond: 1, Burst: 2}
	for i, s := range []*Store{a, b} {
		if le, err := s.Admit(ctx, "rate", rate, "x"); le != nil || err != nil {
			t.Fatalf("request %d: %v %v", i, le, err)
		}
	}
	le, err := a.Admit(ctx, "rate", rate, "x")
	if err != nil || le == nil || le.Limit != tenant.LimitRequestsPerSecond || le.RetryAfter <= 0 || le.RetryAfter > time.Second {
		t.Fatalf("a third request within the burst of 2: %+v %v", le, err)
	}
	time.Sleep(le.RetryAfter)
	if le, err := b.Admit(ctx, "rate", rate, "x"); le != nil || err != nil {
		t.Fatalf("after the retry time: %v %v", le, err)
	}

	conc := config.TenantLimits{Concurrent: 2}
	if le, err := a.Admit(ctx, "conc", conc, "r1"); le != nil || err != nil {
		t.Fatal(le, err)
	}
	if le, err := b.Admit(ctx, "conc", conc, "r2"); le != nil || err != nil {
		t.Fatal(le, err)
	}
	if le, _ := a.Admit(ctx, "conc", conc, "r3"); le == nil || le.Limit != tenant.LimitConcurrent {
		t.Fatalf("a third request in flight: %+v", le)
	}
	if err := b.Release(ctx, "conc", "r1", 0); err != nil {
		t.Fatal(err)
	}
	if le, err := a.Admit(ctx, "conc", conc, "r3"); le != nil || err != nil {
		t.Fatalf("after a release: %v %v", le, err)
	}

	tpm := config.TenantLimits{TokensPerMinute: 100}
	if le, err := a.Admit(ctx, "tokens", tpm, "t1"); le != nil || err != nil {
		t.Fatal(le, err)
	}
	if err := a.Release(ctx, "tokens", "t1", 60); err != nil {
		t.Fatal(err)
	}
	if le, _ := b.Admit(ctx, "tokens", tpm, "t2"); le != nil {
		t.Fatalf("60 of 100 tokens used: %+v", le)
	}
	b.Release(ctx, "tokens", "t2", 50)
	le, _ = a.Admit(ctx, "tokens", tpm, "t3")
	if le == nil || le.Limit != tenant.LimitTokensPerMinute || le.RetryAfter <= 0 || le.RetryAfter > time.Minute {
		t.Fatalf("110 of 100 tokens used: %+v", le)
	}
	// Tenants do not share state.
	if le, err := a.Admit(ctx, "other", tpm, "o"); le != nil || err != nil {
		t.Fatalf("another tenant: %v %v", le, err)
	}
}

// A replica that dies without releasing loses its slot when the lease
// runs out.
func TestLeaseExpires(t *testing.T) {
	r := testutil.StartRedis(t)
	s := store(t, r.URL, Options{Lease: 100 * time.Millisecond})
	ctx := context.Background()
	conc := config.TenantLimits{Concurrent: 1}
	if le, err := s.Admit(ctx, "t", conc, "lost"); le != nil || err != nil {
		t.Fatal(le, err)
	}
	if le, _ := s.Admit(ctx, "t", conc, "next"); le == nil {
		t.Fatal("a second request while the first holds the slot")
	}
	time.Sleep(150 * time.Millisecond)
	if le, err := s.Admit(ctx, "t", conc, "next"); le != nil || err != nil {
		t.Fatalf("after the lease: %v %v", le, err)
	}
}

// Redis gone: the store fails fast, and the tenant falls back to its own
// limits (fail open) or refuses (fail closed); no request hangs.
func TestRedisDown(t *testing.T) {
	r := testutil.StartRedis(t)
	s := store(t, r.URL, Options{Timeout: 200 * time.Millisecond, Backoff: time.Hour})
	ctx := context.Background()
	r.Stop()
	if _, err := s.Admit(ctx, "t", config.TenantLimits{Concurrent: 1}, "a"); err == nil {
		t.Fatal("no error with Redis gone")
	}
	t0 := time.Now()
	if _, err := s.Admit(ctx, "t", config.TenantLimits{Concurrent: 1}, "a"); !errors.Is(err, ErrDown) {
		t.Fatalf("while backing off: %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("backing off took %v", d)
	}
	ct := []config.Tenant{{Name: "acme", APIKeys: []string{tenant.HashKey("k")}, Limits: config.TenantLimits{Concurrent: 1}}}
	open, err := tenant.New(ct, tenant.WithShared(s, tenant.FailOpen))
	if err != nil {
		t.Fatal(err)
	}
	ta, _ := open.Get("acme")
	k, err := ta.Admit(ctx)
	if err != nil {
		t.Fatalf("fail open: %v", err)
	}
	if _, err := ta.Admit(ctx); err == nil {
		t.Error("fail open keeps the local limit: a second request in flight was admitted")
	}
	k.Done(0)
	closed, _ := tenant.New(ct, tenant.WithShared(s, tenant.FailClosed))
	tc, _ := closed.Get("acme")
	if _, err := tc.Admit(ctx); !errors.Is(err, tenant.ErrLimitsUnavailable) {
		t.Errorf("fail closed: %v", err)
	}
	if u := tc.Usage(); u.SharedErrors == 0 {
		t.Errorf("shared errors not counted: %+v", u)
	}
}

// Two replicas hammering one tenant of 20 requests per second admit, over
// the run, at most the rate plus the burst, and most of it.
func TestSharedRateTwoReplicas(t *testing.T) {
	r := testutil.StartRedis(t)
	ct := []config.Tenant{{Name: "acme", APIKeys: []string{tenant.HashKey("k")}, Limits: config.TenantLimits{RequestsPerSecond: 20, Burst: 1}}}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(2 * time.Second)
	for range 2 {
		set, err := tenant.New(ct, tenant.WithShared(store(t, r.URL, Options{}), tenant.FailClosed))
		if err != nil {
			t.Fatal(err)
		}
		ta, _ := set.Get("acme")
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					if k, err := ta.Admit(context.Background()); err == nil {
						admitted.Add(1)
						k.Done(0)
					} else {
						time.Sleep(time.Millisecond)
					}
				}
			}()
		}
	}
	wg.Wait()
	el := time.Since(t0).Seconds()
	n := float64(admitted.Load())
	if n > 20*el+1+1 || n < 0.7*20*2 {
		t.Errorf("admitted %.0f in %.2f s at 20/s, burst 1", n, el)
	}
	t.Logf("admitted %.0f in %.2f s: %.1f/s", n, el, n/el)
}
