package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/internal/respcache"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Cache results, in Result.Cache.
const (
	CacheHit  = "hit"
	CacheMiss = "miss"
)

// Cache modes (cache.mode, a tenant's cache).
const (
	cacheOff           = "off"
	cacheDeterministic = "deterministic"
	cacheAlways        = "always"
)

// responseCache answers a request asked again with the answer kept for it
// (cache.mode, per tenant). The key is a hash of everything that shapes an
// answer: the tenant, the domain, the plugin's module (its sha256, so a
// hot swap starts afresh), the model the host would use, the query,
// history and context, and the request's sampling settings. Under
// "deterministic" only requests at temperature 0 to plugins without a
// handle export are kept: the prompt comes from the plugin's code alone
// (its clock and randomness are fixed by the sandbox), and greedy
// decoding gives the same text for the same prompt.
type responseCache struct {
	store  respcache.Store
	closer io.Closer
	ttl    time.Duration
	modes  map[string]string // tenant ("" = untenanted) -> mode
	// The semantic cache (cache.semantic_threshold > 0): answers found by
	// the similarity of their query's embedding within a group (the key
	// without the query).
	semantic  *respcache.Semantic
	threshold float64
	embedWith string // catalog model
}

// newResponseCache builds the cache of cfg; nil when every mode is off.
func newResponseCache(cfg config.Config) (*responseCache, error) {
	c := &responseCache{ttl: cfg.Cache.TTL.Duration, modes: map[string]string{"": cfg.Cache.Mode}}
	on := cfg.Cache.Mode != cacheOff
	for _, t := range cfg.Tenants {
		m := t.Cache
		if m == "" {
			m = cfg.Cache.Mode
		}
		c.modes[t.Name] = m
		on = on || m != cacheOff
	}
	if !on {
		return nil, nil
	}
	if cfg.Cache.SemanticThreshold > 0 {
		c.threshold = cfg.Cache.SemanticThreshold
		c.embedWith = cfg.Cache.SemanticModel
		if c.embedWith == "" {
			c.embedWith = cfg.Router.EmbedModel
		}
		c.semantic = respcache.NewSemantic(int64(cfg.Cache.MaxMB) << 20)
	}
	switch cfg.Cache.Store {
	case "redis":
		url, err := cfg.Redis.Address(os.Getenv)
		if err != nil {
			return nil, fmt.Errorf("host: cache.store = \"redis\" in %s: %w", cfg.File, err)
		}
		r, err := respcache.NewRedis(url, cfg.Redis.KeyPrefix, cfg.Redis.Timeout.Duration)
		if err != nil {
			return nil, fmt.Errorf("host: cache.store = \"redis\" in %s: %w", cfg.File, err)
		}
		c.store, c.closer = r, r
	default:
		c.store = respcache.NewMemory(int64(cfg.Cache.MaxMB) << 20)
	}
	return c, nil
}

// cachedAnswer is what the cache keeps of a result.
type cachedAnswer struct {
	Status       Status         `json:"status"`
	Response     string         `json:"response"`
	Validation   abi.Validation `json:"validation"`
	Model        string         `json:"model"`
	FinishReason string         `json:"finish_reason"`
}

// cacheKeys are a request's exact key and its group (the key without the
// query, for the semantic cache); both "" when the request is not kept.
type cacheKeys struct{ exact, group string }

// keys returns the cache keys of req for tenant on plugin p.
func (c *responseCache) keys(tenant, model string, p *plugin.Plugin, domain string, req Request) cacheKeys {
	if c == nil || req.Format != nil || req.Tools != nil || len(req.Turns) > 0 {
		return cacheKeys{}
	}
	switch c.modes[tenant] {
	case cacheAlways:
	case cacheDeterministic:
		if p.HasHandle() || req.Generation.Temperature == nil || *req.Generation.Temperature != 0 {
			return cacheKeys{}
		}
	default:
		return cacheKeys{}
	}
	ctxKeys := make([]string, 0, len(req.Context))
	for k := range req.Context {
		ctxKeys = append(ctxKeys, k)
	}
	slices.Sort(ctxKeys)
	ctxPairs := make([][2]string, len(ctxKeys))
	for i, k := range ctxKeys {
		ctxPairs[i] = [2]string{k, req.Context[k]}
	}
	hash := func(query string) string {
		doc, err := json.Marshal(struct {
			V          int
			Tenant     string
			Domain     string
			Plugin     string
			Model      string
			Query      string
			History    []abi.Message
			Context    [][2]string
			Generation abi.Generation
		}{1, tenant, domain, p.Hash(), model, query, req.History, ctxPairs, req.Generation})
		if err != nil {
			return ""
		}
		sum := sha256.Sum256(doc)
		return hex.EncodeToString(sum[:])
	}
	k := cacheKeys{exact: hash(req.Query)}
	if c.semantic != nil && k.exact != "" {
		k.group = hash("\x00semantic")
	}
	return k
}

// get returns the answer kept under key; a store that fails is a miss.
func (c *responseCache) get(ctx context.Context, key string) (cachedAnswer, bool) {
	var a cachedAnswer
	v, ok, err := c.store.Get(ctx, key)
	if err != nil || !ok || json.Unmarshal(v, &a) != nil {
		return a, false
	}
	return a, true
}

// put keeps res under k, and under its query's embedding vec when there
// is one.
func (c *responseCache) put(ctx context.Context, k cacheKeys, vec []float32, res Result) {
	v, err := json.Marshal(cachedAnswer{Status: res.Status, Response: res.Response, Validation: res.Validation,
		Model: res.Model, FinishReason: res.FinishReason})
	if err != nil {
		return
	}
	_ = c.store.Put(ctx, k.exact, v, c.ttl)
	if vec != nil && k.group != "" {
		c.semantic.Add(k.group, vec, v)
	}
}

// similar looks for a kept answer to a query like this one (the semantic
// cache): it embeds the query and returns the embedding for put.
func (h *Host) similar(ctx context.Context, tenant string, k cacheKeys, query string) (cachedAnswer, []float32, bool) {
	c := h.cache
	if c == nil || c.semantic == nil || k.group == "" {
		return cachedAnswer{}, nil, false
	}
	emb, err := h.embed(ctx, tenant, c.embedWith, []string{query})
	if err != nil || len(emb.Vectors) != 1 {
		h.log.Debug("semantic cache: embedding the query failed", "model", c.embedWith, "err", err)
		return cachedAnswer{}, nil, false
	}
	vec := emb.Vectors[0]
	v, _, ok := c.semantic.Find(k.group, vec, c.threshold)
	var a cachedAnswer
	if !ok || json.Unmarshal(v, &a) != nil {
		return cachedAnswer{}, vec, false
	}
	return a, vec, true
}

// close frees the store's connections.
func (c *responseCache) close() error {
	if c == nil || c.closer == nil {
		return nil
	}
	return c.closer.Close()
}

// cacheModel names the model a request would run on, for the key: the
// pinned one, else the configured engine model and the plugin's
// preferences.
func (h *Host) cacheModel(p *plugin.Plugin) string {
	if h.pinned != "" {
		return h.pinned
	}
	m := p.Manifest().Model
	return fmt.Sprintf("%s|%s|%v", h.cfg.Engine.Model, m.Tier, m.Prefer)
}

// answerFromCache fills res from a kept answer and streams its text.
func answerFromCache(res *Result, a cachedAnswer, onToken engine.TokenFunc) error {
	res.Cache = CacheHit
	res.Status, res.Response, res.Validation, res.Model, res.FinishReason = a.Status, a.Response, a.Validation, a.Model, a.FinishReason
	if res.Validation.Issues == nil {
		res.Validation.Issues = []abi.Issue{}
	}
	if onToken != nil && a.Response != "" {
		return onToken(a.Response)
	}
	return nil
}
