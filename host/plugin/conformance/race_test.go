//go:build race

package conformance

import "time"

// latencyBudget is the latency check's budget in these tests: the race
// detector slows the host side of every call (go-sdk's per-word memory
// copies) about tenfold, so DefaultMaxCallLatency would be flaky here.
const latencyBudget = 50 * time.Millisecond
