package llamacpp

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebitengine/purego"
	"github.com/hybridgroup/yzma/pkg/llama"
)

// Polling levels (0-100) of the engine's two thread pools. ggml's idle
// workers spin for about 1.8 ms per level before they sleep, so spinPoll
// keeps them awake across the gap between two decode steps (sampling,
// streaming: a few hundred microseconds); woken from sleep at every step
// they decoded 5-10% slower here. sleepPoll is the pool used while other
// tasks take CPUs (see loadWatch), where a spinning idle worker would
// take a core from them.
const (
	spinPoll  = 50
	sleepPoll = 0
)

// rtldNoload asks dlopen for a library only if it is already loaded.
const rtldNoload = 0x4

// findPoolPause returns the address of ggml_threadpool_pause in the CPU
// back-end that llama.cpp loaded from dir, or 0 when it cannot be found
// (another platform, a build without it). llama.cpp's CPU back-end is a
// library of its own, chosen for the CPU at load time; its registry does
// not hand out the pause call, so the library is looked up in the
// process's mappings and asked for the symbol.
func findPoolPause(dir string) uintptr {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		i := bytes.IndexByte(line, '/')
		if i < 0 {
			continue
		}
		path := string(line[i:])
		base := filepath.Base(path)
		if seen[path] || filepath.Dir(path) != dir || !strings.HasPrefix(base, "libggml") || !strings.Contains(base, ".so") {
			continue
		}
		seen[path] = true
		h, err := purego.Dlopen(path, purego.RTLD_NOW|rtldNoload)
		if err != nil {
			continue
		}
		if addr, err := purego.Dlsym(h, "ggml_threadpool_pause"); err == nil && addr != 0 {
			return addr // the handle stays open: the library is never unloaded
		}
		purego.Dlclose(h)
	}
	return 0
}

// pausePool stops tp's idle workers from spinning: they sleep until the
// next computation, which resumes the pool. Without the pause call (pause
// == 0) it does nothing, and the engine uses sleeping pools only.
func pausePool(pause uintptr, tp llama.Threadpool) {
	if pause != 0 && tp != 0 {
		purego.SyscallN(pause, uintptr(tp))
	}
}

// newPool makes a pool of n threads polling at level poll, or returns 0
// (threads start per decode) when llama.cpp makes none.
func newPool(e *Engine, n int32, poll uint32) llama.Threadpool {
	tpp := llama.ThreadpoolParamsDefault(n)
	tpp.Poll = poll
	tp, err := llama.ThreadpoolNew(&tpp)
	if err != nil {
		e.log.Debug("llama.cpp thread pool unavailable; threads start per decode", "model", e.info.Name, "poll", poll, "err", err)
		return 0
	}
	return tp
}

// attachPool makes tp (when not 0, else the sleeping pool) the pool of
// the scheduler's next decodes, pausing the one it replaces.
func (s *sched) attachPool(tp llama.Threadpool) {
	if tp == 0 {
		tp = s.tpSleep
	}
	if tp == s.tp || tp == 0 {
		return
	}
	pausePool(s.pause, s.tp)
	s.tp = tp
	llama.AttachThreadpool(s.lctx, uintptr(tp), uintptr(tp))
}

// idlePool stops the spinning of the attached pool's workers: the
// scheduler has nothing to compute, or waits for cores another engine
// computes on.
func (s *sched) idlePool() { pausePool(s.pause, s.tp) }
