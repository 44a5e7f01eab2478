//go:build !race

package conformance

// latencyBudget is the latency check's budget in these tests: the default.
const latencyBudget = DefaultMaxCallLatency
