//go:build !linux

package lowprio

// Process does nothing here.
func Process() {}
