package plugin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/internal/lowprio"
	"github.com/mdsa-go/mdsa/internal/procfs"
	"github.com/mdsa-go/mdsa/internal/textcap"
)

// Compiling an untrusted module is the one step of loading a plugin whose
// cost the host cannot interrupt or meter from inside: wazero's compiler is
// ordinary Go code that allocates as the module asks. The shape budgets of
// package instrument refuse the known bombs before any compiler runs; for
// everything else a Runtime with Options.CompileCommand compiles each new
// module first in a child process, watched from outside (resident memory
// and wall time, killed past either), where it fills the on-disk
// compilation cache. The host then compiles the same bytes itself, which
// is a cache hit: it decodes the module and maps the machine code the child
// wrote, and never runs the compiler on a module that has not already been
// compiled within the limits.

// CompileChildArg is the argument a CompileCommand receives after its own
// arguments; a program that sees it as its first argument should call
// ServeCompileChild and exit with the code it returns. The mdsa CLI and the
// package's tests do this.
const CompileChildArg = "mdsa-compile-child"

// Child exit codes.
const (
	childOK       = 0
	childFailed   = 1 // the module does not compile: the reason is on stdout
	childBadInput = 2 // the parent sent something the child cannot read
)

// compileWallFactor bounds a compile child's wall time, as a multiple of
// its CPU time limit (plugins.compile_timeout).
const compileWallFactor = 6

// Defaults of the child compile limits.
const (
	DefaultCompileTimeout     = 10 * time.Second
	DefaultCompileMemoryBytes = 512 << 20
)

// childRequest is the first line the parent writes to the child's stdin;
// the module's bytes follow it.
type childRequest struct {
	CacheDir    string `json:"cache_dir"`
	Pages       uint32 `json:"pages"`
	Workers     int    `json:"workers"`
	MemoryBytes uint64 `json:"memory_bytes"`
	WasmBytes   int    `json:"wasm_bytes"`
}

// maxChildReport bounds what the parent reads of the child's reason.
const maxChildReport = 4 << 10

// ServeCompileChild is the child side of a compile in a separate process: it
// reads one request from stdin, compiles the module into the on-disk cache
// the request names, writes the compile error (if any) to stdout and returns
// the process exit code. It is meant to run in a process of its own (see
// CompileChildArg); the parent enforces the limits.
func ServeCompileChild(ctx context.Context, stdin io.Reader, stdout io.Writer) int {
	// Serving comes first: a compile competes for the CPU at nice 10.
	lowprio.Process()
	in := bufio.NewReader(stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		fmt.Fprintf(stdout, "reading the request: %v", err)
		return childBadInput
	}
	var req childRequest
	if err := json.Unmarshal(line, &req); err != nil || req.CacheDir == "" || req.WasmBytes <= 0 {
		fmt.Fprintf(stdout, "bad request %.200q: %v", line, err)
		return childBadInput
	}
	if req.MemoryBytes > 0 {
		// Collect hard before the parent's watch would kill the process.
		debug.SetMemoryLimit(int64(req.MemoryBytes) * 3 / 4)
	}
	wasm := make([]byte, req.WasmBytes)
	if _, err := io.ReadFull(in, wasm); err != nil {
		fmt.Fprintf(stdout, "reading %d module bytes: %v", req.WasmBytes, err)
		return childBadInput
	}
	r, err := NewRuntime(ctx, Options{CacheDir: req.CacheDir, CompileWorkers: req.Workers})
	if err != nil {
		fmt.Fprint(stdout, err)
		return childFailed
	}
	defer r.Close(ctx)
	cp, err := r.sandbox(req.Pages).compileRewritten(ctx, wasm)
	if err != nil {
		fmt.Fprint(stdout, err)
		return childFailed
	}
	_ = cp.Close(ctx)
	return childOK
}

// CompileLimitError reports a module whose compilation went past a limit of
// the compile child: the memory or the time it may take.
type CompileLimitError struct {
	// Limit is "memory" or "time".
	Limit string
	// Key is the configuration key of the limit.
	Key   string
	Value string
	// Used is what the child had used when it was stopped.
	Used string
}

func (e *CompileLimitError) Error() string {
	return fmt.Sprintf("compile: refused: compiling the module used more than its %s limit (%s = %s; stopped at %s)",
		e.Limit, e.Key, e.Value, e.Used)
}

// compileInChild compiles wasm (with its yield points) in a child process so that the host's own
// compile that follows is a hit in the on-disk cache. A module the child
// cannot compile within the limits is an error and the host never compiles
// it.
func (r *Runtime) compileInChild(ctx context.Context, pages uint32, wasm []byte) error {
	select {
	case r.childSem <- struct{}{}:
		defer func() { <-r.childSem }()
	case <-ctx.Done():
		return ctx.Err()
	}
	// The limit is the child's CPU time: on a busy machine a compile at
	// nice 10 gets little of it, and is not a bomb for that. Its wall time
	// is bounded all the same, at compileWallFactor times the limit.
	ctx, cancel := context.WithTimeout(ctx, compileWallFactor*r.compileTimeout)
	defer cancel()
	req, err := json.Marshal(childRequest{
		CacheDir: r.cacheDir, Pages: pages, Workers: r.workers,
		MemoryBytes: r.compileMemory, WasmBytes: len(wasm),
	})
	if err != nil {
		return fmt.Errorf("compile: %w", err)
	}
	args := append(append([]string(nil), r.compileCmd[1:]...), CompileChildArg)
	cmd := exec.Command(r.compileCmd[0], args...)
	cmd.Stdin = io.MultiReader(bytes.NewReader(append(req, '\n')), bytes.NewReader(wasm))
	var out capWriter
	out.max = maxChildReport
	cmd.Stdout = &out
	cmd.Stderr = &out
	setChildAttrs(cmd)
	start := time.Now()
	started, done := make(chan error, 1), make(chan error, 1)
	go func() {
		// Pdeathsig follows the thread that started the child: keep that
		// thread until the child is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("compile: starting the compile process %s (plugins are compiled in a child process; see plugin.Options.CompileCommand): %w", r.compileCmd[0], err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var peak uint64
	for {
		select {
		case err := <-done:
			return r.childResult(err, &out, peak, time.Since(start))
		case <-tick.C:
			if cpu, ok := procfs.CPU(cmd.Process.Pid); ok && cpu > r.compileTimeout {
				_ = cmd.Process.Kill()
				<-done
				return &CompileLimitError{Limit: "time", Key: "plugins.compile_timeout",
					Value: r.compileTimeout.String() + " of CPU time",
					Used:  fmt.Sprintf("%s of CPU time, %s elapsed", cpu, time.Since(start).Round(time.Millisecond))}
			}
			rss, ok := procfs.RSS(cmd.Process.Pid) // not known off Linux: bounded by wall time only
			if ok && rss > peak {
				peak = rss
			}
			if ok && rss > r.compileMemory {
				_ = cmd.Process.Kill()
				<-done
				return &CompileLimitError{Limit: "memory", Key: "plugins.compile_memory_mb",
					Value: fmt.Sprintf("%d MB", r.compileMemory>>20), Used: fmt.Sprintf("%d MB resident", rss>>20)}
			}
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-done
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return &CompileLimitError{Limit: "time", Key: "plugins.compile_timeout",
					Value: fmt.Sprintf("%s of CPU time, %s elapsed", r.compileTimeout, compileWallFactor*r.compileTimeout),
					Used:  time.Since(start).Round(time.Millisecond).String() + " elapsed"}
			}
			return fmt.Errorf("compile: %w", ctx.Err())
		}
	}
}

// childResult turns the child's exit into the compile's result.
func (r *Runtime) childResult(err error, out *capWriter, peak uint64, took time.Duration) error {
	report := strings.TrimSpace(out.String())
	if err == nil {
		r.log.Debug("plugin: compiled in a child process", "took_ms", took.Milliseconds(), "peak_rss_mb", peak>>20)
		return nil
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == childFailed && report != "" {
		// The child's message is already "compile: ...".
		return errors.New(textcap.Truncate(report, maxChildReport))
	}
	if report == "" {
		report = "no output"
	}
	return fmt.Errorf("compile: the compile process failed (%v): %s", err, textcap.Truncate(report, maxChildReport))
}

// capWriter keeps the first max bytes written to it and drops the rest.
type capWriter struct {
	max int
	buf bytes.Buffer
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (w *capWriter) String() string { return w.buf.String() }

// compileCacheDir makes a private on-disk cache for a Runtime that compiles
// in a child process but was given no CacheDir: the child and the host must
// share one.
func compileCacheDir() (string, error) {
	return os.MkdirTemp("", "mdsa-compile-*")
}
