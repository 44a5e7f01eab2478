package plugin

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPUTime is the CPU time the calling OS thread has used.
func threadCPUTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return monotonic()
	}
	return time.Duration(ts.Nano())
}

// threadID is the calling OS thread's id.
func threadID() int { return unix.Gettid() }
