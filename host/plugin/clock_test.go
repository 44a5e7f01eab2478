package plugin

import (
	"sync/atomic"
	"testing"
	"time"
)

// fired starts a clock of budget d and returns a channel closed when it
// fires, and when it started.
func fired(c *guestClock, d time.Duration, charged func() time.Duration) (<-chan struct{}, time.Time) {
	done := make(chan struct{})
	start := time.Now()
	c.start(d, charged, func() { close(done) })
	return done, start
}

func TestClockFiresWhenTheTimeIsCharged(t *testing.T) {
	// The guest used its whole budget (a spinning call): the wall-clock
	// deadline is the end.
	var c guestClock
	done, start := fired(&c, 50*time.Millisecond, func() time.Duration { return time.Hour })
	<-done
	if took := time.Since(start); took < 50*time.Millisecond || took > time.Second {
		t.Fatalf("fired after %v, want 50ms", took)
	}
	if c.pause() {
		t.Fatal("pause after expiry must report the time is up")
	}
	// No measurement at all: the wall clock decides.
	var w guestClock
	done, start = fired(&w, 30*time.Millisecond, nil)
	<-done
	if took := time.Since(start); took > time.Second {
		t.Fatalf("fired after %v", took)
	}
}

func TestClockWaitsForAStarvedGuest(t *testing.T) {
	// The guest got no CPU for a while (a busy machine): the deadline moves
	// until the budget is charged...
	var charged atomic.Int64
	var c guestClock
	done, start := fired(&c, 40*time.Millisecond, func() time.Duration { return time.Duration(charged.Load()) })
	time.Sleep(60 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("fired although the guest was charged nothing")
	default:
	}
	charged.Store(int64(40 * time.Millisecond))
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("did not fire once the budget was charged")
	}
	c.stop()
	// ...but never past maxClockStretch times the budget.
	var s guestClock
	done, start = fired(&s, 20*time.Millisecond, func() time.Duration { return 0 })
	<-done
	if took := time.Since(start); took < maxClockStretch*20*time.Millisecond || took > maxClockStretch*20*time.Millisecond+time.Second {
		t.Fatalf("a guest charged nothing was stopped after %v, want %v", took, maxClockStretch*20*time.Millisecond)
	}
}

func TestClockPausesForHostCalls(t *testing.T) {
	var c guestClock
	done, _ := fired(&c, 40*time.Millisecond, nil)
	if !c.pause() {
		t.Fatal("pause")
	}
	time.Sleep(80 * time.Millisecond) // a slow host call
	select {
	case <-done:
		t.Fatal("fired while paused")
	default:
	}
	c.resume()
	t0 := time.Now()
	<-done
	if took := time.Since(t0); took > time.Second {
		t.Fatalf("fired %v after resume", took)
	}
	// Stopped: never fires.
	var s guestClock
	done, _ = fired(&s, 10*time.Millisecond, nil)
	s.stop()
	select {
	case <-done:
		t.Fatal("a stopped clock fired")
	case <-time.After(50 * time.Millisecond):
	}
}
