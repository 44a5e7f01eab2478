package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// maxHeldRefusals bounds how many refused requests of one tenant are held
// at once (see pacer); refusals beyond it are answered at once, so a flood
// costs the server goroutines and connections only up to this many.
const maxHeldRefusals = 256

// pacer holds 429 answers back. A client that retries the moment it is
// refused, ignoring Retry-After, would otherwise cost the server a request
// per round trip: tens of thousands per second of authentication, JSON and
// HTTP work taken from every other tenant. Held for a while, its refusals
// come back at a few per second per connection, and a client that does
// honour Retry-After loses nothing: it would have waited anyway.
type pacer struct {
	delay time.Duration
	// held counts the refusals being held, per tenant name; the map is
	// built once and only read afterwards.
	held map[string]*atomic.Int64
	stop chan struct{} // closed when the server starts shutting down
	once sync.Once
}

// adminHolder is the pacer's name for the admin API's refusals; a tenant
// name cannot contain a space.
const adminHolder = " admin"

func newPacer(delay time.Duration, tenants []string) *pacer {
	p := &pacer{delay: delay, held: make(map[string]*atomic.Int64, len(tenants)+1), stop: make(chan struct{})}
	for _, t := range append(tenants, adminHolder, consoleHolder) {
		p.held[t] = new(atomic.Int64)
	}
	return p
}

// hold waits before a refusal of tenant is sent: until a retry could
// succeed (retry) or the configured delay, whichever is sooner. It returns
// at once when the tenant already has maxHeldRefusals held, and early when
// ctx ends (the client left) or the server shuts down.
func (p *pacer) hold(ctx context.Context, tenant string, retry time.Duration) {
	d := min(retry, p.delay)
	n := p.held[tenant]
	if d <= 0 || n == nil {
		return
	}
	if n.Add(1) > maxHeldRefusals {
		n.Add(-1)
		return
	}
	defer n.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-p.stop:
	}
}

// shutdown releases every held refusal, now and later.
func (p *pacer) shutdown() { p.once.Do(func() { close(p.stop) }) }
