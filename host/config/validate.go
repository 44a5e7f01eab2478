package config

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

var (
	modelNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	sha256RE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// validate checks every field; data, when not nil, is the TOML text used to
// find the line of the offending key.
func (c *Config) validate(data []byte) error {
	fail := func(msg string, key ...string) error {
		return &Error{File: c.File, Line: keyLine(data, toml.Key(key)), Key: strings.Join(key, "."), Msg: msg}
	}
	if c.File == "" {
		c.File = "<built-in config>"
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Host.LogLevel)); err != nil {
		return fail(fmt.Sprintf("log level %q: want debug, info, warn or error", c.Host.LogLevel), "host", "log_level")
	}
	if c.Host.PluginsDir == "" {
		return fail("must not be empty", "host", "plugins_dir")
	}
	if c.Engine.Kind != "llamacpp" {
		return fail(fmt.Sprintf("engine %q is not supported (supported: llamacpp)", c.Engine.Kind), "engine", "kind")
	}
	ints := []struct {
		v    int
		min  int
		max  int
		path []string
	}{
		{c.Engine.Threads, 0, 1024, []string{"engine", "threads"}},
		{c.Engine.ContextSize, 64, 1 << 20, []string{"engine", "context_size"}},
		{c.Engine.Parallel, 1, 256, []string{"engine", "parallel"}},
		{c.Engine.PromptCacheMB, 0, 1 << 20, []string{"engine", "prompt_cache_mb"}},
		{c.Engine.MaxTokens, 1, 1 << 20, []string{"engine", "max_tokens"}},
		{c.Engine.MemoryBudgetMB, 0, 1 << 30, []string{"engine", "memory_budget_mb"}},
		{c.Engine.MaxLoaded, 0, 1024, []string{"engine", "max_loaded"}},
		{c.Plugins.MemoryMB, 1, 4096, []string{"plugins", "memory_mb"}},
		{c.Plugins.MaxOutputBytes, 1024, 64 << 20, []string{"plugins", "max_output_bytes"}},
		{c.Plugins.MaxHostCalls, 0, 10000, []string{"plugins", "max_host_calls"}},
		{c.Plugins.MaxTokens, 0, 1 << 24, []string{"plugins", "max_tokens"}},
		{c.Plugins.MaxWorkTokens, 0, 1 << 26, []string{"plugins", "max_work_tokens"}},
		{c.Plugins.PoolSize, 0, 1024, []string{"plugins", "pool_size"}},
		{c.Plugins.CompileMemoryMB, 0, 1 << 20, []string{"plugins", "compile_memory_mb"}},
		{c.Plugins.TotalMemoryMB, 0, 1 << 24, []string{"plugins", "total_memory_mb"}},
		{c.Plugins.StackKB, 0, 1 << 16, []string{"plugins", "stack_kb"}},
		{c.Plugins.Shape.Functions, 0, 10_000_000, []string{"plugins", "shape", "functions"}},
		{c.Plugins.Shape.LocalsTotal, 0, 100_000_000, []string{"plugins", "shape", "locals_total"}},
		{c.Plugins.Shape.BodyKB, 0, 1 << 20, []string{"plugins", "shape", "body_kb"}},
		{c.Plugins.Shape.Nesting, 0, 1_000_000, []string{"plugins", "shape", "nesting"}},
		{c.Plugins.Shape.BrTableTargets, 0, 100_000_000, []string{"plugins", "shape", "br_table_targets"}},
		{c.Plugins.Shape.Globals, 0, 10_000_000, []string{"plugins", "shape", "globals"}},
		{c.Plugins.Shape.DataSegments, 0, 100_000_000, []string{"plugins", "shape", "data_segments"}},
		{c.Plugins.Shape.ElemSegments, 0, 10_000_000, []string{"plugins", "shape", "elem_segments"}},
		{c.Plugins.Shape.Exports, 0, 10_000_000, []string{"plugins", "shape", "exports"}},
	}
	for _, f := range ints {
		if f.v < f.min || f.v > f.max {
			return fail(fmt.Sprintf("%d is out of range [%d, %d]", f.v, f.min, f.max), f.path...)
		}
	}
	if err := c.Engine.GPULayers.validate(); err != nil {
		return fail(err.Error(), "engine", "gpu_layers")
	}
	if d := c.Plugins.MaxHostTime.Duration; d < 0 || d > time.Hour {
		return fail(fmt.Sprintf("%s is out of range [0s, 1h] (0: the default, 1m)", d), "plugins", "max_host_time")
	}
	if d := c.Plugins.CompileTimeout.Duration; d < 0 || d > time.Hour {
		return fail(fmt.Sprintf("%s is out of range [0s, 1h] (0: the default, 10s)", d), "plugins", "compile_timeout")
	}
	if d := c.Plugins.ThrottleAfter.Duration; d < 0 || d > time.Minute {
		return fail(fmt.Sprintf("%s is out of range [0s, 1m] (0: the default, 5ms)", d), "plugins", "throttle_after")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Plugins.Config)) {
		if !abi.ValidName(name) {
			return fail(fmt.Sprintf("plugin name %q is not valid: lower-case letters, digits, '_' and '-' (at most %d)", name, abi.MaxNameLen), "plugins", "config", name)
		}
	}
	if s := c.Plugins.ThrottleShare; !(s >= 0 && s <= 1) {
		return fail(fmt.Sprintf("%g is out of range (0, 1] (1 turns throttling off; 0: the default, 0.1)", s), "plugins", "throttle_share")
	}
	if t := c.Router.Threshold; t < 0 || t > 1 {
		return fail(fmt.Sprintf("%g is out of range [0, 1]", t), "router", "threshold")
	}
	for _, d := range slices.Sorted(maps.Keys(c.Router.Thresholds)) {
		if t := c.Router.Thresholds[d]; t < 0 || t > 1 {
			return fail(fmt.Sprintf("%g is out of range [0, 1]", t), "router", "thresholds", d)
		}
	}
	if v := c.Router.ConversationSwitch; v < 0 || v > 1 || v != v {
		return fail(fmt.Sprintf("%v is out of range [0, 1] (0 = route every query alone)", v), "router", "conversation_switch")
	}
	if k := c.Router.TopK; k < 1 || k > 100 {
		return fail(fmt.Sprintf("%d is out of range [1, 100]", k), "router", "top_k")
	}
	if d := c.Engine.KeepAlive.Duration; d < 0 {
		return fail(fmt.Sprintf("%s must not be negative", d), "engine", "keep_alive")
	}
	if n := c.Plugins.MaxToolSteps; n < 0 || n > 32 {
		return fail(fmt.Sprintf("%d is out of range [0, 32] (0 turns the domains' tools off)", n), "plugins", "max_tool_steps")
	}
	if d := c.Plugins.Timeout.Duration; d <= 0 {
		return fail(fmt.Sprintf("%s must be positive", d), "plugins", "timeout")
	}
	names := make([]string, 0, len(c.Models))
	for n := range c.Models {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		m := c.Models[name]
		if !modelNameRE.MatchString(name) {
			return fail("model names use letters, digits, '.', '_' and '-'", "models", name)
		}
		switch m.Tier {
		case "router", "reasoner", "domain":
		default:
			return fail(fmt.Sprintf("tier %q: want router, reasoner or domain", m.Tier), "models", name, "tier")
		}
		if m.ContextLength < 0 {
			return fail("must not be negative", "models", name, "context_length")
		}
		if m.Backend != "" {
			if _, ok := c.Backends[m.Backend]; !ok {
				return fail(fmt.Sprintf("no [backends.%s] table (have: %s)", m.Backend, strings.Join(slices.Sorted(maps.Keys(c.Backends)), ", ")),
					"models", name, "backend")
			}
			if len(m.Variants) > 0 {
				return fail("a model served by a backend has no variants: drop the [models.NAME.variants] tables or the backend key", "models", name, "backend")
			}
			continue
		}
		if m.RemoteModel != "" {
			return fail("remote_model needs backend", "models", name, "remote_model")
		}
		if len(m.Variants) == 0 {
			return fail("a model needs at least one [models.NAME.variants.QUANT] table, or a backend", "models", name)
		}
		for _, q := range m.variantNames() {
			v := m.Variants[q]
			if v.Path == "" && v.File == "" {
				return fail("set file (with repo or url) or path", "models", name, "variants", q)
			}
			if v.SHA256 != "" && !sha256RE.MatchString(v.SHA256) {
				return fail("want 64 lowercase hex digits, or empty to record the sum at first download",
					"models", name, "variants", q, "sha256")
			}
			if v.Size < 0 {
				return fail("must not be negative", "models", name, "variants", q, "size")
			}
		}
	}
	for i, ref := range c.Plugins.Registry.Refs {
		if !strings.HasPrefix(ref, "oci://") || strings.ContainsAny(ref, " \t\n") {
			return fail(fmt.Sprintf("refs[%d] %q: want oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:...", i, ref), "plugins", "registry", "refs")
		}
	}
	if d := c.Plugins.Registry.Poll.Duration; d < 100*time.Millisecond || d > 24*time.Hour {
		return fail(fmt.Sprintf("%s is out of range [100ms, 24h]", d), "plugins", "registry", "poll")
	}
	for _, k := range []struct{ v, key string }{{c.Plugins.Registry.UsernameEnv, "username_env"}, {c.Plugins.Registry.PasswordEnv, "password_env"}} {
		if k.v != "" && !envNameRE.MatchString(k.v) {
			return fail(fmt.Sprintf("%q is not an environment variable name", k.v), "plugins", "registry", k.key)
		}
	}
	cacheModes := []string{"off", "deterministic", "always"}
	if !slices.Contains(cacheModes, c.Cache.Mode) {
		return fail(fmt.Sprintf("%q: want off, deterministic or always", c.Cache.Mode), "cache", "mode")
	}
	if c.Cache.MaxMB < 0 || c.Cache.MaxMB > 1<<20 {
		return fail(fmt.Sprintf("%d is out of range [0, %d]", c.Cache.MaxMB, 1<<20), "cache", "max_mb")
	}
	if d := c.Cache.TTL.Duration; d <= 0 || d > 30*24*time.Hour {
		return fail(fmt.Sprintf("%s is out of range (0s, 720h]", d), "cache", "ttl")
	}
	switch c.Cache.Store {
	case "memory":
	case "redis":
		if c.Redis.URL == "" && c.Redis.URLEnv == "" {
			return fail("store = \"redis\" needs [redis] url or url_env", "cache", "store")
		}
	default:
		return fail(fmt.Sprintf("%q: want memory or redis", c.Cache.Store), "cache", "store")
	}
	if th := c.Cache.SemanticThreshold; th < 0 || th > 1 || th != th {
		return fail(fmt.Sprintf("%v is out of range [0, 1] (0 = off)", th), "cache", "semantic_threshold")
	}
	if c.Cache.SemanticThreshold > 0 {
		m := c.Cache.SemanticModel
		if m == "" {
			m = c.Router.EmbedModel
		}
		if m == "" {
			return fail("the semantic cache needs cache.semantic_model or router.embed_model", "cache", "semantic_threshold")
		}
		if _, ok := c.Models[m]; !ok {
			return fail(fmt.Sprintf("model %q is not in the catalog", m), "cache", "semantic_model")
		}
	}
	if r := c.Console.Recent; r < 1 || r > 100000 {
		return fail(fmt.Sprintf("%d is out of range [1, 100000]", r), "console", "recent")
	}
	if d := c.Console.SessionTTL.Duration; d < time.Minute || d > 30*24*time.Hour {
		return fail(fmt.Sprintf("%s is out of range [1m, 720h]", d), "console", "session_ttl")
	}
	if n := c.Console.MaxSessions; n < 1 || n > 1000000 {
		return fail(fmt.Sprintf("%d is out of range [1, 1000000]", n), "console", "max_sessions")
	}
	if n := c.Console.MaxStreams; n < 1 || n > 10000 {
		return fail(fmt.Sprintf("%d is out of range [1, 10000]", n), "console", "max_streams")
	}
	if c.Console.Enabled && len(c.Server.AdminKeys) == 0 && c.Server.AdminKeyEnv == "" && len(c.Tenants) == 0 {
		return fail("the console needs someone to log in: set server.admin_keys or server.admin_key_env, or configure [[tenants]]", "console", "enabled")
	}
	switch c.Conversations.Store {
	case "sqlite":
		if c.Conversations.Enabled && c.Conversations.Path == "" {
			return fail("the SQLite file's path is empty", "conversations", "path")
		}
	case "postgres":
		if c.Conversations.URL == "" && c.Conversations.URLEnv == "" {
			return fail("store = \"postgres\" needs url or url_env", "conversations", "store")
		}
		if u := c.Conversations.URL; u != "" && !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
			return fail("want postgres://USER@HOST/DB", "conversations", "url")
		}
	default:
		return fail(fmt.Sprintf("%q: want sqlite or postgres", c.Conversations.Store), "conversations", "store")
	}
	if n := c.Conversations.MaxPerTenant; n < 1 || n > 100000000 {
		return fail(fmt.Sprintf("%d is out of range [1, 100000000]", n), "conversations", "max_per_tenant")
	}
	if n := c.Conversations.MaxMessages; n < 2 || n > 1000000 {
		return fail(fmt.Sprintf("%d is out of range [2, 1000000]", n), "conversations", "max_messages")
	}
	if n := c.Conversations.MaxKB; n < 1 || n > 1<<20 {
		return fail(fmt.Sprintf("%d is out of range [1, %d]", n, 1<<20), "conversations", "max_kb")
	}
	if d := c.Conversations.TTL.Duration; d < time.Minute || d > 10*365*24*time.Hour {
		return fail(fmt.Sprintf("%s is out of range [1m, 87600h]", d), "conversations", "ttl")
	}
	switch c.Knowledge.Store {
	case "sqlite":
		if c.Knowledge.Enabled && c.Knowledge.Path == "" {
			return fail("the knowledge bases need a file", "knowledge", "path")
		}
	case "postgres":
		if c.Knowledge.URL == "" && c.Knowledge.URLEnv == "" {
			return fail("store = \"postgres\" needs url or url_env", "knowledge", "store")
		}
		if u := c.Knowledge.URL; u != "" && !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
			return fail("want postgres://USER@HOST/DB", "knowledge", "url")
		}
	default:
		return fail(fmt.Sprintf("%q: want sqlite or postgres", c.Knowledge.Store), "knowledge", "store")
	}
	if e := c.Knowledge.URLEnv; e != "" && !envNameRE.MatchString(e) {
		return fail(fmt.Sprintf("%q is not an environment variable name", e), "knowledge", "url_env")
	}
	for _, b := range []struct {
		v, lo, hi int
		key       string
	}{
		{c.Knowledge.MaxDocKB, 1, 64 << 10, "max_doc_kb"},
		{c.Knowledge.MaxDocsPerTenant, 1, 100000000, "max_docs_per_tenant"},
		{c.Knowledge.MaxChunksPerTenant, 1, 1000000000, "max_chunks_per_tenant"},
		{c.Knowledge.MaxKBsPerTenant, 1, 100000, "max_kbs_per_tenant"},
		{c.Knowledge.ChunkChars, 200, 8000, "chunk_chars"},
	} {
		if b.v < b.lo || b.v > b.hi {
			return fail(fmt.Sprintf("%d is out of range [%d, %d]", b.v, b.lo, b.hi), "knowledge", b.key)
		}
	}
	if e := c.Knowledge.EmbedModel; e != "" {
		if _, ok := c.Models[e]; !ok {
			return fail(fmt.Sprintf("model %q is not in the catalog (have: %s)", e, strings.Join(names, ", ")), "knowledge", "embed_model")
		}
	}
	for i, t := range c.Tenants {
		if t.Cache != "" && !slices.Contains(cacheModes, t.Cache) {
			return fail(fmt.Sprintf("tenant %q: cache %q: want off, deterministic or always", t.Name, t.Cache), "tenants", strconv.Itoa(i), "cache")
		}
	}
	if err := c.validateBackends(fail); err != nil {
		return err
	}
	if e := c.Router.EmbedModel; e != "" {
		if _, ok := c.Models[e]; !ok {
			return fail(fmt.Sprintf("model %q is not in the catalog (have: %s)", e, strings.Join(names, ", ")), "router", "embed_model")
		}
	}
	if c.Server.Listen == "" {
		return fail("must not be empty", "server", "listen")
	}
	if b := c.Server.MaxBodyBytes; b < 1024 || b > 1<<30 {
		return fail(fmt.Sprintf("%d is out of range [1024, %d]", b, 1<<30), "server", "max_body_bytes")
	}
	if d := c.Server.ShutdownGrace.Duration; d < 0 {
		return fail(fmt.Sprintf("%s must not be negative", d), "server", "shutdown_grace")
	}
	if d := c.Server.RefusalDelay.Duration; d < 0 || d > 10*time.Second {
		return fail(fmt.Sprintf("%s is out of range [0s, 10s]", d), "server", "refusal_delay")
	}
	for _, k := range c.Server.AdminKeys {
		if !keyHashRE.MatchString(k) {
			return fail("want \"sha256:\" and 64 lowercase hex digits (echo -n KEY | sha256sum), never the key itself", "server", "admin_keys")
		}
	}
	switch c.Server.Limits {
	case "local":
	case "redis":
		if c.Redis.URL == "" && c.Redis.URLEnv == "" {
			return fail("limits = \"redis\" needs [redis] url or url_env", "server", "limits")
		}
	default:
		return fail(fmt.Sprintf("%q: want \"local\" or \"redis\"", c.Server.Limits), "server", "limits")
	}
	if f := c.Server.LimitsFail; f != "open" && f != "closed" {
		return fail(fmt.Sprintf("%q: want \"open\" or \"closed\"", f), "server", "limits_fail")
	}
	if u := c.Redis.URL; u != "" && !strings.HasPrefix(u, "redis://") && !strings.HasPrefix(u, "rediss://") && !strings.HasPrefix(u, "unix://") {
		return fail("want redis://HOST:PORT[/DB], rediss://... or unix:///PATH", "redis", "url")
	}
	if e := c.Redis.URLEnv; e != "" && !envNameRE.MatchString(e) {
		return fail(fmt.Sprintf("%q is not an environment variable name", e), "redis", "url_env")
	}
	if d := c.Redis.Timeout.Duration; d <= 0 || d > time.Minute {
		return fail(fmt.Sprintf("%s is out of range (0s, 1m]", d), "redis", "timeout")
	}
	if e := c.Server.AdminKeyEnv; e != "" && !envNameRE.MatchString(e) {
		return fail(fmt.Sprintf("%q is not an environment variable name", e), "server", "admin_key_env")
	}
	if err := c.validateTenants(data, names); err != nil {
		return err
	}
	if c.Engine.Model != "" {
		m, ok := c.Models[c.Engine.Model]
		if !ok {
			return fail(fmt.Sprintf("model %q is not in the catalog (have: %s)", c.Engine.Model, strings.Join(names, ", ")), "engine", "model")
		}
		// engine.quant is a preference: a model without that variant uses
		// its first one (MDSA_MODEL=synthetic with the shipped quant
		// Q4_K_M, say). Only a quant no model has is a mistake.
		if c.Engine.Quant != "" {
			if _, ok := m.Variants[c.Engine.Quant]; !ok && !c.anyVariant(c.Engine.Quant) {
				return fail(fmt.Sprintf("no model in the catalog has a variant %q (model %q has: %s)", c.Engine.Quant, c.Engine.Model,
					strings.Join(m.variantNames(), ", ")), "engine", "quant")
			}
		}
	}
	return nil
}

// anyVariant reports whether some catalog model has a variant named quant.
func (c *Config) anyVariant(quant string) bool {
	for _, m := range c.Models {
		if _, ok := m.Variants[quant]; ok {
			return true
		}
	}
	return false
}

// keyLine finds the 1-based line that defines key in TOML text, or 0. It
// understands [table] and [[array]] headers, dotted keys and quoted key
// parts well enough for configuration files; it never fails.
func keyLine(data []byte, key toml.Key) int {
	if len(data) == 0 || len(key) == 0 {
		return 0
	}
	want := strings.Join(key, ".")
	var table string
	best := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		if strings.HasPrefix(s, "[") {
			h := strings.Trim(s, "[]")
			if i := strings.Index(h, "]"); i >= 0 {
				h = h[:i]
			}
			table = normKey(h)
			if table == want {
				best = line
			}
			continue
		}
		eq := strings.Index(s, "=")
		if eq <= 0 {
			continue
		}
		full := normKey(s[:eq])
		if table != "" {
			full = table + "." + full
		}
		if full == want {
			return line
		}
		// A key below a table that is defined inline on this line.
		if strings.HasPrefix(want, full+".") && best == 0 {
			best = line
		}
	}
	return best
}

// normKey turns `a . "b.c" . d` into a.b.c.d: good enough for locating keys.
func normKey(s string) string {
	parts := strings.Split(s, ".")
	out := parts[:0]
	for _, p := range parts {
		p = strings.TrimSpace(p)
		p = strings.Trim(p, `"'`)
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

var (
	tenantNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	keyHashRE    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// validateTenants checks [[tenants]]; errors name the tenant and the line
// within its table.
func (c *Config) validateTenants(data []byte, models []string) error {
	seen := map[string]bool{}
	for i, t := range c.Tenants {
		fail := func(msg, key string) error {
			who := fmt.Sprintf("tenants[%d]", i)
			if t.Name != "" {
				who = fmt.Sprintf("tenants[%d] (%s)", i, t.Name)
			}
			k := who
			if key != "" {
				k += "." + key
			}
			return &Error{File: c.File, Line: tenantLine(data, i, key), Key: k, Msg: msg}
		}
		switch {
		case !tenantNameRE.MatchString(t.Name):
			return fail(fmt.Sprintf("name %q: want 1-64 of a-z, 0-9, '_' and '-'", t.Name), "name")
		case seen[t.Name]:
			return fail(fmt.Sprintf("tenant %q is declared twice", t.Name), "name")
		case len(t.APIKeys) == 0 && t.APIKeyEnv == "":
			return fail("a tenant needs api_keys or api_key_env", "api_keys")
		case t.APIKeyEnv != "" && !envNameRE.MatchString(t.APIKeyEnv):
			return fail(fmt.Sprintf("%q is not an environment variable name", t.APIKeyEnv), "api_key_env")
		}
		seen[t.Name] = true
		for _, k := range t.APIKeys {
			if !keyHashRE.MatchString(k) {
				return fail("want \"sha256:\" and 64 lowercase hex digits (echo -n KEY | sha256sum), never the key itself", "api_keys")
			}
		}
		for _, p := range t.Plugins {
			if IsPattern(p) {
				if _, err := path.Match(p, ""); err != nil || len(p) > 64 {
					return fail(fmt.Sprintf("plugin pattern %q is not valid (path.Match syntax: *, ?, [a-z])", p), "plugins")
				}
				continue
			}
			if !abi.ValidName(p) {
				return fail(fmt.Sprintf("plugin name %q is not valid: lower-case letters, digits, '_' and '-' (or a pattern: *, ?, [a-z])", p), "plugins")
			}
		}
		for _, m := range t.Models {
			if _, ok := c.Models[m]; !ok {
				return fail(fmt.Sprintf("model %q is not in the catalog (have: %s)", m, strings.Join(models, ", ")), "models")
			}
		}
		for p := range t.PluginConfig {
			if !t.Allows(p) {
				return fail(fmt.Sprintf("config for plugin %q, which the tenant may not use (plugins = %v)", p, t.Plugins), "plugin_config."+p)
			}
		}
		l := t.Limits
		switch {
		case l.RequestsPerSecond < 0:
			return fail("must not be negative", "limits.requests_per_second")
		case l.Burst < 0:
			return fail("must not be negative", "limits.burst")
		case l.Concurrent < 0:
			return fail("must not be negative", "limits.concurrent")
		case l.TokensPerMinute < 0:
			return fail("must not be negative", "limits.tokens_per_minute")
		case l.MaxTokens < 0:
			return fail("must not be negative", "limits.max_tokens")
		}
	}
	return nil
}

// tenantLine finds the line of key (dotted, relative to the tenant; "" for
// the tenant itself) within the n-th [[tenants]] table, or 0.
func tenantLine(data []byte, n int, key string) int {
	if len(data) == 0 {
		return 0
	}
	parts := strings.Split(key, ".")
	leaf := parts[len(parts)-1]
	table := ""
	if len(parts) > 1 {
		table = "tenants." + strings.Join(parts[:len(parts)-1], ".")
	}
	idx := -1
	cur := ""
	header := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		switch {
		case s == "[[tenants]]":
			idx++
			if idx > n {
				return header
			}
			cur, header = "tenants", line
			continue
		case strings.HasPrefix(s, "["):
			cur = strings.Trim(s, "[] ")
			if idx == n && key != "" && cur == "tenants."+key {
				return line
			}
			continue
		}
		if idx != n {
			continue
		}
		if key == "" {
			return header
		}
		k, _, ok := strings.Cut(s, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		want := "tenants"
		if table != "" {
			want = table
		}
		if (cur == want && k == leaf) || (cur == "tenants" && k == key) {
			return line
		}
	}
	if idx >= n {
		return header // the key is missing: point at the tenant
	}
	return 0
}

// backendKinds are the accepted [backends.NAME] kind values.
var backendKinds = []string{"", "openai", "llama-server", "vllm", "ollama"}

// validateBackends checks each [backends.NAME] table.
func (c *Config) validateBackends(fail func(msg string, key ...string) error) error {
	for _, name := range slices.Sorted(maps.Keys(c.Backends)) {
		b := c.Backends[name]
		if !modelNameRE.MatchString(name) {
			return fail("backend names use letters, digits, '.', '_' and '-'", "backends", name)
		}
		if !slices.Contains(backendKinds, b.Kind) {
			return fail(fmt.Sprintf("kind %q: want openai, llama-server, vllm or ollama", b.Kind), "backends", name, "kind")
		}
		if len(b.URLs) == 0 {
			return fail("a backend needs at least one server URL: urls = [\"http://10.0.0.5:8000\"]", "backends", name)
		}
		seen := map[string]bool{}
		for _, raw := range b.URLs {
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
				return fail(fmt.Sprintf("%q: want http://HOST:PORT or https://HOST:PORT (a path such as /v1 is allowed)", raw), "backends", name, "urls")
			}
			if seen[raw] {
				return fail(fmt.Sprintf("%q is listed twice", raw), "backends", name, "urls")
			}
			seen[raw] = true
		}
		if b.Balance != "" && b.Balance != "least-outstanding" && b.Balance != "prefix" {
			return fail(fmt.Sprintf("balance %q: want least-outstanding or prefix", b.Balance), "backends", name, "balance")
		}
		if e := b.APIKeyEnv; e != "" && !envNameRE.MatchString(e) {
			return fail(fmt.Sprintf("%q is not an environment variable name", e), "backends", name, "api_key_env")
		}
		if len(b.APIKeyEnvs) > 0 && len(b.APIKeyEnvs) != len(b.URLs) {
			return fail(fmt.Sprintf("%d entries for %d urls: one per url, in the same order", len(b.APIKeyEnvs), len(b.URLs)), "backends", name, "api_key_envs")
		}
		for _, e := range b.APIKeyEnvs {
			if e != "" && !envNameRE.MatchString(e) {
				return fail(fmt.Sprintf("%q is not an environment variable name", e), "backends", name, "api_key_envs")
			}
		}
		for _, n := range []struct {
			v   int
			lo  int
			key string
		}{{b.MaxConcurrent, 0, "max_concurrent"}, {b.Retries, -1, "retries"}, {b.EjectAfter, 0, "eject_after"}} {
			if n.v < n.lo || n.v > 100000 {
				return fail(fmt.Sprintf("%d is out of range [%d, 100000]", n.v, n.lo), "backends", name, n.key)
			}
		}
		for _, d := range []struct {
			v   time.Duration
			key string
		}{{b.ConnectTimeout.Duration, "connect_timeout"}, {b.FirstTokenTimeout.Duration, "first_token_timeout"},
			{b.IdleTimeout.Duration, "idle_timeout"}, {b.EjectTime.Duration, "eject_time"}} {
			if d.v < 0 {
				return fail(fmt.Sprintf("%s must not be negative", d.v), "backends", name, d.key)
			}
		}
	}
	return nil
}
