package plugin

import (
	"sync"

	"github.com/tetratelabs/wazero/experimental"
)

// memoryBudget backs the linear memory of every instance of a Runtime
// (each plugin module's memory and its Extism kernel's) and bounds their
// total: a memory.grow that would take the total past the limit fails, as
// it does past the instance's own cap, and the plugin sees an out-of-memory
// error instead of the host running out. Memory is reserved as address
// space and touched lazily, so an instance costs the pages it writes, and
// where the platform allows it is given back to the operating system the
// moment the instance closes (a discarded instance's memory does not wait
// for Go's garbage collector).
type memoryBudget struct {
	limit uint64

	mu      sync.Mutex
	used    uint64 // bytes of linear memory in all live memories
	peak    uint64
	refused uint64 // grows refused because of the limit
}

// newMemoryBudget makes a budget of limit bytes.
func newMemoryBudget(limit uint64) *memoryBudget { return &memoryBudget{limit: limit} }

// Allocate implements experimental.MemoryAllocator.
func (b *memoryBudget) Allocate(_, max uint64) experimental.LinearMemory {
	return &linearMemory{b: b, max: max}
}

// take reserves n more bytes, reporting false when the limit forbids it.
// force takes them anyway: wazero cannot handle a failed first allocation
// (a memory's declared minimum), so instantiation is where the runtime
// checks the budget instead (see exhausted).
func (b *memoryBudget) take(n uint64, force bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit && !force {
		b.refused++
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	return true
}

// exhausted reports whether the budget has no room left for a new
// instance.
func (b *memoryBudget) exhausted() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used >= b.limit {
		b.refused++
		return true
	}
	return false
}

func (b *memoryBudget) give(n uint64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// MemoryStats describe the plugin instances' linear memory of a Runtime,
// with the stack reserved by running calls (3 x Options.MaxStackBytes
// each).
type MemoryStats struct {
	// Limit is the most all instances' memories may hold together
	// (Options.MaxTotalMemoryBytes).
	Limit uint64
	// Used is what they hold now, Peak the most they have held.
	Used, Peak uint64
	// Refused counts memory.grow requests refused because of Limit.
	Refused uint64
}

func (b *memoryBudget) stats() MemoryStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return MemoryStats{Limit: b.limit, Used: b.used, Peak: b.peak, Refused: b.refused}
}

// linearMemory is one wasm memory: a region of max bytes reserved at the
// first allocation, of which the first size bytes are the memory.
type linearMemory struct {
	b    *memoryBudget
	max  uint64
	buf  []byte
	size uint64
	free func()
}

// Reallocate implements experimental.LinearMemory. The address never
// changes: the whole region is reserved at once.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size > m.size {
		if !m.b.take(size-m.size, m.buf == nil) {
			return nil
		}
	}
	if m.buf == nil && m.max > 0 {
		buf, free, ok := reserveMemory(m.max)
		if !ok {
			m.b.give(size - m.size)
			return nil
		}
		m.buf, m.free = buf, free
	}
	if size < m.size {
		m.b.give(m.size - size)
	}
	m.size = size
	if m.buf == nil {
		return []byte{}
	}
	return m.buf[:size]
}

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() {
	m.b.give(m.size)
	m.size = 0
	if m.free != nil {
		m.free()
		m.free = nil
	}
	m.buf = nil
}
