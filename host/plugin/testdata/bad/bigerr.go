//go:build wasip1

package main

import (
	"strings"

	"github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"
)

// bigerr fails prompt with a 4 MiB error message.
func init() {
	behaviours["bigerr"] = behaviour{prompt: func() int32 {
		kernel.Error(strings.Repeat("e", 4<<20))
		return 1
	}}
}
