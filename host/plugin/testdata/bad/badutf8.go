//go:build wasip1

package main

import "github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"

// badutf8 returns JSON containing invalid UTF-8 (a lone Latin-1 byte) from
// prompt.
func init() {
	behaviours["badutf8"] = behaviour{prompt: func() int32 {
		kernel.Output([]byte("{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}"))
		return 0
	}}
}
