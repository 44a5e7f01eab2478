package ociplugins

import (
	"context"
	"log/slog"
	"time"
)

// InstallFunc installs a pulled plugin through the host's checked swap
// path; an error leaves the running version serving.
type InstallFunc func(ctx context.Context, name string, wasm []byte) error

// Watcher keeps plugins in step with their references: a reference by tag
// is resolved every Poll and pulled and installed when its digest moves;
// one by digest is installed once.
type Watcher struct {
	Client  Client
	Refs    []Ref
	Poll    time.Duration
	Install InstallFunc
	Log     *slog.Logger

	seen map[string]string // ref -> the digest last installed or refused
}

// Sync brings every reference up to date once and reports how many
// plugins it installed; errors are logged, per reference.
func (w *Watcher) Sync(ctx context.Context) int {
	if w.seen == nil {
		w.seen = make(map[string]string, len(w.Refs))
	}
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	installed := 0
	for _, ref := range w.Refs {
		key := ref.String()
		dg := ref.Digest
		if dg == "" {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			d, err := w.Client.Resolve(rctx, ref)
			cancel()
			if err != nil {
				log.Warn("plugin registry: resolving a reference failed; the running version keeps serving", "ref", key, "err", err)
				continue
			}
			dg = d
		}
		if w.seen[key] == dg {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		p, err := w.Client.Pull(pctx, Ref{Registry: ref.Registry, Repository: ref.Repository, Digest: dg})
		cancel()
		if err != nil {
			log.Warn("plugin registry: pulling failed; the running version keeps serving", "ref", key, "digest", dg, "err", err)
			continue
		}
		// Whatever the swap says, this digest is settled: a refused
		// version is not pulled again at every poll.
		w.seen[key] = dg
		if err := w.Install(ctx, p.Name, p.Wasm); err != nil {
			log.Warn("plugin registry: the new version was refused; the running version keeps serving",
				"ref", key, "digest", dg, "plugin", p.Name, "err", err)
			continue
		}
		installed++
		log.Info("plugin registry: installed", "ref", key, "digest", dg, "plugin", p.Name)
	}
	return installed
}

// Run syncs at once, then every Poll, until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	poll := w.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	w.Sync(ctx)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Sync(ctx)
		}
	}
}
