package plugin

import (
	"context"
	"sync"
	"sync/atomic"
)

// pool is a bounded set of instances of one plugin. Up to size instances
// exist at once; acquire waits (honouring ctx) for a free slot, reuses an
// idle instance when there is one and makes a new one otherwise. No lock is
// held while an instance is made, used or closed.
//
// Invariant: a new instance is made only by a slot holder that found no idle
// instance, so idle + held <= size at all times.
type pool struct {
	slots   chan struct{} // one token per held instance (in use or being made)
	newInst func(context.Context) (*instance, error)
	onDrain func() // called once, when closed and nothing is held

	closing chan struct{} // closed by close

	mu     sync.Mutex
	idle   []*instance
	held   int
	closed bool
	done   bool

	live    atomic.Int64
	peak    atomic.Int64
	created atomic.Uint64
	dropped atomic.Uint64
}

func newPool(size int, newInst func(context.Context) (*instance, error), onDrain func()) *pool {
	return &pool{
		slots:   make(chan struct{}, size),
		newInst: newInst,
		onDrain: onDrain,
		closing: make(chan struct{}),
	}
}

// acquire returns an instance for the caller's exclusive use; release it
// with release.
func (p *pool) acquire(ctx context.Context) (*instance, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.closing:
		return nil, ErrClosed
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, ErrClosed
	}
	p.held++
	if n := len(p.idle); n > 0 {
		inst := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return inst, nil
	}
	p.mu.Unlock()

	inst, err := p.newInst(ctx)
	if err != nil {
		p.finish()
		return nil, err
	}
	p.created.Add(1)
	n := p.live.Add(1)
	for {
		old := p.peak.Load()
		if n <= old || p.peak.CompareAndSwap(old, n) {
			break
		}
	}
	return inst, nil
}

// release gives inst back. An instance is kept for reuse only when reuse is
// true and the pool is open; otherwise it is closed.
func (p *pool) release(inst *instance, reuse bool) {
	p.mu.Lock()
	if reuse && !p.closed {
		p.idle = append(p.idle, inst)
		inst = nil
	}
	p.mu.Unlock()
	if inst != nil {
		p.discard(inst)
	}
	p.finish()
}

// finish frees the caller's slot and drains the pool if it was the last.
func (p *pool) finish() {
	p.mu.Lock()
	p.held--
	last := p.closed && p.held == 0 && !p.done
	if last {
		p.done = true
	}
	p.mu.Unlock()
	<-p.slots
	if last {
		p.onDrain()
	}
}

func (p *pool) discard(inst *instance) {
	inst.close()
	p.live.Add(-1)
	p.dropped.Add(1)
}

// close stops new acquires, closes idle instances and, if nothing is held,
// drains at once. Otherwise the last release drains. It reports whether this
// call was the one that closed the pool.
func (p *pool) close() bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.closed = true
	close(p.closing)
	idle := p.idle
	p.idle = nil
	last := p.held == 0 && !p.done
	if last {
		p.done = true
	}
	p.mu.Unlock()
	for _, inst := range idle {
		p.discard(inst)
	}
	if last {
		p.onDrain()
	}
	return true
}

// stats returns live, peak, held and idle counts and the totals made and
// discarded.
func (p *pool) stats() (live, peak, held, idle int, created, dropped uint64) {
	p.mu.Lock()
	held, idle = p.held, len(p.idle)
	p.mu.Unlock()
	return int(p.live.Load()), int(p.peak.Load()), held, idle, p.created.Load(), p.dropped.Load()
}
