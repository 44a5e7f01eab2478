//go:build !race

package routerbench

const raceOn = false
