//go:build !race

package plugin

const raceOn = false
