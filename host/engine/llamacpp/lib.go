package llamacpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ebitengine/purego"
	"github.com/hybridgroup/yzma/pkg/llama"
	"github.com/mdsa-go/mdsa/host/engine"
	"golang.org/x/sys/unix"
)

// EnvLibDir names the environment variable that points at the directory
// holding the llama.cpp shared libraries (libllama.so, libggml.so, ...). It is
// read when Options.LibDir is empty.
const EnvLibDir = "MDSA_LLAMA_LIB"

// libRelDir is where `make setup` installs the libraries, relative to the
// repository root.
const libRelDir = ".deps/llama"

// ErrLibDirMismatch is returned by Open when the llama.cpp libraries were
// already loaded from another directory in this process. Shared libraries
// cannot be unloaded and reloaded safely, so one process uses one directory.
var ErrLibDirMismatch = errors.New("llamacpp: llama.cpp libraries already loaded from another directory")

// runtimeLib is the process-wide state of the llama.cpp shared libraries.
//
// llama.cpp keeps global state (registered back-ends, the log callback) and
// yzma keeps the resolved C function pointers in package variables, so the
// libraries are loaded once per process. This is the package's only global
// state: a mutex-guarded record of which directory was loaded. A failed load
// may be retried (for example after `make setup`); a successful one is final,
// and a later Open naming a different directory gets ErrLibDirMismatch.
var runtimeLib libState

// libState is the type of runtimeLib.
type libState struct {
	mu   sync.Mutex
	dir  string   // directory the libraries were loaded from; "" until loaded
	sink *logSink // receives llama.cpp's log output once loaded
	// pause is the address of ggml_threadpool_pause in the loaded CPU
	// back-end; 0 when not found (see findPoolPause).
	pause uintptr
	// failures are the GPU back-end libraries in dir that did not come up
	// (see backendFailures), found once at load.
	failures []BackendFailure
}

// poolPause returns runtimeLib.pause.
func poolPause() uintptr {
	runtimeLib.mu.Lock()
	defer runtimeLib.mu.Unlock()
	return runtimeLib.pause
}

// resolveLibDir picks the library directory: the option, else $MDSA_LLAMA_LIB.
func resolveLibDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(EnvLibDir)
	}
	if dir == "" {
		return "", fmt.Errorf("llamacpp: no llama.cpp library directory given: set Options.LibDir or %s, or run `make setup` (installs them in %s)", EnvLibDir, libRelDir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("llamacpp: library directory %q: %w", dir, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return abs, nil
}

// checkLibDir verifies that dir holds the libraries yzma opens, so a missing
// installation gets an actionable message instead of a dlopen error.
func checkLibDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("llamacpp: llama.cpp library directory %s: %w (run `make setup` or set %s to a directory holding libllama.so)", dir, err, EnvLibDir)
	}
	if !st.IsDir() {
		return fmt.Errorf("llamacpp: llama.cpp library path %s is not a directory (run `make setup` or set %s to a directory holding libllama.so)", dir, EnvLibDir)
	}
	for _, name := range []string{"libllama.so", "libggml.so", "libggml-base.so"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("llamacpp: %s not found in %s (run `make setup` or set %s to a directory holding the llama.cpp libraries): %w", name, dir, EnvLibDir, err)
		}
	}
	return nil
}

// loadLibrary loads the llama.cpp libraries from dir once per process and
// initialises the back-ends. logger receives llama.cpp's own log lines at
// debug level; the logger of the first successful call is kept for the life
// of the process. The mutex is held while the libraries load so that
// concurrent first calls wait for one load rather than racing it.
func loadLibrary(dir string, logger *slog.Logger) error {
	dir, err := resolveLibDir(dir)
	if err != nil {
		return err
	}

	runtimeLib.mu.Lock()
	defer runtimeLib.mu.Unlock()
	if runtimeLib.dir != "" {
		if runtimeLib.dir != dir {
			return fmt.Errorf("%w: loaded from %s, asked for %s", ErrLibDirMismatch, runtimeLib.dir, dir)
		}
		return nil
	}
	if err := checkLibDir(dir); err != nil {
		return err
	}
	if err := llama.Load(dir); err != nil {
		return fmt.Errorf("llamacpp: loading llama.cpp libraries from %s (they must match yzma v1.28.0, i.e. llama.cpp from @node-llama-cpp 3.22.1; re-run `make setup`): %w", dir, err)
	}
	// Route logging before Init so back-end registration messages are
	// captured too. The callback is created once per process: purego
	// callbacks are never freed.
	sink := &logSink{}
	sink.logger.Store(logger)
	runtimeLib.sink = sink
	llama.LogSet(purego.NewCallback(sink.callback))
	llama.Init()
	// yzma resolves the thread pool's C calls on the first ThreadpoolNew,
	// without synchronisation: engines opened at once raced on them. A
	// first pool made and freed here, under the load lock, resolves them
	// before any engine can ask. Without pools (an older CPU back-end)
	// nothing is written and engines start threads per decode.
	tpp := llama.ThreadpoolParamsDefault(1)
	if tp, err := llama.ThreadpoolNew(&tpp); err == nil {
		llama.ThreadpoolFree(tp)
	}
	runtimeLib.pause = findPoolPause(dir)
	runtimeLib.failures = backendFailures(dir, registeredBackends())
	warn := logger
	if warn == nil {
		warn = slog.Default()
	}
	for _, f := range runtimeLib.failures {
		warn.Warn("llama.cpp GPU back-end did not come up; models run on the CPU", "dir", dir, "library", f.Library, "reason", f.Reason)
	}
	runtimeLib.dir = dir
	return nil
}

// FindLibDir returns the directory holding the llama.cpp libraries: the
// value of $MDSA_LLAMA_LIB when set, else the .deps/llama directory of the
// first ancestor of start (inclusive) that contains a go.mod file and such a
// directory. It returns an error saying how to install the libraries when
// neither exists.
func FindLibDir(start string) (string, error) {
	if dir := os.Getenv(EnvLibDir); dir != "" {
		return dir, nil
	}
	abs, err := filepath.Abs(start)
	if err != nil {
		return "", fmt.Errorf("llamacpp: finding library directory from %q: %w", start, err)
	}
	for d := abs; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			cand := filepath.Join(d, libRelDir)
			if _, err := os.Stat(filepath.Join(cand, "libllama.so")); err == nil {
				return cand, nil
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return "", fmt.Errorf("llamacpp: llama.cpp libraries not found (no %s above %s and %s unset): run `make setup` or set %s", libRelDir, abs, EnvLibDir, EnvLibDir)
}

// logSink receives llama.cpp log output through the C callback and writes
// whole lines to the process-wide logger at debug level. llama.cpp sends a
// line in several pieces (level CONT), so pieces are joined until a newline.
// It also remembers the last few error-level lines, which Open quotes when a
// model fails to load.
type logSink struct {
	logger atomic.Pointer[slog.Logger] // nil: slog.Default()

	mu      sync.Mutex
	pending strings.Builder
	level   llama.LogLevel
	errs    []string // recent error lines, oldest first
}

// maxPending bounds a log line that never ends (progress dots, say).
const maxPending = 64 << 10

// maxErrLines bounds the error lines a logSink remembers.
const maxErrLines = 4

// callback has the C signature of ggml_log_callback. It may run on threads
// that llama.cpp created.
func (s *logSink) callback(level int32, text *byte, _ uintptr) uintptr {
	if text == nil {
		return 0
	}
	msg := unix.BytePtrToString(text)
	var lines []string
	var lvl llama.LogLevel
	s.mu.Lock()
	if s.pending.Len() == 0 {
		s.level = llama.LogLevel(level)
	}
	s.pending.WriteString(msg)
	if strings.HasSuffix(msg, "\n") || s.pending.Len() > maxPending {
		lvl = s.level
		for _, l := range strings.Split(strings.TrimRight(s.pending.String(), "\n"), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		s.pending.Reset()
		if lvl == llama.LogLevelError {
			s.errs = append(s.errs, lines...)
			if n := len(s.errs); n > maxErrLines {
				s.errs = append(s.errs[:0], s.errs[n-maxErrLines:]...)
			}
		}
	}
	s.mu.Unlock()

	if len(lines) == 0 {
		return 0
	}
	logger := s.logger.Load()
	if logger == nil {
		logger = slog.Default()
	}
	if !logger.Enabled(context.Background(), slog.LevelDebug) {
		return 0
	}
	for _, l := range lines {
		logger.Debug(l, "source", "llama.cpp", "llama_level", levelName(lvl))
	}
	return 0
}

// takeErrors returns and forgets the recent error lines llama.cpp logged,
// joined with "; ".
func (s *logSink) takeErrors() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := strings.Join(s.errs, "; ")
	s.errs = s.errs[:0]
	return e
}

func levelName(l llama.LogLevel) string {
	switch l {
	case llama.LogLevelDebug:
		return "debug"
	case llama.LogLevelInfo:
		return "info"
	case llama.LogLevelWarn:
		return "warn"
	case llama.LogLevelError:
		return "error"
	default:
		return "none"
	}
}

// lastLlamaError returns the recent error lines llama.cpp logged, if any,
// and forgets them. Concurrent loads may see each other's lines; the text
// only enriches error messages.
func lastLlamaError() string {
	runtimeLib.mu.Lock()
	sink := runtimeLib.sink
	runtimeLib.mu.Unlock()
	return sink.takeErrors()
}

// cString reports an error if s cannot be passed to C as a NUL-terminated
// string. yzma hands a nil pointer to llama.cpp for such strings, which would
// crash the process, so every text input is checked first.
func cString(what, s string) error {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return fmt.Errorf("llamacpp: %s contains a NUL byte at offset %d: %w", what, i, engine.ErrInvalidInput)
	}
	return nil
}
