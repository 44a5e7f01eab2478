package llamacpp

import (
	"bytes"
	"math"
	"os"
	"strconv"
	"time"
)

// loadWatch keeps the engine's compute threads within the CPUs that other
// tasks leave free. ggml's threads wait for each other between the
// operations of a graph by spinning, so when another task takes the core of
// one of them the others spin for a whole scheduler time slice at every
// operation: with two busy processes on two cores, a reply that takes 12 ms
// on one thread took 3 s on two. Between steps, at most every loadSample,
// the scheduler reads how much CPU the host spent (/proc/stat) and how much
// of it was this process's (/proc/self/stat); the difference over the
// interval is the CPUs other tasks used. Smoothed, it is subtracted from the
// host's CPUs, and the engine computes with at most that many threads,
// never fewer than one. (Counting runnable tasks instead would count the
// engine's own threads on their way to sleep.)
type loadWatch struct {
	stat, self string // "/proc/stat", "/proc/self/stat"; "" disables the watch
	hostCPUs   int    // online CPUs of the host (not only this process's)
	next       time.Time
	last       cpuSample
	paused     bool    // the engine went idle since the last sample
	others     float64 // smoothed CPUs used by other tasks
	ok         bool    // others holds a measurement
}

// cpuSample is one reading of the CPU counters, in clock ticks.
type cpuSample struct {
	total, busy, self uint64
	valid             bool
}

// loadSample is how often the watch reads the counters: a window long
// enough that another process's few milliseconds of work (say, a server
// finishing an answer) do not count as contention.
const loadSample = 100 * time.Millisecond

// loadFirstSample is how soon the watch first measures after it starts or
// after an idle spell, and how soon it tries again when too little time
// has passed to tell: a short reply (tens of milliseconds on a small
// model) is over before a whole loadSample, and on a busy machine it ran
// 5-10x slower on threads the others' work kept waiting.
const loadFirstSample = 20 * time.Millisecond

// pause tells the watch that the engine is going idle; the next sample
// starts a new window instead of measuring across the idle spell.
func (w *loadWatch) pause() {
	if w != nil && w.stat != "" && !w.paused {
		w.paused = true
		w.next = time.Time{}
	}
}

// newLoadWatch returns a watch of the host's CPUs, or a disabled one where
// /proc does not tell.
func newLoadWatch() *loadWatch {
	w := &loadWatch{stat: "/proc/stat", self: "/proc/self/stat"}
	st, err := os.ReadFile(w.stat)
	if err != nil {
		return &loadWatch{}
	}
	if w.hostCPUs = hostCPUs(st); w.hostCPUs == 0 {
		return &loadWatch{}
	}
	if w.last = w.sampleFrom(st); !w.last.valid {
		return &loadWatch{}
	}
	// Until the first window ends, go by the tasks runnable right now
	// (/proc/stat's procs_running, less the one reading it): the engine's
	// own threads do not run yet, and a reply on a small model may be over
	// before the first window.
	if n, ok := parseProcsRunning(st); ok {
		w.observe(float64(min(max(n-1, 0), w.hostCPUs)))
	}
	w.next = time.Now().Add(loadFirstSample) // the model's load is the first window
	return w
}

// parseProcsRunning reads the "procs_running N" line of /proc/stat.
func parseProcsRunning(b []byte) (int, bool) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("procs_running ")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			return n, err == nil
		}
	}
	return 0, false
}

// threads returns how many of want threads to compute with now.
func (w *loadWatch) threads(now time.Time, want int) int {
	if w == nil || w.stat == "" || want <= 1 {
		return max(want, 1)
	}
	if !now.Before(w.next) {
		w.next = now.Add(loadSample)
		cur := w.sample()
		switch {
		case !cur.valid || !w.last.valid || cur.total < w.last.total || w.paused:
			// After an idle spell, what others did meanwhile did not
			// compete with the engine: measure afresh from now.
			w.last, w.paused = cur, false
			w.next = now.Add(loadFirstSample)
		case float64(cur.total-w.last.total) < 2*float64(w.hostCPUs):
			// Under two ticks a CPU: too short to tell; keep counting.
			w.next = now.Add(loadFirstSample)
		default:
			perCPU := float64(cur.total-w.last.total) / float64(w.hostCPUs)
			other := float64(cur.busy-w.last.busy) - float64(cur.self-w.last.self)
			w.observe(max(other, 0) / perCPU)
			w.last = cur
		}
	}
	return w.limit(want)
}

// sample reads the host's and this process's CPU ticks.
func (w *loadWatch) sample() cpuSample {
	st, err := os.ReadFile(w.stat)
	if err != nil {
		return cpuSample{}
	}
	return w.sampleFrom(st)
}

// sampleFrom is sample with /proc/stat already read into st.
func (w *loadWatch) sampleFrom(st []byte) cpuSample {
	total, busy, ok := parseProcStat(st)
	if !ok {
		return cpuSample{}
	}
	self, err := os.ReadFile(w.self)
	if err != nil {
		return cpuSample{}
	}
	ticks, ok := parseSelfTicks(self)
	if !ok {
		return cpuSample{}
	}
	return cpuSample{total: total, busy: busy, self: ticks, valid: true}
}

// observe adds one measurement of the CPUs other tasks used.
func (w *loadWatch) observe(others float64) {
	if !w.ok {
		w.others, w.ok = others, true
		return
	}
	// Quick to back off, slower to come back: a burst of other work costs
	// far more when we spin through it than a few steps on fewer threads.
	alpha := 0.5
	if others > w.others {
		alpha = 0.7
	}
	w.others += alpha * (others - w.others)
}

// limit is want capped by the CPUs the other tasks leave.
func (w *loadWatch) limit(want int) int {
	if !w.ok {
		return want
	}
	free := w.hostCPUs - int(math.Round(w.others))
	return max(1, min(want, free))
}

// parseProcStat reads the first line of /proc/stat ("cpu  user nice system
// idle iowait irq softirq steal guest guest_nice"): all ticks, and the busy
// ones (all but idle and iowait; guest time is already in user).
func parseProcStat(b []byte) (total, busy uint64, ok bool) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		if i >= 8 { // guest and guest_nice are counted in user and nice
			break
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return total, busy, true
}

// parseSelfTicks reads utime + stime (fields 14 and 15) of /proc/self/stat,
// after the command name, which may hold spaces and parentheses.
func parseSelfTicks(b []byte) (uint64, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + s, true
}

// hostCPUs counts the "cpuN" lines of /proc/stat (its content b): the
// host's online CPUs, which its counters cover. 0 when unknown.
func hostCPUs(b []byte) int {
	n := 0
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) > 3 && bytes.HasPrefix(line, []byte("cpu")) && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return n
}
