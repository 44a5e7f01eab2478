// Package bytesize writes byte counts for people: the one formatter of
// MDSA's messages, tables and logs.
package bytesize

import (
	"fmt"
	"math"
)

// Format writes n in binary units with one decimal: "512 B", "1.5 GiB".
func Format(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		f /= unit
		if math.Abs(f) < unit || u == "PiB" {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%d B", n) // not reached
}
