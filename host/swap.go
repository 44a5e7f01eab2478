package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/mdsa-go/mdsa/internal/atomicfile"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/host/plugin/conformance"
	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Hot swap. A new plugin version is loaded (compiled once, from the cache
// when the bytes were seen before), described, checked, loaded again for
// every tenant that may use it (with the tenant's config), added to fresh
// routers, and only then swapped in with one atomic store. Requests that
// started on the old state finish on it; the old versions close once the
// last of those requests is done. A version that fails any step is refused
// and the old one keeps serving.

// PluginChecker vets a plugin before it is swapped in (for example the
// conformance kit); a non-nil error refuses it.
type PluginChecker func(ctx context.Context, p *plugin.Plugin, wasm []byte) error

// WithPluginChecker makes every hot-swapped or installed plugin pass check
// first. Without one the conformance kit's checks of a loaded plugin run
// (conformance.CheckLoaded: describe, prompt and validate on sample inputs).
func WithPluginChecker(check PluginChecker) Option { return func(o *options) { o.check = check } }

// Change is one plugin that a reload added, swapped or removed. (The admin
// API writes it with times in milliseconds: "ms", "compile_ms".)
type Change struct {
	Name, Version, OldVersion, SHA256, Path string
	Action                                  string // added, swapped, removed, rolled_back
	// Took is how long the change took, Compile the part of it spent
	// compiling (near zero when the module was compiled before).
	Took, Compile time.Duration
	// Tenants are the configured tenants that may use the plugin (added or
	// swapped), by name or by pattern.
	Tenants []string
	// Note says what an operator may not expect, e.g. that no tenant may
	// use a plugin just added.
	Note string
}

// withTenants fills c.Tenants and c.Note for a plugin added or swapped.
func (h *Host) withTenants(c Change) Change {
	if c.Action == "removed" || len(h.cfg.Tenants) == 0 {
		return c
	}
	for _, t := range h.cfg.Tenants {
		if t.Allows(c.Name) {
			c.Tenants = append(c.Tenants, t.Name)
		}
	}
	if len(c.Tenants) == 0 {
		c.Note = fmt.Sprintf("no tenant may use plugin %q: add its name, or a pattern such as \"*\", to a tenant's plugins in %s", c.Name, h.cfg.File)
	}
	return c
}

// logChange logs one change, with the tenants that may use the plugin.
func (h *Host) logChange(c Change) {
	args := []any{"plugin", c.Name, "version", c.Version, "old_version", c.OldVersion, "path", c.Path, "took", c.Took}
	if len(h.cfg.Tenants) > 0 && c.Action != "removed" {
		args = append(args, "tenants", c.Tenants)
	}
	if c.Note != "" {
		h.log.Warn("plugin "+c.Action+": "+c.Note, args...)
		return
	}
	h.log.Info("plugin "+c.Action, args...)
}

// Refusal is a plugin version that was not swapped in, and why.
type Refusal struct {
	Name, Path, Reason string
}

// ReloadReport says what a reload did and how long it took.
type ReloadReport struct {
	Changes []Change
	Refused []Refusal
	Took    time.Duration
}

// ErrRefused wraps the reason a plugin version was not installed.
var ErrRefused = errors.New("host: plugin refused")

// fileStamp is what Reload compares to skip reading an unchanged file.
type fileStamp struct {
	size int64
	mod  time.Time
}

// acquire pins the current state for a request: the plugins in it are not
// closed before release.
func (h *Host) acquire() (*state, func()) {
	for {
		st := h.state.Load()
		if st.ref() {
			if h.state.Load() == st {
				return st, st.unref
			}
			st.unref()
		}
		// Swapped meanwhile: take the new one.
	}
}

// candidate is a plugin version about to be swapped in.
type candidate struct {
	base     *plugin.Plugin
	compiled time.Duration // compile time of this load (0: already compiled)
	wasm     []byte
	path     string
	tenants  map[string]*plugin.Plugin
}

// compileTime is how long this load spent compiling the module.
func (c *candidate) compileTime() time.Duration { return c.compiled }

func (c *candidate) closeAll(ctx context.Context) {
	if c.base != nil {
		c.base.Close(ctx)
	}
	for _, p := range c.tenants {
		p.Close(ctx)
	}
}

// prepare loads wasm as a candidate for path: base instance, check, and one
// instance per tenant allowed to use it.
func (h *Host) prepare(ctx context.Context, path string, wasm []byte) (*candidate, error) {
	c := &candidate{wasm: wasm, path: path, tenants: map[string]*plugin.Plugin{}}
	p, err := h.rt.LoadBytes(ctx, path, wasm, plugin.WithConfig(h.pluginConfig(nil, "", path)))
	if err != nil {
		return nil, err
	}
	c.base = p
	c.compiled = p.Stats().CompileTime
	if err := plugin.CheckFileName(path, p.Name()); err != nil {
		c.closeAll(ctx)
		return nil, err
	}
	if err := h.check(ctx, p, wasm); err != nil {
		c.closeAll(ctx)
		return nil, fmt.Errorf("plugin %s %s failed its check: %w", p.Name(), p.Version(), err)
	}
	for _, t := range h.cfg.Tenants {
		if !t.Allows(p.Name()) {
			continue
		}
		tp, err := h.rt.LoadBytes(ctx, path, wasm, plugin.WithConfig(h.pluginConfig(&t, p.Name(), path)))
		if err != nil {
			c.closeAll(ctx)
			return nil, fmt.Errorf("tenant %q: %w", t.Name, err)
		}
		c.tenants[t.Name] = tp
	}
	return c, nil
}

// check runs the configured checker, or the conformance kit's checks of a
// loaded plugin (describe, prompt and validate on sample inputs).
func (h *Host) check(ctx context.Context, p *plugin.Plugin, wasm []byte) error {
	if h.checker != nil {
		return h.checker(ctx, p, wasm)
	}
	rep := conformance.CheckLoaded(ctx, p, conformance.Options{})
	if rep.Passed {
		return nil
	}
	var why []string
	for _, r := range rep.Failed() {
		why = append(why, r.Detail)
	}
	return fmt.Errorf("conformance: %s", strings.Join(why, "; "))
}

// apply swaps in the candidates and drops the plugins named in remove,
// building the new state from the current one. It holds swapMu.
func (h *Host) apply(ctx context.Context, cands []*candidate, remove []string) error {
	old := h.state.Load()
	next := newState(make(map[string]*space, len(old.spaces)))
	var retired []*plugin.Plugin
	// The untenanted space first: the others learn from what it has.
	names := slices.SortedFunc(maps.Keys(old.spaces), strings.Compare)
	for _, name := range names {
		sp := old.spaces[name]
		ns := &space{tenant: sp.tenant, models: sp.models, plugins: make(map[string]*plugin.Plugin, len(sp.plugins))}
		for n, p := range sp.plugins {
			ns.plugins[n] = p
		}
		for _, n := range remove {
			if p, ok := ns.plugins[n]; ok {
				retired = append(retired, p)
				delete(ns.plugins, n)
			}
		}
		for _, c := range cands {
			p := c.base
			if name != "" {
				p = c.tenants[name]
			}
			if p == nil {
				continue // this tenant may not use it
			}
			if prev, ok := ns.plugins[p.Name()]; ok {
				retired = append(retired, prev)
			}
			ns.plugins[p.Name()] = p
		}
		all := ns.plugins
		if base, ok := next.spaces[""]; ok {
			all = base.plugins
		}
		r, err := h.routerFor(ctx, ns, sp, all)
		if err != nil {
			return err
		}
		ns.router = r
		next.spaces[name] = ns
	}
	h.state.Store(next)
	old.unref() // no longer current
	// Drain: close the replaced versions once every request that pinned the
	// old state has finished.
	h.retiring.Add(1)
	go func() {
		defer h.retiring.Done()
		<-old.drained
		for _, p := range retired {
			if err := p.Close(context.Background()); err != nil {
				h.log.Warn("closing a swapped-out plugin", "plugin", p.Name(), "err", err)
			}
		}
	}()
	return nil
}

// routerFor returns prev's router when what it learns from did not change
// (a new version with the same keywords and examples), else trains a new
// one. all are every loaded plugin: for a tenant, the examples of those it
// may not use are out of its scope and join the router's background.
func (h *Host) routerFor(ctx context.Context, sp, prev *space, all map[string]*plugin.Plugin) (router.Router, error) {
	domains := make([]router.Domain, 0, len(sp.plugins))
	for _, p := range sp.plugins {
		m := p.Manifest()
		domains = append(domains, router.Domain{Name: m.Name, Keywords: m.Keywords, Examples: m.Examples})
	}
	slices.SortFunc(domains, func(a, b router.Domain) int { return strings.Compare(a.Name, b.Name) })
	var others []string
	if h.cfg.Router.Background {
		for _, n := range slices.Sorted(maps.Keys(all)) {
			if _, mine := sp.plugins[n]; !mine {
				others = appendBackground(others, all[n].Manifest())
			}
		}
	}
	fp := fingerprint(domains, others)
	if prev != nil && prev.fingerprint == fp && prev.router != nil {
		sp.fingerprint = fp
		return prev.router, nil
	}
	sp.fingerprint = fp
	if len(domains) == 0 {
		return emptyRouter{}, nil
	}
	r, err := router.New(ctx, domains, h.routerOptions(sp, others))
	if err != nil {
		return nil, fmt.Errorf("host: building the router of tenant %q: %w", sp.tenant, err)
	}
	return r, nil
}

// Another tenant's plugin lends a router a sample of its utterances as
// background, no more: a manifest at every cap (880 long examples) made
// each other tenant's router train on 170,000 features for 2.4 s at every
// reload (mdsa bench hostile, router-bigmanifest), although none of them
// can use it.
const (
	backgroundPerPlugin = 32  // examples, then keywords, at most, of each plugin
	backgroundTextBytes = 256 // of each, at most
)

// appendBackground appends the sample of m that another tenant's router
// learns as out of its scope.
func appendBackground(out []string, m abi.Manifest) []string {
	take := func(texts []string) {
		for _, t := range texts[:min(len(texts), backgroundPerPlugin)] {
			if len(t) > backgroundTextBytes {
				t = strings.ToValidUTF8(t[:backgroundTextBytes], "")
			}
			out = append(out, t)
		}
	}
	take(m.Examples)
	take(m.Keywords)
	return out
}

// fingerprint identifies what a router learns from.
func fingerprint(ds []router.Domain, background []string) string {
	hs := sha256.New()
	for _, d := range ds {
		fmt.Fprintf(hs, "%q\x00%q\x00%q\x01", d.Name, d.Keywords, d.Examples)
	}
	fmt.Fprintf(hs, "%q", background)
	return hex.EncodeToString(hs.Sum(nil))
}

// Reload brings the plugins in line with the plugins directory: new files
// are added, files whose sha256 changed are swapped, missing files are
// removed. Each new version must load and pass its check first; a refused
// one leaves the running version in place and is listed in the report.
func (h *Host) Reload(ctx context.Context) (ReloadReport, error) {
	if h.closed.Load() {
		return ReloadReport{}, ErrClosed
	}
	start := time.Now()
	h.swapMu.Lock()
	defer h.swapMu.Unlock()
	rep := ReloadReport{Changes: []Change{}, Refused: []Refusal{}}
	dir := h.cfg.Resolve(h.cfg.Host.PluginsDir)
	files, err := plugin.Files(dir)
	if err != nil {
		return rep, fmt.Errorf("host: reload: %w", err)
	}
	base := h.state.Load().spaces[""]
	byPath := map[string]*plugin.Plugin{}
	for _, p := range base.plugins {
		byPath[p.Path()] = p
	}
	var cands []*candidate
	var changes []Change
	seen := map[string]bool{}
	for _, path := range files {
		seen[path] = true
		cur := byPath[path]
		fi, err := os.Stat(path)
		if err != nil {
			rep.Refused = append(rep.Refused, Refusal{Path: path, Reason: err.Error()})
			continue
		}
		stamp := fileStamp{size: fi.Size(), mod: fi.ModTime()}
		if cur != nil && h.stamps[path] == stamp {
			continue // same size and time as the running version: unchanged
		}
		wasm, err := os.ReadFile(path)
		if err != nil {
			rep.Refused = append(rep.Refused, Refusal{Path: path, Reason: err.Error()})
			continue
		}
		if cur != nil && cur.Hash() == sha256Hex(wasm) {
			h.stamps[path] = stamp
			continue // touched, not changed
		}
		t := time.Now()
		c, err := h.prepare(ctx, path, wasm)
		if err != nil {
			name := ""
			if cur != nil {
				name = cur.Name()
			}
			rep.Refused = append(rep.Refused, Refusal{Name: name, Path: path, Reason: err.Error()})
			h.log.Warn("plugin version refused; the running version keeps serving", "path", path, "err", err)
			continue
		}
		ch := Change{Name: c.base.Name(), Version: c.base.Version(), SHA256: c.base.Hash(), Path: path, Action: "added",
			Compile: c.compileTime()}
		if cur != nil {
			ch.Action, ch.OldVersion = "swapped", cur.Version()
		} else if other, dup := base.plugins[c.base.Name()]; dup && seen[other.Path()] {
			c.closeAll(ctx)
			rep.Refused = append(rep.Refused, Refusal{Name: c.base.Name(), Path: path,
				Reason: fmt.Sprintf("a plugin named %q is already loaded from %s", c.base.Name(), other.Path())})
			continue
		}
		ch.Took = time.Since(t)
		h.stamps[path] = stamp
		cands = append(cands, c)
		changes = append(changes, ch)
	}
	var remove []string
	for path, p := range byPath {
		if !seen[path] {
			remove = append(remove, p.Name())
			changes = append(changes, Change{Name: p.Name(), OldVersion: p.Version(), Path: path, Action: "removed"})
		}
	}
	if len(cands) == 0 && len(remove) == 0 {
		rep.Took = time.Since(start)
		return rep, nil
	}
	if err := h.apply(ctx, cands, remove); err != nil {
		for _, c := range cands {
			c.closeAll(ctx)
		}
		return rep, err
	}
	for i, c := range changes {
		changes[i] = h.withTenants(c)
		h.logChange(changes[i])
	}
	rep.Changes = changes
	rep.Took = time.Since(start)
	return rep, nil
}

// InstallPlugin checks wasm as the plugin name and, when it passes, writes
// it to the plugins directory (atomically, as NAME.wasm or over the file the
// running version came from) and swaps it in. A refused version changes
// nothing; the error wraps ErrRefused and says why. The version it
// replaces is kept for RollbackPlugin (see PreviousVersion).
func (h *Host) InstallPlugin(ctx context.Context, name string, wasm []byte) (Change, error) {
	if h.closed.Load() {
		return Change{}, ErrClosed
	}
	start := time.Now()
	h.swapMu.Lock()
	defer h.swapMu.Unlock()
	return h.installChecked(ctx, name, wasm, "", start)
}

// installChecked is InstallPlugin and RollbackPlugin under swapMu: check
// wasm as the plugin name, write it, swap it in, and keep the version it
// replaced (when it was another module) as the previous one. action, when
// not "", names the change instead of added or swapped.
func (h *Host) installChecked(ctx context.Context, name string, wasm []byte, action string, start time.Time) (Change, error) {
	dir := h.cfg.Resolve(h.cfg.Host.PluginsDir)
	base := h.state.Load().spaces[""]
	path := filepath.Join(dir, name+".wasm")
	cur := base.plugins[name]
	if cur != nil {
		path = cur.Path()
	}
	c, err := h.prepare(ctx, path, wasm)
	if err != nil {
		return Change{}, fmt.Errorf("%w: %s: %w", ErrRefused, name, err)
	}
	if c.base.Name() != name {
		c.closeAll(ctx)
		return Change{}, fmt.Errorf("%w: the module describes itself as %q, not %q", ErrRefused, c.base.Name(), name)
	}
	// The running version's bytes, read before they are overwritten and
	// kept once the new version is in.
	replacing := cur != nil && cur.Hash() != c.base.Hash()
	var replaced []byte
	if replacing {
		replaced = h.runningBytes(cur)
	}
	if err := atomicfile.WriteBytes(path, wasm); err != nil {
		c.closeAll(ctx)
		return Change{}, fmt.Errorf("host: install %s: %w", name, err)
	}
	if fi, err := os.Stat(path); err == nil {
		h.stamps[path] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
	}
	if err := h.apply(ctx, []*candidate{c}, nil); err != nil {
		c.closeAll(ctx)
		return Change{}, err
	}
	if replacing {
		h.keepPrevious(name, cur.Version(), replaced)
	}
	ch := Change{Name: name, Version: c.base.Version(), SHA256: c.base.Hash(), Path: path, Action: "added",
		Took: time.Since(start), Compile: c.compileTime()}
	if cur != nil {
		ch.Action, ch.OldVersion = "swapped", cur.Version()
	}
	if action != "" {
		ch.Action = action
	}
	ch = h.withTenants(ch)
	h.logChange(ch)
	return ch, nil
}

// RemovePlugin drains and removes a plugin and deletes its file. The
// version removed is kept for RollbackPlugin, which brings it back.
func (h *Host) RemovePlugin(ctx context.Context, name string) (Change, error) {
	if h.closed.Load() {
		return Change{}, ErrClosed
	}
	h.swapMu.Lock()
	defer h.swapMu.Unlock()
	cur := h.state.Load().spaces[""].plugins[name]
	if cur == nil {
		return Change{}, fmt.Errorf("%w %q", ErrUnknownDomain, name)
	}
	removed := h.runningBytes(cur)
	if err := os.Remove(cur.Path()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Change{}, fmt.Errorf("host: remove %s: %w", name, err)
	}
	if err := h.apply(ctx, nil, []string{name}); err != nil {
		return Change{}, err
	}
	h.keepPrevious(name, cur.Version(), removed)
	h.log.Info("plugin removed", "plugin", name, "version", cur.Version())
	return Change{Name: name, OldVersion: cur.Version(), Path: cur.Path(), Action: "removed"}, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
