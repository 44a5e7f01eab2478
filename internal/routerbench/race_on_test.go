//go:build race

package routerbench

// raceOn: the race detector slows routing ~10x; quality tests run without it (make test runs them again).
const raceOn = true
