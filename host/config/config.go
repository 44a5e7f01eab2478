// Package config is the mdsa.toml schema: types, defaults, loading with
// environment overrides, and validation whose errors name the file, the line
// and the key at fault.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole of mdsa.toml.
type Config struct {
	Host    Host             `toml:"host"`
	Engine  Engine           `toml:"engine"`
	Router  Router           `toml:"router"`
	Plugins Plugins          `toml:"plugins"`
	Models  map[string]Model `toml:"models"`
	// Backends are groups of OpenAI-compatible servers (vLLM, llama-server,
	// Ollama) that catalog models may run on instead of the embedded
	// engine ([models.NAME] backend = "GROUP").
	Backends map[string]Backend `toml:"backends"`
	Server   Server             `toml:"server"`
	Redis    Redis              `toml:"redis"`
	Cache    Cache              `toml:"cache"`
	// Console is the operator console in the browser (/console/).
	Console Console `toml:"console"`
	// Conversations are kept by the server ([conversations]).
	Conversations Conversations `toml:"conversations"`
	// Knowledge holds the tenants' knowledge bases ([knowledge]).
	Knowledge Knowledge `toml:"knowledge"`
	// Tenants share the server; with none, mdsa serve has one open tenant
	// ("default") that may use every plugin and model.
	Tenants []Tenant `toml:"tenants"`

	// File is the path the configuration was read from ("" when built in code).
	File string `toml:"-"`
	// dir is the directory relative paths are resolved against.
	dir string
}

// Host holds process-wide settings.
type Host struct {
	// PluginsDir holds the domain plugins: NAME.wasm or NAME/NAME.wasm.
	PluginsDir string `toml:"plugins_dir"`
	// ModelsDir is where model files live and downloads go.
	ModelsDir string `toml:"models_dir"`
	// CacheDir holds the compiled-plugin cache; empty disables the disk cache.
	CacheDir string `toml:"cache_dir"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
}

// Engine selects and tunes the inference engine.
type Engine struct {
	// Kind is the engine implementation; "llamacpp" is the only one so far.
	Kind string `toml:"kind"`
	// Model names the catalog entry ([models.NAME]) that serves the domain tier.
	Model string `toml:"model"`
	// Quant picks the variant of Model; empty means the first listed.
	Quant string `toml:"quant"`
	// LibDir holds the llama.cpp shared libraries (env MDSA_LLAMA_LIB).
	LibDir string `toml:"lib_dir"`
	// Threads used for decoding; 0 = the hardware recommendation (physical
	// cores, capped by the cgroup CPU quota), see EffectiveThreads.
	Threads int `toml:"threads"`
	// ContextSize is the context length per sequence, in tokens.
	ContextSize int `toml:"context_size"`
	// Parallel is how many sequences a model decodes together (continuous
	// batching in one llama.cpp context).
	Parallel int `toml:"parallel"`
	// PromptCacheMB is the memory each model's prompt cache may use: states
	// of evaluated prompts kept for prompts that come back after their
	// sequence served others. 0 turns it off.
	PromptCacheMB int `toml:"prompt_cache_mb"`
	// PersistPromptCache keeps each model's prompt cache under
	// host.cache_dir/prompts across restarts (and unloads), so the first
	// requests of a domain after a restart find their system prompt
	// evaluated.
	PersistPromptCache bool `toml:"persist_prompt_cache"`
	// GPULayers is how many layers to offload to a GPU: "auto" (the
	// default: the hardware recommendation for each model), 0 = CPU only,
	// -1 = all layers, N = N layers.
	GPULayers GPULayers `toml:"gpu_layers"`
	// MaxTokens caps a completion when the plugin sets no smaller limit.
	MaxTokens int `toml:"max_tokens"`
	// MemoryBudgetMB is the memory loaded models may use together; 0 means
	// available RAM less a reserve, as `mdsa hw` recommends.
	MemoryBudgetMB int `toml:"memory_budget_mb"`
	// MaxLoaded is the most models resident at once; 0 means no limit.
	MaxLoaded int `toml:"max_loaded"`
	// KeepAlive unloads a model unused for this long; 0 keeps it until evicted.
	KeepAlive Duration `toml:"keep_alive"`
}

// Router tunes domain routing.
type Router struct {
	// Threshold is the calibrated confidence under which a query is out of
	// scope.
	Threshold float64 `toml:"threshold"`
	// Thresholds override Threshold per domain ([router.thresholds] medical = 0.5).
	Thresholds map[string]float64 `toml:"thresholds"`
	// TopK is how many alternatives a routing decision lists.
	TopK int `toml:"top_k"`
	// Background trains the router's out-of-scope class on its built-in
	// corpus of general queries (recipes, trivia, poems, small talk...).
	Background bool `toml:"background"`
	// EmbedModel, when set, names a catalog model whose embeddings add a
	// stage to routing (cosine similarity to the domains' examples).
	EmbedModel string `toml:"embed_model"`
	// OutOfScopeMessage is the answer given to out-of-scope queries.
	OutOfScopeMessage string `toml:"out_of_scope_message"`
	// ConversationSwitch makes routing conversation-aware: a query with
	// earlier user turns stays in the domain those turns route to unless
	// it alone routes elsewhere with at least this confidence. 0 routes
	// every query alone.
	ConversationSwitch float64 `toml:"conversation_switch"`
}

// Plugins sets the sandbox limits applied to every plugin.
type Plugins struct {
	// Timeout bounds one call into a plugin: its CPU time plus throttle
	// pauses (host functions excluded), within 5x that in wall time.
	Timeout Duration `toml:"timeout"`
	// MemoryMB caps a plugin instance's linear memory.
	MemoryMB int `toml:"memory_mb"`
	// MaxOutputBytes caps what one plugin call may return.
	MaxOutputBytes int `toml:"max_output_bytes"`
	// MaxHostCalls caps host-function calls within one plugin call.
	MaxHostCalls int `toml:"max_host_calls"`
	// MaxTokens caps tokens generated through host calls within one plugin call.
	MaxTokens int `toml:"max_tokens"`
	// MaxWorkTokens caps the tokens of host work (prompt and completion of
	// mdsa_generate, inputs of mdsa_embed) within one plugin call: what
	// bounds the engine time one request's plugin can take.
	MaxWorkTokens int `toml:"max_work_tokens"`
	// MaxHostTime bounds the wall time of one plugin call's host functions
	// together (inference included); past it the work is cancelled.
	MaxHostTime Duration `toml:"max_host_time"`
	// PoolSize is the most instances one plugin may have; 0 = number of CPUs.
	PoolSize int `toml:"pool_size"`
	// ThrottleAfter is how much of its own CPU time a plugin call gets at
	// full speed; past it the call is held to ThrottleShare of a CPU until
	// it returns or Timeout stops it.
	ThrottleAfter Duration `toml:"throttle_after"`
	// ThrottleShare is the share of a CPU a throttled call may use, in
	// (0, 1]; 1 turns throttling off.
	ThrottleShare float64 `toml:"throttle_share"`
	// TotalMemoryMB bounds the linear memory of all plugin instances
	// together (every plugin and tenant); past it a plugin's memory grow
	// fails and no new instance is made (503 plugin_memory_exhausted).
	TotalMemoryMB int `toml:"total_memory_mb"`
	// StackKB bounds the wasm call stack of one plugin call, as estimated
	// from its functions' frames (parameters, locals, operand stack): a
	// call that would hold more traps.
	StackKB int `toml:"stack_kb"`
	// CompileInChild compiles each new plugin module in a child process
	// (the mdsa program itself) watched for CompileMemoryMB and
	// CompileTimeout, so that a module built to make the compiler spend
	// memory or time cannot hurt the host. Programs that embed the host
	// opt in with host.WithCompileCommand.
	CompileInChild bool `toml:"compile_in_child"`
	// CompileTimeout bounds the CPU time of one module's compile in the
	// child (its wall time: 6 times that).
	CompileTimeout Duration `toml:"compile_timeout"`
	// CompileMemoryMB bounds the child's resident memory while it compiles.
	CompileMemoryMB int `toml:"compile_memory_mb"`
	// Shape bounds a module's static shape, checked before anything
	// compiles it; zero keys keep the defaults.
	Shape Shape `toml:"shape"`
	// Registry lists plugins pulled from OCI registries and kept in step
	// with their tags ([plugins.registry]).
	Registry PluginRegistry `toml:"registry"`
	// Config is the default Extism config of each plugin, by plugin name
	// ([plugins.config.faq] source = "builtin"). A plugin file is matched
	// by its name without ".wasm" before its manifest is known, so a
	// plugin that needs config to describe itself can load. A tenant's
	// plugin_config is laid over it, key by key.
	Config map[string]map[string]string `toml:"config"`
	// MaxToolSteps bounds the rounds of a domain's own tools (ABI 1.1) in
	// one request: model, tool calls, model again. After the last round
	// the model answers without them. 0 turns plugin tools off.
	MaxToolSteps int `toml:"max_tool_steps"`
}

// Shape is [plugins.shape]: the most a plugin module may declare, read
// before any compiler sees it (a small module can make a compiler spend
// gigabytes and minutes). Zero keeps the default of each: at least four
// times what the shipped Go plugins need.
type Shape struct {
	Functions      int `toml:"functions"`        // defined functions (50,000)
	LocalsTotal    int `toml:"locals_total"`     // locals of all function bodies (500,000)
	BodyKB         int `toml:"body_kb"`          // the largest function body (2,048 KB)
	Nesting        int `toml:"nesting"`          // blocks, loops and ifs nested in one body (2,500)
	BrTableTargets int `toml:"br_table_targets"` // targets of all br_table instructions (500,000)
	Globals        int `toml:"globals"`          // defined globals (10,000)
	DataSegments   int `toml:"data_segments"`    // (200,000)
	ElemSegments   int `toml:"elem_segments"`    // (10,000)
	Exports        int `toml:"exports"`          // (10,000)
}

// Server configures mdsa serve.
type Server struct {
	// Listen is the address to serve on.
	Listen string `toml:"listen"`
	// MaxBodyBytes caps a request body (413 beyond).
	MaxBodyBytes int64 `toml:"max_body_bytes"`
	// ShutdownGrace is how long in-flight requests may take to finish
	// after a shutdown signal.
	ShutdownGrace Duration `toml:"shutdown_grace"`
	// RefusalDelay holds a request refused with 429 for up to this long
	// (less when its retry could succeed sooner) before answering, so
	// that a client retrying in a loop without honouring Retry-After
	// sends a few requests per second instead of thousands. 0 answers at
	// once.
	RefusalDelay Duration `toml:"refusal_delay"`
	// AdminKeys are "sha256:<hex>" hashes of the keys that may use the
	// admin API (/admin/plugins); with none and no AdminKeyEnv the admin
	// API is off.
	AdminKeys []string `toml:"admin_keys"`
	// AdminKeyEnv names an environment variable holding one more admin key.
	AdminKeyEnv string `toml:"admin_key_env"`
	// OTLPEndpoint, when set, exports OpenTelemetry spans over OTLP/HTTP
	// (host:port or a URL); empty turns tracing off.
	OTLPEndpoint string `toml:"otlp_endpoint"`
	// Limits is where tenants' limits are kept: "local" (each replica
	// on its own) or "redis" (shared by every replica using [redis]).
	Limits string `toml:"limits"`
	// LimitsFail is what a replica does when Redis cannot answer within
	// redis.timeout: "open" falls back to its own limits (a tenant may
	// then get the limit from each replica), "closed" refuses (503).
	LimitsFail string `toml:"limits_fail"`
}

// Cache is the response cache: an answer kept for the same request asked
// again (same tenant, domain, plugin version, model, messages and
// sampling settings).
type Cache struct {
	// Mode is "off", "deterministic" (requests at temperature 0 to plugins
	// without a handle export, whose answer cannot differ) or "always".
	Mode string `toml:"mode"`
	// MaxMB bounds the in-memory store.
	MaxMB int `toml:"max_mb"`
	// TTL is how long an answer is kept.
	TTL Duration `toml:"ttl"`
	// Store is "memory" (this process) or "redis" (shared by replicas
	// through [redis]).
	Store string `toml:"store"`
	// SemanticThreshold, when above 0, also answers a request whose
	// query's embedding is at least this similar (cosine) to a kept one
	// of the same tenant, domain, plugin version, model, history, context
	// and settings; 0 is off. Kept in this process only.
	SemanticThreshold float64 `toml:"semantic_threshold"`
	// SemanticModel is the catalog model that embeds queries for it;
	// empty: router.embed_model.
	SemanticModel string `toml:"semantic_model"`
}

// Console is the operator console that mdsa serve shows at /console/:
// live traffic, every recent request explained, plugins, models, tenants
// and a playground. It is off unless enabled; it needs an admin key
// (server.admin_keys, server.admin_key_env) or tenants, whose keys log in
// to it (a tenant sees only its own traffic).
type Console struct {
	// Enabled serves the console.
	Enabled bool `toml:"enabled"`
	// Recent is how many recent requests it keeps for the request list
	// and their explanations (query, answer and validation, each cut to a
	// few KB).
	Recent int `toml:"recent"`
	// SessionTTL is how long a login lasts.
	SessionTTL Duration `toml:"session_ttl"`
	// MaxSessions bounds the logins kept at once (the oldest goes first).
	MaxSessions int `toml:"max_sessions"`
	// MaxStreams bounds the live views open at once, over all sessions.
	MaxStreams int `toml:"max_streams"`
}

// Conversations are conversations the server keeps, per tenant: a client
// sends a conversation_id instead of the whole history, and each answered
// turn is appended.
type Conversations struct {
	// Enabled serves /v1/conversations and conversation_id.
	Enabled bool `toml:"enabled"`
	// Store is "sqlite" (a file of this server) or "postgres" (shared by
	// replicas).
	Store string `toml:"store"`
	// Path is the SQLite file (relative to this file's directory).
	Path string `toml:"path"`
	// URL is the PostgreSQL server (postgres://USER[:PASSWORD]@HOST/DB),
	// or URLEnv the environment variable that holds it (for a password).
	URL    string `toml:"url"`
	URLEnv string `toml:"url_env"`
	// MaxPerTenant, MaxMessages and MaxKB bound what a tenant may keep: a
	// tenant's conversations, one conversation's messages and its size.
	MaxPerTenant int `toml:"max_per_tenant"`
	MaxMessages  int `toml:"max_messages"`
	MaxKB        int `toml:"max_kb"`
	// TTL deletes a conversation not used for this long.
	TTL Duration `toml:"ttl"`
}

// Knowledge configures the tenants' knowledge bases: documents ingested
// through /v1/knowledge or `mdsa kb`, searched by full text (BM25 in
// SQLite, ts_rank_cd in PostgreSQL; and by vectors with an embedding
// model) for plugins that declare a knowledge base and for mdsa_retrieve.
type Knowledge struct {
	// Enabled serves /v1/knowledge and retrieval.
	Enabled bool `toml:"enabled"`
	// Store is "sqlite" (a file of this server) or "postgres" (shared by
	// replicas).
	Store string `toml:"store"`
	// Path is the SQLite file (relative to this file's directory).
	Path string `toml:"path"`
	// URL is the PostgreSQL server (postgres://USER[:PASSWORD]@HOST/DB),
	// or URLEnv the environment variable that holds it (for a password).
	URL    string `toml:"url"`
	URLEnv string `toml:"url_env"`
	// EmbedModel, when set, is the catalog model that embeds chunks and
	// queries, for hybrid (BM25 + vector) ranking.
	EmbedModel string `toml:"embed_model"`
	// MaxDocKB bounds one document; MaxDocsPerTenant, MaxChunksPerTenant
	// and MaxKBsPerTenant what a tenant may keep.
	MaxDocKB           int `toml:"max_doc_kb"`
	MaxDocsPerTenant   int `toml:"max_docs_per_tenant"`
	MaxChunksPerTenant int `toml:"max_chunks_per_tenant"`
	MaxKBsPerTenant    int `toml:"max_kbs_per_tenant"`
	// ChunkChars is the target size of a chunk, in characters.
	ChunkChars int `toml:"chunk_chars"`
}

// Redis is the Redis (or Valkey) server that replicas share.
type Redis struct {
	// URL is redis://[user:password@]HOST:PORT[/DB], rediss:// for TLS,
	// or unix:///PATH; empty: no Redis.
	URL string `toml:"url"`
	// URLEnv names an environment variable holding the URL (for one with
	// a password); it wins over URL when set.
	URLEnv string `toml:"url_env"`
	// Timeout bounds each call.
	Timeout Duration `toml:"timeout"`
	// KeyPrefix starts every key MDSA writes.
	KeyPrefix string `toml:"key_prefix"`
}

// Address is the server's URL: the value of URLEnv when that variable is
// set, else URL. A URLEnv that is named but unset, with no URL to fall
// back on, is an error naming it. getenv is os.Getenv outside tests.
func (r Redis) Address(getenv func(string) string) (string, error) {
	if r.URLEnv != "" {
		if v := getenv(r.URLEnv); v != "" {
			return v, nil
		}
		if r.URL == "" {
			return "", fmt.Errorf("redis.url_env names %s, which is not set", r.URLEnv)
		}
	}
	return r.URL, nil
}

// Tenant is one client of the server with its own keys, plugins, models
// and limits. Nothing is shared between tenants but compiled code and
// loaded model weights.
type Tenant struct {
	// Name identifies the tenant in logs and metrics.
	Name string `toml:"name"`
	// APIKeys are "sha256:<64 hex digits>" hashes of the accepted keys
	// (echo -n KEY | sha256sum).
	APIKeys []string `toml:"api_keys"`
	// APIKeyEnv names an environment variable holding one more key in
	// clear text.
	APIKeyEnv string `toml:"api_key_env"`
	// Plugins are the domains the tenant may use: names, or patterns in
	// path.Match syntax ("*" for all, "fin*", "team-?"), which also match
	// plugins hot-added later; empty means all.
	Plugins []string `toml:"plugins"`
	// Models are the catalog models the tenant may use; empty means all.
	Models []string `toml:"models"`
	// Limits bound the tenant's use; zero values mean no limit.
	Limits TenantLimits `toml:"limits"`
	// PluginConfig is passed to each of the tenant's plugins as its Extism
	// config: [tenants.plugin_config.finance] currency = "EUR".
	PluginConfig map[string]map[string]string `toml:"plugin_config"`
	// Cache overrides cache.mode for this tenant: "off", "deterministic"
	// or "always" (also answers sampled at a temperature above 0, the
	// same answer again); empty: cache.mode.
	Cache string `toml:"cache"`
}

// Allows reports whether the tenant may use plugin name: its plugins list
// is empty, names it, or has a pattern that matches it.
func (t Tenant) Allows(name string) bool {
	if len(t.Plugins) == 0 {
		return true
	}
	for _, p := range t.Plugins {
		if p == name {
			return true
		}
		if IsPattern(p) {
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		}
	}
	return false
}

// IsPattern reports whether a tenant's plugins entry is a pattern rather
// than a name.
func IsPattern(entry string) bool { return strings.ContainsAny(entry, "*?[") }

// TenantLimits bound one tenant; 0 means unlimited.
type TenantLimits struct {
	// RequestsPerSecond is the sustained request rate.
	RequestsPerSecond float64 `toml:"requests_per_second"`
	// Burst is how many requests may arrive at once (default: one
	// second's worth, at least 1).
	Burst int `toml:"burst"`
	// Concurrent caps requests in flight.
	Concurrent int `toml:"concurrent"`
	// TokensPerMinute caps generated plus prompt tokens over a sliding minute.
	TokensPerMinute int `toml:"tokens_per_minute"`
	// MaxTokens caps max_tokens of one request.
	MaxTokens int `toml:"max_tokens"`
}

// Model is one catalog entry.
type Model struct {
	// Tier is router, reasoner or domain.
	Tier string `toml:"tier"`
	// ContextLength is the model's trained context length.
	ContextLength int `toml:"context_length"`
	// Description says what the model is.
	Description string `toml:"description"`
	// Variants maps a quantization name (Q4_K_M, Q8_0 ...) to where to get it.
	Variants map[string]Variant `toml:"variants"`
	// Backend, when set, names the [backends.GROUP] whose servers run this
	// model; it then needs no variants and no local memory.
	Backend string `toml:"backend"`
	// RemoteModel is the model id the backend's servers know it by
	// (e.g. "Qwen/Qwen2.5-7B-Instruct" on vLLM, "qwen2.5:7b" on Ollama);
	// empty means the catalog name.
	RemoteModel string `toml:"remote_model"`
}

// PluginRegistry is where plugins come from besides the plugins
// directory: OCI registries, watched.
type PluginRegistry struct {
	// Refs are oci://REGISTRY/REPOSITORY:TAG (watched: a new digest is
	// pulled and swapped in) or oci://REGISTRY/REPOSITORY@sha256:... (pinned).
	Refs []string `toml:"refs"`
	// Poll is how often tags are resolved.
	Poll Duration `toml:"poll"`
	// PlainHTTP talks to the registries without TLS (loopback, a lab).
	PlainHTTP bool `toml:"plain_http"`
	// UsernameEnv and PasswordEnv name environment variables holding the
	// registries' credentials; empty: anonymous.
	UsernameEnv string `toml:"username_env"`
	PasswordEnv string `toml:"password_env"`
}

// Backend is a group of OpenAI-compatible servers that serve the same
// models, balanced by the gateway.
type Backend struct {
	// Kind is openai (any server of the API), llama-server, vllm or
	// ollama: the API is the same, health, load and token-count endpoints
	// differ. Empty means openai.
	Kind string `toml:"kind"`
	// URLs are the servers' base addresses, e.g. "http://10.0.0.5:8000".
	URLs []string `toml:"urls"`
	// APIKeyEnv names the environment variable holding the servers'
	// API key (sent as a bearer token); empty sends none.
	APIKeyEnv string `toml:"api_key_env"`
	// APIKeyEnvs, when set, name one variable per URL (same order), for
	// servers with keys of their own; an empty entry falls back to
	// APIKeyEnv.
	APIKeyEnvs []string `toml:"api_key_envs"`
	// Balance is least-outstanding (default) or prefix (requests of one
	// domain go to the server whose KV cache holds its system prompt,
	// with bounded load).
	Balance string `toml:"balance"`
	// MaxConcurrent caps the requests in flight to each server; 0 means 64.
	MaxConcurrent int `toml:"max_concurrent"`
	// Retries is how many other servers a request may try when one fails
	// before the first token; 0 means 2, -1 none.
	Retries int `toml:"retries"`
	// EjectAfter is how many failures in a row take a server out for a
	// cool-down (a refused connection at once); 0 means 3.
	EjectAfter int `toml:"eject_after"`
	// Timeouts; 0 means the defaults: connect 5s, first token 60s, idle
	// stream 30s; health checks every 1s (negative: none); the first
	// ejection 1s, doubling.
	ConnectTimeout    Duration `toml:"connect_timeout"`
	FirstTokenTimeout Duration `toml:"first_token_timeout"`
	IdleTimeout       Duration `toml:"idle_timeout"`
	HealthInterval    Duration `toml:"health_interval"`
	EjectTime         Duration `toml:"eject_time"`
}

// Variant is one quantization of a model.
type Variant struct {
	// Repo is the Hugging Face repository, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF.
	Repo string `toml:"repo"`
	// File is the file name inside Repo, and the name it gets in ModelsDir.
	File string `toml:"file"`
	// URL overrides the download address derived from Repo and File.
	URL string `toml:"url"`
	// Path is a local file; relative paths are resolved against ModelsDir.
	Path string `toml:"path"`
	// SHA256 of the file; empty means record it at first download.
	SHA256 string `toml:"sha256"`
	// Size in bytes, when known.
	Size int64 `toml:"size"`
}

// Duration is a time.Duration written as a string ("5s", "250ms") in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. \"5s\" or \"250ms\"): %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Builtin is the configuration of a program run with no configuration file:
// the defaults plus the model catalog and domain model of the shipped
// mdsa.toml (TestBuiltinMatchesShipped keeps the two the same), so that
// `mdsa models pull qwen2.5-0.5b-instruct` and the synthetic fallback work
// in any directory.
func Builtin() Config {
	c := Default()
	c.Engine.Model, c.Engine.Quant = "qwen2.5-0.5b-instruct", "Q4_K_M"
	c.Models = map[string]Model{
		"qwen2.5-0.5b-instruct": {Tier: "domain", ContextLength: 32768,
			Description: "Qwen2.5 0.5B Instruct: small multilingual chat model, Apache-2.0",
			Variants: map[string]Variant{
				"Q4_K_M": {Repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF", File: "qwen2.5-0.5b-instruct-q4_k_m.gguf"},
				"Q8_0":   {Repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF", File: "qwen2.5-0.5b-instruct-q8_0.gguf"},
			}},
		"synthetic": {Tier: "domain", ContextLength: 2048,
			Description: "Tiny synthetic llama model written by `mdsa models synth`: predictable, meaningless answers",
			Variants:    map[string]Variant{"Q4_0": {Path: "synthetic.gguf"}}},
	}
	return c
}

// Default returns the defaults every configuration file starts from: no
// model catalog (see Builtin for a program run without a file).
func Default() Config {
	return Config{
		Host: Host{
			PluginsDir: "plugins",
			ModelsDir:  "models",
			CacheDir:   ".cache/mdsa",
			LogLevel:   "warn",
		},
		Engine: Engine{
			Kind:               "llamacpp",
			LibDir:             ".deps/llama",
			GPULayers:          GPULayers{Auto: true},
			ContextSize:        2048,
			Parallel:           4,
			PromptCacheMB:      256,
			PersistPromptCache: true,
			MaxTokens:          256,
			KeepAlive:          Duration{10 * time.Minute},
		},
		Router: Router{
			Threshold:          0.3,
			TopK:               3,
			ConversationSwitch: 0.7,
			Background:         true,
			OutOfScopeMessage:  "Sorry, that question is outside the domains I can help with.",
		},
		Server: Server{
			Listen:        "127.0.0.1:8080",
			MaxBodyBytes:  1 << 20,
			ShutdownGrace: Duration{30 * time.Second},
			RefusalDelay:  Duration{250 * time.Millisecond},
			Limits:        "local",
			LimitsFail:    "open",
		},
		Redis:   Redis{Timeout: Duration{100 * time.Millisecond}, KeyPrefix: "mdsa:"},
		Cache:   Cache{Mode: "deterministic", MaxMB: 64, TTL: Duration{10 * time.Minute}, Store: "memory"},
		Console: Console{Recent: 500, SessionTTL: Duration{12 * time.Hour}, MaxSessions: 1000, MaxStreams: 32},
		Conversations: Conversations{Store: "sqlite", Path: ".cache/mdsa/conversations.db", MaxPerTenant: 10000,
			MaxMessages: 1000, MaxKB: 1024, TTL: Duration{30 * 24 * time.Hour}},
		Knowledge: Knowledge{Store: "sqlite", Path: ".cache/mdsa/knowledge.db", MaxDocKB: 1024, MaxDocsPerTenant: 10000,
			MaxChunksPerTenant: 200000, MaxKBsPerTenant: 100, ChunkChars: 1000},
		Plugins: Plugins{
			Timeout:         Duration{time.Second},
			ThrottleAfter:   Duration{5 * time.Millisecond},
			ThrottleShare:   0.1,
			MemoryMB:        64,
			MaxOutputBytes:  1 << 20,
			MaxHostCalls:    8,
			MaxTokens:       4096,
			MaxWorkTokens:   16384,
			MaxHostTime:     Duration{time.Minute},
			TotalMemoryMB:   2048,
			StackKB:         1024,
			CompileInChild:  true,
			CompileTimeout:  Duration{10 * time.Second},
			CompileMemoryMB: 512,
			Registry:        PluginRegistry{Poll: Duration{2 * time.Second}},
			MaxToolSteps:    4,
		},
	}
}

// Error is a configuration problem located in a file.
type Error struct {
	File string // the configuration file
	Line int    // 1-based; 0 when unknown
	Key  string // dotted key, e.g. engine.parallel; "" for syntax errors
	Msg  string
	Err  error // underlying error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString("key ")
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

var tomlLineRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// Load reads path, applies environment overrides (see ApplyEnv) and
// validates the result.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return Config{}, err
	}
	if err := cfg.ApplyEnv(os.LookupEnv); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Parse decodes and validates data, read from file (used in messages and to
// resolve relative paths). Fields absent from data keep their defaults.
func Parse(file string, data []byte) (Config, error) {
	cfg := Default()
	cfg.File = file
	cfg.dir = filepath.Dir(file)
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return Config{}, &Error{File: file, Line: errorLine(data, pe.Position), Key: pe.LastKey, Msg: pe.Message, Err: err}
		}
		e := &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: "), Err: err}
		// Type mismatches arrive as plain errors: `toml: line N (last key "k"): msg`.
		if m := tomlLineRE.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Key, e.Msg = m[2], m[3]
		}
		return Config{}, e
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return Config{}, &Error{File: file, Line: keyLine(data, k), Key: k.String(),
			Msg: "unknown key (check the spelling; see the default mdsa.toml for every key)"}
	}
	if err := cfg.validate(data); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// errorLine is the line of a TOML parse error: the decoder counts a line
// as begun once it has read the newline that ends the previous one, so an
// error found at that newline ("[host" with no "]") would name the next
// line.
func errorLine(data []byte, pos toml.Position) int {
	if pos.Start > 0 && pos.Start <= len(data) {
		return 1 + bytes.Count(data[:min(pos.Start, len(data)-1)], []byte{'\n'})
	}
	return pos.Line
}

// ApplyEnv overrides settings from environment variables:
// MDSA_LLAMA_LIB (engine.lib_dir), MDSA_PLUGINS_DIR, MDSA_MODELS_DIR,
// MDSA_CACHE_DIR, MDSA_LOG_LEVEL, MDSA_MODEL (engine.model), MDSA_THREADS.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	str := map[string]*string{
		"MDSA_LLAMA_LIB":   &c.Engine.LibDir,
		"MDSA_PLUGINS_DIR": &c.Host.PluginsDir,
		"MDSA_MODELS_DIR":  &c.Host.ModelsDir,
		"MDSA_CACHE_DIR":   &c.Host.CacheDir,
		"MDSA_LOG_LEVEL":   &c.Host.LogLevel,
		"MDSA_MODEL":       &c.Engine.Model,
	}
	for name, dst := range str {
		if v, ok := lookup(name); ok {
			*dst = v
		}
	}
	if v, ok := lookup("MDSA_THREADS"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("config: environment variable MDSA_THREADS=%q: want a whole number >= 0", v)
		}
		c.Engine.Threads = n
	}
	return c.validate(nil)
}

// Resolve makes p absolute against the configuration file's directory.
// Absolute paths and "" are returned unchanged.
func (c Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// SetDir sets the directory relative paths resolve against, for
// configurations built in code.
func (c *Config) SetDir(dir string) { c.dir = dir }

// EffectiveThreads is Engine.Threads when set, else recommended (the
// hardware recommendation: physical cores within the cgroup CPU quota, as
// hardware.Recommend computes it), else, when recommended is not positive
// either, the CPU count.
func (c Config) EffectiveThreads(recommended int) int {
	if c.Engine.Threads > 0 {
		return c.Engine.Threads
	}
	if recommended > 0 {
		return recommended
	}
	return runtime.NumCPU()
}

// ModelPath returns the local file of the engine's model variant, resolved
// against ModelsDir, and the catalog entry name and quant it came from.
func (c Config) ModelPath() (path, name, quant string, err error) {
	name = c.Engine.Model
	m, ok := c.Models[name]
	if !ok {
		return "", name, "", fmt.Errorf("config %s: engine.model %q is not in the [models] catalog", c.File, name)
	}
	if m.Backend != "" {
		return "", name, "", fmt.Errorf("config %s: engine.model %q runs on the servers of backends.%s, not from a local file", c.File, name, m.Backend)
	}
	quant, v, err := m.Variant(c.Engine.Quant)
	if err != nil {
		return "", name, "", fmt.Errorf("config %s: models.%s: %w", c.File, name, err)
	}
	p := v.Path
	if p == "" {
		p = v.File
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.Resolve(c.Host.ModelsDir), p)
	}
	return p, name, quant, nil
}

// Variant returns the named quantization, or the only/first one (by name)
// when quant is empty.
func (m Model) Variant(quant string) (string, Variant, error) {
	if quant != "" {
		v, ok := m.Variants[quant]
		if !ok {
			return "", Variant{}, fmt.Errorf("no variant %q (have %s)", quant, strings.Join(m.variantNames(), ", "))
		}
		return quant, v, nil
	}
	names := m.variantNames()
	if len(names) == 0 {
		return "", Variant{}, errors.New("no variants")
	}
	return names[0], m.Variants[names[0]], nil
}

func (m Model) variantNames() []string {
	names := make([]string, 0, len(m.Variants))
	for n := range m.Variants {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
