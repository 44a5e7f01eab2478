//go:build wasip1

package main

import "github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"

var table []int

// trap panics in prompt (index out of range); the Go runtime then aborts
// the module with unreachable.
func init() {
	behaviours["trap"] = behaviour{prompt: func() int32 {
		_ = kernel.Input()
		return int32(table[7])
	}}
}
