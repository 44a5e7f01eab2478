// Package respcache keeps answers for requests that would get the same
// answer again: in memory under a byte budget (least recently used go
// first), or in Redis where replicas share it. Keys are the caller's (a
// hash of everything that shapes the answer); values are opaque bytes.
package respcache

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// Store keeps answers by key.
type Store interface {
	// Get returns the value stored under key, if any and not expired.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Put stores value under key for ttl.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// Memory is a Store in this process, bounded by bytes.
type Memory struct {
	mu     sync.Mutex
	max    int64
	used   int64
	ll     *list.List // front: most recently used
	byKey  map[string]*list.Element
	now    func() time.Time
	hits   uint64
	misses uint64
}

type entry struct {
	key     string
	value   []byte
	expires time.Time
}

// entryOverhead is what an entry costs besides its key and value (list
// element, map slot, the entry itself), for the budget.
const entryOverhead = 160

// NewMemory returns a store of at most maxBytes (keys, values and their
// bookkeeping counted).
func NewMemory(maxBytes int64) *Memory {
	return &Memory{max: maxBytes, ll: list.New(), byKey: map[string]*list.Element{}, now: time.Now}
}

func size(key string, value []byte) int64 { return int64(len(key)+len(value)) + entryOverhead }

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byKey[key]
	if !ok {
		m.misses++
		return nil, false, nil
	}
	e := el.Value.(*entry)
	if !m.now().Before(e.expires) {
		m.remove(el)
		m.misses++
		return nil, false, nil
	}
	m.ll.MoveToFront(el)
	m.hits++
	return e.value, true, nil
}

// Put implements Store. A value larger than the whole budget is not kept.
func (m *Memory) Put(_ context.Context, key string, value []byte, ttl time.Duration) error {
	n := size(key, value)
	if n > m.max || ttl <= 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byKey[key]; ok {
		m.remove(el)
	}
	for m.used+n > m.max && m.ll.Len() > 0 {
		m.remove(m.ll.Back())
	}
	m.byKey[key] = m.ll.PushFront(&entry{key: key, value: value, expires: m.now().Add(ttl)})
	m.used += n
	return nil
}

func (m *Memory) remove(el *list.Element) {
	e := m.ll.Remove(el).(*entry)
	delete(m.byKey, e.key)
	m.used -= size(e.key, e.value)
}

// MemoryStats are a Memory store's figures.
type MemoryStats struct {
	Entries      int
	Bytes, Limit int64
	Hits, Misses uint64
}

// Stats reports the store's figures.
func (m *Memory) Stats() MemoryStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return MemoryStats{Entries: m.ll.Len(), Bytes: m.used, Limit: m.max, Hits: m.hits, Misses: m.misses}
}
