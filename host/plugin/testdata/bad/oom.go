//go:build wasip1

package main

var hoard [][]byte

// oom allocates without bound in prompt.
func init() {
	behaviours["oom"] = behaviour{prompt: func() int32 {
		for {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1 // touch every page
			}
			hoard = append(hoard, b)
		}
	}}
}
