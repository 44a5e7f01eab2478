package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero/api"

	"github.com/mdsa-go/mdsa/internal/instrument"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Services serve the host functions plugins call. Implementations must be
// safe for concurrent use. ctx is the context of the export call (the
// caller's, carrying its values and deadline); it is not subject to the
// plugin's CallTimeout. Return a *CodedError to choose the error code the
// plugin sees; any other error is reported as abi.ErrEngine.
type Services interface {
	Generate(ctx context.Context, call Call, req abi.GenerateRequest) (abi.GenerateResponse, error)
	Embed(ctx context.Context, call Call, req abi.EmbedRequest) (abi.EmbedResponse, error)
	CountTokens(ctx context.Context, call Call, req abi.CountTokensRequest) (abi.CountTokensResponse, error)
}

// Retriever is implemented by Services that serve mdsa_retrieve (ABI 1.1):
// a search of the calling tenant's knowledge bases. req.KB is already
// resolved (the manifest's knowledge base when the plugin left it empty)
// and TopK set. Services without it refuse the call as unavailable.
type Retriever interface {
	Retrieve(ctx context.Context, call Call, req abi.RetrieveRequest) (abi.RetrieveResponse, error)
}

// Call tells Services who is calling: which plugin, in which export call of
// which request. It is only valid during the Services call.
type Call struct {
	Plugin     string        // manifest name
	Version    string        // manifest version
	Hash       string        // sha256 of the module
	Manifest   *abi.Manifest // the plugin's checked manifest; do not modify
	Export     string        // the export being run: prompt, validate or handle
	RequestID  string        // from RequestInfo
	Tenant     string        // from RequestInfo
	HostCall   int           // 1-based index of this host call within the export call
	TokensLeft int           // generation tokens left for this export call (Generate's max_tokens is already clamped to it)
	// WorkLeft is the tokens of host work this export call may still
	// spend (Limits.MaxWorkTokens less what its host calls spent): a
	// Services implementation refuses, with a *CodedError of code
	// abi.ErrBudget and before running the engine, a Generate whose prompt
	// or an Embed whose inputs have more tokens than that.
	WorkLeft int
}

// RequestInfo identifies the request an export call serves. Attach it to the
// context given to Prompt, Validate or Handle with WithRequestInfo; the host
// functions pass it on to Services in Call.
type RequestInfo struct {
	ID     string // request id, for logs and tracing
	Tenant string // tenant id, for model allow-lists and quotas
	// MaxTokens lowers Limits.MaxTokens for this request's export calls
	// (0: no change). It can never raise it.
	MaxTokens int
}

type requestInfoKey struct{}

// WithRequestInfo returns a context that carries info.
func WithRequestInfo(ctx context.Context, info RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, info)
}

// RequestInfoFrom returns the RequestInfo ctx carries, or the zero value.
func RequestInfoFrom(ctx context.Context) RequestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(RequestInfo)
	return info
}

// capSet is a bit set of declared capabilities.
type capSet uint8

func capBit(c string) capSet {
	switch c {
	case abi.CapGenerate:
		return 1
	case abi.CapEmbed:
		return 2
	case abi.CapCountTokens:
		return 4
	case abi.CapRetrieve:
		return 8
	}
	return 0
}

type callStateKey struct{}

// callState is the host's view of one export call in progress. Host
// functions find it in their context (go-sdk passes the context given to
// CallWithContext down to host functions). It is used only by the goroutine
// running the call, so it needs no lock.
type callState struct {
	p       *Plugin
	export  string
	svcCtx  context.Context // for Services: the caller's context, also ended by a forced Close
	callCtx context.Context // the guest's context: also ends when CallTimeout runs out
	info    RequestInfo
	clock   guestClock

	hostCalls  int
	tokensLeft int
	workLeft   int           // tokens of host work left (Limits.MaxWorkTokens)
	hostLeft   time.Duration // host-function time left (Limits.MaxHostTime)

	refused       int
	firstRefusal  string
	violation     error // a contract breach that fails the export call
	violationKind error
	// stackExhausted is set when the call trapped at the stack bound.
	stackExhausted error
	// throttle paces the call's guest code once it has run long.
	throttle *throttle
}

func (st *callState) refuse(code, msg string) abi.HostError {
	st.refused++
	st.p.hostRefused.Add(1)
	if st.firstRefusal == "" {
		st.firstRefusal = code + ": " + msg
	}
	return abi.HostError{Error: abi.ErrorBody{Code: code, Message: msg}}
}

func (st *callState) breach(kind error, code, msg string) abi.HostError {
	if st.violation == nil {
		st.violation, st.violationKind = errors.New(msg), kind
	}
	return st.refuse(code, msg)
}

// hostHandler serves one host function once the common checks have passed;
// in is the plugin's JSON input. It returns the reply to encode.
type hostHandler func(st *callState, call Call, in []byte) any

func (r *Runtime) hostFunctions() []extism.HostFunction {
	def := func(name, capability string, h hostHandler) extism.HostFunction {
		bit := capBit(capability)
		f := extism.NewHostFunctionWithStack(name, func(ctx context.Context, cp *extism.CurrentPlugin, stack []uint64) {
			stack[0] = r.serveHost(ctx, cp, name, capability, bit, stack[0], h)
		}, []extism.ValueType{extism.ValueTypePTR}, []extism.ValueType{extism.ValueTypePTR})
		f.SetNamespace(abi.HostModule)
		return f
	}
	// The function every module is instrumented to call now and then
	// (package instrument): the throttle's chance to pause the guest.
	yield := extism.NewHostFunctionWithStack(instrument.ImportName, func(ctx context.Context, _ *extism.CurrentPlugin, _ []uint64) {
		if st, ok := ctx.Value(callStateKey{}).(*callState); ok {
			st.throttle.yield(ctx) // none outside an export call (start code)
		}
	}, nil, nil)
	yield.SetNamespace(instrument.ImportModule)
	// The function the guest calls when its call stack would pass
	// Options.MaxStackBytes: the call traps.
	stack := extism.NewHostFunctionWithStack(instrument.StackImportName, func(ctx context.Context, _ *extism.CurrentPlugin, _ []uint64) {
		err := fmt.Errorf("call stack exhausted: its frames passed %d KiB (plugins.stack_kb)", r.stackBytes>>10)
		if st, ok := ctx.Value(callStateKey{}).(*callState); ok {
			st.stackExhausted = err
		}
		panic(err)
	}, nil, nil)
	stack.SetNamespace(instrument.ImportModule)
	return append([]extism.HostFunction{
		yield,
		stack,
		def(abi.HostGenerate, abi.CapGenerate, r.hostGenerate),
		def(abi.HostEmbed, abi.CapEmbed, r.hostEmbed),
		def(abi.HostCountTokens, abi.CapCountTokens, r.hostCountTokens),
		def(abi.HostRetrieve, abi.CapRetrieve, r.hostRetrieve),
	}, kernelGuards(true)...)
}

// maxErrorMessage bounds the error message a plugin may set (error_set):
// go-sdk copies it whole, and the host only shows its first few hundred
// bytes.
const maxErrorMessage = 64 << 10

// kernelGuards serve output_set and error_set under instrument.GuardModule,
// with the size checks of an export call when checked.
func kernelGuards(checked bool) []extism.HostFunction {
	outputSize := func(st *callState, _ api.Module, ctx context.Context, stack []uint64) error {
		if n, max := stack[1], uint64(st.p.limits.MaxOutputBytes); n > max {
			return fmt.Errorf("%d bytes, limit %d (refused at output_set, before any copy)", n, max)
		}
		return nil
	}
	errorSize := func(st *callState, kernel api.Module, ctx context.Context, stack []uint64) error {
		if stack[0] == 0 {
			return nil // clears the error
		}
		n, err := kernel.ExportedFunction("length").Call(ctx, stack[0])
		if err != nil {
			return fmt.Errorf("error_set: %w", err)
		}
		if n[0] > maxErrorMessage {
			return fmt.Errorf("error message of %d bytes, limit %d (refused at error_set, before any copy)", n[0], maxErrorMessage)
		}
		return nil
	}
	if !checked {
		outputSize, errorSize = nil, nil
	}
	i64 := extism.ValueTypeI64
	outputSet := extism.NewHostFunctionWithStack("output_set", func(ctx context.Context, _ *extism.CurrentPlugin, stack []uint64) {
		guardKernel(ctx, "output_set", stack, outputSize)
	}, []extism.ValueType{i64, i64}, nil)
	errorSet := extism.NewHostFunctionWithStack("error_set", func(ctx context.Context, _ *extism.CurrentPlugin, stack []uint64) {
		guardKernel(ctx, "error_set", stack, errorSize)
	}, []extism.ValueType{i64}, nil)
	outputSet.SetNamespace(instrument.GuardModule)
	errorSet.SetNamespace(instrument.GuardModule)
	return []extism.HostFunction{outputSet, errorSet}
}

// guardKernel serves an Extism kernel function that instrument moved to
// GuardModule (the output and the error message of a call): check, run
// inside an export call, may refuse it, which fails the export call with
// ErrOutputTooLarge and leaves nothing to copy; otherwise the call goes on
// to the kernel as go-sdk's own env module would send it.
func guardKernel(ctx context.Context, name string, stack []uint64, check func(*callState, api.Module, context.Context, []uint64) error) {
	kernel, ok := ctx.Value(extism.PluginCtxKey("extism")).(api.Module)
	if !ok {
		panic(fmt.Errorf("%s: no Extism kernel in the call's context", name))
	}
	if st, ok := ctx.Value(callStateKey{}).(*callState); ok && check != nil {
		if err := check(st, kernel, ctx, stack); err != nil {
			if st.violation == nil {
				st.violation, st.violationKind = err, ErrOutputTooLarge
			}
			return
		}
	}
	if err := kernel.ExportedFunction(name).CallWithStack(ctx, stack); err != nil {
		panic(fmt.Errorf("%s: %w", name, err))
	}
}

// serveHost runs the checks common to every host function (caller known,
// capability declared, host-call cap, input size), reads the input, calls h
// and writes its reply into the plugin's memory. It returns the reply's
// offset. It panics (trapping the instance) only when the reply cannot be
// written, i.e. the plugin's memory is exhausted or corrupt.
func (r *Runtime) serveHost(ctx context.Context, cp *extism.CurrentPlugin, name, capability string, bit capSet, inOff uint64, h hostHandler) uint64 {
	st, _ := ctx.Value(callStateKey{}).(*callState)
	var reply any
	switch {
	case st == nil:
		reply = abi.HostError{Error: abi.ErrorBody{Code: abi.ErrUnavailable, Message: name + ": no export call in progress"}}
	case st.export == abi.ExportDescribe:
		reply = st.breach(ErrCapability, abi.ErrCapability, name+": host functions cannot be called from describe")
	default:
		st.hostCalls++
		st.p.hostCalls.Add(1)
		p := st.p
		switch {
		case p.caps&bit == 0:
			reply = st.breach(ErrCapability, abi.ErrCapability,
				fmt.Sprintf("%s needs capability %q, which plugin %q did not declare", name, capability, p.name))
		case st.hostCalls > p.limits.MaxHostCalls:
			reply = st.breach(ErrHostCallLimit, abi.ErrBudget,
				fmt.Sprintf("%s: more than %d host calls in one %s call", name, p.limits.MaxHostCalls, st.export))
		case st.workLeft <= 0 && capability != abi.CapCountTokens:
			reply = st.refuse(abi.ErrBudget,
				fmt.Sprintf("%s: this %s call has spent its %d tokens of host work (plugins.max_work_tokens)", name, st.export, p.limits.MaxWorkTokens))
		default:
			in, msg := readInput(ctx, cp, inOff, p.limits.MaxInputBytes)
			if msg != "" {
				reply = st.refuse(abi.ErrBadRequest, name+": "+msg)
				break
			}
			call := Call{
				Plugin:     p.name,
				Version:    p.manifest.Version,
				Hash:       p.hash,
				Manifest:   &p.manifest,
				Export:     st.export,
				RequestID:  st.info.ID,
				Tenant:     st.info.Tenant,
				HostCall:   st.hostCalls,
				TokensLeft: st.tokensLeft,
				WorkLeft:   st.workLeft,
			}
			reply = h(st, call, in)
		}
	}
	out, err := json.Marshal(reply)
	if err != nil {
		out, _ = json.Marshal(abi.HostError{Error: abi.ErrorBody{Code: abi.ErrEngine, Message: name + ": cannot encode reply: " + err.Error()}})
	}
	off, err := cp.AllocWithContext(ctx, uint64(len(out)))
	if err != nil || off == 0 || off > math.MaxUint32 {
		panic(fmt.Sprintf("%s: cannot allocate %d bytes for the reply in plugin memory", name, len(out)))
	}
	if !cp.Memory().Write(uint32(off), out) {
		panic(fmt.Sprintf("%s: cannot write the reply into plugin memory", name))
	}
	return off
}

// readInput reads the Extism memory block at off. The returned slice is a
// view of plugin memory, valid until the plugin runs again.
func readInput(ctx context.Context, cp *extism.CurrentPlugin, off uint64, max int) ([]byte, string) {
	if off == 0 || off > math.MaxUint32 {
		return nil, fmt.Sprintf("invalid input offset %d", off)
	}
	n, err := cp.LengthWithContext(ctx, off)
	if err != nil || n == 0 {
		return nil, fmt.Sprintf("invalid input offset %d (no memory block there)", off)
	}
	if n > uint64(max) {
		return nil, fmt.Sprintf("input is %d bytes, limit %d", n, max)
	}
	b, ok := cp.Memory().Read(uint32(off), uint32(n))
	if !ok {
		return nil, fmt.Sprintf("input block %d+%d is outside memory", off, n)
	}
	return b, ""
}

// callService runs fn with the plugin's clock paused, turning a panic or an
// error into a refusal.
func callService[T any](r *Runtime, st *callState, name string, fn func(ctx context.Context) (T, error)) (resp T, refusal *abi.HostError) {
	if !st.clock.pause() || st.callCtx.Err() != nil {
		e := st.refuse(abi.ErrUnavailable, name+": the plugin's call has ended")
		return resp, &e
	}
	defer st.clock.resume()
	defer st.throttle.hostCall()()
	if st.hostLeft <= 0 {
		e := st.refuse(abi.ErrBudget, fmt.Sprintf("%s: this %s call has spent its %v of host time (plugins.max_host_time)", name, st.export, st.p.limits.MaxHostTime))
		return resp, &e
	}
	ctx, cancel := context.WithTimeout(st.svcCtx, st.hostLeft)
	defer cancel()
	began := time.Now()
	defer func() { st.hostLeft -= time.Since(began) }()
	var err error
	func() {
		defer func() {
			if v := recover(); v != nil {
				r.log.Error("plugin: service panicked", "host_function", name, "plugin", st.p.name,
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				err = &CodedError{Code: abi.ErrEngine, Err: errors.New("internal error")}
			}
		}()
		resp, err = fn(ctx)
	}()
	if err != nil {
		code := abi.ErrEngine
		var ce *CodedError
		switch {
		case ctx.Err() != nil && st.svcCtx.Err() == nil:
			// The host-time budget ran out, not the caller's context.
			code = abi.ErrBudget
			err = fmt.Errorf("stopped after this %s call's %v of host time (plugins.max_host_time): %w", st.export, st.p.limits.MaxHostTime, err)
		case errors.As(err, &ce) && ce.Code != "":
			code = ce.Code
		}
		msg := err.Error()
		if len(msg) > 1024 {
			msg = msg[:1024]
		}
		e := st.refuse(code, name+": "+msg)
		return resp, &e
	}
	return resp, nil
}

func (r *Runtime) hostGenerate(st *callState, call Call, in []byte) any {
	req, err := abi.DecodeGenerateRequest(in)
	if err != nil {
		return st.refuse(abi.ErrBadRequest, err.Error())
	}
	if st.tokensLeft <= 0 {
		return st.refuse(abi.ErrBudget, fmt.Sprintf("%s: the token budget of this %s call is spent", abi.HostGenerate, st.export))
	}
	if r.services == nil {
		return st.refuse(abi.ErrUnavailable, abi.HostGenerate+": no inference service")
	}
	fillGeneration(&req.Generation, &st.p.manifest.Generation)
	if req.MaxTokens <= 0 || req.MaxTokens > st.tokensLeft {
		req.MaxTokens = st.tokensLeft
	}
	req.MaxTokens = min(req.MaxTokens, st.workLeft)
	resp, refusal := callService(r, st, abi.HostGenerate, func(ctx context.Context) (abi.GenerateResponse, error) {
		return r.services.Generate(ctx, call, req)
	})
	if refusal != nil {
		return *refusal
	}
	st.tokensLeft -= max(resp.TokensOut, 0)
	st.workLeft -= max(resp.TokensIn, 0) + max(resp.TokensOut, 0)
	return resp
}

// fillGeneration sets every unset field of g from the plugin's defaults.
func fillGeneration(g, def *abi.Generation) {
	if g.MaxTokens == 0 {
		g.MaxTokens = def.MaxTokens
	}
	if g.Temperature == nil {
		g.Temperature = def.Temperature
	}
	if g.TopP == nil {
		g.TopP = def.TopP
	}
	if g.TopK == 0 {
		g.TopK = def.TopK
	}
	if g.RepeatPenalty == nil {
		g.RepeatPenalty = def.RepeatPenalty
	}
	if g.Stop == nil {
		g.Stop = def.Stop
	}
	if g.Seed == nil {
		g.Seed = def.Seed
	}
}

func (r *Runtime) hostEmbed(st *callState, call Call, in []byte) any {
	req, err := abi.DecodeEmbedRequest(in)
	if err != nil {
		return st.refuse(abi.ErrBadRequest, err.Error())
	}
	if r.services == nil {
		return st.refuse(abi.ErrUnavailable, abi.HostEmbed+": no embedding service")
	}
	resp, refusal := callService(r, st, abi.HostEmbed, func(ctx context.Context) (abi.EmbedResponse, error) {
		return r.services.Embed(ctx, call, req)
	})
	if refusal != nil {
		return *refusal
	}
	st.workLeft -= max(resp.Tokens, 0)
	return resp
}

func (r *Runtime) hostRetrieve(st *callState, call Call, in []byte) any {
	req, err := abi.DecodeRetrieveRequest(in)
	if err != nil {
		return st.refuse(abi.ErrBadRequest, err.Error())
	}
	rs, ok := r.services.(Retriever)
	if !ok {
		return st.refuse(abi.ErrUnavailable, abi.HostRetrieve+": no knowledge service")
	}
	if req.KB == "" && call.Manifest != nil && call.Manifest.Knowledge != nil {
		req.KB = call.Manifest.Knowledge.KB
	}
	if req.KB == "" {
		return st.refuse(abi.ErrBadRequest, abi.HostRetrieve+": no kb given and the manifest declares no knowledge base")
	}
	if req.TopK == 0 {
		req.TopK = defaultTopK(call.Manifest)
	}
	resp, refusal := callService(r, st, abi.HostRetrieve, func(ctx context.Context) (abi.RetrieveResponse, error) {
		return rs.Retrieve(ctx, call, req)
	})
	if refusal != nil {
		return *refusal
	}
	if resp.Passages == nil {
		resp.Passages = []abi.Passage{}
	}
	return resp
}

// defaultTopK is the passages a retrieval returns when not told: the
// manifest's knowledge.top_k, else 4.
func defaultTopK(m *abi.Manifest) int {
	if m != nil && m.Knowledge != nil && m.Knowledge.TopK > 0 {
		return m.Knowledge.TopK
	}
	return 4
}

func (r *Runtime) hostCountTokens(st *callState, call Call, in []byte) any {
	req, err := abi.DecodeCountTokensRequest(in)
	if err != nil {
		return st.refuse(abi.ErrBadRequest, err.Error())
	}
	if r.services == nil {
		return st.refuse(abi.ErrUnavailable, abi.HostCountTokens+": no tokenizer service")
	}
	resp, refusal := callService(r, st, abi.HostCountTokens, func(ctx context.Context) (abi.CountTokensResponse, error) {
		return r.services.CountTokens(ctx, call, req)
	})
	if refusal != nil {
		return *refusal
	}
	return resp
}
