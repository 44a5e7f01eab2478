package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/mdsa-go/mdsa/internal/instrument"
)

// Sandbox compiles a module into an Extism plugin the way MDSA runs plugins:
// the module rewritten by the instrumenter (yield points, the call stack
// bound, the guarded kernel imports, the shape budgets), its linear memory
// capped, WASI with no files, network, environment or config, and each call
// stopped when its context ends. The Runtime, the conformance kit and the
// SDKs' test harnesses all build their plugins here, so that what a plugin
// author tests is what the host runs.
//
// The functions the rewritten module imports (instrument.ImportModule's
// yield and stack bound, instrument.GuardModule's kernel forwarders) are
// served with plain defaults unless HostFunctions has its own: the yield
// does nothing, the stack bound traps with "call stack exhausted", the
// forwarders check nothing.
type Sandbox struct {
	// MaxMemoryBytes caps the linear memory of each module of an instance.
	// Default DefaultMaxMemoryBytes.
	MaxMemoryBytes uint64
	// StackBytes bounds a call's wasm stack (see Options.MaxStackBytes).
	// Default instrument.DefaultStackBytes.
	StackBytes int
	// Shape bounds the module's static shape; zero fields keep the
	// defaults.
	Shape ShapeBudget
	// Timeout, when set, stops every call after that long (Extism's own
	// timer): for tests, where a hang must fail rather than block.
	Timeout time.Duration
	// Cache is the compilation cache; nil compiles afresh.
	Cache wazero.CompilationCache
	// Interpreter runs the module with wazero's interpreter instead of its
	// compiler.
	Interpreter bool
	// Workers is how many goroutines compile a module's functions; 0 lets
	// wazero choose.
	Workers int
	// HostFunctions are the host functions the module may import: MDSA's
	// (abi.HostModule) and any other.
	HostFunctions []extism.HostFunction
}

// Compile rewrites wasm and compiles it. A module the rewriter refuses
// (malformed, or over a shape budget) fails with the rewriter's error.
func (s Sandbox) Compile(ctx context.Context, wasm []byte) (*extism.CompiledPlugin, error) {
	wasm, err := s.rewrite(wasm)
	if err != nil {
		return nil, err
	}
	return s.compileRewritten(ctx, wasm)
}

// rewrite applies the instrumenter.
func (s Sandbox) rewrite(wasm []byte) ([]byte, error) {
	b := s.Shape
	out, _, err := instrument.Rewrite(wasm, 0, instrument.Budget{
		Functions: b.Functions, LocalsTotal: b.LocalsTotal, BodyBytes: b.BodyBytes, Nesting: b.Nesting,
		BrTableTargets: b.BrTableTargets, Globals: b.Globals, DataSegments: b.DataSegments,
		ElemSegments: b.ElemSegments, Exports: b.Exports, StackBytes: s.StackBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("compile: adding yield points: %w", err)
	}
	return out, nil
}

// compileRewritten compiles a module the instrumenter has rewritten.
func (s Sandbox) compileRewritten(ctx context.Context, wasm []byte) (*extism.CompiledPlugin, error) {
	maxMem := s.MaxMemoryBytes
	if maxMem == 0 {
		maxMem = DefaultMaxMemoryBytes
	}
	pages := min(max(maxMem/wasmPageSize, 1), 65536)
	manifest := extism.Manifest{
		Wasm: []extism.Wasm{extism.WasmData{Data: wasm, Name: "main"}},
		Memory: &extism.ManifestMemory{
			MaxPages:             uint32(pages),
			MaxVarBytes:          64 << 10,
			MaxHttpResponseBytes: 0,
		},
		Timeout: uint64(s.Timeout.Milliseconds()),
		// No Config, AllowedHosts, AllowedPaths: nothing leaks in by default.
	}
	rc := wazero.NewRuntimeConfigCompiler()
	if s.Interpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	rc = rc.WithCloseOnContextDone(true)
	if s.Cache != nil {
		rc = rc.WithCompilationCache(s.Cache)
	}
	if s.Workers > 0 {
		ctx = experimental.WithCompilationWorkers(ctx, s.Workers)
	}
	cp, err := extism.NewCompiledPlugin(ctx, manifest, extism.PluginConfig{
		RuntimeConfig: rc,
		EnableWasi:    true,
	}, s.hostFunctions())
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	return cp, nil
}

// hostFunctions are HostFunctions plus a default for each function the
// rewrite makes the module import that HostFunctions lacks.
func (s Sandbox) hostFunctions() []extism.HostFunction {
	have := make(map[[2]string]bool, len(s.HostFunctions))
	for _, f := range s.HostFunctions {
		have[[2]string{f.Namespace, f.Name}] = true
	}
	fns := append([]extism.HostFunction(nil), s.HostFunctions...)
	for _, f := range defaultInstrumentImports() {
		if !have[[2]string{f.Namespace, f.Name}] {
			fns = append(fns, f)
		}
	}
	return fns
}

// errStackExhausted is the default stack bound's trap.
var errStackExhausted = errors.New("call stack exhausted")

// defaultInstrumentImports serve what the rewrite imports, with no
// Runtime behind them: a yield that does nothing, a stack bound that traps,
// kernel forwarders that check nothing.
func defaultInstrumentImports() []extism.HostFunction {
	yield := extism.NewHostFunctionWithStack(instrument.ImportName, func(context.Context, *extism.CurrentPlugin, []uint64) {}, nil, nil)
	yield.SetNamespace(instrument.ImportModule)
	stack := extism.NewHostFunctionWithStack(instrument.StackImportName, func(context.Context, *extism.CurrentPlugin, []uint64) {
		panic(errStackExhausted)
	}, nil, nil)
	stack.SetNamespace(instrument.ImportModule)
	return append(kernelGuards(false), yield, stack)
}

// ShapeBudget bounds a module's static shape, read before any compiler sees
// it: a small module can make a compiler spend gigabytes and minutes
// (thousands of functions with tens of thousands of locals, deep nesting, a
// huge br_table). A module over any bound is refused with an error naming
// it. Zero fields keep the defaults, at least four times what the shipped Go
// plugins need: 50,000 functions, 500,000 locals in all bodies, a 2 MiB
// body, nesting 2,500, 500,000 br_table targets, 10,000 globals, 200,000
// data segments, 10,000 element segments, 10,000 exports.
type ShapeBudget struct {
	Functions, LocalsTotal, BodyBytes, Nesting, BrTableTargets int
	Globals, DataSegments, ElemSegments, Exports               int
}
