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
	f, i := float64(n)/unit, 0
	for ; math.Abs(f) >= unit && i < 4; i++ {
		f /= unit
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}
