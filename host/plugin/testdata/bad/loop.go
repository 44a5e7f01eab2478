//go:build wasip1

package main

var counter uint64

// loop spins forever in prompt.
func init() {
	behaviours["loop"] = behaviour{prompt: func() int32 {
		for {
			counter++
		}
	}}
}
