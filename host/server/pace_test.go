package server

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestPacerHolds(t *testing.T) {
	p := newPacer(80*time.Millisecond, []string{"acme"})
	ctx := context.Background()
	elapsed := func(f func()) time.Duration {
		t0 := time.Now()
		f()
		return time.Since(t0)
	}
	// Held for the delay when the retry is further off, for the retry
	// time when it is sooner.
	if d := elapsed(func() { p.hold(ctx, "acme", time.Second) }); d < 80*time.Millisecond || d > 2*time.Second {
		t.Errorf("held %v, want the 80ms delay", d)
	}
	if d := elapsed(func() { p.hold(ctx, "acme", 20*time.Millisecond) }); d < 20*time.Millisecond || d > 70*time.Millisecond+time.Second {
		t.Errorf("held %v, want the 20ms until the retry", d)
	}
	// Unknown tenants (the open server) and a zero delay are not held.
	if d := elapsed(func() { p.hold(ctx, "globex", time.Second) }); d > 50*time.Millisecond {
		t.Errorf("unknown tenant held %v", d)
	}
	if d := elapsed(func() { newPacer(0, []string{"acme"}).hold(ctx, "acme", time.Second) }); d > 50*time.Millisecond {
		t.Errorf("refusal_delay 0 held %v", d)
	}
	// A client that leaves is let go at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if d := elapsed(func() { newPacer(time.Hour, []string{"acme"}).hold(cctx, "acme", time.Hour) }); d > time.Second {
		t.Errorf("a cancelled request was held %v", d)
	}
}

func TestPacerCapAndShutdown(t *testing.T) {
	p := newPacer(time.Hour, []string{"acme"})
	var wg sync.WaitGroup
	for range maxHeldRefusals {
		wg.Go(func() { p.hold(context.Background(), "acme", time.Hour) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.held["acme"].Load() < maxHeldRefusals {
		if time.Now().After(deadline) {
			t.Fatalf("only %d held", p.held["acme"].Load())
		}
		time.Sleep(time.Millisecond)
	}
	// Past the cap a refusal is answered at once.
	t0 := time.Now()
	p.hold(context.Background(), "acme", time.Hour)
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("refusal past the cap held %v", d)
	}
	// Shutting down releases them all, and later ones are not held.
	p.shutdown()
	wg.Wait()
	p.shutdown() // twice is fine
	if n := p.held["acme"].Load(); n != 0 {
		t.Fatalf("%d still counted as held", n)
	}
	t0 = time.Now()
	p.hold(context.Background(), "acme", time.Hour)
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("held %v after shutdown", d)
	}
}
