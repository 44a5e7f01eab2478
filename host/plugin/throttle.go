package plugin

import (
	"context"
	"sync/atomic"
	"time"
)

// Defaults of the throttle (Limits.ThrottleAfter, Limits.ThrottleShare,
// throttleSlice).
const (
	DefaultThrottleAfter = 5 * time.Millisecond
	DefaultThrottleShare = 0.1
	// throttleSlice is how much throttled guest code runs between pauses:
	// short enough that a request arriving meanwhile waits little for the
	// CPU, long enough that the pauses cost little to take.
	throttleSlice = 100 * time.Microsecond
	// maxThrottlePause bounds one pause, however long the guest ran since
	// its last yield.
	maxThrottlePause = 100 * time.Millisecond
)

// throttle paces guest code that runs long. Every module is instrumented
// (package instrument) to call the host's yield function every few
// thousand loop iterations and function entries, which is the only time
// the host gets control back from compiled WebAssembly: Go cannot preempt
// it. Once a call (or an instantiation) has run its guest code for
// Limits.ThrottleAfter of CPU time, yield sleeps after every throttleSlice
// of it so that the call uses at most Limits.ThrottleShare of a CPU. A
// plugin that spins thus leaves the CPUs to other requests and tenants
// until its timeout stops it, while a plugin that needs a few milliseconds
// now and then is not slowed at all.
//
// Work done once per load or instance is bounded by the timeout alone:
// start code, describe (10-30 ms for a Go plugin with a few hundred
// examples on a busy machine, 150-250 ms under the race detector, which
// slows wazero's exits to Go at every loop header) and the first call on
// each instance (the Go runtime initialises lazily). A plugin that has run
// into its timeout once loses that exemption.
//
// A throttle belongs to one call on one goroutine; it is not safe for
// concurrent use.
type throttle struct {
	after time.Duration
	share float64

	ran     time.Duration // guest CPU time so far
	debt    time.Duration // guest CPU time run throttled since the last pause
	running bool          // guest code is running (not paused in a host call)
	wall    time.Time     // when guest code last started, resumed or was accounted
	cpu     time.Duration // the thread's CPU time then
	tid     int           // the thread's id then (0 where unknown)
	paused  time.Duration // total time slept
	pauses  int
	// chargedNs is ran + paused as of the last measurement, for the
	// call's clock, which reads it from its timer's goroutine.
	chargedNs atomic.Int64
}

// newThrottle starts a throttle for guest code starting now, which may
// run for after at full speed and then at share of a CPU.
func newThrottle(after time.Duration, share float64) *throttle {
	t := &throttle{after: after, share: share}
	t.mark()
	return t
}

// mark notes that guest code runs from now on.
func (t *throttle) mark() {
	t.running, t.wall, t.cpu, t.tid = true, time.Now(), threadCPUTime(), threadID()
}

// account adds the guest CPU time since the last mark and marks again. It
// is the calling thread's CPU time, so that a machine busy with other work
// does not make a plugin look slow. When the goroutine has moved to
// another thread meanwhile (it can only in Go code: entering the call,
// a host function), the difference of two threads' clocks means nothing:
// that stretch counts as nothing rather than its wall time, which on a
// loaded machine counted the time the goroutine waited to run and got
// ordinary calls throttled. The guest's own code cannot make it move, and
// the fast path of yield already bounds what one stretch can hide.
func (t *throttle) account() time.Duration {
	now, cpu, tid := time.Now(), threadCPUTime(), threadID()
	wall := now.Sub(t.wall)
	run := cpu - t.cpu
	switch {
	case tid != t.tid:
		run = 0
	case run < 0 || run > wall:
		run = max(wall, 0)
	}
	t.wall, t.cpu, t.tid = now, cpu, tid
	t.ran += run
	t.chargedNs.Store(int64(t.ran + t.paused))
	return run
}

// finish ends the call's accounting and returns the guest's CPU time. A short
// last stretch is counted at its wall time, which saves a system call on
// the common fast call; CPU time cannot be more.
func (t *throttle) finish() time.Duration {
	if t.running {
		if wall := time.Since(t.wall); wall < time.Millisecond {
			t.ran += wall
			t.wall = t.wall.Add(wall)
		} else {
			t.account()
		}
		t.running = false
	}
	t.chargedNs.Store(int64(t.ran + t.paused))
	return t.ran
}

// charged is the guest's CPU time plus the pauses imposed on it, as last
// measured (at a yield point past throttle_after, or a host call). It is
// safe to call from any goroutine.
func (t *throttle) charged() time.Duration { return time.Duration(t.chargedNs.Load()) }

// hostCall stops counting guest time while a host function serves the
// guest; the returned function resumes it.
func (t *throttle) hostCall() (resume func()) {
	if t == nil || !t.running {
		return func() {}
	}
	t.account()
	t.running = false
	return t.mark
}

// yield is called by the guest through the instrumented import. It sleeps
// when the guest owes CPU time, returning early when ctx ends (wazero then
// stops the guest at its next check).
func (t *throttle) yield(ctx context.Context) {
	if t == nil || !t.running {
		return
	}
	// Reading the thread's CPU time is a system call (about 0.7 us); CPU
	// time cannot exceed wall time, so skip it while even the wall time
	// is within throttle_after.
	if t.ran+time.Since(t.wall) < t.after {
		return
	}
	run := t.account()
	if t.ran < t.after || t.share >= 1 {
		return
	}
	t.debt += min(run, t.ran-t.after)
	if t.debt < throttleSlice {
		return
	}
	pause := min(time.Duration(float64(t.debt)*(1-t.share)/t.share), maxThrottlePause)
	t.debt = 0
	start := time.Now()
	timer := time.NewTimer(pause)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	t.paused += time.Since(start)
	t.pauses++
	t.chargedNs.Store(int64(t.ran + t.paused))
	t.mark() // the goroutine may wake on another thread
}

// monoBase anchors monotonic; it is set once at start-up and only read.
var monoBase = time.Now()

// monotonic is the time since the process started, on the monotonic clock.
func monotonic() time.Duration { return time.Since(monoBase) }
