package respcache

import (
	"container/list"
	"math"
	"sync"
)

// Semantic keeps answers with the embedding of their query, in groups
// (the caller's key of everything but the query), and finds the kept
// answer whose query is most similar to a new one. It is bounded by bytes
// (vectors, values and bookkeeping); the oldest entries go first.
type Semantic struct {
	mu     sync.Mutex
	max    int64
	used   int64
	order  *list.List // of *semEntry, oldest at the front
	groups map[string]*list.List
}

type semEntry struct {
	group string
	vec   []float32 // unit length
	value []byte
	all   *list.Element // in order
	in    *list.Element // in its group
}

// maxPerGroup bounds the entries one group scans on a lookup.
const maxPerGroup = 256

// NewSemantic returns an index of at most maxBytes.
func NewSemantic(maxBytes int64) *Semantic {
	return &Semantic{max: maxBytes, order: list.New(), groups: map[string]*list.List{}}
}

func (e *semEntry) size() int64 { return int64(len(e.vec)*4+len(e.value)+len(e.group)) + entryOverhead }

// unit returns v scaled to length 1, or nil for a zero or non-finite v.
func unit(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return nil
	}
	inv := 1 / math.Sqrt(n)
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}

// Add keeps value under group with the query embedding vec.
func (s *Semantic) Add(group string, vec []float32, value []byte) {
	u := unit(vec)
	if u == nil {
		return
	}
	e := &semEntry{group: group, vec: u, value: value}
	if e.size() > s.max {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	if g == nil {
		g = list.New()
		s.groups[group] = g
	}
	if g.Len() >= maxPerGroup {
		s.remove(g.Front().Value.(*semEntry))
	}
	for s.used+e.size() > s.max && s.order.Len() > 0 {
		s.remove(s.order.Front().Value.(*semEntry))
	}
	if g = s.groups[group]; g == nil { // emptied by the evictions
		g = list.New()
		s.groups[group] = g
	}
	e.all = s.order.PushBack(e)
	e.in = g.PushBack(e)
	s.used += e.size()
}

func (s *Semantic) remove(e *semEntry) {
	s.order.Remove(e.all)
	if g := s.groups[e.group]; g != nil {
		g.Remove(e.in)
		if g.Len() == 0 {
			delete(s.groups, e.group)
		}
	}
	s.used -= e.size()
}

// Find returns the value of group whose query is most similar to vec, if
// its cosine similarity is at least threshold.
func (s *Semantic) Find(group string, vec []float32, threshold float64) ([]byte, float64, bool) {
	u := unit(vec)
	if u == nil {
		return nil, 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	if g == nil {
		return nil, 0, false
	}
	var best *semEntry
	bestSim := -2.0
	for el := g.Front(); el != nil; el = el.Next() {
		e := el.Value.(*semEntry)
		if len(e.vec) != len(u) {
			continue
		}
		var dot float64
		for i := range u {
			dot += float64(u[i]) * float64(e.vec[i])
		}
		if dot > bestSim {
			best, bestSim = e, dot
		}
	}
	if best == nil || bestSim < threshold {
		return nil, bestSim, false
	}
	return best.value, bestSim, true
}
