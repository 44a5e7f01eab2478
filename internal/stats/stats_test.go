package stats

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted input
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p50, p99, p100 := Percentile(d, 0.5), Percentile(d, 0.99), Percentile(d, 1); p50 != 50*time.Millisecond ||
		p99 != 99*time.Millisecond || p100 != 100*time.Millisecond {
		t.Fatalf("p50 %v p99 %v p100 %v", p50, p99, p100)
	}
	if d[0] != 100*time.Millisecond {
		t.Fatal("Percentile sorted its input")
	}
	if p := Percentile(d[:1], 0.99); p != 100*time.Millisecond {
		t.Fatalf("one sample: %v", p)
	}
	if p := Percentile(nil, 0.5); p != 0 {
		t.Fatalf("no samples: %v", p)
	}
	if p := Percentile([]time.Duration{3, 1, 2}, 0); p != 1 {
		t.Fatalf("p0: %v", p)
	}
}
