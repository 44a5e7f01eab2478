// Package conformance is the MDSA plugin conformance kit: it loads a plugin
// module into a plugin.Runtime and checks that it keeps the ABI v1 contract
// (sdk/ABI.md) well enough to be deployed: a useful manifest, well-formed
// prompts and verdicts for awkward inputs, tools that answer any arguments
// with a result or an error result, a clean failure on malformed input,
// deterministic answers, and calls fast enough for the request path.
//
// Check runs every check and returns a Report; it never needs a model. The
// Runtime passed to Check should be built with FakeServices as its
// plugin.Options.Services, so that a plugin's handle export (and any host
// call it makes) gets a fixed generation instead of reaching a real engine:
//
//	rt, err := plugin.NewRuntime(ctx, plugin.Options{CacheDir: dir, Services: conformance.FakeServices{}})
//	...
//	rep := conformance.Check(ctx, rt, "cooking.wasm", wasm, conformance.Options{CacheDir: dir})
//	if !rep.Passed { ... }
//
// The checks, in order (each is one Result, named as below):
//
//   - describe: the module loads within the limits (compiles, instantiates,
//     describe returns a manifest the host accepts: ABI version 1, a valid
//     name, a version, known capabilities) and the manifest is useful to the
//     router: a description, at least 3 keywords and 5 examples, none empty
//     or duplicated, and examples that are not just the keywords again.
//     When this check fails because the module did not load, no other check
//     runs.
//   - prompt: on a plain query, a query with history and context, a query
//     full of Unicode, quotes, newlines and template-like text, an almost
//     empty query, a 16 KB query and Options.Samples, prompt returns
//     messages with valid roles and UTF-8 content, the last one from the
//     user, the query text verbatim in some message, output within
//     Limits.MaxOutputBytes (enforced by the runtime) and each call within
//     Options.SlowCall.
//   - validate: on a normal answer, an empty one, a 64 KB one and one
//     holding an email address, validate returns a verdict with a score in
//     [0, 1], well-formed issues, ok consistent with the issues (false
//     exactly when one has severity error) and a valid revised response.
//   - handle: when the module exports handle, it answers the prompt samples
//     with a well-formed result (host calls served by the Runtime's
//     Services). Passes, with a note, when there is no handle export.
//   - tools: when the manifest declares tools, each one is called with
//     arguments made from its parameters schema: a minimal valid object
//     (the required properties, with const, enum or simple values of
//     their types within their bounds), the empty object and, when
//     properties are required, an object with values of the wrong types
//     in them. Every call must succeed, an error result (is_error) must
//     say why in its content, content must be valid UTF-8 within
//     abi.MaxToolContentLen, each call within Options.SlowCall, and the
//     same call twice must return the same result. On the probe instance
//     the tool export must fail with an error (not succeed, trap or hang)
//     for a tool name the plugin does not declare, and still run a valid
//     call afterwards, and must fail on malformed JSON. Passes, with a
//     note, when there are no tools.
//   - sandbox: malformed JSON input makes each export fail cleanly (an
//     error or a trap, not a success and not a hang), the instance that
//     reported the error still serves a valid call afterwards, the plugin
//     keeps serving through the Runtime, and prompt and validate return the
//     same output for the same input.
//   - latency: the median of Options.LatencyCalls prompt+validate pairs is
//     under Options.MaxCallLatency (default 5 ms).
//
// An export that times out once is not called again: later checks that
// need it fail with the timeout as their reason, so a plugin that spins
// costs one CallTimeout, not one per call.
package conformance
