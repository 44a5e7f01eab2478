package knowledge

import (
	"container/heap"
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
)

// embedBatch is the most texts passed to one Embedder.Embed call.
const embedBatch = 64

// maxDims is the largest embedding dimension accepted.
const maxDims = 16384

// rankDepth is how deep each ranking goes before fusion: the top 100 of
// BM25 and the top 100 of cosine similarity.
const rankDepth = 100

// rrfK is the constant of reciprocal rank fusion: a chunk at rank r of a
// ranking scores 1/(rrfK+r) from it.
const rrfK = 60

// embed embeds texts in batches of at most embedBatch and returns their
// vectors, unit length, all of one dimension.
func embed(ctx context.Context, e Embedder, texts []string) ([][]float32, error) {
	out := make([][]float32, 0, len(texts))
	dim := 0
	for start := 0; start < len(texts); start += embedBatch {
		batch := texts[start:min(start+embedBatch, len(texts))]
		vecs, err := e.Embed(ctx, batch)
		if err != nil {
			return nil, fmt.Errorf("embed texts %d..%d: %w", start, start+len(batch)-1, err)
		}
		if len(vecs) != len(batch) {
			return nil, fmt.Errorf("embed texts %d..%d: embedder returned %d vectors for %d texts", start, start+len(batch)-1, len(vecs), len(batch))
		}
		for i, v := range vecs {
			if dim == 0 {
				dim = len(v)
			}
			if len(v) == 0 || len(v) > maxDims || len(v) != dim {
				return nil, fmt.Errorf("embed text %d: vector of %d dimensions (want %d, at most %d)", start+i, len(v), dim, maxDims)
			}
			u, err := unit(v)
			if err != nil {
				return nil, fmt.Errorf("embed text %d: %w", start+i, err)
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// unit returns a copy of v scaled to unit length; a zero vector stays zero.
// A vector holding NaN or an infinity is refused.
func unit(v []float32) ([]float32, error) {
	var sum float64
	for _, x := range v {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("vector holds %v", x)
		}
		sum += f * f
	}
	u := make([]float32, len(v))
	if sum == 0 {
		return u, nil
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		u[i] = float32(float64(x) * inv)
	}
	return u, nil
}

// encodeVec encodes v as little-endian float32s.
func encodeVec(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// decodeVec appends the little-endian float32s of b to dst.
func decodeVec(dst []float32, b []byte) []float32 {
	for i := 0; i+4 <= len(b); i += 4 {
		dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
	}
	return dst
}

// dot returns the dot product of a and b (of equal length).
func dot(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= n; i += 8 {
		x, y := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += x[0] * y[0]
		s1 += x[1] * y[1]
		s2 += x[2] * y[2]
		s3 += x[3] * y[3]
		s4 += x[4] * y[4]
		s5 += x[5] * y[5]
		s6 += x[6] * y[6]
		s7 += x[7] * y[7]
	}
	for ; i < n; i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3) + (s4 + s5) + (s6 + s7)
}

// scored is a chunk with a score, higher = better.
type scored struct {
	id    int64
	score float64
}

// topK keeps the k best scored chunks seen: a min-heap on score.
type topK struct {
	k    int
	heap scoredHeap
}

// add offers a chunk.
func (t *topK) add(id int64, score float64) {
	if len(t.heap) < t.k {
		heap.Push(&t.heap, scored{id, score})
		return
	}
	if worse(t.heap[0], scored{id, score}) {
		t.heap[0] = scored{id, score}
		heap.Fix(&t.heap, 0)
	}
}

// sorted returns the kept chunks, best first.
func (t *topK) sorted() []scored {
	out := slices.Clone(t.heap)
	slices.SortFunc(out, func(a, b scored) int {
		switch {
		case worse(b, a):
			return -1
		case worse(a, b):
			return 1
		}
		return 0
	})
	return out
}

// worse reports whether a ranks below b: a lower score, or an equal score
// and a larger id (so that rankings are deterministic).
func worse(a, b scored) bool {
	if a.score != b.score {
		return a.score < b.score
	}
	return a.id > b.id
}

// scoredHeap is a min-heap of scored, the worst on top.
type scoredHeap []scored

func (h scoredHeap) Len() int           { return len(h) }
func (h scoredHeap) Less(i, j int) bool { return worse(h[i], h[j]) }
func (h scoredHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *scoredHeap) Push(x any)        { *h = append(*h, x.(scored)) }
func (h *scoredHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// vecSet is the vectors of one (tenant, knowledge base), back to back.
type vecSet struct {
	dim  int
	ids  []int64
	data []float32 // len(ids)*dim
}

// floats is the set's size in float32s, as the cache counts it.
func (v *vecSet) floats() int { return len(v.data) + len(v.ids)*2 }

// parallelFloats is the work, in multiplications, above which a search
// over a vecSet is spread over several goroutines.
const parallelFloats = 1 << 20

// search returns the k chunks of the set most similar to q (unit length,
// of the set's dimension), best first.
func (v *vecSet) search(q []float32, k int) []scored {
	n := len(v.ids)
	if n == 0 || len(q) != v.dim {
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), 1+len(v.data)/parallelFloats)
	if workers <= 1 {
		t := topK{k: k}
		v.scan(q, 0, n, &t)
		return t.sorted()
	}
	parts := make([]topK, workers)
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for w := range workers {
		parts[w].k = k
		lo, hi := w*per, min((w+1)*per, n)
		if lo >= hi {
			continue
		}
		wg.Go(func() { v.scan(q, lo, hi, &parts[w]) })
	}
	wg.Wait()
	t := topK{k: k}
	for _, p := range parts {
		for _, s := range p.heap {
			t.add(s.id, s.score)
		}
	}
	return t.sorted()
}

// scan offers the vectors lo..hi-1 to t.
func (v *vecSet) scan(q []float32, lo, hi int, t *topK) {
	for i := lo; i < hi; i++ {
		t.add(v.ids[i], float64(dot(q, v.data[i*v.dim:(i+1)*v.dim])))
	}
}

// scopeKey names a (tenant, knowledge base).
type scopeKey struct{ tenant, kb string }

// vecCache keeps the vectors of recently searched knowledge bases, least
// recently used evicted first, at most max floats in all. Each entry is of
// one version of its knowledge base's contents, and serves only the
// searches that read that version: the PostgreSQL store's versions live in
// the database, so that a write by any replica retires the entries of
// every replica; the SQLite store's version is always 0, its own writes
// being the only ones. A write by this process also invalidates the
// entry: its generation moves on, so that a load that began before the
// write never installs what it read.
type vecCache struct {
	mu      sync.Mutex
	max     int
	used    int
	lru     *list.List // of *cacheEntry, most recent first
	entries map[scopeKey]*list.Element
	gens    map[scopeKey]uint64
	loads   map[scopeKey]*vecLoad
}

// cacheEntry is one cached knowledge base.
type cacheEntry struct {
	key scopeKey
	ver int64
	set *vecSet
}

// vecLoad is a load in flight, which searches of the same generation and
// version wait for instead of loading again.
type vecLoad struct {
	gen  uint64
	ver  int64
	done chan struct{}
	set  *vecSet
	err  error
}

// newVecCache returns a cache of at most max floats (none if max < 1).
func newVecCache(max int) *vecCache {
	return &vecCache{
		max:     max,
		lru:     list.New(),
		entries: map[scopeKey]*list.Element{},
		gens:    map[scopeKey]uint64{},
		loads:   map[scopeKey]*vecLoad{},
	}
}

// get returns the vectors of key at version ver, from the cache or by
// calling load (once for concurrent callers of the same generation and
// version) and caching what it returns when it fits. load returns the
// version it read, which may be newer than ver: the set is cached as of
// that version.
func (c *vecCache) get(ctx context.Context, key scopeKey, ver int64, load func(ctx context.Context) (*vecSet, int64, error)) (*vecSet, error) {
	for {
		c.mu.Lock()
		if el, ok := c.entries[key]; ok && el.Value.(*cacheEntry).ver == ver {
			c.lru.MoveToFront(el)
			set := el.Value.(*cacheEntry).set
			c.mu.Unlock()
			return set, nil
		}
		gen := c.gens[key]
		if l, ok := c.loads[key]; ok && l.gen == gen && l.ver == ver {
			c.mu.Unlock()
			select {
			case <-l.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if l.err != nil && ctx.Err() == nil && (errors.Is(l.err, context.Canceled) || errors.Is(l.err, context.DeadlineExceeded)) {
				continue // the loader's context ended, not ours: try again
			}
			return l.set, l.err
		}
		l := &vecLoad{gen: gen, ver: ver, done: make(chan struct{})}
		c.loads[key] = l
		c.mu.Unlock()

		var loaded int64
		l.set, loaded, l.err = load(ctx)

		c.mu.Lock()
		if c.loads[key] == l {
			delete(c.loads, key)
		}
		if l.err == nil && c.gens[key] == gen {
			c.put(key, loaded, l.set)
		}
		c.mu.Unlock()
		close(l.done)
		return l.set, l.err
	}
}

// put caches set, of version ver, under key in place of any entry of key,
// evicting the least recently used entries to make room; a set larger
// than the whole cache is not kept. c.mu is held.
func (c *vecCache) put(key scopeKey, ver int64, set *vecSet) {
	c.drop(key)
	size := set.floats()
	if size > c.max {
		return
	}
	for c.used+size > c.max {
		c.drop(c.lru.Back().Value.(*cacheEntry).key)
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, ver: ver, set: set})
	c.used += size
}

// drop removes the entry of key, if any. c.mu is held.
func (c *vecCache) drop(key scopeKey) {
	if el, ok := c.entries[key]; ok {
		c.lru.Remove(el)
		delete(c.entries, key)
		c.used -= el.Value.(*cacheEntry).set.floats()
	}
}

// invalidate drops the entry of key and moves its generation on; called
// after a write to the knowledge base commits.
func (c *vecCache) invalidate(key scopeKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[key]++
	c.drop(key)
}

// fuse merges rankings by reciprocal rank fusion: each chunk scores the sum
// of 1/(rrfK+rank) over the rankings that hold it. It returns the chunks,
// best first (ties broken by the lexical rank, then id), with their ranks
// in each ranking (1-based, 0 when absent).
func fuse(lexical, semantic []scored) []fused {
	byID := map[int64]*fused{}
	var order []*fused
	get := func(id int64) *fused {
		f, ok := byID[id]
		if !ok {
			f = &fused{id: id}
			byID[id] = f
			order = append(order, f)
		}
		return f
	}
	for i, s := range lexical {
		f := get(s.id)
		f.lexical = i + 1
		f.score += 1 / float64(rrfK+i+1)
	}
	for i, s := range semantic {
		f := get(s.id)
		f.semantic = i + 1
		f.score += 1 / float64(rrfK+i+1)
	}
	out := make([]fused, len(order))
	for i, f := range order {
		out[i] = *f
	}
	slices.SortFunc(out, func(a, b fused) int {
		switch {
		case a.score != b.score:
			if a.score > b.score {
				return -1
			}
			return 1
		case rankKey(a.lexical) != rankKey(b.lexical):
			return rankKey(a.lexical) - rankKey(b.lexical)
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	return out
}

// rankKey orders ranks, absent (0) last.
func rankKey(r int) int {
	if r == 0 {
		return math.MaxInt32
	}
	return r
}

// fused is a chunk ranked by fusion.
type fused struct {
	id                int64
	score             float64
	lexical, semantic int
}
