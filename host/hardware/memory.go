package hardware

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/jaypipes/ghw"
)

// Meminfo holds the /proc/meminfo fields Detect uses, in bytes.
type Meminfo struct {
	TotalBytes     int64
	FreeBytes      int64
	AvailableBytes int64
	BuffersBytes   int64
	CachedBytes    int64
	// HasAvailable is false on kernels older than 3.14, which have no
	// MemAvailable line.
	HasAvailable bool
}

// maxMeminfoBytes bounds how much of a meminfo file is read.
const maxMeminfoBytes = 1 << 20

// ParseMeminfo reads the /proc/meminfo format ("Key:   123 kB" per line).
// Lines it does not need or cannot read are skipped; it fails only when
// there is no usable MemTotal line or the input cannot be read.
func ParseMeminfo(r io.Reader) (Meminfo, error) {
	var m Meminfo
	haveTotal := false
	sc := bufio.NewScanner(io.LimitReader(r, maxMeminfoBytes))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch strings.TrimSpace(key) {
		case "MemTotal":
			dst = &m.TotalBytes
		case "MemFree":
			dst = &m.FreeBytes
		case "MemAvailable":
			dst = &m.AvailableBytes
		case "Buffers":
			dst = &m.BuffersBytes
		case "Cached":
			dst = &m.CachedBytes
		default:
			continue
		}
		v, ok := meminfoValue(rest)
		if !ok {
			continue
		}
		*dst = v
		switch dst {
		case &m.TotalBytes:
			haveTotal = true
		case &m.AvailableBytes:
			m.HasAvailable = true
		}
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("meminfo: %w", err)
	}
	if !haveTotal {
		return m, errors.New("meminfo: no MemTotal line")
	}
	return m, nil
}

// meminfoValue parses " 123 kB" (or a bare number) into bytes.
func meminfoValue(s string) (int64, bool) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 {
		return 0, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	if len(f) == 2 {
		if f[1] != "kB" || n > math.MaxInt64/1024 {
			return 0, false
		}
		n *= 1024
	}
	return n, true
}

func detectMemory(opts Options, w *warnings) Memory {
	var mem Memory
	path := opts.path("proc", "meminfo")
	data, err := os.ReadFile(path)
	if err == nil {
		var mi Meminfo
		mi, err = ParseMeminfo(bytes.NewReader(data))
		if err == nil {
			mem.TotalBytes = mi.TotalBytes
			mem.HostAvailableBytes = mi.AvailableBytes
			if !mi.HasAvailable {
				mem.HostAvailableBytes = min(mi.TotalBytes, mi.FreeBytes+mi.BuffersBytes+mi.CachedBytes)
				w.add(fmt.Sprintf("memory: %s has no MemAvailable (kernel older than 3.14); estimated available as MemFree+Buffers+Cached", path))
			}
		}
	}
	if err != nil {
		w.add(fmt.Sprintf("memory: reading %s: %v", path, err))
	}
	mem.AvailableBytes = mem.HostAvailableBytes
	mem.PhysicalBytes = physicalMemory(opts)

	cg := cgroupMemory(opts, w)
	if cg.limit > 0 {
		mem.CgroupVersion = cg.version
		mem.CgroupLimitBytes = cg.limit
		mem.CgroupUsageBytes = cg.usage
		left := max(cg.limit-cg.usage, 0)
		if mem.AvailableBytes == 0 || left < mem.AvailableBytes {
			mem.AvailableBytes = left
		}
		if mem.TotalBytes == 0 {
			mem.TotalBytes = cg.limit
		}
	}
	return mem
}

// physicalMemory asks ghw for the installed RAM, but only where sysfs has
// the memory block files: otherwise ghw scans /var/log/syslog, which can be
// slow, for a figure that is only informative.
func physicalMemory(opts Options) int64 {
	if _, err := os.Stat(opts.path("sys", "devices", "system", "memory", "block_size_bytes")); err != nil {
		return 0
	}
	sink := &ghwSink{} // its warnings (physical size unknown) are not worth reporting
	m, err := ghwCall("memory", func() (*ghw.MemoryInfo, error) { return ghw.Memory(ghwArgs(opts, sink)...) })
	if err != nil || m == nil || m.TotalPhysicalBytes <= 0 {
		return 0
	}
	return m.TotalPhysicalBytes
}
