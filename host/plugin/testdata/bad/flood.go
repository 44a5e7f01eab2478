//go:build wasip1

package main

import "github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"

// flood calls mdsa_count_tokens 20 times in one prompt call, more than the
// host's per-call cap, ignores the refusals and claims success.
func init() {
	behaviours["flood"] = behaviour{caps: `["count_tokens"]`, prompt: func() int32 {
		for i := 0; i < 20; i++ {
			_ = kernel.CountTokens([]byte(`{"text":"again"}`))
		}
		return kernel.OK("prompt")
	}}
}
