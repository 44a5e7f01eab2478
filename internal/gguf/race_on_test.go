//go:build race

package gguf

// raceEnabled reports whether the race detector is on; slow end-to-end
// tests skip under it.
const raceEnabled = true
