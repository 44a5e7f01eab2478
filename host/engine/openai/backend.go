package openai

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdsa-go/mdsa/internal/textcap"
)

// backend is one server of the pool and what the engine knows of it.
type backend struct {
	url   string // base URL, no trailing slash, no /v1
	key   string
	limit int // requests at once

	outstanding atomic.Int64 // requests this engine has in flight there
	served      atomic.Int64
	failed      atomic.Int64

	mu           sync.Mutex
	failures     int       // consecutive failed requests
	ejections    int       // consecutive ejections, for the cool-down's doubling
	ejectedUntil time.Time // passive ejection: no requests until then
	down         bool      // the last active health check failed
	lastErr      string
	reported     int       // requests waiting or running there, as the backend reported it (vLLM, llama-server), at the last check
	recent       float64   // requests sent lately, decaying with recentTau
	recentAt     time.Time // when recent was last brought up to date
}

// recentTau is the time constant of a backend's recent request count:
// prefix affinity bounds each backend's share of the requests of about the
// last second.
const recentTau = time.Second

// decayed is b.recent brought to now; b.mu held.
func (b *backend) decayed(now time.Time) float64 {
	if b.recentAt.IsZero() {
		return 0
	}
	dt := now.Sub(b.recentAt).Seconds()
	return b.recent * math.Exp(-dt/recentTau.Seconds())
}

// recentCount is b's recent request count at now.
func (b *backend) recentCount(now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.decayed(now)
}

// sent counts a request sent to b.
func (b *backend) sent(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recent = b.decayed(now) + 1
	b.recentAt = now
}

// BackendStatus is what the engine knows of one backend now.
type BackendStatus struct {
	URL string
	// Healthy: neither failing its health check nor ejected.
	Healthy bool
	// Ejected: failed too often; no requests until EjectedUntil.
	Ejected      bool
	EjectedUntil time.Time
	Outstanding  int
	// Reported is the load the backend reported at the last check
	// (requests waiting and running), where it reports one.
	Reported int
	Served   int64
	Failed   int64
	LastErr  string
}

func (b *backend) status(now time.Time) BackendStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	ej := now.Before(b.ejectedUntil)
	return BackendStatus{URL: b.url, Healthy: !b.down && !ej, Ejected: ej, EjectedUntil: b.ejectedUntil,
		Outstanding: int(b.outstanding.Load()), Reported: b.reported, Served: b.served.Load(), Failed: b.failed.Load(),
		LastErr: b.lastErr}
}

// available reports whether a request may go to b now, or why not.
func (b *backend) available(now time.Time) (bool, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.down:
		return false, fmt.Sprintf("%s: health check failed: %s", b.url, b.lastErr)
	case now.Before(b.ejectedUntil):
		return false, fmt.Sprintf("%s: ejected for %v after failures (%s)", b.url, b.ejectedUntil.Sub(now).Round(time.Millisecond), b.lastErr)
	case int(b.outstanding.Load()) >= b.limit:
		return false, fmt.Sprintf("%s: at its limit of %d requests at once", b.url, b.limit)
	}
	return true, ""
}

// load is what the balancer compares: this engine's requests there plus
// what the backend reported beyond them.
func (b *backend) load() int {
	b.mu.Lock()
	rep := b.reported
	b.mu.Unlock()
	out := int(b.outstanding.Load())
	return out + max(0, rep-out)
}

// succeeded records a request that b answered.
func (b *backend) succeeded() {
	b.served.Add(1)
	b.mu.Lock()
	b.failures, b.ejections = 0, 0
	b.mu.Unlock()
}

// fail records a failed request; after ejectAfter in a row (at once for a
// refused connection) b is ejected for a cool-down that doubles with each
// ejection in a row, up to maxEject.
func (b *backend) fail(err error, immediate bool, ejectAfter int, eject, maxEject time.Duration, now time.Time) (ejected bool) {
	b.failed.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastErr = textcap.Truncate(err.Error(), 300)
	b.failures++
	if !immediate && b.failures < ejectAfter {
		return false
	}
	d := eject << min(b.ejections, 16)
	if d > maxEject || d <= 0 {
		d = maxEject
	}
	b.ejections++
	b.failures = 0
	b.ejectedUntil = now.Add(d)
	return true
}

// checked records an active health check's outcome; a passing check ends
// an ejection early only when its cool-down is over (the next request is
// then the trial).
func (b *backend) checked(err error, reported int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.down = true
		b.lastErr = textcap.Truncate(err.Error(), 300)
		return
	}
	b.down = false
	b.reported = reported
}

// ring places backends on a consistent-hash ring for prefix affinity.
type ring struct {
	points []uint64
	owner  []int // index into the engine's backends, per point
}

// ringPoints is how many points each backend has on the ring.
const ringPoints = 64

func newRing(urls []string) ring {
	type pt struct {
		h uint64
		i int
	}
	pts := make([]pt, 0, len(urls)*ringPoints)
	for i, u := range urls {
		for j := range ringPoints {
			pts = append(pts, pt{hash64(fmt.Sprintf("%s#%d", u, j)), i})
		}
	}
	slices.SortFunc(pts, func(a, b pt) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return a.i - b.i
	})
	r := ring{points: make([]uint64, len(pts)), owner: make([]int, len(pts))}
	for k, p := range pts {
		r.points[k], r.owner[k] = p.h, p.i
	}
	return r
}

// walk calls visit with each backend index in ring order from key's
// position, each once, until visit returns true.
func (r ring) walk(key uint64, n int, visit func(i int) bool) {
	if len(r.points) == 0 {
		return
	}
	start, _ := slices.BinarySearch(r.points, key)
	seen := make([]bool, n)
	left := n
	for k := 0; k < len(r.points) && left > 0; k++ {
		i := r.owner[(start+k)%len(r.points)]
		if seen[i] {
			continue
		}
		seen[i] = true
		left--
		if visit(i) {
			return
		}
	}
}

// hash64 is FNV-1a with a final mix (splitmix64's): FNV alone leaves the
// high bits of strings that differ only at their end (a port, a point
// number) close together, which clusters the ring.
func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
