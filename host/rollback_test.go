package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pluginNames(h *Host) []string {
	var names []string
	for _, p := range h.Plugins() {
		names = append(names, p.Name)
	}
	return names
}

// wantPrevious checks what PreviousVersion reports for name.
func wantPrevious(t *testing.T, h *Host, name, version, sha string) {
	t.Helper()
	v, s, ok := h.PreviousVersion(name)
	if !ok || v != version || s != sha {
		t.Fatalf("PreviousVersion(%q) = %q, %.12s, %v; want %q, %.12s, true", name, v, s, ok, version, sha)
	}
}

func TestRollbackPlugin(t *testing.T) {
	ctx := context.Background()
	dir := swapDir(t)
	h := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	v1 := readFile(t, filepath.Join(fixture.pluginsDir, "support.wasm"))
	v2 := readFile(t, fixture.supportV2)
	v1sha, v2sha := sha256Hex(v1), sha256Hex(v2)
	onDisk := func() string { return sha256Hex(readFile(t, filepath.Join(dir, "support.wasm"))) }
	serves := func(want string) {
		t.Helper()
		if got := versionOf(t, h, "", "support"); got != want {
			t.Fatalf("support is version %q, want %q", got, want)
		}
		if res, err := h.Process(ctx, Request{Domain: "support", Query: "where is my order"}); err != nil || res.Status == "" {
			t.Fatalf("support does not serve: %+v %v", res, err)
		}
	}

	if _, _, ok := h.PreviousVersion("support"); ok {
		t.Fatal("a previous version before any install")
	}
	if _, err := h.RollbackPlugin(ctx, "support"); !errors.Is(err, ErrNoPrevious) || !strings.Contains(err.Error(), `"support"`) {
		t.Fatalf("rollback with nothing kept: %v", err)
	}

	// v2 over v1 keeps v1.
	if ch, err := h.InstallPlugin(ctx, "support", v2); err != nil || ch.Version != "2.0.0" {
		t.Fatalf("install v2: %+v %v", ch, err)
	}
	if kept := readFile(t, filepath.Join(dir, ".previous", "support.wasm")); sha256Hex(kept) != v1sha {
		t.Fatal(".previous/support.wasm is not v1")
	}
	wantPrevious(t, h, "support", "1.0.0", v1sha)

	// Back to v1; v2 is kept.
	ch, err := h.RollbackPlugin(ctx, "support")
	if err != nil || ch.Action != "rolled_back" || ch.Version != "1.0.0" || ch.OldVersion != "2.0.0" || ch.SHA256 != v1sha ||
		ch.Path != filepath.Join(dir, "support.wasm") {
		t.Fatalf("rollback: %+v %v", ch, err)
	}
	serves("1.0.0")
	if onDisk() != v1sha {
		t.Fatal("rollback not written to the plugins directory")
	}
	wantPrevious(t, h, "support", "2.0.0", v2sha)

	// Rolling back again returns to v2.
	ch, err = h.RollbackPlugin(ctx, "support")
	if err != nil || ch.Action != "rolled_back" || ch.Version != "2.0.0" || ch.OldVersion != "1.0.0" || ch.SHA256 != v2sha {
		t.Fatalf("second rollback: %+v %v", ch, err)
	}
	serves("2.0.0")
	if onDisk() != v2sha {
		t.Fatal("second rollback not written to the plugins directory")
	}
	wantPrevious(t, h, "support", "1.0.0", v1sha)

	// Installing the running bytes again keeps the real previous version.
	if _, err := h.InstallPlugin(ctx, "support", v2); err != nil {
		t.Fatal(err)
	}
	wantPrevious(t, h, "support", "1.0.0", v1sha)

	// The kept versions are not plugins: a reload and a fresh host see
	// the four shipped ones.
	if rep, err := h.Reload(ctx); err != nil || len(rep.Changes) != 0 || len(rep.Refused) != 0 {
		t.Fatalf("reload with .previous: %+v %v", rep, err)
	}
	if got := pluginNames(h); !slices.Equal(got, shipped) {
		t.Fatalf("plugins: %v", got)
	}
	h2 := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	if err := h2.LoadErrors(); err != nil {
		t.Fatalf("a fresh host: %v", err)
	}
	if got := pluginNames(h2); !slices.Equal(got, shipped) {
		t.Fatalf("a fresh host's plugins: %v", got)
	}
	if got := versionOf(t, h2, "", "support"); got != "2.0.0" {
		t.Fatalf("a fresh host's support is %q", got)
	}
	// Another host on the same directory knows the kept version too.
	wantPrevious(t, h2, "support", "1.0.0", v1sha)
}

func TestRollbackAfterRemove(t *testing.T) {
	ctx := context.Background()
	dir := swapDir(t)
	h := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	sha := sha256Hex(readFile(t, filepath.Join(fixture.pluginsDir, "technical.wasm")))
	if _, err := h.RemovePlugin(ctx, "technical"); err != nil {
		t.Fatal(err)
	}
	wantPrevious(t, h, "technical", "1.0.0", sha)
	ch, err := h.RollbackPlugin(ctx, "technical")
	if err != nil || ch.Action != "rolled_back" || ch.Version != "1.0.0" || ch.OldVersion != "" || ch.SHA256 != sha {
		t.Fatalf("rollback of a removal: %+v %v", ch, err)
	}
	if res, err := h.Process(ctx, Request{Domain: "technical", Query: "segfault"}); err != nil || res.Status == "" {
		t.Fatalf("restored plugin does not serve: %+v %v", res, err)
	}
	if sha256Hex(readFile(t, filepath.Join(dir, "technical.wasm"))) != sha {
		t.Fatal("restored plugin not written back")
	}
	// Nothing was replaced: nothing is left to roll back to.
	if _, _, ok := h.PreviousVersion("technical"); ok {
		t.Fatal("a previous version after restoring a removed plugin")
	}
	if _, err := h.RollbackPlugin(ctx, "technical"); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("second rollback: %v", err)
	}
}

func TestRollbackErrors(t *testing.T) {
	ctx := context.Background()
	dir := swapDir(t)
	h := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	for _, name := range []string{"", "../support", ".previous", "Support", "nosuch"} {
		if _, err := h.RollbackPlugin(ctx, name); !errors.Is(err, ErrNoPrevious) {
			t.Errorf("rollback of %q: %v", name, err)
		}
		if _, _, ok := h.PreviousVersion(name); ok {
			t.Errorf("PreviousVersion(%q) ok", name)
		}
	}
	// A kept version that no longer passes the checks is refused and
	// changes nothing.
	prev := filepath.Join(dir, ".previous")
	if err := os.MkdirAll(prev, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(fixture.pluginsDir, "finance.wasm"), filepath.Join(prev, "support.wasm"))
	if v, sha, ok := h.PreviousVersion("support"); !ok || v != "" || sha == "" {
		t.Fatalf("PreviousVersion of a module kept without its record: %q %q %v", v, sha, ok)
	}
	if _, err := h.RollbackPlugin(ctx, "support"); !errors.Is(err, ErrRefused) {
		t.Fatalf("rollback to another plugin's module: %v", err)
	}
	if err := os.WriteFile(filepath.Join(prev, "support.wasm"), []byte("\x00asm garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := h.RollbackPlugin(ctx, "support"); !errors.Is(err, ErrRefused) {
		t.Fatalf("rollback to garbage: %v", err)
	}
	if got := versionOf(t, h, "", "support"); got != "1.0.0" {
		t.Fatalf("support is %q after refused rollbacks", got)
	}
	if _, _, ok := h.PreviousVersion("support"); !ok {
		t.Fatal("a refused previous version was dropped")
	}
}

// When .previous cannot be written the install goes on, and no stale
// version is left to roll back to.
func TestInstallWithoutPreviousDir(t *testing.T) {
	ctx := context.Background()
	dir := swapDir(t)
	h := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	if err := os.WriteFile(filepath.Join(dir, ".previous"), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := readFile(t, fixture.supportV2)
	if ch, err := h.InstallPlugin(ctx, "support", v2); err != nil || ch.Version != "2.0.0" {
		t.Fatalf("install with .previous unwritable: %+v %v", ch, err)
	}
	if _, _, ok := h.PreviousVersion("support"); ok {
		t.Fatal("a previous version though none could be kept")
	}
	if _, err := h.RollbackPlugin(ctx, "support"); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("rollback: %v", err)
	}
	if ch, err := h.RemovePlugin(ctx, "support"); err != nil || ch.Action != "removed" {
		t.Fatalf("remove with .previous unwritable: %+v %v", ch, err)
	}
}

func TestRollbackReachesTenants(t *testing.T) {
	ctx := context.Background()
	h := tenantHostIn(t, swapDir(t))
	v2 := readFile(t, fixture.supportV2)
	if _, err := h.InstallPlugin(ctx, "support", v2); err != nil {
		t.Fatal(err)
	}
	if _, err := h.RollbackPlugin(ctx, "support"); err != nil {
		t.Fatal(err)
	}
	if got := versionOf(t, h, "acme", "support"); got != "1.0.0" {
		t.Fatalf("acme serves support %s after the rollback", got)
	}
}

// The watcher ignores .previous: files written there start no reload.
func TestWatchIgnoresPreviousDir(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := swapDir(t)
	h := newHostIn(t, dir, WithEngine(&fakeEngine{}))
	reports := make(chan ReloadReport, 8)
	done := make(chan error, 1)
	go func() { done <- h.Watch(ctx, func(r ReloadReport, _ error) { reports <- r }) }()
	time.Sleep(100 * time.Millisecond) // let the watcher start
	prev := filepath.Join(dir, ".previous")
	if err := os.MkdirAll(prev, 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the directory's event first
	copyFile(t, fixture.supportV2, filepath.Join(prev, "support.wasm"))
	copyFile(t, fixture.supportV2, filepath.Join(prev, "zzz.wasm"))
	select {
	case r := <-reports:
		t.Fatalf("a write to .previous started a reload: %+v", r)
	case <-time.After(4 * watchDebounce):
	}
	copyFile(t, fixture.supportV2, filepath.Join(dir, "support.wasm"))
	select {
	case r := <-reports:
		if len(r.Changes) != 1 || r.Changes[0].Version != "2.0.0" || len(r.Refused) != 0 {
			t.Fatalf("reload: %+v", r)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the watcher did not swap support within 60 s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := pluginNames(h); !slices.Equal(got, shipped) {
		t.Fatalf("plugins: %v", got)
	}
}

// Plugins reports each module's source language, told at load.
func TestInstalledPluginLanguage(t *testing.T) {
	ctx := context.Background()
	h := newHostIn(t, swapDir(t), WithEngine(&fakeEngine{}))
	if _, err := h.InstallPlugin(ctx, "support", readFile(t, fixture.supportV2)); err != nil {
		t.Fatal(err)
	}
	for _, p := range h.Plugins() {
		if p.Language != "Go" {
			t.Errorf("%s: language %q, want Go", p.Name, p.Language)
		}
	}
}
