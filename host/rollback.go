package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/internal/atomicfile"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Rollback. When InstallPlugin replaces a plugin with another module, or
// RemovePlugin removes one, the version that was running is kept in
// <plugins_dir>/.previous/NAME.wasm, with NAME.json beside it saying its
// version and sha256. RollbackPlugin installs it again through the same
// checks as InstallPlugin, which keeps the version it replaces in turn:
// rolling back twice returns to where one started. The plugins directory
// scan (Reload, Watch, the load at start-up) skips hidden directories, so
// the kept versions are never loaded as plugins. Keeping is best effort:
// when the directory cannot be written, or the running version's file no
// longer holds the bytes that run, a warning is logged, rollback is
// unavailable for that plugin (no stale version is left to roll back to)
// and the install or removal goes on. A file dropped into the plugins
// directory and picked up by Reload or Watch keeps nothing: its old bytes
// are already gone.

// ErrNoPrevious is returned (wrapped, with the plugin's name) by
// RollbackPlugin when no previous version of the plugin is kept.
var ErrNoPrevious = errors.New("host: no previous version kept")

// previousDir is the hidden subdirectory of the plugins directory that
// holds the kept versions.
const previousDir = ".previous"

// previousMeta is NAME.json beside a kept NAME.wasm.
type previousMeta struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	SHA256  string    `json:"sha256"`
	Kept    time.Time `json:"kept"`
}

// previousPaths are the kept module of plugin name and its description.
func (h *Host) previousPaths(name string) (wasm, meta string) {
	dir := filepath.Join(h.cfg.Resolve(h.cfg.Host.PluginsDir), previousDir)
	return filepath.Join(dir, name+".wasm"), filepath.Join(dir, name+".json")
}

// RollbackPlugin installs the kept previous version of plugin name (the
// one the last InstallPlugin or RollbackPlugin replaced, or RemovePlugin
// removed) through the same checks and swap as InstallPlugin; the version
// it replaces becomes the previous one. Its Change has Action
// "rolled_back". With no previous version kept, the error wraps
// ErrNoPrevious; a previous version that no longer passes the checks is
// refused (the error wraps ErrRefused), stays kept, and changes nothing.
// After a rollback that brings back a removed plugin no previous version
// is left.
func (h *Host) RollbackPlugin(ctx context.Context, name string) (Change, error) {
	if h.closed.Load() {
		return Change{}, ErrClosed
	}
	start := time.Now()
	if !abi.ValidName(name) {
		return Change{}, fmt.Errorf("%w: %q is not a plugin name", ErrNoPrevious, name)
	}
	h.swapMu.Lock()
	defer h.swapMu.Unlock()
	prevPath, _ := h.previousPaths(name)
	wasm, err := plugin.ReadModule(prevPath, plugin.DefaultMaxModuleBytes)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) { // ENOTDIR: .previous is not a directory
		return Change{}, fmt.Errorf("%w for plugin %q", ErrNoPrevious, name)
	}
	if err != nil {
		return Change{}, fmt.Errorf("host: rollback %s: reading the previous version: %w", name, err)
	}
	cur := h.state.Load().spaces[""].plugins[name]
	ch, err := h.installChecked(ctx, name, wasm, "rolled_back", start)
	if err != nil {
		return Change{}, err
	}
	if cur == nil {
		// Nothing was replaced: the kept version is the running one now.
		h.dropPrevious(name)
	}
	return ch, nil
}

// PreviousVersion reports what RollbackPlugin would install for plugin
// name, without installing it: the kept module's sha256 and its manifest
// version. The version is the one recorded when the module was kept
// (nothing is compiled or run to tell it); it is "" when that record is
// missing or does not match the module's bytes. ok is false when no
// previous version is kept (or it cannot be read).
func (h *Host) PreviousVersion(name string) (version, sha256 string, ok bool) {
	if !abi.ValidName(name) {
		return "", "", false
	}
	wasmPath, metaPath := h.previousPaths(name)
	wasm, err := plugin.ReadModule(wasmPath, plugin.DefaultMaxModuleBytes)
	if err != nil {
		return "", "", false
	}
	sha256 = sha256Hex(wasm)
	if b, err := plugin.ReadModule(metaPath, 64<<10); err == nil {
		var m previousMeta
		if json.Unmarshal(b, &m) == nil && m.SHA256 == sha256 && m.Name == name {
			version = m.Version
		}
	}
	return version, sha256, true
}

// runningBytes reads the module plugin p runs from its file, or returns
// nil (with a warning) when the file no longer holds those bytes.
func (h *Host) runningBytes(p *plugin.Plugin) []byte {
	b, err := plugin.ReadModule(p.Path(), plugin.DefaultMaxModuleBytes)
	if err == nil && sha256Hex(b) != p.Hash() {
		err = errors.New("the file was changed since the running version was loaded from it")
	}
	if err != nil {
		h.log.Warn("the running version of a plugin cannot be kept: rollback will not be available", "plugin", p.Name(),
			"version", p.Version(), "path", p.Path(), "err", err)
		return nil
	}
	return b
}

// keepPrevious keeps wasm as the previous version of plugin name. With
// wasm nil, or when it cannot be written, it drops what was kept before
// rather than leave an older version to roll back to. It never fails.
func (h *Host) keepPrevious(name, version string, wasm []byte) {
	if wasm == nil {
		h.dropPrevious(name)
		return
	}
	wasmPath, metaPath := h.previousPaths(name)
	meta, err := json.Marshal(previousMeta{Name: name, Version: version, SHA256: sha256Hex(wasm), Kept: time.Now().UTC()})
	if err == nil {
		err = os.MkdirAll(filepath.Dir(wasmPath), 0o755)
	}
	if err == nil {
		err = atomicfile.WriteBytes(wasmPath, wasm)
	}
	if err == nil {
		err = atomicfile.WriteBytes(metaPath, append(meta, '\n'))
	}
	if err != nil {
		h.log.Warn("the replaced version of a plugin could not be kept: rollback is not available for it", "plugin", name,
			"version", version, "dir", filepath.Dir(wasmPath), "err", err)
		h.dropPrevious(name)
	}
}

// dropPrevious removes the kept previous version of plugin name, if any.
func (h *Host) dropPrevious(name string) {
	wasmPath, metaPath := h.previousPaths(name)
	for _, p := range []string{wasmPath, metaPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			h.log.Warn("removing a kept previous version", "plugin", name, "path", p, "err", err)
		}
	}
}

// isHidden reports a dot file or directory: an editor's temporary file,
// or the kept previous versions (.previous).
func isHidden(name string) bool { return len(name) > 0 && name[0] == '.' }
