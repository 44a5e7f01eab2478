// Package procfs reads what MDSA needs from Linux's /proc.
package procfs

import (
	"os"
	"strconv"
	"strings"
)

// RSS is the resident memory of process pid in bytes, from
// /proc/PID/statm; false where /proc is missing or unreadable.
func RSS(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}
