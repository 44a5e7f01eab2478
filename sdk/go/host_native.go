//go:build !wasip1

package sdk

import "fmt"

// callWasmHost has no host to call outside the sandbox.
func callWasmHost(function string, _ []byte) ([]byte, error) {
	return nil, fmt.Errorf("%s: %w", function, ErrNoHost)
}

// callWasmRetrieve has no host to call outside the sandbox.
func callWasmRetrieve(function string, b []byte) ([]byte, error) { return callWasmHost(function, b) }

// getCheck returns a new Check: natively, exports may run concurrently.
func getCheck() *Check { return &Check{} }

// putCheck does nothing natively.
func putCheck(*Check) {}
