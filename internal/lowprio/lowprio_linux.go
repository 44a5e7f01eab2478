package lowprio

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Process lowers every thread of the calling process to nice Nice, for a
// process whose whole work is background work (a compile child). Linux
// keeps a nice value per thread and a new thread inherits its creator's,
// so every thread the Go runtime has started is lowered, until a pass over
// /proc/self/task finds none left at another value (a thread started
// meanwhile by one not yet lowered is caught by the next pass).
func Process() {
	for pass := 0; pass < 8; pass++ {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			_ = unix.Setpriority(unix.PRIO_PROCESS, 0, Nice)
			return
		}
		changed := false
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil && 20-prio == Nice {
				continue // getpriority answers 20 - nice
			}
			if unix.Setpriority(unix.PRIO_PROCESS, tid, Nice) == nil {
				changed = true
			}
		}
		if !changed {
			return
		}
	}
}
