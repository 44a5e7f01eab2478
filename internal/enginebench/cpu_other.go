//go:build !unix

package enginebench

import (
	"errors"
	"time"
)

// selfCPU is not available on this system.
func selfCPU() (time.Duration, error) {
	return 0, errors.New("enginebench: process CPU time is not available on this system")
}
