//go:build wasip1

package handle

import sdk "github.com/mdsa-go/mdsa/sdk/go"

//go:wasmexport handle
func exportHandle() int32 { return sdk.ServeHandle() }
