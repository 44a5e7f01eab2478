package openai

import (
	"math"
	"sync"
	"time"
)

// Prefix affinity. A prefix (a domain's system prompt) is owned by one
// backend, the one whose KV cache holds it: its requests go there while
// that backend is up and under the load bound; past the bound a request
// spills to the least loaded backend and the prefix keeps its owner. The
// bound is on each backend's share of recent requests (counted with a
// one-second decay): a backend may take PrefixLoadFactor x the mean, with
// this request, rounded up. Bounding the share rather than the requests in
// flight at this instant keeps a domain where it is warm through the
// moment-to-moment swings of random traffic (which, bounded in flight,
// spilled a third of the requests of 4 equal domains on 4 backends and
// cooled the caches they spilled to), while a domain that really takes
// more than its share is spread. A prefix seen
// for the first time (or whose owner is down or ejected) takes the backend
// that owns the fewest prefixes seen lately, the first such in ring order
// from the prefix's hash, so that few prefixes spread one to a backend
// rather than colliding as plain consistent hashing would (4 domains on 4
// backends collide with probability 1 - 4!/4^4 = 91%), and the choice
// depends on the prefix, not on which gateway replica makes it.

// Bounds of the ownership table.
const (
	maxAffinityKeys = 4096
	affinityFresh   = 5 * time.Minute // a prefix unseen for longer owns nothing
)

type affinity struct {
	mu   sync.Mutex
	keys map[uint64]*owner
}

type owner struct {
	backend int
	seen    time.Time
}

// pickPrefix returns the backend for a request of prefix key, or nil to
// fall back to least outstanding. ok marks the available backends.
func (e *Engine) pickPrefix(key uint64, ok []bool, now time.Time) *backend {
	recent := make([]float64, len(e.backends))
	sum, n := 0.0, 0
	for i, b := range e.backends {
		if ok[i] {
			recent[i] = b.recentCount(now)
			sum += recent[i]
			n++
		}
	}
	bound := math.Ceil(e.opts.PrefixLoadFactor * (sum + 1) / float64(n))
	under := func(i int) bool { return ok[i] && recent[i]+1 <= bound }
	a := &e.aff
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.keys == nil {
		a.keys = make(map[uint64]*owner)
	}
	if o, found := a.keys[key]; found && ok[o.backend] {
		o.seen = now
		if under(o.backend) {
			return e.backends[o.backend]
		}
		return nil // over the bound: spill, keep the owner
	}
	owned := make([]int, len(e.backends))
	for _, o := range a.keys {
		if now.Sub(o.seen) < affinityFresh {
			owned[o.backend]++
		}
	}
	best := -1
	e.ring.walk(key, len(e.backends), func(i int) bool {
		if under(i) && (best < 0 || owned[i] < owned[best]) {
			best = i
		}
		return false // every backend is looked at
	})
	if best < 0 {
		return nil
	}
	if len(a.keys) >= maxAffinityKeys {
		a.evictOldest()
	}
	a.keys[key] = &owner{backend: best, seen: now}
	return e.backends[best]
}

// evictOldest drops the prefix seen least recently.
func (a *affinity) evictOldest() {
	var oldest uint64
	var at time.Time
	for k, o := range a.keys {
		if at.IsZero() || o.seen.Before(at) {
			oldest, at = k, o.seen
		}
	}
	delete(a.keys, oldest)
}
