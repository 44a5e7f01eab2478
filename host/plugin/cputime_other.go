//go:build !linux

package plugin

import (
	"os/exec"
	"time"
)

// threadCPUTime stands in for the thread's CPU time where it is not
// available: the wall clock, so throttling counts elapsed time instead.
func threadCPUTime() time.Duration { return monotonic() }

// threadID is 0 where the thread's id is not known: every stretch is then
// counted (at wall time, see threadCPUTime).
func threadID() int { return 0 }

// setChildAttrs has nothing to set here.
func setChildAttrs(cmd *exec.Cmd) {}

// reserveMemory allocates n zeroed bytes; Go's allocator maps large
// allocations lazily, and the garbage collector frees them.
func reserveMemory(n uint64) (buf []byte, free func(), ok bool) {
	if n > uint64(maxInt) {
		return nil, nil, false
	}
	return make([]byte, n), nil, true
}

const maxInt = int(^uint(0) >> 1)
