// Package stats holds the small statistics the benchmarks and checks share.
package stats

import (
	"math"
	"slices"
	"time"
)

// Percentile is the nearest-rank p-quantile (0 < p <= 1) of samples, which
// need not be sorted and are left as they are; 0 when there are none.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}
