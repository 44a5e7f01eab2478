// Package sdk writes MDSA domain plugins in standard Go (GOOS=wasip1
// GOARCH=wasm, -buildmode=c-shared), speaking plugin ABI v1 (sdk/ABI.md)
// directly on the Extism kernel ABI; no Extism PDK is needed.
//
// A plugin is declared, not programmed:
//
//	package main
//
//	import (
//		sdk "github.com/mdsa-go/mdsa/sdk/go"
//		"github.com/mdsa-go/mdsa/sdk/go/abi"
//	)
//
//	func init() {
//		sdk.Register(sdk.Plugin{
//			Manifest: abi.Manifest{Name: "cooking", Version: "1.0.0", ...},
//			System:   "You are a friendly cook.",
//			Template: "{{query}}\n\nDiet: {{context.diet|none}}",
//			Validators: []sdk.Validator{sdk.MinLength(1), sdk.MaxLength(2000), sdk.NoToxicity()},
//		})
//	}
//
//	func main() {}
//
// Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags=-s -o cooking.wasm .
//
// In that mode the Go runtime and init functions run at _initialize (Extism
// calls it before the first export); main never runs but must exist.
//
// The package exports describe, prompt and validate; importing
// github.com/mdsa-go/mdsa/sdk/go/handle adds handle. Each export decodes its
// JSON input, runs the plugin's custom function or the default, and writes
// JSON output; errors and recovered panics go to the host through Extism's
// error_set with the export's name and the reason.
//
// Everything except the thin wasm layer (wasm.go, build tag wasip1) builds
// natively, so plugins and the SDK are unit-tested with plain go test:
// Registered().Invoke runs an export on JSON input exactly as the wasm
// export does, and NewHost gives custom functions a fake host.
//
// Host calls (Generate, Embed, CountTokens, or the same methods on Env) are
// synchronous; a refusal by the host is a *HostError carrying the host's
// code (abi.ErrBudget, abi.ErrCapability, ...).
package sdk
