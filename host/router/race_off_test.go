//go:build !race

package router

// raceEnabled reports whether the race detector is on: it makes sync.Pool
// drop items at random, so allocation counts do not hold under it.
const raceEnabled = false
