package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/download"
)

const catalogTOML = `
[host]
models_dir = "models"

[engine]
model = "chat"
quant = "Q8_0"

[models.chat]
tier = "domain"
[models.chat.variants.Q4_K_M]
repo = "org/chat-GGUF"
file = "chat-q4_k_m.gguf"
[models.chat.variants.Q8_0]
repo = "org/chat-GGUF"
file = "chat-q8_0.gguf"
sha256 = "%s"

[models.mirror]
tier = "reasoner"
[models.mirror.variants.F16]
url = "%s"
file = "mirror-f16.gguf"
[models.mirror.variants.Q2_K]
url = "%s"
file = "sub/mirror-q2_k.gguf"

[models.local]
tier = "domain"
[models.local.variants.Q4_0]
path = "synthetic.gguf"

[models.outside]
tier = "router"
[models.outside.variants.Q4_0]
path = "%s"
`

// catalog writes mdsa.toml into a new directory and returns its path and
// the loaded configuration.
func catalog(t *testing.T, q8sum, url, outside string) (string, config.Config) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "mdsa.toml")
	if err := os.WriteFile(p, fmt.Appendf(nil, catalogTOML, q8sum, url, url, outside), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, cfg
}

func TestResolveModelRef(t *testing.T) {
	_, cfg := catalog(t, "", "https://mirror.example/x.gguf", "/elsewhere/o.gguf")
	models := filepath.Join(filepath.Dir(cfg.File), "models")
	cases := []struct {
		ref, endpoint    string
		name, quant, url string
		path             string
		engine           bool
	}{
		{"chat", "", "chat", "Q8_0", "https://huggingface.co/org/chat-GGUF/resolve/main/chat-q8_0.gguf", "chat-q8_0.gguf", true},
		{"chat:q4_k_m", "", "chat", "Q4_K_M", "https://huggingface.co/org/chat-GGUF/resolve/main/chat-q4_k_m.gguf", "chat-q4_k_m.gguf", false},
		{"chat:Q4_K_M", "http://127.0.0.1:9/", "chat", "Q4_K_M", "http://127.0.0.1:9/org/chat-GGUF/resolve/main/chat-q4_k_m.gguf", "chat-q4_k_m.gguf", false},
		{"mirror", "", "mirror", "F16", "https://mirror.example/x.gguf", "mirror-f16.gguf", false}, // first by name
		{"mirror:Q2_K", "", "mirror", "Q2_K", "https://mirror.example/x.gguf", filepath.Join("sub", "mirror-q2_k.gguf"), false},
		{"local", "", "local", "Q4_0", "", "synthetic.gguf", false},
	}
	for _, c := range cases {
		r, err := resolveModelRef(cfg, c.ref, c.endpoint)
		if err != nil {
			t.Fatalf("%s: %v", c.ref, err)
		}
		if r.Name != c.name || r.Quant != c.quant || r.URL != c.url || r.Path != filepath.Join(models, c.path) ||
			r.Engine != c.engine || r.ModelsDir != models {
			t.Errorf("%s: %+v", c.ref, r)
		}
	}
	r, err := resolveModelRef(cfg, "outside", "")
	if err != nil || r.Path != "/elsewhere/o.gguf" {
		t.Fatalf("absolute path: %+v %v", r, err)
	}
	for ref, want := range map[string]string{
		"nope":       "not in the catalog",
		"chat:Q5_K":  `no variant "Q5_K"`,
		"mirror:":    "", // empty quant = default, fine
		"chat:Q8_0x": "have Q4_K_M, Q8_0",
	} {
		_, err := resolveModelRef(cfg, ref, "")
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", ref, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", ref, err, want)
		}
	}

	// A file name may not climb out of models_dir.
	bad := cfg
	bad.Models = map[string]config.Model{"x": {Tier: "domain", Variants: map[string]config.Variant{
		"Q4_0": {Repo: "a/b", File: "../../etc/passwd"}}}}
	if _, err := resolveModelRef(bad, "x", ""); err == nil || !strings.Contains(err.Error(), "inside models_dir") {
		t.Fatalf("escaping file: %v", err)
	}
}

// runCmd runs one of the models commands in process against config path.
func runCmd(t *testing.T, cfgPath string, mk func(*app) *cobra.Command, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	a := &app{configPath: cfgPath, out: &out, errw: &errw}
	cmd := mk(a)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errw)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errw.String(), err
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestModelsListAndRm(t *testing.T) {
	outsideDir := t.TempDir()
	outside := filepath.Join(outsideDir, "keep.gguf")
	writeFile(t, outside, []byte("not ours"))
	q8 := []byte("q8 weights")
	cfgPath, cfg := catalog(t, hexSum(q8), "https://mirror.example/x.gguf", outside)
	models := filepath.Join(filepath.Dir(cfgPath), "models")
	writeFile(t, filepath.Join(models, "chat-q8_0.gguf"), q8)
	writeFile(t, filepath.Join(models, "mirror-f16.gguf")+download.PartialSuffix, make([]byte, 1234))
	writeFile(t, filepath.Join(models, "synthetic.gguf"), []byte("synthetic"))
	if cfg.Engine.Model != "chat" {
		t.Fatalf("engine model %q", cfg.Engine.Model)
	}

	out, _, err := runCmd(t, cfgPath, (*app).modelsListCmd, "--json", "--verify")
	if err != nil {
		t.Fatal(err)
	}
	var entries []modelListEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := map[string]modelListEntry{}
	for _, e := range entries {
		got[e.Name+":"+e.Quant] = e
	}
	if len(entries) != 6 {
		t.Fatalf("%d entries: %s", len(entries), out)
	}
	if e := got["chat:Q8_0"]; !e.Present || e.Bytes != int64(len(q8)) || e.SHA256Status != shaVerified || !e.Engine ||
		e.Tier != "domain" || !strings.HasPrefix(e.Source, "https://huggingface.co/org/chat-GGUF/") {
		t.Errorf("chat:Q8_0 %+v", e)
	}
	if e := got["chat:Q4_K_M"]; e.Present || e.SHA256Status != shaUnrecorded || e.Engine {
		t.Errorf("chat:Q4_K_M %+v", e)
	}
	if e := got["mirror:F16"]; e.Present || e.PartialBytes != 1234 || e.Tier != "reasoner" {
		t.Errorf("mirror:F16 %+v", e)
	}
	if e := got["local:Q4_0"]; !e.Present || e.Source != "local" || e.ComputedSHA256 != hexSum([]byte("synthetic")) {
		t.Errorf("local:Q4_0 %+v", e)
	}

	// A file that no longer matches its recorded sum is reported.
	writeFile(t, filepath.Join(models, "chat-q8_0.gguf"), []byte("tampered"))
	out, _, err = runCmd(t, cfgPath, (*app).modelsListCmd, "--verify")
	if err != nil || !strings.Contains(out, "mismatch") || !strings.Contains(out, "partial") || !strings.Contains(out, "*") {
		t.Fatalf("table: %v\n%s", err, out)
	}

	// rm deletes the file and the partial, reports what it did, and is
	// idempotent.
	out, _, err = runCmd(t, cfgPath, (*app).modelsRmCmd, "mirror:f16")
	if err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("rm: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(models, "mirror-f16.gguf.partial")); !os.IsNotExist(err) {
		t.Fatal("partial not removed")
	}
	out, _, err = runCmd(t, cfgPath, (*app).modelsRmCmd, "--json", "chat")
	var rm struct{ Removed []string }
	if err != nil || json.Unmarshal([]byte(out), &rm) != nil || len(rm.Removed) != 1 {
		t.Fatalf("rm chat: %v %s", err, out)
	}
	out, _, err = runCmd(t, cfgPath, (*app).modelsRmCmd, "chat:Q8_0")
	if err != nil || !strings.Contains(out, "not downloaded") {
		t.Fatalf("rm again: %v %s", err, out)
	}

	// Never outside models_dir: neither an absolute path nor via a symlink.
	_, _, err = runCmd(t, cfgPath, (*app).modelsRmCmd, "outside")
	if err == nil || !strings.Contains(err.Error(), "outside models_dir") {
		t.Fatalf("rm outside: %v", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("file outside models_dir touched: %v", err)
	}
	if err := os.Symlink(outsideDir, filepath.Join(models, "sub")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(outsideDir, "mirror-q2_k.gguf"), []byte("x"))
	if _, _, err = runCmd(t, cfgPath, (*app).modelsRmCmd, "mirror:Q2_K"); err == nil {
		t.Fatal("rm through a symlinked directory was allowed")
	}
	if _, err := os.Stat(filepath.Join(outsideDir, "mirror-q2_k.gguf")); err != nil {
		t.Fatalf("file behind symlink deleted: %v", err)
	}
}

func TestModelsPull(t *testing.T) {
	content := bytes.Repeat([]byte("gguf weights "), 50_000)
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		if r.URL.Path != "/direct.gguf" && !strings.HasPrefix(r.URL.Path, "/org/chat-GGUF/resolve/main/") {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "f.gguf", time.Time{}, bytes.NewReader(content))
	}))
	defer srv.Close()
	t.Setenv("HF_ENDPOINT", srv.URL)
	t.Setenv("HF_TOKEN", "")
	cfgPath, _ := catalog(t, hexSum([]byte("other")), srv.URL+"/direct.gguf", "/x/y.gguf")
	models := filepath.Join(filepath.Dir(cfgPath), "models")

	// From url, no recorded sum: the sum is printed with how to record it.
	out, stderr, err := runCmd(t, cfgPath, (*app).modelsPullCmd, "mirror")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(models, "mirror-f16.gguf")); !bytes.Equal(b, content) {
		t.Fatal("pulled file differs")
	}
	for _, w := range []string{hexSum(content), "Record it in " + cfgPath, `[models."mirror".variants.F16]`,
		fmt.Sprintf("sha256 = %q", hexSum(content)), fmt.Sprintf("size = %d", len(content))} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if !strings.Contains(stderr, "pulling mirror:F16 from "+srv.URL) {
		t.Errorf("stderr: %s", stderr)
	}

	// From Hugging Face (HF_ENDPOINT) as JSON; a second pull finds it.
	for i, wantPresent := range []bool{false, true} {
		out, _, err = runCmd(t, cfgPath, (*app).modelsPullCmd, "--json", "chat:Q4_K_M")
		var res pullResult
		if err != nil || json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("pull %d: %v %s", i, err, out)
		}
		if res.Status != "ok" || res.SHA256 != hexSum(content) || res.SHA256Recorded || res.AlreadyPresent != wantPresent ||
			res.Path != filepath.Join(models, "chat-q4_k_m.gguf") || res.Bytes != int64(len(content)) {
			t.Fatalf("pull %d: %+v", i, res)
		}
	}

	// A recorded sum that does not match: error, nothing left behind.
	_, _, err = runCmd(t, cfgPath, (*app).modelsPullCmd, "chat:Q8_0")
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("mismatch: %v", err)
	}
	if entries, _ := filepath.Glob(filepath.Join(models, "chat-q8_0*")); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}

	// A file the server does not have: the 404 explains itself.
	t.Setenv("HF_ENDPOINT", srv.URL+"/elsewhere")
	_, _, err = runCmd(t, cfgPath, (*app).modelsPullCmd, "chat:Q8_0")
	for _, w := range []string{"404", "may be wrong", "HF_TOKEN"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("404: %v lacks %q", err, w)
		}
	}

	// Local-only variants cannot be pulled.
	if _, _, err := runCmd(t, cfgPath, (*app).modelsPullCmd, "local"); err == nil || !strings.Contains(err.Error(), "no download source") {
		t.Fatalf("local: %v", err)
	}
}

func TestPullProgress(t *testing.T) {
	// Not a terminal: plain lines with percentage and rate.
	var buf bytes.Buffer
	p := newPullProgress(&buf, "m:Q4", false)
	p.every = 0
	p.update(download.Progress{Bytes: 1024, Total: 4096, Resumed: 1024})
	time.Sleep(time.Millisecond)
	p.update(download.Progress{Bytes: 2048, Total: 4096, Resumed: 1024})
	p.update(download.Progress{Bytes: 3072, Total: -1, Resumed: 1024})
	p.finish(true)
	out := buf.String()
	for _, w := range []string{"resuming at 1.0 KiB", "m:Q4: 1.0 KiB of 4.0 KiB (25%)\n", "m:Q4: 2.0 KiB of 4.0 KiB (50%), ", "m:Q4: 3.0 KiB, "} {
		if !strings.Contains(out, w) {
			t.Errorf("lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "\r") {
		t.Errorf("carriage returns in plain output:\n%q", out)
	}

	// A terminal: a progress bar, unknown size first, then known.
	buf.Reset()
	p = newPullProgress(&buf, "m:Q4", true)
	p.update(download.Progress{Bytes: 0, Total: -1})
	p.update(download.Progress{Bytes: 500_000, Total: 1_000_000})
	p.update(download.Progress{Bytes: 1_000_000, Total: 1_000_000})
	p.finish(true)
	if out := buf.String(); !strings.Contains(out, "m:Q4") || !strings.Contains(out, "100%") {
		t.Errorf("bar output: %q", out)
	}
	if isTerminal(&buf) {
		t.Error("a buffer is not a terminal")
	}
}
