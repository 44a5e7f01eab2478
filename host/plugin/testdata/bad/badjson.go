//go:build wasip1

package main

import "github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"

// badjson returns output that is not JSON (cut short) from prompt.
func init() {
	behaviours["badjson"] = behaviour{prompt: func() int32 {
		kernel.Output([]byte(`{"messages":[{"role":"user","content":"unterminated`))
		return 0
	}}
}
