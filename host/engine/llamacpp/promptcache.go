package llamacpp

import (
	"fmt"

	"github.com/hybridgroup/yzma/pkg/llama"
	"golang.org/x/sys/unix"
)

// Thresholds of the prompt cache, in tokens.
const (
	// cacheMinTokens: a sequence holding fewer tokens is not worth saving.
	cacheMinTokens = 32
	// cacheMinGain: an entry is restored (a memory copy of its state) only
	// when it spares evaluating at least this many more tokens than the
	// best sequence would.
	cacheMinGain = 16
	// cacheMinDrop: a sequence is saved before it drops at least this many
	// tokens.
	cacheMinDrop = 32
)

// DefaultPromptCacheBytes is the memory the prompt cache may use when
// Options.PromptCacheBytes is 0.
const DefaultPromptCacheBytes = 256 << 20

// promptEntry is the saved state of one sequence: its tokens and the
// llama.cpp sequence state (keys and values) that evaluating them left.
type promptEntry struct {
	tokens []llama.Token
	data   []byte // mapped outside the Go heap; see newPromptData
	used   uint64 // scheduler clock at the last save or restore
	hits   int    // restores since it was saved
	// pinned entries are about to be restored: add neither replaces nor
	// evicts them.
	pinned bool
}

// promptCache keeps the states of sequences whose cache a new request was
// about to overwrite, in memory outside the Go heap, within a byte budget
// (least recently used out first). A later prompt that shares a longer
// prefix with an entry than with any sequence gets that state copied back
// instead of evaluating the prefix again: a conversation's next turn after
// its sequence served other domains, or a repeated question. Only the
// scheduler's goroutine uses it.
type promptCache struct {
	budget  int64
	size    int64
	entries []*promptEntry
	// spare keeps up to maxSpare mappings of dropped entries for the next
	// saves: a new 10 MB mapping costs 1-3 ms to populate on top of the
	// copy (0.6-1.1 ms), a reused one nothing.
	spare [][]byte
	// unused counts the entries evicted in a row that were never restored;
	// from thrashAfter on the cache is thrashing (see admit).
	unused int
	ticks  int // saves considered while thrashing
}

// While thrashing, one save in thrashAdmit is kept, once thrashAfter
// entries in a row left without a hit.
const (
	thrashAfter = 8
	thrashAdmit = 4
)

// admit reports whether a new entry of n bytes is worth saving. With room
// to spare it always is. When it would evict, and the last thrashAfter
// evicted entries were never restored, the prompts come back later than
// the cache can hold them (say 20 questions in turn and room for 15):
// plain LRU would evict each before its turn, copying megabytes per
// request for nothing. Then only one save in thrashAdmit is kept, so
// entries stay long enough to be hit; an evicted entry that had hits ends
// the spell.
func (c *promptCache) admit(n int64) bool {
	if c.size+n <= c.budget || c.unused < thrashAfter {
		return true
	}
	c.ticks++
	return c.ticks%thrashAdmit == 0
}

// maxSpare bounds the mappings kept for reuse.
const maxSpare = 2

// alloc returns n bytes for a state, from the spare mapping when it is
// big enough and at most a quarter too big.
func (c *promptCache) alloc(n int) ([]byte, error) {
	for i, sp := range c.spare {
		if len(sp) >= n && len(sp) <= n+n/4 {
			c.spare = append(c.spare[:i], c.spare[i+1:]...)
			return sp[:n], nil
		}
	}
	return newPromptData(n)
}

// release keeps b for reuse, freeing the oldest spare beyond maxSpare.
func (c *promptCache) release(b []byte) {
	c.spare = append(c.spare, b[:cap(b)])
	if len(c.spare) > maxSpare {
		freePromptData(c.spare[0])
		c.spare = append(c.spare[:0], c.spare[1:]...)
	}
}

// best returns the entry sharing the longest prefix with tokens (at most
// limit tokens) and that length; nil when none shares any.
func (c *promptCache) best(tokens []llama.Token, limit int) (*promptEntry, int) {
	if c == nil {
		return nil, 0
	}
	var best *promptEntry
	bestN := 0
	for _, e := range c.entries {
		if n := commonPrefix(e.tokens, tokens, limit); n > bestN {
			best, bestN = e, n
		}
	}
	return best, bestN
}

// covers reports whether an entry already holds tokens (or more after them).
func (c *promptCache) covers(tokens []llama.Token) bool {
	for _, e := range c.entries {
		if len(e.tokens) >= len(tokens) && commonPrefix(e.tokens, tokens, len(tokens)) == len(tokens) {
			return true
		}
	}
	return false
}

// add keeps e, dropping the entries it extends and then the least recently
// used ones until it fits the budget. An entry larger than the budget is
// freed at once. It returns whether e was kept.
func (c *promptCache) add(e *promptEntry) bool {
	need := int64(len(e.data))
	if need > c.budget {
		c.release(e.data)
		return false
	}
	kept := c.entries[:0]
	for _, old := range c.entries {
		if !old.pinned && len(old.tokens) <= len(e.tokens) && commonPrefix(old.tokens, e.tokens, len(old.tokens)) == len(old.tokens) {
			c.size -= int64(len(old.data))
			c.release(old.data)
			continue
		}
		kept = append(kept, old)
	}
	clear(c.entries[len(kept):])
	c.entries = kept
	for c.size+need > c.budget {
		lru := -1
		for i, old := range c.entries {
			if !old.pinned && (lru < 0 || old.used < c.entries[lru].used) {
				lru = i
			}
		}
		if lru < 0 {
			c.release(e.data) // only pinned entries left: e does not fit
			return false
		}
		if c.entries[lru].hits > 0 {
			c.unused = 0
		} else {
			c.unused++
		}
		c.size -= int64(len(c.entries[lru].data))
		c.release(c.entries[lru].data)
		c.entries = append(c.entries[:lru], c.entries[lru+1:]...)
	}
	c.entries = append(c.entries, e)
	c.size += need
	return true
}

// free releases every entry.
func (c *promptCache) free() {
	if c == nil {
		return
	}
	for _, e := range c.entries {
		freePromptData(e.data)
	}
	for _, sp := range c.spare {
		freePromptData(sp)
	}
	c.entries, c.size, c.spare = nil, 0, nil
}

// newPromptData maps n bytes of anonymous memory, populated at once (one
// system call rather than a page fault per page): states are large (tens
// of megabytes) and carry no pointers, so they stay out of the Go heap and
// its collector's pacing, and go back to the system when freed.
func newPromptData(n int) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("llamacpp: prompt cache: empty state")
	}
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("llamacpp: prompt cache: mapping %d bytes: %w", n, err)
	}
	return b, nil
}

func freePromptData(b []byte) {
	if cap(b) > 0 {
		unix.Munmap(b[:cap(b)])
	}
}

// saveSlot copies sl's sequence state into the prompt cache, unless the
// cache is off, the sequence holds too little, or an entry already covers
// it.
func (s *sched) saveSlot(sl *slot) {
	c := s.cache
	if c == nil || len(sl.cached) < cacheMinTokens || c.covers(sl.cached) {
		return
	}
	size := llama.StateSeqGetSize(s.lctx, sl.id)
	if size == 0 || int64(size) > c.budget || !c.admit(int64(size)) {
		return
	}
	data, err := c.alloc(int(size))
	if err != nil {
		s.e.log.Debug("llama.cpp prompt cache: save skipped", "model", s.e.info.Name, "err", err)
		return
	}
	if n := llama.StateSeqGetData(s.lctx, data, sl.id); n == 0 || n > size {
		c.release(data)
		return
	} else {
		data = data[:n]
	}
	s.clock++
	c.add(&promptEntry{tokens: append([]llama.Token(nil), sl.cached...), data: data, used: s.clock})
}

// restore copies entry's state into sl's sequence, replacing what it
// held, and reports whether llama.cpp took it.
func (s *sched) restore(sl *slot, e *promptEntry) bool {
	llama.MemorySeqRm(s.mem, sl.id, -1, -1)
	if llama.StateSeqSetData(s.lctx, e.data, sl.id) == 0 {
		llama.MemorySeqRm(s.mem, sl.id, -1, -1)
		sl.cached = sl.cached[:0]
		return false
	}
	s.clock++
	e.used = s.clock
	e.hits++
	sl.cached = append(sl.cached[:0], e.tokens...)
	return true
}
