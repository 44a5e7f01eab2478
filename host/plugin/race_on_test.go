//go:build race

package plugin

// raceOn: under the race detector the compile child (this test binary) is
// built with it too and compiles a Go plugin in a minute or more.
const raceOn = true
