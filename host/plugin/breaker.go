package plugin

import (
	"sync"
	"time"
)

// The circuit breaker of a plugin (one per Plugin, so per tenant where
// tenants have their own instances). A failed call throws its instance
// away; without a breaker a plugin that spins and then fails would run on a
// fresh instance for every request.
const (
	// breakerAfter failures in a row open the breaker.
	breakerAfter = 5
	// breakerMin is the first back-off; each failure of the trial call
	// that follows doubles it, up to breakerMax.
	breakerMin = 500 * time.Millisecond
	breakerMax = 30 * time.Second
)

// breaker refuses calls for a while after breakerAfter failures in a row.
// When the back-off ends, calls go through again; one more failure in a
// row opens it again, for twice as long; a success closes it.
type breaker struct {
	mu      sync.Mutex
	fails   int           // failures in a row
	backoff time.Duration // the last back-off; 0 when closed
	until   time.Time     // calls are refused before this
}

// allow reports whether a call may run at now, and if not, how long until
// one may.
func (b *breaker) allow(now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.until) {
		return b.until.Sub(now), false
	}
	return 0, true
}

// failing reports whether the plugin's last call failed (or a back-off
// has not been closed by a success since).
func (b *breaker) failing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fails > 0 || b.backoff > 0
}

// record notes the outcome of a call that ran; it returns the back-off it
// just started (0 when none).
func (b *breaker) record(now time.Time, failed bool) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !failed {
		b.fails, b.backoff = 0, 0
		return 0
	}
	b.fails++
	switch {
	case b.backoff > 0 && !now.Before(b.until):
		// The trial after a back-off failed too: back off again, longer.
		b.backoff = min(2*b.backoff, breakerMax)
	case b.fails >= breakerAfter:
		b.backoff = breakerMin
	default:
		return 0
	}
	b.fails = 0
	b.until = now.Add(b.backoff)
	return b.backoff
}
