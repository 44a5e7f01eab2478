package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The configuration of a program run without a file has the shipped
// mdsa.toml's model catalog and domain model.
func TestBuiltinMatchesShipped(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "mdsa.toml"))
	if err != nil {
		t.Fatal(err)
	}
	b := Builtin()
	if b.Engine.Model != cfg.Engine.Model || b.Engine.Quant != cfg.Engine.Quant {
		t.Errorf("builtin engine model %q %q, shipped %q %q", b.Engine.Model, b.Engine.Quant, cfg.Engine.Model, cfg.Engine.Quant)
	}
	if !reflect.DeepEqual(b.Models, cfg.Models) {
		t.Errorf("builtin catalog\n%+v\nshipped\n%+v", b.Models, cfg.Models)
	}
}

func TestShippedConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "mdsa.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Engine.Model != "qwen2.5-0.5b-instruct" || cfg.Engine.Quant != "Q4_K_M" {
		t.Fatalf("engine model = %q %q", cfg.Engine.Model, cfg.Engine.Quant)
	}
	v := cfg.Models["qwen2.5-0.5b-instruct"].Variants["Q4_K_M"]
	if v.Repo == "" || v.File == "" {
		t.Fatalf("domain model variant lacks repo/file: %+v", v)
	}
	p, name, quant, err := cfg.ModelPath()
	if err != nil {
		t.Fatal(err)
	}
	if name != "qwen2.5-0.5b-instruct" || quant != "Q4_K_M" || !strings.HasSuffix(p, filepath.Join("models", v.File)) {
		t.Fatalf("ModelPath = %q %q %q", p, name, quant)
	}
	if cfg.Plugins.Timeout.Duration != time.Second {
		t.Fatalf("timeout = %v", cfg.Plugins.Timeout)
	}
}

func TestDefaultsKeptForAbsentKeys(t *testing.T) {
	cfg, err := Parse("x.toml", []byte("[engine]\nparallel = 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Engine.Parallel != 4 || cfg.Engine.ContextSize != Default().Engine.ContextSize {
		t.Fatalf("got %+v", cfg.Engine)
	}
}

func TestErrorsNameFileLineKey(t *testing.T) {
	cases := []struct {
		name, toml string
		line       int
		key, msg   string
	}{
		{"syntax", "[host]\nplugins_dir = \n", 2, "", ""},
		{"unknown key", "[host]\nplugins_dir = \"p\"\n\n[engine]\nthreadz = 3\n", 5, "engine.threadz", "unknown key"},
		{"wrong type", "[engine]\nparallel = \"two\"\n", 2, "engine.parallel", "incompatible types"},
		{"range", "[router]\n# c\nthreshold = 1.5\n", 3, "router.threshold", "out of range"},
		{"domain threshold", "[router.thresholds]\nmedical = 0.5\nfinance = -1\n", 3, "router.thresholds.finance", "out of range"},
		{"top_k", "[router]\ntop_k = 0\n", 2, "router.top_k", "out of range"},
		{"embed model", "[router]\nembed_model = \"nope\"\n", 2, "router.embed_model", "not in the catalog"},
		{"bad duration", "[plugins]\ntimeout = \"soon\"\n", 2, "", "duration"},
		{"plugin config name", "[plugins.config.\"a b\"]\nk = \"v\"\n", 1, "plugins.config.a b", "not valid"},
		{"throttle share", "[plugins]\nthrottle_share = 1.5\n", 2, "plugins.throttle_share", "out of range"},
		{"throttle after", "[plugins]\nthrottle_after = \"-1ms\"\n", 2, "plugins.throttle_after", "out of range"},
		{"refusal delay", "[server]\n\nrefusal_delay = \"1h\"\n", 3, "server.refusal_delay", "out of range"},
		{"bad tier", "[models.m]\ntier = \"huge\"\n[models.m.variants.Q4_0]\npath = \"m.gguf\"\n", 2, "models.m.tier", "tier"},
		{"no variants", "[models.m]\ntier = \"domain\"\n", 1, "models.m", "variants"},
		{"bad sha", "[models.m]\ntier = \"domain\"\n[models.m.variants.Q4_0]\npath = \"m.gguf\"\nsha256 = \"abc\"\n", 5, "models.m.variants.Q4_0.sha256", "hex"},
		{"unknown model", "[engine]\nmodel = \"nope\"\n", 2, "engine.model", "not in the catalog"},
		{"unknown quant", "[engine]\nmodel = \"m\"\nquant = \"Q4_K_N\"\n[models.m]\ntier = \"domain\"\n[models.m.variants.Q4_0]\npath = \"m.gguf\"\n", 3, "engine.quant", "no model in the catalog has a variant \"Q4_K_N\""},
		{"bad level", "[host]\nlog_level = \"loud\"\n", 2, "host.log_level", "log level"},
		{"unknown backend", "[models.r]\ntier = \"domain\"\nbackend = \"gpu\"\n", 3, "models.r.backend", "no [backends.gpu] table"},
		{"backend and variants", "[backends.gpu]\nurls = [\"http://h:1\"]\n[models.r]\ntier = \"domain\"\nbackend = \"gpu\"\n[models.r.variants.Q]\npath = \"p\"\n", 5, "models.r.backend", "no variants"},
		{"remote model alone", "[models.r]\ntier = \"domain\"\nremote_model = \"x\"\n", 3, "models.r.remote_model", "needs backend"},
		{"backend kind", "[backends.gpu]\nkind = \"tgi\"\nurls = [\"http://h:1\"]\n", 2, "backends.gpu.kind", "want openai"},
		{"backend no urls", "[backends.gpu]\nkind = \"vllm\"\n", 1, "backends.gpu", "at least one"},
		{"backend bad url", "[backends.gpu]\nurls = [\"h:1\"]\n", 2, "backends.gpu.urls", "http://HOST:PORT"},
		{"backend twice", "[backends.gpu]\nurls = [\"http://h:1\", \"http://h:1\"]\n", 2, "backends.gpu.urls", "twice"},
		{"backend balance", "[backends.gpu]\nurls = [\"http://h:1\"]\nbalance = \"random\"\n", 3, "backends.gpu.balance", "least-outstanding"},
		{"backend key env", "[backends.gpu]\nurls = [\"http://h:1\"]\napi_key_env = \"A-B\"\n", 3, "backends.gpu.api_key_env", "environment variable"},
		{"backend retries", "[backends.gpu]\nurls = [\"http://h:1\"]\nretries = -2\n", 3, "backends.gpu.retries", "out of range"},
		{"backend timeout", "[backends.gpu]\nurls = [\"http://h:1\"]\nidle_timeout = \"-1s\"\n", 3, "backends.gpu.idle_timeout", "negative"},
		{"limits store", "[server]\nlimits = \"etcd\"\n", 2, "server.limits", "want \"local\" or \"redis\""},
		{"redis without url", "[server]\nlimits = \"redis\"\n", 2, "server.limits", "needs [redis] url"},
		{"limits fail", "[server]\nlimits_fail = \"maybe\"\n", 2, "server.limits_fail", "open"},
		{"redis url", "[redis]\nurl = \"localhost:6379\"\n", 2, "redis.url", "redis://"},
		{"redis timeout", "[redis]\ntimeout = \"0s\"\n", 2, "redis.timeout", "out of range"},
		{"console alone", "[console]\nenabled = true\n", 2, "console.enabled", "needs someone to log in"},
		{"console recent", "[console]\nrecent = 0\n", 2, "console.recent", "out of range"},
		{"console ttl", "[console]\nsession_ttl = \"1s\"\n", 2, "console.session_ttl", "out of range"},
		{"console streams", "[console]\nmax_streams = 0\n", 2, "console.max_streams", "out of range"},
		{"knowledge store", "[knowledge]\nstore = \"mysql\"\n", 2, "knowledge.store", "want sqlite or postgres"},
		{"knowledge postgres without url", "[knowledge]\nenabled = true\nstore = \"postgres\"\n", 3, "knowledge.store", "needs url or url_env"},
		{"knowledge url", "[knowledge]\nstore = \"postgres\"\nurl = \"localhost/kb\"\n", 3, "knowledge.url", "postgres://"},
		{"knowledge url_env", "[knowledge]\nstore = \"postgres\"\nurl_env = \"KB-URL\"\n", 3, "knowledge.url_env", "environment variable"},
		{"knowledge path", "[knowledge]\nenabled = true\npath = \"\"\n", 3, "knowledge.path", "need a file"},
		{"quoted name", "[models.\"a.b\"]\ntier = \"x\"\n[models.\"a.b\".variants.Q]\npath = \"p\"\n", 2, "models.a.b.tier", "tier"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("conf/mdsa.toml", []byte(c.toml))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if ce.File != "conf/mdsa.toml" || ce.Line != c.line || (c.key != "" && ce.Key != c.key) {
				t.Fatalf("got file=%q line=%d key=%q (%v); want line %d key %q", ce.File, ce.Line, ce.Key, err, c.line, c.key)
			}
			if !strings.Contains(err.Error(), "conf/mdsa.toml:") || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("message %q lacks location or %q", err, c.msg)
			}
		})
	}
}

// A model on a backend group: no variants, no local file.
func TestBackendModel(t *testing.T) {
	cfg, err := Parse("m.toml", []byte("[engine]\nmodel = \"r\"\n[backends.gpu]\nkind = \"vllm\"\nurls = [\"http://10.0.0.5:8000/v1\"]\nbalance = \"prefix\"\n"+
		"[models.r]\ntier = \"domain\"\nbackend = \"gpu\"\nremote_model = \"Qwen/Qwen2.5-7B-Instruct\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Backends["gpu"]; b.Kind != "vllm" || b.Balance != "prefix" || cfg.Models["r"].RemoteModel != "Qwen/Qwen2.5-7B-Instruct" {
		t.Errorf("%+v %+v", b, cfg.Models["r"])
	}
	if _, _, _, err := cfg.ModelPath(); err == nil || !strings.Contains(err.Error(), "backends.gpu") {
		t.Errorf("ModelPath of a remote model: %v", err)
	}
}

func TestRedisAddress(t *testing.T) {
	env := map[string]string{"SET": "redis://from-env:6379/0"}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		r    Redis
		want string
		err  bool
	}{
		{Redis{URL: "redis://a:1"}, "redis://a:1", false},
		{Redis{URL: "redis://a:1", URLEnv: "SET"}, "redis://from-env:6379/0", false},
		{Redis{URL: "redis://a:1", URLEnv: "UNSET"}, "redis://a:1", false},
		{Redis{URLEnv: "UNSET"}, "", true},
	} {
		got, err := tc.r.Address(getenv)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%+v: %q %v", tc.r, got, err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "none.toml") {
		t.Fatalf("got %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg := Default()
	env := map[string]string{"MDSA_LLAMA_LIB": "/opt/llama", "MDSA_THREADS": "3"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := cfg.ApplyEnv(lookup); err != nil {
		t.Fatal(err)
	}
	if cfg.Engine.LibDir != "/opt/llama" || cfg.Engine.Threads != 3 || cfg.EffectiveThreads(8) != 3 {
		t.Fatalf("got %+v", cfg.Engine)
	}
	env["MDSA_THREADS"] = "many"
	if err := cfg.ApplyEnv(lookup); err == nil || !strings.Contains(err.Error(), "MDSA_THREADS") {
		t.Fatalf("bad MDSA_THREADS accepted: %v", err)
	}
}

func TestResolve(t *testing.T) {
	cfg, err := Parse("/etc/mdsa/mdsa.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Resolve("plugins"); got != "/etc/mdsa/plugins" {
		t.Fatalf("Resolve = %q", got)
	}
	if got := cfg.Resolve("/abs"); got != "/abs" {
		t.Fatalf("Resolve abs = %q", got)
	}
}

// FuzzParse: any bytes give a config or an *Error, never a panic.
func FuzzParse(f *testing.F) {
	seed, _ := os.ReadFile(filepath.Join("..", "..", "mdsa.toml"))
	f.Add(seed)
	f.Add([]byte("[engine]\nparallel = 0\n"))
	f.Add([]byte("[models.\"a\"]\ntier=\"domain\"\n[models.a.variants.Q]\nfile=\"x\"\n"))
	f.Add([]byte("\xff\xfe[[x]]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("f.toml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error of type %T: %v", err, err)
			}
		}
	})
}

func TestTenants(t *testing.T) {
	hash := "sha256:" + strings.Repeat("ab", 32)
	good := `
[models.tiny]
tier = "domain"
[models.tiny.variants.Q4_0]
path = "tiny.gguf"

[[tenants]]
name = "acme"
api_keys = ["` + hash + `"]
plugins = ["finance", "support"]
models = ["tiny"]
[tenants.limits]
requests_per_second = 5
concurrent = 2
[tenants.plugin_config.finance]
currency = "EUR"

[[tenants]]
name = "globex"
api_key_env = "GLOBEX_KEY"
`
	cfg, err := Parse("t.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Tenants) != 2 || cfg.Tenants[0].Limits.Concurrent != 2 || cfg.Tenants[0].PluginConfig["finance"]["currency"] != "EUR" {
		t.Fatalf("tenants %+v", cfg.Tenants)
	}
	// A pattern allows config for the plugins it matches.
	if _, err := Parse("t.toml", []byte(strings.Replace(good, `plugins = ["finance", "support"]`, `plugins = ["fin*", "support"]`, 1))); err != nil {
		t.Errorf("a pattern that matches the configured plugin: %v", err)
	}
	for _, tc := range []struct {
		name, replace, with string
		line                int
		key, msg            string
	}{
		{"bad hash", hash, "plain-key", 9, "tenants[0] (acme).api_keys", "sha256"},
		{"dup name", `name = "globex"`, `name = "acme"`, 19, "tenants[1] (acme).name", "twice"},
		{"unknown model", `models = ["tiny"]`, `models = ["big"]`, 11, "tenants[0] (acme).models", "not in the catalog"},
		{"negative limit", "concurrent = 2", "concurrent = -1", 14, "tenants[0] (acme).limits.concurrent", "negative"},
		{"no key", `api_key_env = "GLOBEX_KEY"`, ``, 18, "tenants[1] (globex).api_keys", "needs api_keys"},
		{"config for a plugin not allowed", "[tenants.plugin_config.finance]", "[tenants.plugin_config.medical]", 15, "tenants[0] (acme).plugin_config.medical", "may not use"},
		{"bad pattern", `plugins = ["finance", "support"]`, `plugins = ["fin[", "support"]`, 10, "tenants[0] (acme).plugins", "pattern"},
		{"config for a plugin no pattern allows", `plugins = ["finance", "support"]`, `plugins = ["med*"]`, 15, "tenants[0] (acme).plugin_config.finance", "may not use"},
	} {
		_, err := Parse("t.toml", []byte(strings.Replace(good, tc.replace, tc.with, 1)))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) || ce.Line != tc.line {
			t.Errorf("%s: got %v (%+v), want line %d key %s", tc.name, err, ce, tc.line, tc.key)
		}
	}
}

// engine.quant is a preference: a model that lacks it (the synthetic model
// chosen with MDSA_MODEL, the file's quant Q4_K_M) uses its first variant.
func TestQuantIsAPreference(t *testing.T) {
	toml := "[engine]\nmodel = \"s\"\nquant = \"Q4_K_M\"\n" +
		"[models.q]\ntier = \"domain\"\n[models.q.variants.Q4_K_M]\npath = \"q.gguf\"\n" +
		"[models.s]\ntier = \"domain\"\n[models.s.variants.Q4_0]\npath = \"s.gguf\"\n"
	if _, err := Parse("mdsa.toml", []byte(toml)); err != nil {
		t.Fatalf("a model without the preferred quant: %v", err)
	}
}

// A TOML syntax error is reported on the line it is on, also when the
// decoder finds it at the newline that ends the line.
func TestParseErrorLine(t *testing.T) {
	for _, c := range []struct {
		text string
		line int
	}{
		{"[host\n", 1},
		{"x = \n", 1},
		{"[host]\nlog_level = \"info\"\n[engine\n", 3},
		{"[host]\nlog_level = \"info\"\nplugins_dir = \n\n", 3},
		{"[host]\nlog_level = \"info\"\nplugins_dir = [1,\n", 3}, // unterminated: where it began
	} {
		_, err := Parse("t.toml", []byte(c.text))
		var ce *Error
		if !errors.As(err, &ce) || ce.Line != c.line {
			t.Errorf("%q: %v, want line %d", c.text, err, c.line)
		}
	}
}

// [knowledge] store = "postgres" takes url or url_env; sqlite is the
// default.
func TestKnowledgeStore(t *testing.T) {
	cfg, err := Parse("k.toml", nil)
	if err != nil || cfg.Knowledge.Store != "sqlite" {
		t.Fatalf("default store = %q, %v", cfg.Knowledge.Store, err)
	}
	for _, toml := range []string{
		"[knowledge]\nenabled = true\nstore = \"postgres\"\nurl = \"postgres://mdsa@db/kb\"\n",
		"[knowledge]\nenabled = true\nstore = \"postgres\"\nurl_env = \"KB_URL\"\n",
	} {
		cfg, err := Parse("k.toml", []byte(toml))
		if err != nil || cfg.Knowledge.Store != "postgres" || (cfg.Knowledge.URL == "" && cfg.Knowledge.URLEnv != "KB_URL") {
			t.Fatalf("%q: %+v, %v", toml, cfg.Knowledge, err)
		}
	}
}
