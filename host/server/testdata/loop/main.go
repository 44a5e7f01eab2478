//go:build wasip1

// Command loop is the misbehaving plugin of the server's noisy-neighbour
// test: it describes itself as domain "loop" and its prompt export spins
// forever, so every request forced to it runs into the host's plugin
// timeout. It is host/plugin/testdata/bad's "loop" mode without the need
// for a "mode" config value: the host gives per-tenant plugin config only
// to plugins that also load without it, which bad does not.
package main

import "github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"

func main() {}

var counter uint64

//go:wasmexport describe
func describe() int32 {
	kernel.Output([]byte(`{"abi":1,"name":"loop","version":"0.1.0","description":"spins forever in prompt",` +
		`"keywords":["loop"],"examples":["make loop misbehave"],"capabilities":[]}`))
	return 0
}

//go:wasmexport prompt
func prompt() int32 {
	for {
		counter++
	}
}

//go:wasmexport validate
func validate() int32 {
	_ = kernel.Input()
	return kernel.OK("validate")
}
