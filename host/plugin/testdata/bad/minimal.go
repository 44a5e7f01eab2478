//go:build wasip1

package main

import "github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"

// minimal is the one well-behaved mode: prompt reads its input and returns a
// fixed reply. BenchmarkPromptValidate uses it to measure the runtime's own
// per-call cost, without JSON work inside the sandbox.
func init() {
	behaviours["minimal"] = behaviour{prompt: func() int32 {
		_ = kernel.Input()
		return kernel.OK("prompt")
	}}
}
