//go:build !wasip1

package sdk

import "fmt"

// callWasmHost has no host to call outside the sandbox.
func callWasmHost(function string, _ []byte) ([]byte, error) {
	return nil, fmt.Errorf("%s: %w", function, ErrNoHost)
}
