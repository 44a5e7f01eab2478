// Package plugin runs MDSA domain plugins: WebAssembly modules that speak the
// Extism ABI and the MDSA plugin contract (sdk/go/abi, ABI v1).
//
// A Runtime compiles each distinct module once (keyed by the sha256 of its
// bytes, with an optional on-disk wazero compilation cache) and hands out
// Plugins. A Plugin owns a bounded pool of instances; each export call
// (Prompt, Validate, Handle) takes one instance from the pool, runs it with a
// per-call timeout, decodes and checks its output with the abi package, and
// puts the instance back only if nothing went wrong. An instance that trapped,
// timed out, failed or produced bad output is closed and never reused, so one
// misbehaving request cannot poison the next.
//
// Sandbox defaults (see Options and Limits): no file system, no network (the
// Extism http_request function is denied), no environment, no configuration
// unless the caller passes some with WithConfig, a real clock and
// crypto/rand randomness, a memory cap, a per-call timeout enforced with
// wazero's close-on-context-done (a context deadline alone does not stop a
// spinning guest), input and output size caps, and per-call caps on host
// calls and generated tokens.
//
// Plugins reach the host's inference through three host functions in the
// extism:host/user namespace (mdsa_generate, mdsa_embed, mdsa_count_tokens).
// Each checks the calling plugin's declared capabilities and the per-call
// caps, then calls the Services the Runtime was built with. A refusal is
// returned to the plugin as {"error":{"code","message"}}; calling a function
// without its capability, or more often than the host-call cap allows, also
// fails the export call itself.
package plugin
