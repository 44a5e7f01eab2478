package respcache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store in a Redis server, shared by replicas. Values expire
// by Redis's own TTL; memory is Redis's to bound (maxmemory with an LRU
// policy).
type Redis struct {
	rdb     *redis.Client
	prefix  string
	timeout time.Duration
}

// NewRedis connects lazily to url; keys start with prefix.
func NewRedis(url, prefix string, timeout time.Duration) (*Redis, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("respcache: %w", err)
	}
	if timeout <= 0 {
		timeout = 100 * time.Millisecond
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = timeout, timeout, timeout, 0
	return &Redis{rdb: redis.NewClient(o), prefix: prefix + "cache:", timeout: timeout}, nil
}

// Close closes the connections.
func (r *Redis) Close() error { return r.rdb.Close() }

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	v, err := r.rdb.Get(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("respcache: %w", err)
	}
	return v, true, nil
}

// Put implements Store.
func (r *Redis) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.rdb.Set(ctx, r.prefix+key, value, ttl).Err(); err != nil {
		return fmt.Errorf("respcache: %w", err)
	}
	return nil
}
