package llamacpp

import "sync"

// Cores bounds the compute threads that llama.cpp runs at once across every
// engine that shares it. Each decode (and each embedding pass) takes as many
// cores as its context has threads for as long as it computes, so engines
// sharing one Cores take turns rather than running more spinning threads
// than the machine has cores. A process makes one Cores from the hardware
// recommendation and gives it to every Open (Options.Cores); a nil *Cores
// bounds nothing.
type Cores struct {
	mu   sync.Mutex
	cond *sync.Cond
	free int
	n    int
}

// NewCores returns a Cores of n cores; n < 1 is taken as 1.
func NewCores(n int) *Cores {
	n = max(n, 1)
	c := &Cores{free: n, n: n}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// N is the number of cores c shares out.
func (c *Cores) N() int {
	if c == nil {
		return 0
	}
	return c.n
}

// acquire waits until k cores (at most N) are free and takes them; it
// returns how many it took, to give to release. When it has to wait it
// first calls beforeWait (if not nil), for the caller to stop its idle
// threads from spinning on the cores others compute on.
func (c *Cores) acquire(k int, beforeWait func()) int {
	if c == nil {
		return 0
	}
	k = min(max(k, 1), c.n)
	c.mu.Lock()
	if c.free < k && beforeWait != nil {
		beforeWait()
	}
	for c.free < k {
		c.cond.Wait()
	}
	c.free -= k
	c.mu.Unlock()
	return k
}

// release gives back k cores taken by acquire.
func (c *Cores) release(k int) {
	if c == nil || k == 0 {
		return
	}
	c.mu.Lock()
	c.free += k
	c.mu.Unlock()
	c.cond.Broadcast()
}
