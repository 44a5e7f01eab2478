package plugin

import (
	"math"
	"os/exec"
	"syscall"
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

// setChildAttrs makes a compile child die with the host: a host that
// crashes or is killed must not leave a compile running.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// reserveMemory maps n bytes of zeroed, private memory that the kernel
// commits page by page as it is written; free unmaps it, returning its
// pages to the system at once.
func reserveMemory(n uint64) (buf []byte, free func(), ok bool) {
	if n > math.MaxInt {
		return nil, nil, false
	}
	b, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		// Address space refused (overcommit off, ulimit -v): fall back
		// to Go's allocator, which also commits lazily.
		return make([]byte, n), nil, true
	}
	return b, func() { _ = unix.Munmap(b) }, true
}
