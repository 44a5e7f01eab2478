package plugin

import (
	"context"
	"errors"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// spin runs a guest stand-in for d of CPU time (the throttle's measure; a
// busy machine stretches the wall time), yielding every 20us of it as
// instrumented code does, and returns the wall time it took.
// lockThread keeps the test's goroutine on its OS thread until it ends.
func lockThread(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}

func spin(ctx context.Context, th *throttle, d time.Duration) time.Duration {
	start := time.Now()
	for busy := time.Duration(0); busy < d; {
		c0 := threadCPUTime()
		for c := c0; c-c0 < 20*time.Microsecond && c >= c0; c = threadCPUTime() {
		}
		busy += 20 * time.Microsecond
		th.yield(ctx)
	}
	return time.Since(start)
}

func TestThrottleLeavesShortCallsAlone(t *testing.T) {
	lockThread(t) // as Plugin.invoke does: the thread's CPU clock is the call's
	th := newThrottle(20*time.Millisecond, 0.1)
	spin(context.Background(), th, 5*time.Millisecond)
	if th.pauses != 0 || th.paused != 0 {
		t.Fatalf("a call within throttle_after paused %d times (%v)", th.pauses, th.paused)
	}
	// Turned off: never pauses.
	off := newThrottle(time.Nanosecond, 1)
	spin(context.Background(), off, 5*time.Millisecond)
	if off.pauses != 0 {
		t.Fatalf("throttle_share 1 paused %d times", off.pauses)
	}
	// A nil throttle (no call in progress) is a no-op.
	var none *throttle
	none.yield(context.Background())
	none.hostCall()()
}

func TestThrottleHoldsTheShare(t *testing.T) {
	lockThread(t) // as Plugin.invoke does: the thread's CPU clock is the call's
	const after, busy, share = 2 * time.Millisecond, 30 * time.Millisecond, 0.25
	th := newThrottle(after, share)
	wall := spin(context.Background(), th, busy)
	// Past throttle_after, each slice of guest time is followed by a pause
	// three times as long (share 1/4): about 84ms of pauses for 28ms.
	want := time.Duration(float64(busy-after) * (1 - share) / share)
	if th.paused < want*3/4 || th.pauses < 10 {
		t.Fatalf("paused %v in %d pauses, want about %v", th.paused, th.pauses, want)
	}
	if wall < busy+want*3/4 {
		t.Fatalf("took %v for %v of work", wall, busy)
	}
	t.Logf("%v of guest work: %v wall, %v paused in %d pauses", busy, wall.Round(time.Millisecond), th.paused.Round(time.Millisecond), th.pauses)
}

func TestThrottleSkipsHostTimeAndStopsOnCancel(t *testing.T) {
	lockThread(t) // as Plugin.invoke does: the thread's CPU clock is the call's
	th := newThrottle(10*time.Millisecond, 0.01)
	// Time in host functions (inference) is not guest time.
	resume := th.hostCall()
	time.Sleep(30 * time.Millisecond)
	resume()
	spin(context.Background(), th, time.Millisecond)
	if th.pauses != 0 {
		t.Fatalf("host time counted as guest time: %d pauses", th.pauses)
	}
	// A pause ends when the call's context does (share 1%: pauses would
	// be long).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	spin(ctx, th, 15*time.Millisecond)
	if th.pauses == 0 {
		t.Fatal("no pause past throttle_after")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("pauses outlived the call's context: %v", took)
	}
}

func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSpinningPluginIsThrottled runs the plugin that loops forever: past
// throttle_after it must get about throttle_share of a CPU until its
// timeout stops it, instead of a whole CPU.
func TestSpinningPluginIsThrottled(t *testing.T) {
	rt, _, _ := sharedRuntime(t)
	const timeout = 400 * time.Millisecond
	p, err := loadBad(t, rt, "loop", WithLimits(Limits{CallTimeout: timeout, ThrottleShare: 0.1}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	// An instance first, so that instantiation is not measured.
	if _, err := p.Validate(context.Background(), abi.ValidateRequest{Query: "q", Response: "r"}); err != nil {
		t.Fatal(err)
	}
	cpu0, start := cpuTime(t), time.Now()
	_, err = p.Prompt(context.Background(), abi.PromptRequest{Query: "spin"})
	wall, cpu := time.Since(start), cpuTime(t)-cpu0
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("want a timeout, got %v", err)
	}
	st := p.Stats()
	t.Logf("spinning call: %v wall, %v CPU (whole process), throttled %d call(s) for %v", wall.Round(time.Millisecond),
		cpu.Round(time.Millisecond), st.Throttled, st.ThrottledTime.Round(time.Millisecond))
	if wall > timeout+slack {
		t.Fatalf("throttled time must count toward the timeout: the call took %v", wall)
	}
	if st.Throttled != 1 || st.ThrottledTime < timeout/2 {
		t.Fatalf("not throttled: %+v", st)
	}
	// 10% of 400ms is 40ms; the race detector and the process's other
	// goroutines add to it, a whole CPU would be 400ms.
	if cpu > timeout/2 {
		t.Fatalf("the spinning call used %v of CPU in %v", cpu, wall)
	}
}

// BenchmarkYield is the host side of one yield point reached before
// throttle_after: what every instrumented module pays every few thousand
// loop iterations.
func BenchmarkYield(b *testing.B) {
	th := newThrottle(time.Hour, 0.1)
	ctx := context.Background()
	for b.Loop() {
		th.yield(ctx)
	}
}
