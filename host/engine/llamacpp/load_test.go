package llamacpp

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseProcFiles(t *testing.T) {
	total, busy, ok := parseProcStat([]byte("cpu  100 5 50 800 20 3 2 10 7 0\ncpu0 50 2 25 400 10 1 1 5 3 0\n"))
	// total: 100+5+50+800+20+3+2+10 (guest columns left out); busy: all but idle and iowait.
	if !ok || total != 990 || busy != 170 {
		t.Fatalf("parseProcStat = %d, %d, %v", total, busy, ok)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 x 4 5", "cpu 1 2"} {
		if _, _, ok := parseProcStat([]byte(bad)); ok {
			t.Errorf("parseProcStat(%q) accepted", bad)
		}
	}
	self := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 170 30 0 0 20 0 12 0 55 0 0"
	if n, ok := parseSelfTicks([]byte(self)); !ok || n != 200 {
		t.Fatalf("parseSelfTicks = %d, %v, want 200", n, ok)
	}
	for _, bad := range []string{"", "4242 prog S 1", "1 (x) S 1 2 3"} {
		if _, ok := parseSelfTicks([]byte(bad)); ok {
			t.Errorf("parseSelfTicks(%q) accepted", bad)
		}
	}
	dir := t.TempDir()
	stat := filepath.Join(dir, "stat")
	os.WriteFile(stat, []byte("cpu  1 2 3 4\ncpu0 1 1 1 1\ncpu1 0 1 2 3\ncpufreq x\nintr 5\n"), 0o644)
	b, _ := os.ReadFile(stat)
	if n := hostCPUs(b); n != 2 {
		t.Fatalf("hostCPUs = %d, want 2", n)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "none"))
	if n := hostCPUs(b); n != 0 {
		t.Fatalf("hostCPUs of a missing file = %d", n)
	}
	if n, ok := parseProcsRunning([]byte("cpu  1 2 3 4\nctxt 99\nprocs_running 3\nprocs_blocked 0\n")); !ok || n != 3 {
		t.Fatalf("parseProcsRunning = %d, %v, want 3", n, ok)
	}
	for _, bad := range []string{"", "cpu 1 2 3 4\nprocs_blocked 1", "procs_running x"} {
		if _, ok := parseProcsRunning([]byte(bad)); ok {
			t.Errorf("parseProcsRunning(%q) accepted", bad)
		}
	}
}

// TestLoadWatchFollowsOtherTasks drives the watch with fake counters: a
// host of 4 CPUs where other tasks use 0, then 3, then 0 CPUs again.
func TestLoadWatchFollowsOtherTasks(t *testing.T) {
	dir := t.TempDir()
	w := &loadWatch{stat: filepath.Join(dir, "stat"), self: filepath.Join(dir, "self"), hostCPUs: 4}
	var total, busy, self uint64
	write := func() {
		// idle makes up the rest of total; iowait 0.
		idle := total - busy
		os.WriteFile(w.stat, []byte(fmt.Sprintf("cpu  %d 0 0 %d 0 0 0 0 0 0\n", busy, idle)), 0o644)
		os.WriteFile(w.self, []byte(fmt.Sprintf("1 (mdsa) R 0 0 0 0 0 0 0 0 0 0 %d 0 0 0\n", self)), 0o644)
	}
	// Each interval: 10 ticks per CPU (40 in all); we use 2 CPUs (20
	// ticks), others use what the phase says.
	now := time.Unix(0, 0)
	step := func(others uint64) int {
		total += 40
		self += 20
		busy += 20 + others*10
		write()
		now = now.Add(loadSample)
		return w.threads(now, 4)
	}
	write()
	w.last = w.sample()
	for range 5 {
		if n := step(0); n != 4 {
			t.Fatalf("idle host: %d threads, want 4", n)
		}
	}
	n := 0
	for range 5 {
		n = step(3)
	}
	if n != 1 {
		t.Fatalf("3 of 4 CPUs busy elsewhere: %d threads, want 1", n)
	}
	for range 10 {
		n = step(0)
	}
	if n != 4 {
		t.Fatalf("idle again: %d threads, want 4", n)
	}
	// Others busy while the engine idles for a second do not count: the
	// first sample after the pause starts a new window.
	w.pause()
	total += 400
	busy += 300
	write()
	now = now.Add(time.Second)
	if n := w.threads(now, 4); n != 4 {
		t.Fatalf("after an idle second with others busy: %d threads, want 4", n)
	}
	if n := step(0); n != 4 {
		t.Fatalf("the first window after the pause: %d threads, want 4", n)
	}
	// Between samples the answer stays; with want 1 there is nothing to do.
	if w.threads(now, 4) != 4 || w.threads(now, 1) != 1 {
		t.Fatal("threads between samples")
	}
	var off *loadWatch
	if off.threads(now, 3) != 3 || (&loadWatch{}).threads(now, 2) != 2 {
		t.Fatal("a disabled watch must not limit")
	}
}
