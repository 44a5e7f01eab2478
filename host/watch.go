package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce is how long the plugins directory must stay quiet after a
// change before it is reloaded: a copy in progress fires many events.
const watchDebounce = 250 * time.Millisecond

// Watch reloads the plugins whenever the plugins directory changes (a
// .wasm file written, renamed or removed, directly or as NAME/NAME.wasm),
// until ctx is done. Each reload is logged; a refused version leaves the
// running one serving. onReload, when not nil, receives every report.
// Hidden files and directories (.previous, where RollbackPlugin's versions
// are kept) are not watched.
func (h *Host) Watch(ctx context.Context, onReload func(ReloadReport, error)) error {
	dir := h.cfg.Resolve(h.cfg.Host.PluginsDir)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("host: watching %s: %w", dir, err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("host: watching %s: %w", dir, err)
	}
	watchSubdirs(w, dir)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() && !isHidden(filepath.Base(ev.Name)) {
					w.Add(ev.Name) // a new NAME/ directory (not .previous)
				}
			}
			if relevant(ev.Name) {
				timer.Reset(watchDebounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			h.log.Warn("watching the plugins directory", "dir", dir, "err", err)
		case <-timer.C:
			rep, err := h.Reload(ctx)
			if err != nil {
				h.log.Error("reloading plugins", "dir", dir, "err", err)
			}
			for _, r := range rep.Refused {
				h.log.Warn("plugin refused", "path", r.Path, "reason", r.Reason)
			}
			if onReload != nil {
				onReload(rep, err)
			}
		}
	}
}

// relevant: a plugin file, or a directory that may hold one. Temporary
// files (dot files, editors' ~ files) are ignored.
func relevant(path string) bool {
	base := filepath.Base(path)
	if strings.HasPrefix(base, ".") || strings.HasSuffix(base, "~") {
		return false
	}
	return strings.HasSuffix(base, ".wasm") || filepath.Ext(base) == ""
}

func watchSubdirs(w *fsnotify.Watcher, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() && !isHidden(e.Name()) { // not .previous
			w.Add(filepath.Join(dir, e.Name()))
		}
	}
}
