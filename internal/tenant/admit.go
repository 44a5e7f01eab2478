package tenant

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/mdsa-go/mdsa/host/config"
)

// Names of the limits, as in mdsa.toml ([tenants.limits]); LimitError.Limit
// is one of them.
const (
	LimitRequestsPerSecond = "requests_per_second"
	LimitConcurrent        = "concurrent"
	LimitTokensPerMinute   = "tokens_per_minute"
	LimitMaxTokens         = "max_tokens"
)

// concurrentRetry is the RetryAfter suggested when the tenant has too many
// requests in flight: when a slot frees up cannot be known in advance.
const concurrentRetry = time.Second

// windowSeconds is the length of the tokens_per_minute window, in one-second
// buckets.
const windowSeconds = 60

// LimitError is a request refused by one of the tenant's limits.
type LimitError struct {
	// Tenant is the tenant's name.
	Tenant string
	// Limit is the limit exceeded: LimitRequestsPerSecond, LimitConcurrent,
	// LimitTokensPerMinute or LimitMaxTokens.
	Limit string
	// Value is the configured limit.
	Value float64
	// RetryAfter is how long until a retry can succeed; 0 when retrying the
	// same request never helps (max_tokens). Rounding (e.g. up to whole
	// seconds for a Retry-After header) is the caller's business.
	RetryAfter time.Duration
}

// Error says which limit and when to retry, e.g.
// `tenant "acme": over requests_per_second (5): retry in 200ms`.
func (e *LimitError) Error() string {
	v := strconv.FormatFloat(e.Value, 'g', -1, 64)
	if e.RetryAfter <= 0 {
		return fmt.Sprintf("tenant %q: over %s (%s): retrying will not help", e.Tenant, e.Limit, v)
	}
	return fmt.Sprintf("tenant %q: over %s (%s): retry in %s", e.Tenant, e.Limit, v, e.RetryAfter)
}

// Usage is a snapshot of a tenant's counters, for metrics.
type Usage struct {
	// InFlight is the number of admitted requests not yet Done.
	InFlight int
	// TokensLastMinute is the tokens recorded by Done over the last 60 s.
	TokensLastMinute int64
	// Admitted counts the requests Admit let through.
	Admitted uint64
	// RefusedRate, RefusedConcurrent, RefusedTokens and RefusedMaxTokens
	// count refusals by requests_per_second, concurrent, tokens_per_minute
	// (in Admit) and max_tokens (in MaxTokens).
	RefusedRate       uint64
	RefusedConcurrent uint64
	RefusedTokens     uint64
	RefusedMaxTokens  uint64
	// SharedErrors counts calls to the shared limit state (WithShared)
	// that failed; Admit then fell back or refused as its FailMode says.
	SharedErrors uint64
}

// admission is a tenant's live limit state. Everything in it is guarded by
// mu, which is only ever held for a few non-blocking operations.
type admission struct {
	mu      sync.Mutex
	limiter *rate.Limiter // nil: no request rate limit
	rps     float64
	conc    int   // 0: no cap
	tpm     int64 // 0: no cap
	last    time.Time
	window  window
	usage   Usage
}

func (a *admission) init(now time.Time, l config.TenantLimits) {
	if l.RequestsPerSecond > 0 {
		a.limiter = rate.NewLimiter(rate.Limit(l.RequestsPerSecond), l.Burst)
		a.rps = l.RequestsPerSecond
	}
	a.conc = l.Concurrent
	a.tpm = int64(l.TokensPerMinute)
	a.last = now
	a.window.base = now
}

// clamp keeps time from running backwards for the limiter, whose state
// would otherwise gain tokens from a clock that steps back and forth; a.mu
// must be held.
func (a *admission) clamp(now time.Time) time.Time {
	if now.Before(a.last) {
		return a.last
	}
	a.last = now
	return now
}

func (a *admission) countRefusal(limit string) {
	a.mu.Lock()
	switch limit {
	case LimitRequestsPerSecond:
		a.usage.RefusedRate++
	case LimitConcurrent:
		a.usage.RefusedConcurrent++
	case LimitTokensPerMinute:
		a.usage.RefusedTokens++
	case LimitMaxTokens:
		a.usage.RefusedMaxTokens++
	}
	a.mu.Unlock()
}

// Ticket is an admitted request. Call Done when the request has finished,
// whatever its outcome.
type Ticket struct {
	t    *Tenant
	id   string // the in-flight slot in the shared state; "" when admitted locally
	done atomic.Bool
}

// Admit is called once per request, before any work. It enforces, in this
// order: requests_per_second with burst (a token bucket), requests in flight
// (concurrent), and tokens_per_minute (refused while the tokens recorded
// over the last 60 s reach the limit). On success it returns a Ticket whose
// Done must be called; on refusal a *LimitError saying which limit and when
// a retry can succeed (RetryAfter > 0). A refused request consumes neither a
// rate token nor a concurrency slot.
//
// With shared limits (WithShared) the limits are taken in the shared state,
// so that every replica's requests count together; ctx bounds that call.
func (t *Tenant) Admit(ctx context.Context) (*Ticket, error) {
	if t.shared != nil && t.limited() {
		return t.admitShared(ctx)
	}
	return t.admitLocal()
}

// admitLocal is Admit on the tenant's own state.
func (t *Tenant) admitLocal() (*Ticket, error) {
	now := t.now()
	a := &t.adm
	a.mu.Lock()
	now = a.clamp(now)
	if a.limiter != nil {
		if tokens := a.limiter.TokensAt(now); tokens < 1 {
			a.usage.RefusedRate++
			a.mu.Unlock()
			return nil, t.limitErr(LimitRequestsPerSecond, a.rps, rateRetry(1-tokens, a.rps))
		}
	}
	if a.conc > 0 && a.usage.InFlight >= a.conc {
		a.usage.RefusedConcurrent++
		a.mu.Unlock()
		return nil, t.limitErr(LimitConcurrent, float64(a.conc), concurrentRetry)
	}
	if a.tpm > 0 {
		if retry, over := a.window.over(now, a.tpm); over {
			a.usage.RefusedTokens++
			a.mu.Unlock()
			return nil, t.limitErr(LimitTokensPerMinute, float64(a.tpm), retry)
		}
	}
	// TokensAt said a token is there and a.mu keeps everyone else away, so
	// this succeeds; it is checked all the same rather than trusted.
	if a.limiter != nil && !a.limiter.AllowN(now, 1) {
		a.usage.RefusedRate++
		a.mu.Unlock()
		return nil, t.limitErr(LimitRequestsPerSecond, a.rps, rateRetry(1, a.rps))
	}
	a.usage.InFlight++
	a.usage.Admitted++
	a.mu.Unlock()
	return &Ticket{t: t}, nil
}

func (t *Tenant) limitErr(limit string, value float64, retry time.Duration) *LimitError {
	return &LimitError{Tenant: t.Name, Limit: limit, Value: value, RetryAfter: max(retry, time.Nanosecond)}
}

// rateRetry is how long a bucket refilling at rps per second takes to gain
// deficit tokens, rounded up to the nanosecond.
func rateRetry(deficit, rps float64) time.Duration {
	d := math.Ceil(deficit / rps * float64(time.Second))
	if d >= math.MaxInt64 || math.IsNaN(d) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(d)
}

// Done releases the request's concurrency slot and records the tokens it
// used (prompt + completion) in the tenant's sliding minute. Only the first
// call counts; later ones, and calls on a nil Ticket, do nothing. Negative
// tokens count as 0.
func (k *Ticket) Done(tokens int) {
	if k == nil || k.t == nil || !k.done.CompareAndSwap(false, true) {
		return
	}
	if k.id != "" {
		k.releaseShared(tokens)
	}
	now := k.t.now()
	a := &k.t.adm
	a.mu.Lock()
	now = a.clamp(now)
	a.usage.InFlight--
	if tokens > 0 {
		a.window.record(now, int64(tokens))
	}
	a.mu.Unlock()
}

// Usage reports the tenant's counters: requests in flight, tokens in the
// last minute, requests admitted and refused per limit.
func (t *Tenant) Usage() Usage {
	now := t.now()
	a := &t.adm
	a.mu.Lock()
	now = a.clamp(now)
	u := a.usage
	u.TokensLastMinute = a.window.sum(now)
	a.mu.Unlock()
	return u
}

// window counts tokens over the last 60 s in one-second buckets: a ring
// indexed by the second (since base) modulo 60, so its size is fixed.
// Tokens recorded during second s count until second s+60 begins.
type window struct {
	base    time.Time
	buckets [windowSeconds]bucket
}

type bucket struct {
	sec    int64 // the second since base these tokens belong to
	tokens int64
}

// second returns the whole seconds from base to now (floor) and the time
// elapsed.
func (w *window) second(now time.Time) (int64, time.Duration) {
	d := now.Sub(w.base)
	s := int64(d / time.Second)
	if d < 0 && d%time.Second != 0 {
		s--
	}
	return s, d
}

func slot(sec int64) int {
	return int(((sec % windowSeconds) + windowSeconds) % windowSeconds)
}

func (w *window) record(now time.Time, n int64) {
	sec, _ := w.second(now)
	b := &w.buckets[slot(sec)]
	if b.sec != sec {
		b.sec, b.tokens = sec, 0
	}
	b.tokens = satAdd(b.tokens, n)
}

// sum is the tokens recorded over the last 60 s.
func (w *window) sum(now time.Time) int64 {
	sec, _ := w.second(now)
	var total int64
	for _, b := range w.buckets {
		if b.tokens > 0 && b.sec > sec-windowSeconds && b.sec <= sec {
			total = satAdd(total, b.tokens)
		}
	}
	return total
}

// over reports whether the tokens of the last 60 s reach limit and, if so,
// how long until enough of them leave the window to get under it.
func (w *window) over(now time.Time, limit int64) (time.Duration, bool) {
	total := w.sum(now)
	if total < limit {
		return 0, false
	}
	sec, elapsed := w.second(now)
	for s := sec - windowSeconds + 1; s <= sec; s++ {
		b := w.buckets[slot(s)]
		if b.sec != s || b.tokens <= 0 {
			continue
		}
		total -= b.tokens
		if total < limit {
			return time.Duration(s+windowSeconds)*time.Second - elapsed, true
		}
	}
	return windowSeconds * time.Second, true // not reached: the sum saturated
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
