package plugin

import (
	"sync"
	"time"
)

// maxClockStretch bounds how far a starved call's deadline moves: the wall
// time of a call (host functions excluded) never exceeds this many times
// its timeout.
const maxClockStretch = 5

// guestClock is the per-call timeout. It runs only while the plugin's own
// code runs: host functions pause it around calls into Services.
//
// The time it holds a plugin to is charged time: the guest's CPU time plus
// the pauses its throttle imposed, as the throttle last measured them. When
// the wall-clock deadline comes and less than the timeout was charged, the
// machine was too busy to run the guest (other processes, a GC, other
// calls), which is not the plugin's doing: the deadline moves out by what
// is missing, up to maxClockStretch times the timeout in all. Without a
// measurement (charged nil, or a guest that reached no yield point) the
// wall clock decides, within the same bound.
type guestClock struct {
	mu       sync.Mutex
	timer    *time.Timer
	budget   time.Duration
	deadline time.Time
	left     time.Duration // at pause
	stretch  time.Duration // deadline moves granted so far
	paused   bool
	expired  bool
	stopped  bool
	charged  func() time.Duration
	fire     func()
}

// start arms the clock for d of charged time; fire runs once it has run out.
func (c *guestClock) start(d time.Duration, charged func() time.Duration, fire func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.budget, c.charged, c.fire = d, charged, fire
	c.deadline = time.Now().Add(d)
	c.timer = time.AfterFunc(d, c.ring)
}

// ring runs when the wall-clock deadline comes.
func (c *guestClock) ring() {
	c.mu.Lock()
	if c.stopped || c.paused || c.expired {
		c.mu.Unlock()
		return
	}
	if c.charged != nil {
		if missing := c.budget - c.charged(); missing > 0 && c.stretch < (maxClockStretch-1)*c.budget {
			missing = max(min(missing, (maxClockStretch-1)*c.budget-c.stretch), time.Millisecond)
			c.stretch += missing
			c.deadline = time.Now().Add(missing)
			c.timer.Reset(missing)
			c.mu.Unlock()
			return
		}
	}
	c.expired = true
	c.mu.Unlock()
	c.fire()
}

// pause stops the clock; it reports false if the time had already run out.
func (c *guestClock) pause() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expired {
		return false
	}
	c.timer.Stop()
	c.left = time.Until(c.deadline)
	c.paused = true
	return true
}

// resume restarts the clock with the time left at pause.
func (c *guestClock) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.paused || c.stopped {
		return
	}
	c.paused = false
	left := max(c.left, time.Nanosecond)
	c.deadline = time.Now().Add(left)
	c.timer.Reset(left)
}

// stop disarms the clock for good.
func (c *guestClock) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.timer != nil {
		c.timer.Stop()
	}
}
