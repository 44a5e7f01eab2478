package tenant

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
)

// Shared keeps the limit state of tenants that several server replicas
// share (requests_per_second, concurrent, tokens_per_minute), so that any
// number of replicas enforce each limit together, as one server would.
// The in-process state of each Tenant is used when there is none.
type Shared interface {
	// Admit takes one request of tenant under limits, atomically: a rate
	// token, an in-flight slot held under id until Release (or, should the
	// replica die, until a lease runs out), if the tokens of the last
	// minute are under the limit. A refusal is a *LimitError (Tenant and
	// Value filled by the caller); an error means the shared state could
	// not be reached.
	Admit(ctx context.Context, tenant string, limits config.TenantLimits, id string) (*LimitError, error)
	// Release frees id's slot and records the request's tokens.
	Release(ctx context.Context, tenant, id string, tokens int) error
}

// FailMode is what Admit does when the shared state cannot be reached.
type FailMode int

const (
	// FailOpen falls back to each replica's own limits (a tenant may then
	// get up to the limit from every replica).
	FailOpen FailMode = iota
	// FailClosed refuses the request with ErrLimitsUnavailable.
	FailClosed
)

// ErrLimitsUnavailable is wrapped by Admit's error when the shared limit
// state cannot be reached and the fail mode is FailClosed.
var ErrLimitsUnavailable = errors.New("tenant: the shared limits cannot be reached")

// sharedTimeout bounds one call to the shared state, when the Shared
// itself sets none shorter.
const sharedTimeout = time.Second

// WithShared makes the set's tenants keep their limits in sh, failing as
// mode says when it cannot be reached.
func WithShared(sh Shared, mode FailMode) Option {
	return func(o *options) { o.shared, o.failMode = sh, mode }
}

// limited reports whether the tenant has a limit the shared state keeps.
func (t *Tenant) limited() bool {
	l := t.limits
	return l.RequestsPerSecond > 0 || l.Concurrent > 0 || l.TokensPerMinute > 0
}

// admitShared is Admit through the shared state.
func (t *Tenant) admitShared(ctx context.Context) (*Ticket, error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	cctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	le, err := t.shared.Admit(cctx, t.Name, t.limits, id)
	cancel()
	a := &t.adm
	if err != nil {
		a.mu.Lock()
		a.usage.SharedErrors++
		a.mu.Unlock()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("tenant %q: %w", t.Name, ctx.Err())
		}
		if t.failMode == FailClosed {
			return nil, fmt.Errorf("tenant %q: %w: %w", t.Name, ErrLimitsUnavailable, err)
		}
		return t.admitLocal()
	}
	if le != nil {
		le.Tenant = t.Name
		le.Value = t.limitValue(le.Limit)
		le.RetryAfter = max(le.RetryAfter, time.Nanosecond)
		t.adm.countRefusal(le.Limit)
		return nil, le
	}
	a.mu.Lock()
	a.usage.InFlight++
	a.usage.Admitted++
	a.mu.Unlock()
	return &Ticket{t: t, id: id}, nil
}

// limitValue is the configured value of limit.
func (t *Tenant) limitValue(limit string) float64 {
	switch limit {
	case LimitRequestsPerSecond:
		return t.limits.RequestsPerSecond
	case LimitConcurrent:
		return float64(t.limits.Concurrent)
	case LimitTokensPerMinute:
		return float64(t.limits.TokensPerMinute)
	}
	return float64(t.limits.MaxTokens)
}

// releaseShared is Done through the shared state.
func (k *Ticket) releaseShared(tokens int) {
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	if err := k.t.shared.Release(ctx, k.t.Name, k.id, tokens); err != nil {
		a := &k.t.adm
		a.mu.Lock()
		a.usage.SharedErrors++
		a.mu.Unlock()
	}
}
