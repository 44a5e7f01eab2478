// Package tenant is the authentication and admission-control layer of mdsa
// serve: it maps API keys to tenants, tells which plugins and models a tenant
// may use, and enforces each tenant's limits (request rate, requests in
// flight, tokens per minute, max_tokens per request).
//
// It knows nothing about HTTP; the server calls Set.Authenticate with the
// bearer token, Tenant.Admit before any work and Ticket.Done afterwards.
// Every tenant has its own lock and fixed-size state, so memory stays
// bounded whatever the traffic.
package tenant

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
)

// DefaultName is the name of the one tenant of an Open set.
const DefaultName = "default"

// ErrUnauthorized is returned by Authenticate for a missing or wrong key. It
// deliberately says nothing about which tenants exist.
var ErrUnauthorized = errors.New("tenant: invalid or missing API key")

// Set is the configured tenants, safe for concurrent use.
type Set struct {
	open   bool
	byName map[string]*Tenant
	sorted []*Tenant // by name
	keys   []keyHash // every accepted key, of every tenant
	// onCompare, when set (by tests), is called for every hash compared.
	onCompare func()
}

// keyHash is one accepted key: the SHA-256 of the clear-text key and the
// index of its tenant in Set.sorted.
type keyHash struct {
	sum    [sha256.Size]byte
	tenant int
}

type options struct {
	shared   Shared
	failMode FailMode
	now      func() time.Time
	getenv   func(string) string
}

// Option configures New.
type Option func(*options)

// WithClock replaces time.Now as the source of time for rate limits and the
// token window; meant for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithGetenv replaces os.Getenv for reading api_key_env variables.
func WithGetenv(getenv func(string) string) Option {
	return func(o *options) {
		if getenv != nil {
			o.getenv = getenv
		}
	}
}

// New builds the set. With no tenants the set is Open: one tenant named
// "default" with no key, every plugin and model allowed, no limits. An
// api_key_env whose variable is unset or empty is an error that names the
// tenant and the variable. The configuration is expected to be validated
// already (config.Parse), but New checks again what it relies on (names,
// key hashes, limits) and refuses two tenants that share a key.
func New(tenants []config.Tenant, opts ...Option) (*Set, error) {
	o := options{now: time.Now, getenv: os.Getenv}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	s := &Set{byName: make(map[string]*Tenant)}
	if len(tenants) == 0 {
		t, err := newTenant(config.Tenant{Name: DefaultName}, o.now)
		if err != nil {
			return nil, err // unreachable: no limits to check
		}
		t.open = true
		s.open = true
		s.byName[t.Name] = t
		s.sorted = []*Tenant{t}
		return s, nil
	}

	for i, ct := range tenants {
		if ct.Name == "" {
			return nil, fmt.Errorf("tenant: tenants[%d]: name is empty", i)
		}
		if _, dup := s.byName[ct.Name]; dup {
			return nil, fmt.Errorf("tenant: tenant %q is declared twice", ct.Name)
		}
		t, err := newTenant(ct, o.now)
		if err != nil {
			return nil, err
		}
		t.shared, t.failMode = o.shared, o.failMode
		s.byName[ct.Name] = t
		s.sorted = append(s.sorted, t)
	}
	slices.SortFunc(s.sorted, func(a, b *Tenant) int { return strings.Compare(a.Name, b.Name) })

	owner := make(map[[sha256.Size]byte]int) // key hash -> index in s.sorted
	add := func(i int, sum [sha256.Size]byte) error {
		if j, ok := owner[sum]; ok {
			if j == i {
				return nil // the same key listed twice for one tenant
			}
			a, b := s.sorted[j].Name, s.sorted[i].Name
			return fmt.Errorf("tenant: tenants %q and %q share an API key; each key must identify one tenant", a, b)
		}
		owner[sum] = i
		s.keys = append(s.keys, keyHash{sum: sum, tenant: i})
		return nil
	}
	for i, t := range s.sorted {
		ct := t.cfg
		if len(ct.APIKeys) == 0 && ct.APIKeyEnv == "" {
			return nil, fmt.Errorf("tenant: tenant %q has neither api_keys nor api_key_env", ct.Name)
		}
		for n, k := range ct.APIKeys {
			sum, err := ParseKeyHash(k)
			if err != nil {
				return nil, fmt.Errorf("tenant: tenant %q: api_keys[%d]: %w", ct.Name, n, err)
			}
			if err := add(i, sum); err != nil {
				return nil, err
			}
		}
		if ct.APIKeyEnv != "" {
			key := o.getenv(ct.APIKeyEnv)
			if key == "" {
				return nil, fmt.Errorf("tenant: tenant %q: environment variable %s (api_key_env) is unset or empty", ct.Name, ct.APIKeyEnv)
			}
			if err := add(i, SumKey(key)); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// HashKey is key as mdsa.toml holds API and admin keys: "sha256:" and the
// hex of its SHA-256 (what `echo -n KEY | sha256sum` prints).
func HashKey(key string) string {
	sum := SumKey(key)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SumKey is the SHA-256 of key, as ParseKeyHash decodes a configured one.
func SumKey(key string) [sha256.Size]byte { return sha256.Sum256([]byte(key)) }

// ParseKeyHash decodes "sha256:<64 hex digits>". The value is never echoed
// in the error, in case someone pasted a clear-text key.
func ParseKeyHash(k string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	h, ok := strings.CutPrefix(k, "sha256:")
	if !ok || len(h) != 2*sha256.Size {
		return sum, errors.New(`want "sha256:" and 64 hex digits (echo -n KEY | sha256sum)`)
	}
	if _, err := hex.Decode(sum[:], []byte(h)); err != nil {
		return sum, errors.New(`want "sha256:" and 64 hex digits: not hexadecimal`)
	}
	return sum, nil
}

// Open reports whether the set was built without tenants: anyone may use the
// server, as tenant "default".
func (s *Set) Open() bool { return s.open }

// Authenticate maps an API key (the bearer token) to its tenant. The key's
// SHA-256 is compared with every configured hash in constant time, all of
// them every time, so timing reveals neither which tenant matched nor how
// many keys exist beyond their count. An Open set accepts any key,
// including "". A wrong or missing key gives ErrUnauthorized.
func (s *Set) Authenticate(key string) (*Tenant, error) {
	if s.open {
		return s.sorted[0], nil
	}
	sum := SumKey(key)
	found := -1
	for i := range s.keys {
		k := &s.keys[i]
		if s.onCompare != nil {
			s.onCompare()
		}
		eq := subtle.ConstantTimeCompare(sum[:], k.sum[:])
		found = subtle.ConstantTimeSelect(eq, k.tenant, found)
	}
	if found < 0 {
		return nil, ErrUnauthorized
	}
	return s.sorted[found], nil
}

// Get returns the named tenant.
func (s *Set) Get(name string) (*Tenant, bool) {
	t, ok := s.byName[name]
	return t, ok
}

// All returns every tenant, sorted by name. The slice is the caller's.
func (s *Set) All() []*Tenant { return slices.Clone(s.sorted) }

// Tenant is one client of the server: its allow-lists, plugin configuration
// and limits, and the live state that enforces those limits. Its methods are
// safe for concurrent use.
type Tenant struct {
	// Name identifies the tenant in logs and metrics.
	Name string

	open   bool          // the default tenant of an Open set
	cfg    config.Tenant // deep copy of the configuration
	limits config.TenantLimits
	now    func() time.Time

	shared   Shared // nil: limits kept in adm alone
	failMode FailMode

	adm admission
}

func newTenant(ct config.Tenant, now func() time.Time) (*Tenant, error) {
	l := ct.Limits
	switch {
	case math.IsNaN(l.RequestsPerSecond) || l.RequestsPerSecond < 0:
		return nil, fmt.Errorf("tenant: tenant %q: limits.requests_per_second = %v: want a number >= 0", ct.Name, l.RequestsPerSecond)
	case l.Burst < 0:
		return nil, fmt.Errorf("tenant: tenant %q: limits.burst = %d: must not be negative", ct.Name, l.Burst)
	case l.Concurrent < 0:
		return nil, fmt.Errorf("tenant: tenant %q: limits.concurrent = %d: must not be negative", ct.Name, l.Concurrent)
	case l.TokensPerMinute < 0:
		return nil, fmt.Errorf("tenant: tenant %q: limits.tokens_per_minute = %d: must not be negative", ct.Name, l.TokensPerMinute)
	case l.MaxTokens < 0:
		return nil, fmt.Errorf("tenant: tenant %q: limits.max_tokens = %d: must not be negative", ct.Name, l.MaxTokens)
	}
	if math.IsInf(l.RequestsPerSecond, 1) {
		l.RequestsPerSecond = 0 // no limit
	}
	if l.RequestsPerSecond > 0 && l.Burst == 0 {
		l.Burst = defaultBurst(l.RequestsPerSecond)
	}
	cfg := ct
	cfg.APIKeys = slices.Clone(ct.APIKeys)
	cfg.Plugins = nilIfEmpty(slices.Clone(ct.Plugins))
	cfg.Models = nilIfEmpty(slices.Clone(ct.Models))
	cfg.PluginConfig = nil
	for p, m := range ct.PluginConfig {
		if cfg.PluginConfig == nil {
			cfg.PluginConfig = make(map[string]map[string]string, len(ct.PluginConfig))
		}
		cfg.PluginConfig[p] = maps.Clone(m)
	}
	cfg.Limits = l
	t := &Tenant{Name: ct.Name, cfg: cfg, limits: l, now: now}
	t.adm.init(now(), l)
	return t, nil
}

// defaultBurst is one second's worth of requests, at least 1.
func defaultBurst(rps float64) int {
	b := math.Ceil(rps)
	if b > math.MaxInt32 {
		return math.MaxInt32
	}
	return max(1, int(b))
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// AllowsPlugin reports whether the tenant may use the named plugin
// (domain): its plugins list names it or has a pattern matching it
// (config.Tenant.Allows), or is empty.
func (t *Tenant) AllowsPlugin(name string) bool { return t.cfg.Allows(name) }

// AllowsModel reports whether the tenant may use the named catalog model.
func (t *Tenant) AllowsModel(name string) bool {
	return t.cfg.Models == nil || slices.Contains(t.cfg.Models, name)
}

// Plugins returns the tenant's plugins list (names and patterns), or nil
// when it may use all.
// The slice is the caller's.
func (t *Tenant) Plugins() []string { return slices.Clone(t.cfg.Plugins) }

// Models returns the catalog models the tenant may use, or nil when it may
// use all. The slice is the caller's.
func (t *Tenant) Models() []string { return slices.Clone(t.cfg.Models) }

// PluginConfig returns a copy of the tenant's configuration for the plugin
// (its Extism config), or nil if it has none.
func (t *Tenant) PluginConfig(plugin string) map[string]string {
	return maps.Clone(t.cfg.PluginConfig[plugin])
}

// Limits returns the tenant's limits; 0 means unlimited. Burst is the
// effective burst: when RequestsPerSecond is set and burst was not, it is
// max(1, ceil(RequestsPerSecond)).
func (t *Tenant) Limits() config.TenantLimits { return t.limits }

// MaxTokens resolves a request's max_tokens against the tenant's limit:
// requested 0 gives the limit (or 0 when there is none, leaving the choice
// to the engine); requested above the limit gives a *LimitError for
// "max_tokens" with RetryAfter 0, since retrying never helps. A negative
// request is an error.
func (t *Tenant) MaxTokens(requested int) (int, error) {
	limit := t.limits.MaxTokens
	switch {
	case requested < 0:
		return 0, fmt.Errorf("tenant %q: max_tokens %d must not be negative", t.Name, requested)
	case requested == 0:
		return limit, nil
	case limit > 0 && requested > limit:
		t.adm.countRefusal(LimitMaxTokens)
		return 0, &LimitError{Tenant: t.Name, Limit: LimitMaxTokens, Value: float64(limit)}
	}
	return requested, nil
}
