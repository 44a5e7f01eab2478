package router

import (
	"context"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
)

func hostileDomain(name string, rnd *rand.Rand) Domain {
	word := func() string {
		b := make([]byte, 3+rnd.IntN(8))
		for i := range b {
			b[i] = byte('a' + rnd.IntN(26))
		}
		return string(b)
	}
	d := Domain{Name: name}
	for range 1024 {
		d.Keywords = append(d.Keywords, word()+" "+word())
	}
	for range 880 {
		var sb strings.Builder
		for sb.Len() < 900 {
			sb.WriteString(word())
			sb.WriteByte(' ')
		}
		d.Examples = append(d.Examples, sb.String())
	}
	return d
}

// One manifest within the ABI's caps but built to be expensive (1,024
// keywords, 880 examples of 900 bytes of distinct words) trains within the
// budget: the rest of its text is left out and said so. Without the budget
// it took 11 s and 588 MB here; with it 0.09 s and 28 MB. Memory is what is
// asserted (allocation does not depend on the machine's load).
func TestTrainingBudget(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	ds := []Domain{
		{Name: "a", Keywords: []string{"loan", "interest"}, Examples: []string{"what is my loan rate", "how is interest computed"}},
		{Name: "b", Keywords: []string{"fever", "cough"}, Examples: []string{"i have a fever", "my cough is bad"}},
		hostileDomain("h", rnd),
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	h, err := New(context.Background(), ds, Options{Background: DefaultBackground()})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	runtime.ReadMemStats(&m1)
	alloc := (m1.TotalAlloc - m0.TotalAlloc) >> 20
	info := h.Info()
	t.Logf("trained in %v, %d MB allocated, %d features, left out %v", took, alloc, info.Features, info.LeftOut)
	if info.LeftOut["h"] == 0 || info.LeftOut["a"] != 0 || info.LeftOut["b"] != 0 {
		t.Fatalf("left out: %v", info.LeftOut)
	}
	if alloc > 150 {
		t.Fatalf("training one expensive manifest allocated %d MB", alloc)
	}
	// The small domains still route.
	if d := h.Route(context.Background(), "what is the interest on my loan"); d.Domain != "a" {
		t.Fatalf("routed to %q", d.Domain)
	}
}
