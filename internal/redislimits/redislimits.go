// Package redislimits keeps tenants' limits in Redis (or Valkey), so that
// every replica of mdsa serve pointed at the same server enforces each
// tenant's requests_per_second, concurrent and tokens_per_minute together.
// Each Admit and Release is one Lua script, atomic on the server, timed by
// the server's clock (so replicas' clocks need not agree):
//
//   - requests_per_second with burst: GCRA (the generic cell rate
//     algorithm): one key holds the theoretical arrival time; a request
//     is admitted when it is at most burst emission intervals ahead.
//   - concurrent: a sorted set of the admitted requests' ids, scored by
//     when their lease ends (Options.Lease): Release removes an id, and a
//     replica that dies without releasing loses its slots at the lease's
//     end, not never.
//   - tokens_per_minute: a hash of tokens per second; Admit sums the last
//     60 seconds (dropping older fields) and refuses at the limit with
//     the time until enough tokens leave the window.
//
// A tenant's keys share a hash tag ({tenant}), so the script runs on one
// Redis Cluster slot.
package redislimits

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/tenant"
)

// Options configure a Store.
type Options struct {
	// URL is the server, redis://[user:password@]host:port[/db] (rediss://
	// for TLS).
	URL string
	// Prefix starts every key; "" means "mdsa:".
	Prefix string
	// Timeout bounds each call; 0 means 100 ms.
	Timeout time.Duration
	// Lease is how long an admitted request holds its concurrency slot if
	// it is never released (its replica died); 0 means 15 minutes.
	Lease time.Duration
	// Backoff is how long the Store answers errors at once, without
	// trying the server, after a call failed; 0 means 1 s. A Redis that is
	// down then costs requests nothing but the fallback.
	Backoff time.Duration
}

// Store is a tenant.Shared on Redis.
type Store struct {
	rdb       *redis.Client
	opts      Options
	downUntil atomic.Int64 // unix nanoseconds: fail fast until then
}

// ErrDown is returned while the Store backs off after a failed call.
var ErrDown = errors.New("redislimits: Redis failed a moment ago; not trying again yet")

// New connects lazily: it checks the URL, not the server.
func New(o Options) (*Store, error) {
	ro, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redislimits: %w", err)
	}
	if o.Prefix == "" {
		o.Prefix = "mdsa:"
	}
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.Lease <= 0 {
		o.Lease = 15 * time.Minute
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = o.Timeout, o.Timeout, o.Timeout
	ro.MaxRetries = 0 // a retry doubles the wait a request pays when Redis is down
	return &Store{rdb: redis.NewClient(ro), opts: o}, nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.rdb.Close() }

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	return s.rdb.Ping(ctx).Err()
}

func (s *Store) keys(t string) []string {
	base := s.opts.Prefix + "{" + t + "}:"
	return []string{base + "rate", base + "inflight", base + "tokens"}
}

// admitScript returns {0, 0} when admitted, else {limit, retry in µs}
// with limit 1 (rate), 2 (concurrent) or 3 (tokens). Times are integer
// microseconds of the server's clock; every number written back is
// formatted with %.0f, since Lua would write a large float in exponent
// form and lose digits.
var admitScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rps, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local conc, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
local id, lease = ARGV[5], tonumber(ARGV[6])
local newtat = nil
if rps > 0 then
  local interval = 1000000 / rps
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  newtat = tat + interval
  local allowAt = newtat - burst * interval
  if allowAt > now then return {1, math.ceil(allowAt - now)} end
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
  if redis.call('ZCARD', KEYS[2]) >= conc then return {2, 1000000} end
end
if tpm > 0 then
  local sec = math.floor(now / 1000000)
  local all = redis.call('HGETALL', KEYS[3])
  local total, kept = 0, {}
  for i = 1, #all, 2 do
    local s, v = tonumber(all[i]), tonumber(all[i + 1])
    if s <= sec - 60 then
      redis.call('HDEL', KEYS[3], all[i])
    else
      total = total + v
      table.insert(kept, {s, v})
    end
  end
  if total >= tpm then
    table.sort(kept, function(a, b) return a[1] < b[1] end)
    for _, e in ipairs(kept) do
      total = total - e[2]
      if total < tpm then return {3, math.max(1, (e[1] + 60) * 1000000 - now)} end
    end
    return {3, 60000000}
  end
end
if newtat then
  redis.call('SET', KEYS[1], string.format('%.0f', newtat), 'PX', math.ceil((newtat - now) / 1000) + 1000)
end
if conc > 0 then
  redis.call('ZADD', KEYS[2], string.format('%.0f', now + lease), id)
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000) + 1000)
end
return {0, 0}
`)

// releaseScript frees the slot of ARGV[1] and records ARGV[2] tokens in
// the current second.
var releaseScript = redis.NewScript(`
redis.call('ZREM', KEYS[2], ARGV[1])
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  local t = redis.call('TIME')
  redis.call('HINCRBY', KEYS[3], t[1], tokens)
  redis.call('PEXPIRE', KEYS[3], 120000)
end
return 0
`)

// limitNames maps the script's limit numbers to tenant's names.
var limitNames = map[int64]string{1: tenant.LimitRequestsPerSecond, 2: tenant.LimitConcurrent, 3: tenant.LimitTokensPerMinute}

// Admit implements tenant.Shared.
func (s *Store) Admit(ctx context.Context, t string, l config.TenantLimits, id string) (*tenant.LimitError, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	burst := l.Burst
	if burst < 1 {
		burst = 1
	}
	res, err := admitScript.Run(ctx, s.rdb, s.keys(t), l.RequestsPerSecond, burst, l.Concurrent, l.TokensPerMinute,
		id, s.opts.Lease.Microseconds()).Int64Slice()
	if err != nil {
		return nil, s.failed(err)
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("redislimits: the admit script answered %v", res)
	}
	if res[0] == 0 {
		return nil, nil
	}
	name, ok := limitNames[res[0]]
	if !ok {
		return nil, fmt.Errorf("redislimits: the admit script answered limit %d", res[0])
	}
	return &tenant.LimitError{Limit: name, RetryAfter: time.Duration(res[1]) * time.Microsecond}, nil
}

// Release implements tenant.Shared.
func (s *Store) Release(ctx context.Context, t, id string, tokens int) error {
	if err := s.ready(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := releaseScript.Run(ctx, s.rdb, s.keys(t), id, max(tokens, 0)).Err(); err != nil {
		return s.failed(err)
	}
	return nil
}

// ready fails fast while backing off.
func (s *Store) ready() error {
	if until := s.downUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return ErrDown
	}
	return nil
}

// failed starts a back-off (unless the caller gave up) and wraps err.
func (s *Store) failed(err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("redislimits: %w", err)
	}
	s.downUntil.Store(time.Now().Add(s.opts.Backoff).UnixNano())
	return fmt.Errorf("redislimits: %w", err)
}
