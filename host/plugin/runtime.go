package plugin

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"

	"github.com/mdsa-go/mdsa/internal/instrument"
	"github.com/mdsa-go/mdsa/internal/textcap"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Default limits, used for every zero field of Limits.
const (
	DefaultCallTimeout    = time.Second
	DefaultMaxMemoryBytes = 64 << 20
	DefaultMaxInputBytes  = 1 << 20
	DefaultMaxOutputBytes = 1 << 20
	DefaultMaxHostCalls   = 8
	DefaultMaxTokens      = 4096
	DefaultMaxWorkTokens  = 16384
	DefaultMaxHostTime    = time.Minute
	DefaultMaxModuleBytes = 64 << 20
)

const wasmPageSize = 65536

// Limits are the per-plugin sandbox caps. A zero field takes the default.
type Limits struct {
	// CallTimeout bounds the time a plugin may run in one export call:
	// its CPU time plus the pauses the throttle imposed. Time inside host
	// functions (waiting for inference) is not counted: that is bounded by
	// the caller's context and the token cap. Neither is time the machine
	// was too busy to run the guest, up to 5x CallTimeout of wall time in
	// all. When it runs out the instance is stopped (wazero
	// close-on-context-done) and discarded. Default 1s: prompt and
	// validate take well under a millisecond.
	CallTimeout time.Duration
	// MaxMemoryBytes caps the linear memory of each module of an instance
	// (the plugin's and the Extism kernel's), rounded down to 64 KiB pages.
	// A plugin whose minimum memory is larger fails to load. Default 64 MiB.
	MaxMemoryBytes uint64
	// MaxInputBytes caps the JSON passed to an export and the JSON a plugin
	// passes to a host function. Default 1 MiB.
	MaxInputBytes int
	// MaxOutputBytes caps the output of an export. Default 1 MiB. (go-sdk
	// copies the output out of the sandbox before it can be checked; that
	// copy is bounded by MaxMemoryBytes.)
	MaxOutputBytes int
	// MaxHostCalls caps the host-function calls of one export call. Default 8.
	MaxHostCalls int
	// MaxTokens caps the tokens mdsa_generate may produce for one export
	// call, across all its calls; each request's max_tokens is clamped to
	// what is left. RequestInfo.MaxTokens can lower it per request.
	// Default 4096.
	MaxTokens int
	// MaxWorkTokens caps the tokens of host work one export call may
	// spend across its host calls: prompt and completion tokens of every
	// mdsa_generate and the input tokens of every mdsa_embed. A call whose
	// input alone is over what is left is refused before the engine runs
	// (error code budget). It bounds the engine time one request's plugin
	// can take. Default 16384.
	MaxWorkTokens int
	// MaxHostTime bounds the wall time one export call's host functions
	// may take together (inference included): past it the work in
	// progress is cancelled and further calls are refused (error code
	// budget). Without it only the caller's context ended a plugin's
	// engine work. Default 1 minute.
	MaxHostTime time.Duration
	// MaxModuleBytes caps the size of a .wasm file. Default 64 MiB.
	MaxModuleBytes int64
	// ThrottleAfter is how much CPU time a call runs at full speed; past
	// it the guest is held to ThrottleShare of a CPU until it returns or
	// CallTimeout stops it, so that a spinning plugin does not take CPUs
	// from other requests. Default 5ms: prompt and validate take well
	// under a millisecond, validating a 64 KB answer a few. On a 2-core
	// machine 2-10ms all kept a quiet tenant's p99 within about 2x of its
	// own under a spinning neighbour; 20-50ms did not. describe (once per load), start code and the
	// first call on an instance are not throttled unless the plugin has
	// timed out before.
	ThrottleAfter time.Duration
	// ThrottleShare is the share of one CPU a throttled call may use, in
	// (0, 1]; 1 turns throttling off. Default 0.1.
	ThrottleShare float64
}

func (l Limits) withDefaults() Limits {
	if l.CallTimeout <= 0 {
		l.CallTimeout = DefaultCallTimeout
	}
	if l.MaxMemoryBytes == 0 {
		l.MaxMemoryBytes = DefaultMaxMemoryBytes
	}
	if l.MaxInputBytes <= 0 {
		l.MaxInputBytes = DefaultMaxInputBytes
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if l.MaxHostCalls <= 0 {
		l.MaxHostCalls = DefaultMaxHostCalls
	}
	if l.MaxTokens <= 0 {
		l.MaxTokens = DefaultMaxTokens
	}
	if l.MaxWorkTokens <= 0 {
		l.MaxWorkTokens = DefaultMaxWorkTokens
	}
	if l.MaxHostTime <= 0 {
		l.MaxHostTime = DefaultMaxHostTime
	}
	if l.MaxModuleBytes <= 0 {
		l.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if l.ThrottleAfter <= 0 {
		l.ThrottleAfter = DefaultThrottleAfter
	}
	if !(l.ThrottleShare > 0) { // NaN included
		l.ThrottleShare = DefaultThrottleShare
	}
	l.ThrottleShare = min(l.ThrottleShare, 1)
	return l
}

// Override returns l with every positive field of o applied: o's zero
// fields keep l's values.
func (l Limits) Override(o Limits) Limits {
	if o.CallTimeout > 0 {
		l.CallTimeout = o.CallTimeout
	}
	if o.ThrottleAfter > 0 {
		l.ThrottleAfter = o.ThrottleAfter
	}
	if o.ThrottleShare > 0 {
		l.ThrottleShare = min(o.ThrottleShare, 1)
	}
	if o.MaxMemoryBytes > 0 {
		l.MaxMemoryBytes = o.MaxMemoryBytes
	}
	if o.MaxInputBytes > 0 {
		l.MaxInputBytes = o.MaxInputBytes
	}
	if o.MaxOutputBytes > 0 {
		l.MaxOutputBytes = o.MaxOutputBytes
	}
	if o.MaxHostCalls > 0 {
		l.MaxHostCalls = o.MaxHostCalls
	}
	if o.MaxTokens > 0 {
		l.MaxTokens = o.MaxTokens
	}
	if o.MaxWorkTokens > 0 {
		l.MaxWorkTokens = o.MaxWorkTokens
	}
	if o.MaxHostTime > 0 {
		l.MaxHostTime = o.MaxHostTime
	}
	if o.MaxModuleBytes > 0 {
		l.MaxModuleBytes = o.MaxModuleBytes
	}
	return l
}

// Options configure a Runtime.
type Options struct {
	// CacheDir is the directory of wazero's on-disk compilation cache, so a
	// restarted host does not recompile unchanged plugins. Empty: an
	// in-memory cache shared by every plugin of this Runtime.
	CacheDir string
	// Limits are the sandbox caps for every plugin; WithLimits overrides
	// them per plugin.
	Limits Limits
	// Services serve the host functions. Nil: every host call is refused
	// with abi.ErrUnavailable.
	Services Services
	// Logger receives load, failure and plugin log events. Nil: discard.
	Logger *slog.Logger
	// PoolSize is the most instances one plugin may have at once, which is
	// also the most concurrent calls it serves. Default GOMAXPROCS.
	PoolSize int
	// CompileWorkers is the number of goroutines wazero compiles one module
	// with. Default GOMAXPROCS.
	CompileWorkers int
	// Interpreter runs plugins in wazero's interpreter instead of compiling
	// them to native code: compiling is several times faster and a timeout
	// check costs little, while compute-heavy plugins run slower.
	Interpreter bool
	// CompileCommand, when set, is the program (and its first arguments)
	// that compiles each new module in a child process before the host
	// loads it, so that a module built to make the compiler spend memory or
	// time costs the child, not the host: the child is killed past
	// CompileMemoryBytes of resident memory or CompileTimeout and the load
	// fails. The program must call ServeCompileChild when its next argument
	// is CompileChildArg (mdsa's CLI does: os.Executable() is a valid
	// command for a program built from it). Nil: modules compile in this
	// process, bounded only by their shape (see package instrument). Not
	// used with Interpreter.
	CompileCommand []string
	// MaxTotalMemoryBytes bounds the linear memory of all plugin instances
	// of the Runtime together (every plugin, every tenant): past it a
	// plugin's memory.grow fails as it does past the plugin's own cap.
	// Default DefaultMaxTotalMemoryBytes.
	MaxTotalMemoryBytes uint64
	// CompileTimeout bounds one child compile's CPU time (all its
	// threads), and its wall time at 6 times that (a child a busy machine
	// starves). Default DefaultCompileTimeout.
	CompileTimeout time.Duration
	// CompileMemoryBytes bounds the child's resident memory. Default
	// DefaultCompileMemoryBytes.
	CompileMemoryBytes uint64
	// MaxStackBytes bounds the wasm call stack of one plugin call, as
	// package instrument estimates it from each function's parameters,
	// locals and operand stack: a call that would hold more traps
	// (ErrTrap, "call stack exhausted"). Without it wazero grows a call's
	// stack to about 50 MB, allocating up to 100 MB more at the last
	// doubling, outside every memory budget. Default
	// instrument.DefaultStackBytes (1 MiB).
	MaxStackBytes int
	// Shape bounds each module's static shape (plugins.shape).
	Shape ShapeBudget
}

// Runtime loads and runs plugins. It is safe for concurrent use.
type Runtime struct {
	cache    wazero.CompilationCache
	limits   Limits
	services Services
	log      *slog.Logger
	poolSize int
	workers  int
	hostFns  []extism.HostFunction

	interpreter bool
	mem         *memoryBudget
	stackBytes  int         // Options.MaxStackBytes
	shape       ShapeBudget // Options.Shape

	// Child compiles (see Options.CompileCommand); compileCmd is nil when
	// modules compile in this process.
	compileCmd     []string
	compileTimeout time.Duration
	compileMemory  uint64
	cacheDir       string        // the on-disk cache the child fills
	tempCache      bool          // cacheDir was made for this Runtime and is removed by Close
	childSem       chan struct{} // one child compile at a time

	mu        sync.Mutex
	closed    bool
	loads     sync.WaitGroup // loads in progress; Close waits for them before closing the cache
	cacheOnce sync.Once
	compiled  map[string]*compiled
	// idle are compiled modules no plugin uses any more, oldest first, kept
	// (at most keepIdle) so that swapping back to a recent version skips
	// decoding and validation.
	idle    []*compiled
	plugins map[*Plugin]struct{}
}

// DefaultMaxTotalMemoryBytes is the default of Options.MaxTotalMemoryBytes.
const DefaultMaxTotalMemoryBytes = 2 << 30

// MemoryStats reports the linear memory of the Runtime's plugin instances
// against Options.MaxTotalMemoryBytes.
func (r *Runtime) MemoryStats() MemoryStats { return r.mem.stats() }

// keepIdle is how many unused compiled modules a Runtime keeps.
const keepIdle = 8

// compiled is one compiled module shared by every Plugin loaded from the
// same bytes with the same memory cap.
type compiled struct {
	key   string
	ready chan struct{} // closed when cp or err is set
	cp    *extism.CompiledPlugin
	err   error
	took  time.Duration
	refs  int // guarded by Runtime.mu
}

// LoadOption adjusts one Load, LoadBytes or LoadDir call.
type LoadOption func(*loadConfig)

type loadConfig struct {
	config    map[string]string
	configFor func(path string) map[string]string
	limits    Limits
}

// WithConfig gives the plugin configuration values it can read with the
// Extism config_get function. By default a plugin gets none.
func WithConfig(cfg map[string]string) LoadOption {
	return func(c *loadConfig) { c.config = maps.Clone(cfg) }
}

// WithConfigFor gives each plugin the configuration f returns for its path
// (for LoadDir: a config per file) unless WithConfig gives one.
func WithConfigFor(f func(path string) map[string]string) LoadOption {
	return func(c *loadConfig) { c.configFor = f }
}

// WithLimits overrides the Runtime's limits for this plugin; zero fields keep
// the Runtime's values.
func WithLimits(l Limits) LoadOption {
	return func(c *loadConfig) { c.limits = l }
}

// NewRuntime makes a Runtime. It fails only if the cache directory cannot be
// created.
func NewRuntime(ctx context.Context, opts Options) (*Runtime, error) {
	_ = ctx // reserved: nothing here blocks yet
	r := &Runtime{
		limits:      opts.Limits.withDefaults(),
		services:    opts.Services,
		log:         opts.Logger,
		poolSize:    opts.PoolSize,
		workers:     opts.CompileWorkers,
		interpreter: opts.Interpreter,
		compiled:    make(map[string]*compiled),
		plugins:     make(map[*Plugin]struct{}),
		mem:         newMemoryBudget(cmp.Or(opts.MaxTotalMemoryBytes, DefaultMaxTotalMemoryBytes)),
		stackBytes:  cmp.Or(opts.MaxStackBytes, instrument.DefaultStackBytes),
		shape:       opts.Shape,
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.poolSize <= 0 {
		r.poolSize = runtime.GOMAXPROCS(0)
	}
	if r.workers <= 0 {
		r.workers = runtime.GOMAXPROCS(0)
	}
	dir := opts.CacheDir
	if len(opts.CompileCommand) > 0 && !opts.Interpreter {
		r.compileCmd = slices.Clone(opts.CompileCommand)
		r.compileTimeout = cmp.Or(opts.CompileTimeout, DefaultCompileTimeout)
		r.compileMemory = cmp.Or(opts.CompileMemoryBytes, DefaultCompileMemoryBytes)
		r.childSem = make(chan struct{}, 1)
		if dir == "" {
			d, err := compileCacheDir()
			if err != nil {
				return nil, fmt.Errorf("plugin: compilation cache for child compiles: %w", err)
			}
			dir, r.tempCache = d, true
		}
		r.cacheDir = dir
	}
	if dir == "" {
		r.cache = wazero.NewCompilationCache()
	} else {
		c, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			return nil, fmt.Errorf("plugin: compilation cache in %s: %w", dir, err)
		}
		r.cache = c
	}
	r.hostFns = r.hostFunctions()
	return r, nil
}

// Load reads a .wasm file and loads it; see LoadBytes. Path() of the result
// is path.
func (r *Runtime) Load(ctx context.Context, path string, opts ...LoadOption) (*Plugin, error) {
	cfg := r.loadConfig(opts)
	if cfg.config == nil && cfg.configFor != nil {
		cfg.config = maps.Clone(cfg.configFor(path))
	}
	wasm, err := ReadModule(path, cfg.limits.MaxModuleBytes)
	if err != nil {
		return nil, fmt.Errorf("plugin: load %s: %w", path, err)
	}
	return r.load(ctx, path, wasm, cfg)
}

// LoadBytes loads a plugin from its bytes. name labels the plugin in errors
// until its manifest is known and is what Path() returns. The module is
// compiled once per sha256 (later loads of the same bytes reuse it), one
// instance is made, describe is called and its manifest decoded and
// checked: an unknown ABI version, a bad manifest or a missing prompt or
// validate export fails the load, and everything made so far is closed.
func (r *Runtime) LoadBytes(ctx context.Context, name string, wasm []byte, opts ...LoadOption) (*Plugin, error) {
	cfg := r.loadConfig(opts)
	if int64(len(wasm)) > cfg.limits.MaxModuleBytes {
		return nil, fmt.Errorf("plugin: load %s: module is %d bytes, limit %d", name, len(wasm), cfg.limits.MaxModuleBytes)
	}
	if cfg.config == nil && cfg.configFor != nil {
		cfg.config = maps.Clone(cfg.configFor(name))
	}
	return r.load(ctx, name, wasm, cfg)
}

// LoadDir loads every plugin in dir: each *.wasm file directly in dir and
// each dir/<name>/<name>.wasm, in name order. A plugin's manifest must name
// it as its file does (see CheckFileName). A file that fails to load (not
// WebAssembly, corrupt, bad manifest, a name that is not its file's, a name already loaded) does not stop
// the others: LoadDir returns the plugins that loaded and a joined error that
// names each file that did not. An unreadable dir is an error with no plugins.
func (r *Runtime) LoadDir(ctx context.Context, dir string, opts ...LoadOption) ([]*Plugin, error) {
	paths, err := Files(dir)
	if err != nil {
		return nil, fmt.Errorf("plugin: load dir: %w", err)
	}
	var (
		loaded []*Plugin
		errs   []error
		seen   = make(map[string]string)
	)
	for _, path := range paths {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("plugin: load %s: %w", path, err))
			continue
		}
		p, err := r.Load(ctx, path, opts...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := CheckFileName(path, p.Name()); err != nil {
			errs = append(errs, fmt.Errorf("plugin: load %s: %w", path, err))
			_ = p.Close(ctx)
			continue
		}
		if first, dup := seen[p.Name()]; dup {
			errs = append(errs, fmt.Errorf("plugin: load %s: duplicate plugin name %q (already loaded from %s)", path, p.Name(), first))
			_ = p.Close(ctx)
			continue
		}
		seen[p.Name()] = path
		loaded = append(loaded, p)
	}
	return loaded, errors.Join(errs...)
}

// Close refuses new loads, waits for loads in progress, closes every plugin
// (see Plugin.Close: in-flight calls may finish until ctx is done, then they
// are stopped) and then the compilation cache.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	loaded := make(chan struct{})
	go func() { r.loads.Wait(); close(loaded) }()
	select {
	case <-loaded:
	case <-ctx.Done():
		return fmt.Errorf("plugin: close runtime: waiting for loads: %w", ctx.Err())
	}
	r.mu.Lock()
	plugins := make([]*Plugin, 0, len(r.plugins))
	for p := range r.plugins {
		plugins = append(plugins, p)
	}
	r.mu.Unlock()
	var errs []error
	for _, p := range plugins {
		if err := p.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Stopped calls are still unwinding; the cache must outlive them.
		return errors.Join(errs...)
	}
	r.mu.Lock()
	idle := r.idle
	r.idle = nil
	for _, c := range idle {
		delete(r.compiled, c.key)
	}
	r.mu.Unlock()
	r.closeCompiled(idle)
	var err error
	r.cacheOnce.Do(func() {
		err = r.cache.Close(ctx)
		if r.tempCache {
			_ = os.RemoveAll(r.cacheDir)
		}
	})
	if err != nil {
		return fmt.Errorf("plugin: close compilation cache: %w", err)
	}
	return nil
}

func (r *Runtime) loadConfig(opts []LoadOption) loadConfig {
	var c loadConfig
	for _, o := range opts {
		o(&c)
	}
	c.limits = r.limits.Override(c.limits)
	return c
}

// Files lists the plugin files of dir, sorted: each *.wasm directly in dir
// and each dir/<name>/<name>.wasm. Dot files and directories (an install's
// temporary file, the host's .previous of kept versions) are left out.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // hidden: temporary files, the host's .previous
		}
		if e.IsDir() {
			p := filepath.Join(dir, name, name+".wasm")
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				paths = append(paths, p)
			}
			continue
		}
		if strings.HasSuffix(name, ".wasm") {
			paths = append(paths, filepath.Join(dir, name))
		}
	}
	sort.Strings(paths)
	return paths, nil
}

// NameFromPath is the plugin name a file stands for: its base name without
// ".wasm" (NAME.wasm and NAME/NAME.wasm both stand for NAME).
func NameFromPath(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".wasm")
}

// CheckFileName returns an error when a plugin loaded from path calls
// itself name in its manifest while its file says otherwise. Names are
// bound to files so that no file can take over another plugin's name: a
// file that sorts first, or that appears during a reload, and says
// "finance" would otherwise be served as finance.
func CheckFileName(path, name string) error {
	if file := NameFromPath(path); file != name {
		return fmt.Errorf("the manifest names the plugin %q but its file is %s: a plugin's file must be NAME.wasm or NAME/NAME.wasm, NAME being its manifest's name (rename the file to %s.wasm)", name, filepath.Base(path), name)
	}
	return nil
}

// ReadModule reads a module file: a regular file of at most max bytes.
func ReadModule(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("module is %d bytes, limit %d", fi.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("module is over the %d-byte limit", max)
	}
	return b, nil
}

var wasmMagic = []byte("\x00asm")

// maxLoadError bounds the message of a load error, part of which comes
// from the module.
const maxLoadError = 4096

func (r *Runtime) load(ctx context.Context, source string, wasm []byte, cfg loadConfig) (*Plugin, error) {
	fail := func(err error) (*Plugin, error) {
		// Bounded: a module with a million exports made a 12 MB error
		// (and as much in the log and the admin API's reply).
		return nil, fmt.Errorf("plugin: load %s: %w", source, textcap.Error(err, maxLoadError))
	}
	if !bytes.HasPrefix(wasm, wasmMagic) {
		return fail(errors.New("not a WebAssembly module (no \\0asm header)"))
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fail(ErrClosed)
	}
	r.loads.Add(1)
	r.mu.Unlock()
	defer r.loads.Done()
	sum := sha256.Sum256(wasm)
	hash := hex.EncodeToString(sum[:])
	pages := cfg.limits.MaxMemoryBytes / wasmPageSize
	if pages == 0 {
		pages = 1
	}
	if pages > 65536 {
		pages = 65536
	}
	start := time.Now()
	comp, fresh, err := r.compile(ctx, hash, uint32(pages), wasm)
	if err != nil {
		return fail(err)
	}
	p := newPlugin(r, comp, source, hash, cfg)
	p.compileTime = time.Since(start)
	p.language = Language(wasm)

	inst, err := p.pool.acquire(ctx)
	if err != nil {
		p.abandon()
		return fail(err)
	}
	var missing []string
	for _, e := range []string{abi.ExportDescribe, abi.ExportPrompt, abi.ExportValidate} {
		if !inst.ext.FunctionExists(e) {
			missing = append(missing, e)
		}
	}
	if len(missing) > 0 {
		p.pool.release(inst, false)
		p.abandon()
		return fail(fmt.Errorf("missing required export(s): %s", strings.Join(missing, ", ")))
	}
	p.hasHandle = inst.ext.FunctionExists(abi.ExportHandle)
	var m abi.Manifest
	reuse, err := p.invoke(ctx, inst, abi.ExportDescribe, nil, func(out []byte) error {
		var err error
		m, err = abi.DecodeManifest(out)
		return err
	})
	hasTool := inst.ext.FunctionExists(abi.ExportTool)
	p.pool.release(inst, reuse)
	if err != nil {
		p.abandon()
		return fail(err)
	}
	if err := p.setTools(m, hasTool); err != nil {
		p.abandon()
		return fail(err)
	}
	p.setManifest(m)

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		p.abandon()
		return fail(ErrClosed)
	}
	r.plugins[p] = struct{}{}
	r.mu.Unlock()
	// Said once per module at Info: more instances of a module already
	// loaded (each tenant's, say) are Debug.
	lvl := slog.LevelInfo
	if !fresh {
		lvl = slog.LevelDebug
	}
	r.log.Log(ctx, lvl, "plugin loaded", "plugin", m.Name, "version", m.Version, "path", source,
		"sha256", hash[:12], "compile_ms", float64(p.compileTime.Microseconds())/1000,
		"capabilities", m.Capabilities, "handle", p.hasHandle, "tools", len(p.tools))
	return p, nil
}

// compile returns the compiled module for (hash, pages), compiling it at most
// once even under concurrent loads, and whether this call compiled it. The
// caller owns one reference.
func (r *Runtime) compile(ctx context.Context, hash string, pages uint32, wasm []byte) (*compiled, bool, error) {
	key := hash + "/" + strconv.FormatUint(uint64(pages), 10)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, false, ErrClosed
	}
	if c, ok := r.compiled[key]; ok {
		if c.refs == 0 {
			r.idle = slices.DeleteFunc(r.idle, func(x *compiled) bool { return x == c })
		}
		c.refs++
		r.mu.Unlock()
		select {
		case <-c.ready:
		case <-ctx.Done():
			r.release(c)
			return nil, false, ctx.Err()
		}
		if c.err != nil {
			r.release(c)
			return nil, false, c.err
		}
		return c, false, nil
	}
	c := &compiled{key: key, ready: make(chan struct{}), refs: 1}
	r.compiled[key] = c
	r.mu.Unlock()

	start := time.Now()
	cp, err := r.compileModule(ctx, pages, wasm)
	c.cp, c.err, c.took = cp, err, time.Since(start)
	if err != nil {
		r.mu.Lock()
		delete(r.compiled, key) // let a later load retry
		c.refs--
		r.mu.Unlock()
	}
	close(c.ready)
	if err != nil {
		return nil, false, err
	}
	return c, true, nil
}

// compileModule rewrites wasm and compiles it with the host functions, its
// memory capped at pages (see Sandbox); first in the compile child, when
// there is one.
func (r *Runtime) compileModule(ctx context.Context, pages uint32, wasm []byte) (*extism.CompiledPlugin, error) {
	// Every module gets yield points (see throttle): compiled WebAssembly
	// cannot be preempted, and they are how a long-running call is paced.
	// It also gets the stack bound.
	sb := r.sandbox(pages)
	wasm, err := sb.rewrite(wasm)
	if err != nil {
		return nil, err
	}
	if r.compileCmd != nil {
		if err := r.compileInChild(ctx, pages, wasm); err != nil {
			return nil, err
		}
	}
	return sb.compileRewritten(ctx, wasm)
}

// sandbox is how the runtime compiles a module whose memory is capped at
// pages.
func (r *Runtime) sandbox(pages uint32) Sandbox {
	return Sandbox{MaxMemoryBytes: uint64(pages) * wasmPageSize, StackBytes: r.stackBytes, Shape: r.shape, Cache: r.cache,
		Interpreter: r.interpreter, Workers: r.workers, HostFunctions: r.hostFns}
}

// release drops one reference to c. An unused module is kept among the
// idle ones; the oldest idle module beyond keepIdle is closed.
func (r *Runtime) release(c *compiled) {
	r.mu.Lock()
	c.refs--
	var drop []*compiled
	if c.refs == 0 && r.compiled[c.key] == c {
		if r.closed {
			delete(r.compiled, c.key)
			drop = append(drop, c)
		} else {
			r.idle = append(r.idle, c)
			for len(r.idle) > keepIdle {
				old := r.idle[0]
				r.idle = r.idle[1:]
				delete(r.compiled, old.key)
				drop = append(drop, old)
			}
		}
	}
	r.mu.Unlock()
	r.closeCompiled(drop)
}

func (r *Runtime) closeCompiled(cs []*compiled) {
	for _, c := range cs {
		if c.cp == nil {
			continue
		}
		if err := c.cp.Close(context.Background()); err != nil {
			r.log.Warn("plugin: closing compiled module", "err", err)
		}
	}
}

// forget removes a closed plugin from the runtime.
func (r *Runtime) forget(p *Plugin) {
	r.mu.Lock()
	delete(r.plugins, p)
	r.mu.Unlock()
}
