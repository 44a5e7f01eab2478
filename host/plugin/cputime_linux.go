package plugin

import (
	"math"
	"os"
	"os/exec"
	"strconv"
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

// childNice is the nice value of a compile child's threads.
const childNice = 10

// lowerPriority makes the calling process yield the CPU to the host that
// started it: a compile child runs at nice 10. Linux keeps a nice value
// per thread and a new thread inherits its creator's, so every thread the
// Go runtime has started is lowered, until a pass over /proc/self/task
// finds none left at another value (a thread started meanwhile by one not
// yet lowered is caught by the next pass).
func lowerPriority() {
	for pass := 0; pass < 8; pass++ {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			_ = unix.Setpriority(unix.PRIO_PROCESS, 0, childNice)
			return
		}
		changed := false
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil && 20-prio == childNice {
				continue // getpriority answers 20 - nice
			}
			if unix.Setpriority(unix.PRIO_PROCESS, tid, childNice) == nil {
				changed = true
			}
		}
		if !changed {
			return
		}
	}
}
