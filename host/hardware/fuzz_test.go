package hardware

import (
	"bytes"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseNvidiaSMI(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "nvidia-smi", "*.txt"))
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(""))
	f.Add([]byte("0, A, B, C, 1, 2, 3, 4\n"))
	f.Add([]byte("-1, x, 1, 2, d\n0,,,,\n"))
	f.Add([]byte("0, NVIDIA, 99999999999999999999, 1, d\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		gpus, problems, err := ParseNvidiaSMI(data)
		if err != nil && len(gpus) != 0 {
			t.Fatal("error with results")
		}
		lines := 0
		for _, l := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(l) != "" {
				lines++
			}
		}
		if len(gpus)+len(problems) > lines {
			t.Fatalf("%d gpus + %d problems from %d lines", len(gpus), len(problems), lines)
		}
		for _, g := range gpus {
			if g.Index < 0 || g.VRAMTotalBytes < 0 || g.VRAMFreeBytes < 0 ||
				(g.VRAMTotalBytes > 0 && g.VRAMFreeBytes > g.VRAMTotalBytes) {
				t.Fatalf("bad gpu %+v", g)
			}
			if g.Vendor != VendorNVIDIA || g.Source != SourceNvidiaSMI {
				t.Fatalf("bad labels %+v", g)
			}
		}
	})
}

func FuzzParseMeminfo(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("testdata", "roots", "base", "proc", "meminfo")); err == nil {
		f.Add(data)
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("MemTotal: 1 kB\n"))
	f.Add([]byte("MemTotal: 9223372036854775807 kB\nMemAvailable: -5 kB\n"))
	f.Add([]byte("MemTotal:\nMemFree 12 kB\n::::\n"))
	f.Add([]byte("MemTotal: 12 MB\nMemTotal: 7\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMeminfo(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, v := range []int64{m.TotalBytes, m.FreeBytes, m.AvailableBytes, m.BuffersBytes, m.CachedBytes} {
			if v < 0 {
				t.Fatalf("negative value in %+v", m)
			}
		}
		if !m.HasAvailable && m.AvailableBytes != 0 {
			t.Fatalf("available without the line: %+v", m)
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	for _, layer := range []string{"base", "cgroup-v1", "cgroup-v2"} {
		if data, err := os.ReadFile(filepath.Join("testdata", "roots", layer, "proc", "self", "cgroup")); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("0::/../../etc\n"))
	f.Add([]byte("x:y\n4:memory:relative/path (deleted)\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, e := range ParseProcCgroup(data) {
			if !strings.HasPrefix(e.Path, "/") || path.Clean(e.Path) != e.Path || strings.Contains(e.Path+"/", "/../") {
				t.Fatalf("path %q is not clean and absolute: it could escape the hierarchy", e.Path)
			}
			if e.Hierarchy < 0 {
				t.Fatalf("hierarchy %d", e.Hierarchy)
			}
		}
	})
}
