package conformance

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// The probe runs the module outside plugin.Runtime, because a plugin.Plugin
// only ever sends well-formed JSON, and the sandbox check needs to see what
// an export does with malformed input. It mirrors the runtime's sandbox:
// compiler with close-on-context-done, the same memory cap, WASI without
// files, environment or network, the caller's config, host functions
// served by FakeServices, and the module rewritten with yield points (whose
// import does nothing here). wazero is only ever given rewritten modules:
// the rewrite bounds every count by the module's size first, where
// wazero's decoder would allocate what a crafted count asks for.

// prober holds the probe's compiled module and its current instance.
type prober struct {
	cache  wazero.CompilationCache
	cp     *extism.CompiledPlugin
	inst   *extism.Plugin
	config map[string]string
	limits plugin.Limits
}

func newProber(ctx context.Context, wasm []byte, limits plugin.Limits, config map[string]string, cacheDir string) (*prober, error) {
	pr := &prober{config: config, limits: limits}
	if cacheDir == "" {
		pr.cache = wazero.NewCompilationCache()
	} else {
		c, err := wazero.NewCompilationCacheWithDir(cacheDir)
		if err != nil {
			return nil, fmt.Errorf("compilation cache in %s: %w", cacheDir, err)
		}
		pr.cache = c
	}
	// Compiled as the host compiles it, with stand-ins for the host
	// functions.
	cp, err := plugin.Sandbox{MaxMemoryBytes: limits.MaxMemoryBytes, Cache: pr.cache,
		HostFunctions: probeHostFunctions()}.Compile(ctx, wasm)
	if err != nil {
		_ = pr.cache.Close(ctx)
		return nil, err
	}
	pr.cp = cp
	return pr, nil
}

func (pr *prober) close(ctx context.Context) {
	pr.drop()
	_ = pr.cp.Close(ctx)
	_ = pr.cache.Close(ctx)
}

func (pr *prober) drop() {
	if pr.inst != nil {
		_ = pr.inst.Close(context.Background())
		pr.inst = nil
	}
}

// outcome is how one probe call ended.
type outcome int

const (
	succeeded outcome = iota // returned 0 without an error
	errored                  // returned non-zero or set an error
	trapped                  // trapped or exited
	hung                     // still running at the call timeout
)

// call runs export on the current instance (made if needed) with raw input.
// After a trap or a timeout the instance is dropped. A call stopped at the
// timeout that used less than half of it in CPU was starved by a busy
// machine, not hung: it runs once more with five times the wall time, the
// stretch the runtime itself grants such a call.
func (pr *prober) call(ctx context.Context, export string, input []byte) (outcome, []byte, error) {
	o, out, cpu, err := pr.callWithin(ctx, export, input, pr.limits.CallTimeout)
	if o == hung && cpu >= 0 && cpu < pr.limits.CallTimeout/2 {
		o, out, _, err = pr.callWithin(ctx, export, input, 5*pr.limits.CallTimeout)
	}
	return o, out, err
}

// callWithin is call with a wall-clock limit; it also reports the CPU time
// the call's thread used (-1 where that is not known).
func (pr *prober) callWithin(ctx context.Context, export string, input []byte, limit time.Duration) (outcome, []byte, time.Duration, error) {
	if pr.inst == nil {
		mc := wazero.NewModuleConfig().
			WithSysWalltime().
			WithSysNanotime().
			WithRandSource(rand.Reader).
			WithStdout(io.Discard).
			WithStderr(io.Discard)
		inst, err := pr.cp.Instance(ctx, extism.PluginInstanceConfig{ModuleConfig: mc})
		if err != nil {
			return errored, nil, -1, fmt.Errorf("instantiate: %w", err)
		}
		inst.Config = pr.config
		inst.AllowedHosts = nil
		inst.AllowedPaths = nil
		pr.inst = inst
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// The call keeps its OS thread, whose CPU clock then counts it alone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	rc, out, err := pr.inst.CallWithContext(cctx, export, input)
	cpu := time.Duration(-1)
	if cpu0 >= 0 {
		cpu = threadCPU() - cpu0
	}
	switch {
	case cctx.Err() != nil && (err != nil || rc != 0):
		pr.drop()
		if ctx.Err() != nil {
			return errored, nil, cpu, ctx.Err()
		}
		return hung, nil, cpu, fmt.Errorf("still running after %s", limit)
	case err == nil && rc == 0:
		return succeeded, out, cpu, nil
	case err != nil && probeTrap(err):
		pr.drop()
		return trapped, nil, cpu, err
	case err == nil:
		return errored, nil, cpu, fmt.Errorf("returned status %d", rc)
	}
	return errored, nil, cpu, err
}

// probeTrap tells a trap or exit from an error the plugin set itself.
func probeTrap(err error) bool {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "wasm stack trace") || strings.HasPrefix(msg, "wasm error") ||
		strings.HasPrefix(msg, "module closed") || msg == "module is closed"
}

// probeHostFunctions serve the MDSA host functions with FakeServices.
func probeHostFunctions() []extism.HostFunction {
	fake := FakeServices{}
	def := func(name string, serve func(ctx context.Context, in []byte) any) extism.HostFunction {
		f := extism.NewHostFunctionWithStack(name, func(ctx context.Context, cp *extism.CurrentPlugin, stack []uint64) {
			var reply any
			in, err := cp.ReadBytes(stack[0])
			if err != nil {
				reply = abi.HostError{Error: abi.ErrorBody{Code: abi.ErrBadRequest, Message: name + ": " + err.Error()}}
			} else {
				reply = serve(ctx, in)
			}
			out, _ := json.Marshal(reply)
			off, err := cp.WriteBytes(out)
			if err != nil {
				panic(fmt.Sprintf("%s: cannot write the reply into plugin memory: %v", name, err))
			}
			stack[0] = off
		}, []extism.ValueType{extism.ValueTypePTR}, []extism.ValueType{extism.ValueTypePTR})
		f.SetNamespace(abi.HostModule)
		return f
	}
	refuse := func(err error) any {
		return abi.HostError{Error: abi.ErrorBody{Code: abi.ErrBadRequest, Message: err.Error()}}
	}
	return append([]extism.HostFunction{},
		def(abi.HostGenerate, func(ctx context.Context, in []byte) any {
			req, err := abi.DecodeGenerateRequest(in)
			if err != nil {
				return refuse(err)
			}
			resp, _ := fake.Generate(ctx, plugin.Call{}, req)
			return resp
		}),
		def(abi.HostEmbed, func(ctx context.Context, in []byte) any {
			req, err := abi.DecodeEmbedRequest(in)
			if err != nil {
				return refuse(err)
			}
			resp, _ := fake.Embed(ctx, plugin.Call{}, req)
			return resp
		}),
		def(abi.HostCountTokens, func(ctx context.Context, in []byte) any {
			req, err := abi.DecodeCountTokensRequest(in)
			if err != nil {
				return refuse(err)
			}
			resp, _ := fake.CountTokens(ctx, plugin.Call{}, req)
			return resp
		}),
	)
}

// probe returns the Check's probe, made on first use (the tools and sandbox
// checks share it; Check closes it).
func (c *checker) probe() (*prober, error) {
	if c.pr == nil && c.prErr == nil {
		c.pr, c.prErr = newProber(c.ctx, c.wasm, c.opts.Limits, c.opts.Config, c.opts.CacheDir)
	}
	return c.pr, c.prErr
}

// malformedInputs are fed to every export: a JSON object cut short, text
// that is not JSON, and a bare opening bracket.
func malformedInputs() []string {
	return []string{`{"query": "unterminated`, `not json at all`, `[`}
}

// probeMalformed feeds malformed JSON to each export on the probe's own
// instance. An export must fail (an error or a trap), not succeed and not
// hang; after a clean error the same instance must still serve a valid
// request.
func (c *checker) probeMalformed() []string {
	exports := []string{abi.ExportPrompt, abi.ExportValidate}
	if c.p.HasHandle() {
		exports = append(exports, abi.ExportHandle)
	}
	pr, err := c.probe()
	if err != nil {
		return []string{fmt.Sprintf("malformed-input probe: %v", err)}
	}

	valid := map[string][]byte{}
	valid[abi.ExportPrompt], _ = json.Marshal(c.samples[0].req)
	valid[abi.ExportHandle] = valid[abi.ExportPrompt]
	valid[abi.ExportValidate], _ = json.Marshal(c.validateSamples()[0].req)

	var probs []string
	for _, export := range exports {
		if cause := c.dead[export]; cause != nil {
			probs = append(probs, fmt.Sprintf("%s not probed with malformed input: it timed out earlier (%v)", export, cause))
			continue
		}
	inputs:
		for _, in := range malformedInputs() {
			start := time.Now()
			out, _, err := pr.call(c.ctx, export, []byte(in))
			switch out {
			case succeeded:
				probs = append(probs, fmt.Sprintf("%s returned success for malformed input %q; it must fail with an error", export, in))
				break inputs // one such finding per export is enough
			case hung:
				probs = append(probs, fmt.Sprintf("%s hung on malformed input %q: %v", export, in, err))
				break inputs
			case errored:
				if c.ctx.Err() != nil {
					return append(probs, fmt.Sprintf("%s: %v", export, c.ctx.Err()))
				}
				if strings.HasPrefix(errString(err), "instantiate:") {
					probs = append(probs, fmt.Sprintf("malformed-input probe: %v", err))
					return probs
				}
				// The instance reported a clean error: it must still work.
				o2, res, err2 := pr.call(c.ctx, export, valid[export])
				if o2 != succeeded {
					probs = append(probs, fmt.Sprintf("%s failed cleanly on malformed input %q, but the same instance then failed a valid request: %v", export, in, err2))
					pr.drop()
					continue
				}
				if err := decodeOutput(export, res); err != nil {
					probs = append(probs, fmt.Sprintf("%s failed cleanly on malformed input %q, but the same instance then answered a valid request with invalid output: %v", export, in, err))
				}
			case trapped:
				// A trap is a clean failure: the host discards the instance.
			}
			if d := time.Since(start); d > c.opts.SlowCall+c.opts.Limits.CallTimeout {
				probs = append(probs, fmt.Sprintf("%s took %s to reject malformed input %q", export, round(d), in))
			}
		}
	}
	return probs
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// decodeOutput decodes an export's output with the host's strict decoders.
func decodeOutput(export string, out []byte) error {
	var err error
	switch export {
	case abi.ExportPrompt:
		_, err = abi.DecodePromptResponse(out)
	case abi.ExportValidate:
		_, err = abi.DecodeValidation(out)
	case abi.ExportHandle:
		_, err = abi.DecodeHandleResponse(out)
	}
	return err
}
