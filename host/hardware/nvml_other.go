//go:build !linux

package hardware

import "fmt"

// loadNVML is the default NVMLLoader; run-time loading of NVML is
// implemented for Linux only, elsewhere Detect falls back to nvidia-smi.
func loadNVML(path string) (NVMLLibrary, error) {
	return nil, fmt.Errorf("%s: %w (NVML loading is implemented for Linux only)", path, ErrNVMLNotFound)
}
