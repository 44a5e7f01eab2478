package respcache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

func TestMemoryLRUBudgetTTL(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := NewMemory(3 * size("k0", make([]byte, 100)))
	m.now = func() time.Time { return now }
	for i := range 3 {
		m.Put(ctx, fmt.Sprint("k", i), make([]byte, 100), time.Minute)
	}
	if _, ok, _ := m.Get(ctx, "k0"); !ok { // k0 is now the most recent
		t.Fatal("k0 missing")
	}
	m.Put(ctx, "k3", make([]byte, 100), time.Minute) // evicts k1, the least recent
	if _, ok, _ := m.Get(ctx, "k1"); ok {
		t.Error("k1 kept past the budget")
	}
	for _, k := range []string{"k0", "k2", "k3"} {
		if _, ok, _ := m.Get(ctx, k); !ok {
			t.Errorf("%s evicted", k)
		}
	}
	if st := m.Stats(); st.Bytes > st.Limit || st.Entries != 3 {
		t.Errorf("stats %+v", st)
	}
	now = now.Add(2 * time.Minute)
	if _, ok, _ := m.Get(ctx, "k0"); ok {
		t.Error("an expired entry was served")
	}
	m.Put(ctx, "huge", make([]byte, 1<<20), time.Minute)
	if _, ok, _ := m.Get(ctx, "huge"); ok {
		t.Error("a value over the whole budget was kept")
	}
}

func TestRedisStore(t *testing.T) {
	srv := testutil.StartRedis(t)
	r, err := NewRedis(srv.URL, "test:", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if _, ok, err := r.Get(ctx, "a"); ok || err != nil {
		t.Fatalf("empty: %v %v", ok, err)
	}
	if err := r.Put(ctx, "a", []byte("answer"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := r.Get(ctx, "a"); !ok || err != nil || string(v) != "answer" {
		t.Fatalf("%q %v %v", v, ok, err)
	}
	srv.Stop()
	if _, _, err := r.Get(ctx, "a"); err == nil {
		t.Error("no error with Redis gone")
	}
}

func TestSemantic(t *testing.T) {
	s := NewSemantic(1 << 20)
	s.Add("g", []float32{1, 0, 0}, []byte("east"))
	s.Add("g", []float32{0, 1, 0}, []byte("north"))
	s.Add("other", []float32{1, 0, 0}, []byte("elsewhere"))
	if v, sim, ok := s.Find("g", []float32{0.99, 0.1, 0}, 0.95); !ok || string(v) != "east" || sim < 0.95 {
		t.Errorf("%q %v %v", v, sim, ok)
	}
	if _, _, ok := s.Find("g", []float32{0.7, 0.7, 0}, 0.95); ok {
		t.Error("a query between the two was answered")
	}
	if _, _, ok := s.Find("none", []float32{1, 0, 0}, 0.5); ok {
		t.Error("another group was searched")
	}
	if _, _, ok := s.Find("g", []float32{0, 0, 0}, 0.5); ok {
		t.Error("a zero vector matched")
	}
	// The budget: entries of 100 floats, room for about 3.
	small := NewSemantic(3 * (400 + 10 + 1 + entryOverhead))
	for i := range 10 {
		v := make([]float32, 100)
		v[i] = 1
		small.Add("g", v, []byte{byte(i)})
	}
	if small.used > small.max || small.order.Len() > 3 {
		t.Errorf("%d entries, %d of %d bytes", small.order.Len(), small.used, small.max)
	}
	last := make([]float32, 100)
	last[9] = 1
	if v, _, ok := small.Find("g", last, 0.99); !ok || v[0] != 9 {
		t.Errorf("the newest entry was evicted: %v %v", v, ok)
	}
}
