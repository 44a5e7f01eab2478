//go:build wasip1

package main

import "github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"

// abi99 declares ABI version 99, which the host must refuse at load.
func init() {
	behaviours["abi99"] = behaviour{abi: "99", prompt: func() int32 { return kernel.OK("prompt") }}
}
