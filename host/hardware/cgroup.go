package hardware

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// A limit at or above this is the kernel's "unlimited" (cgroup v1 writes
// PAGE_COUNTER_MAX pages, about 2^63 bytes).
const cgroupUnlimited = int64(1) << 62

// CgroupEntry is one line of /proc/self/cgroup.
type CgroupEntry struct {
	// Hierarchy is the hierarchy ID; 0 is the cgroup v2 unified hierarchy.
	Hierarchy int
	// Controllers lists the v1 controllers bound to the hierarchy (empty
	// for v2; named hierarchies appear as "name=systemd").
	Controllers []string
	// Path is the cgroup's path inside the hierarchy, always absolute and
	// clean.
	Path string
}

// ParseProcCgroup reads the /proc/PID/cgroup format
// ("hierarchy-ID:controller-list:path" per line), skipping malformed lines.
func ParseProcCgroup(data []byte) []CgroupEntry {
	var out []CgroupEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctrls, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		h, err := strconv.Atoi(id)
		if err != nil || h < 0 {
			continue
		}
		p = strings.TrimSuffix(p, " (deleted)")
		e := CgroupEntry{Hierarchy: h, Path: path.Clean("/" + p)}
		if ctrls != "" {
			e.Controllers = strings.Split(ctrls, ",")
		}
		out = append(out, e)
	}
	return out
}

// cgroupFiles names one resource's files in one cgroup version.
type cgroupFiles struct {
	version int
	bases   []string // mount points under Root/sys/fs/cgroup to try
	path    string   // the process's cgroup path in that hierarchy
}

// hierarchy finds where the controller lives for this process: its v1
// hierarchy when one binds the controller, else the v2 unified hierarchy.
func hierarchy(opts Options, entries []CgroupEntry, controller string, v1Mounts []string) (cgroupFiles, bool) {
	for _, e := range entries {
		for _, c := range e.Controllers {
			if c == controller {
				var bases []string
				for _, m := range v1Mounts {
					bases = append(bases, opts.path("sys", "fs", "cgroup", m))
				}
				return cgroupFiles{version: 1, bases: bases, path: e.Path}, true
			}
		}
	}
	for _, e := range entries {
		if e.Hierarchy == 0 && len(e.Controllers) == 0 {
			// Pure v2 mounts the unified hierarchy at /sys/fs/cgroup; hybrid
			// systems mount it at /sys/fs/cgroup/unified.
			return cgroupFiles{version: 2, path: e.Path, bases: []string{
				opts.path("sys", "fs", "cgroup"),
				opts.path("sys", "fs", "cgroup", "unified"),
			}}, true
		}
	}
	return cgroupFiles{}, false
}

// walk calls fn for the process's cgroup directory and each ancestor up to
// the mount point, in every base that exists; limits are hierarchical, so
// the tightest along the way applies. Inside a container the process's path
// may name the host's hierarchy while the container's own cgroup is mounted
// at the base; reaching the base covers that case too.
func (h cgroupFiles) walk(fn func(dir string)) {
	for _, base := range h.bases {
		if st, err := os.Stat(base); err != nil || !st.IsDir() {
			continue
		}
		dir := h.path
		for {
			d := filepath.Join(base, filepath.FromSlash(dir))
			if _, err := os.Stat(d); err == nil {
				fn(d)
			}
			if dir == "/" {
				break
			}
			dir = path.Dir(dir)
		}
	}
}

func readCgroupProcFile(opts Options, w *warnings) []CgroupEntry {
	p := opts.path("proc", "self", "cgroup")
	data, err := os.ReadFile(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.add(fmt.Sprintf("cgroup: reading %s: %v", p, err))
		}
		return nil
	}
	return ParseProcCgroup(data)
}

// readInt64File reads a file holding one integer, or "max" (reported as
// unlimited = -1).
func readInt64File(p string) (int64, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return -1, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: not a number: %q", p, s)
	}
	return v, nil
}

// statValue returns key's value in a memory.stat file, 0 when absent.
func statValue(p, key string) int64 {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}

type cgroupMem struct {
	version      int
	limit, usage int64
}

// cgroupMemory finds the tightest memory limit on this process and the
// usage of the cgroup that sets it.
func cgroupMemory(opts Options, w *warnings) cgroupMem {
	h, ok := hierarchy(opts, readCgroupProcFile(opts, w), "memory", []string{"memory"})
	if !ok {
		return cgroupMem{}
	}
	limitFile, usageFile, inactiveKey := "memory.max", "memory.current", "inactive_file"
	if h.version == 1 {
		limitFile, usageFile, inactiveKey = "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
	}
	var best cgroupMem
	bestDir := ""
	h.walk(func(dir string) {
		v, err := readInt64File(filepath.Join(dir, limitFile))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				w.add(fmt.Sprintf("cgroup: %v", err))
			}
			return
		}
		if v <= 0 || v >= cgroupUnlimited {
			return
		}
		if best.limit == 0 || v < best.limit {
			best = cgroupMem{version: h.version, limit: v}
			bestDir = dir
		}
	})
	if bestDir == "" {
		return cgroupMem{}
	}
	usage, err := readInt64File(filepath.Join(bestDir, usageFile))
	if err != nil || usage < 0 {
		w.add(fmt.Sprintf("cgroup: memory limit %d bytes in %s but its usage is unreadable; assuming none used", best.limit, bestDir))
		return best
	}
	usage -= statValue(filepath.Join(bestDir, "memory.stat"), inactiveKey)
	best.usage = max(usage, 0)
	return best
}

// cgroupCPUQuota returns the tightest CPU quota on this process in CPUs,
// 0 when there is none.
func cgroupCPUQuota(opts Options, w *warnings) float64 {
	h, ok := hierarchy(opts, readCgroupProcFile(opts, w), "cpu", []string{"cpu,cpuacct", "cpuacct,cpu", "cpu"})
	if !ok {
		return 0
	}
	best := 0.0
	h.walk(func(dir string) {
		var quota, period int64
		if h.version == 2 {
			data, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
			if err != nil {
				return
			}
			f := strings.Fields(string(data))
			if len(f) != 2 || f[0] == "max" {
				return
			}
			var err1, err2 error
			quota, err1 = strconv.ParseInt(f[0], 10, 64)
			period, err2 = strconv.ParseInt(f[1], 10, 64)
			if err1 != nil || err2 != nil {
				w.add(fmt.Sprintf("cgroup: %s: cannot read %q", filepath.Join(dir, "cpu.max"), strings.TrimSpace(string(data))))
				return
			}
		} else {
			var err error
			if quota, err = readInt64File(filepath.Join(dir, "cpu.cfs_quota_us")); err != nil {
				return
			}
			if period, err = readInt64File(filepath.Join(dir, "cpu.cfs_period_us")); err != nil {
				return
			}
		}
		if quota <= 0 || period <= 0 {
			return
		}
		cpus := float64(quota) / float64(period)
		if best == 0 || cpus < best {
			best = cpus
		}
	})
	return best
}
