// Package models is the host's model registry: GGUF metadata and memory
// estimates, and a registry that keeps models loaded under a memory budget
// and hands them out as reference-counted leases. Writing GGUF files is in
// the gguf sub-package; downloading them in download.
//
// # Metadata and memory
//
// ReadMetadata reads a GGUF header (with github.com/gpustack/gguf-parser-go)
// into Metadata: architecture, parameter count, quantization, context
// length, layer and head counts, vocabulary, tensor bytes. Corrupt or
// truncated files give errors wrapping ErrCorrupt, architectures outside
// SupportedArchitectures errors wrapping ErrUnsupportedArchitecture; both
// name the file. Estimate turns Metadata and the run settings (context,
// parallel sequences, KV cache type) into the bytes llama.cpp will use:
// weights, the CPU back-end's repacked weight copy, KV cache, compute
// buffers and a small overhead; its documentation gives the formula and how
// it was checked against llama.cpp (BenchmarkEstimateVsRSS: within 3% of
// the resident memory a loaded model adds). gguf-parser-go has an estimator
// of its own, but it leaves out the repacked weights and counts llama.cpp's
// whole logits reservation, which the engine never touches: at context 2048
// it says 108 MiB for a 100M-parameter Q4_0 model that adds 214 MiB, and
// 631 MiB for a Qwen2.5-0.5B-shaped model that adds 375 MiB. So it is not
// used.
//
// # Registry
//
// A Registry knows models by name (Register) and loads them on demand with
// an injectable LoadFunc: the registry knows no engine and no config file
// (the host's LoadFunc opens llama.cpp; tests use fakes; see the example).
// Get returns a *Lease;
// Release gives it back. The design:
//
//   - Every model is in one state: unloaded, loading, ready or unloading.
//     State changes happen under the registry's mutex; loading (the
//     LoadFunc), unloading (Engine.Close) and estimating (reading the GGUF
//     header) never run with the mutex held, so a slow load blocks nobody
//     but the callers waiting for that model.
//   - Single flight: the first Get of an unloaded model starts one load in
//     its own goroutine; every Get of that model meanwhile waits for the same
//     load, each honouring its own context. On success each waiter already
//     holds a reference (so the new model cannot be evicted before they see
//     it); a failure is reported to all of them and the next Get tries again.
//     Loads are never cancelled by a caller's context, since they are shared.
//   - Memory is counted by estimate from before a load starts until its
//     unload has finished, so the sum over loading, loaded and unloading
//     models (Stats.ResidentBytes) never exceeds Options.Budget, and the
//     number of such models never exceeds Options.MaxLoaded.
//   - To make room, Get unloads the least recently used model (by last Get
//     or Release) that is neither leased nor pinned, repeatedly. When every
//     loaded model is leased or pinned, it waits for a Release, an unload or
//     an Unpin (honouring ctx), never exceeding the budget. It fails at once
//     with ErrOverBudget when waiting cannot help: the model is larger than
//     the budget, or than what the pinned models leave.
//   - A leased model is never evicted or unloaded, not even by Close or
//     Unload; pinned models (Pin) are never evicted or unloaded for
//     idleness.
//   - Keep-alive: with Options.KeepAlive a background janitor (Sweep)
//     unloads models nobody has leased for that long; Close stops it.
//   - A LoadFunc that fails with an error wrapping ErrOutOfMemory makes the
//     registry evict unused models worth at least the model's estimate and
//     retry the load once.
//   - Pick chooses a model for a plugin's tier and preference list.
//
// A caller that holds a lease while asking for another model under a budget
// that fits only one can wait forever (bounded by its ctx): release leases
// before acquiring others, or size the budget for the models used together.
package models
