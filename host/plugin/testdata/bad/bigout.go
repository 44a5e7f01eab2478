//go:build wasip1

package main

import (
	"strings"

	"github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"
)

// bigout returns a valid but oversized (3 MiB) prompt response.
func init() {
	behaviours["bigout"] = behaviour{prompt: func() int32 {
		kernel.Output([]byte(`{"messages":[{"role":"user","content":"` + strings.Repeat("a", 3<<20) + `"}]}`))
		return 0
	}}
}
