//go:build wasip1

package main

import "github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"

// nocap calls mdsa_generate without declaring the "generate" capability,
// ignores the refusal and claims success.
func init() {
	behaviours["nocap"] = behaviour{caps: `["count_tokens"]`, prompt: func() int32 {
		_ = kernel.Generate([]byte(`{"prompt":"let me in"}`))
		return kernel.OK("prompt")
	}}
}
