package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

// mdsa plugins push and pull through a real registry: the same bytes come
// back as NAME.wasm; a reference without oci:// is refused.
func TestPluginsPushPull(t *testing.T) {
	reg := testutil.StartRegistry(t)
	src := filepath.Join(fix.dir, "plugins", "support.wasm")
	ref := "oci://" + reg.Host + "/mdsa/support:v1"
	out, stderr, err := run(t, "--config", fix.config, "plugins", "push", "--plain-http", "--version", "1.2.3", src, ref)
	if err != nil || !strings.Contains(out, "digest sha256:") {
		t.Fatalf("push: %v\n%s%s", err, out, stderr)
	}
	dir := t.TempDir()
	out, stderr, err = run(t, "--config", fix.config, "plugins", "pull", "--plain-http", "--dir", dir, ref)
	if err != nil {
		t.Fatalf("pull: %v\n%s%s", err, out, stderr)
	}
	want, _ := os.ReadFile(src)
	got, err := os.ReadFile(filepath.Join(dir, "support.wasm"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("pulled %d bytes, want %d: %v", len(got), len(want), err)
	}
	if _, _, err := run(t, "--config", fix.config, "plugins", "pull", "--dir", dir, reg.Host+"/mdsa/support:v1"); err == nil ||
		!strings.Contains(err.Error(), "oci://") {
		t.Errorf("a reference without oci://: %v", err)
	}
}
