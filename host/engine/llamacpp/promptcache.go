package llamacpp

import (
	"fmt"
	"slices"

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
	// data is the state, or with a prefix what it holds besides the
	// prefix's rows (see stateshare.go); mapped outside the Go heap, see
	// newPromptData.
	data   []byte
	prefix *sharedPrefix
	layout stateLayout // set when the state's layout is known
	used   uint64      // scheduler clock at the last save or restore
	hits   int         // restores since it was saved
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
	budget int64
	// size counts the entries' data and the shared prefixes.
	size     int64
	entries  []*promptEntry
	prefixes []*sharedPrefix
	// scratch is where a state with a shared prefix is put back together
	// for restoring or writing: one whole state at most. It and the spare
	// mappings count against the budget after each save and restore (see
	// trim).
	scratch []byte
	// spare keeps up to maxSpare mappings of dropped entries for the next
	// saves: a new 10 MB mapping costs 1-3 ms to populate on top of the
	// copy (0.6-1.1 ms), a reused one nothing.
	spare [][]byte
	// unused counts the entries evicted in a row that were never restored;
	// from thrashAfter on the cache is thrashing (see admit).
	unused int
	ticks  int // saves considered while thrashing
	// dry counts the saves considered since the last restore; from
	// dryAfter on few saves are kept (see admit).
	dry, dryTicks int
}

// Without a restore in the last dryAfter saves considered, one save in
// dryAdmit is kept.
const (
	dryAfter = 64
	dryAdmit = 8
)

// While thrashing, one save in thrashAdmit is kept, once thrashAfter
// entries in a row left without a hit.
const (
	thrashAfter = 8
	thrashAdmit = 4
)

// admit reports whether a new entry that adds n bytes (see expected) is
// worth saving. With room to spare it always is. When it would evict, and the last thrashAfter
// evicted entries were never restored, the prompts come back later than
// the cache can hold them (say 20 questions in turn and room for 15):
// plain LRU would evict each before its turn, copying megabytes per
// request for nothing. Then only one save in thrashAdmit is kept, so
// entries stay long enough to be hit; an evicted entry that had hits ends
// the spell.
//
// Saving costs the request that drops the state a copy of it (1.5-2.5 ms
// for 16 MB here) and a comparison with a shared prefix: about 10% of a
// short answer of the 100M synthetic model. When dryAfter saves went by
// without a single restore (questions that never come back), only one
// save in dryAdmit is kept, which still catches a prompt that starts to
// repeat; the first restore ends the dry spell.
func (c *promptCache) admit(n int64) bool {
	if c.dry++; c.dry > dryAfter {
		if c.dryTicks++; c.dryTicks%dryAdmit != 0 {
			return false
		}
	}
	if c.size+n <= c.budget || c.unused < thrashAfter {
		return true
	}
	c.ticks++
	return c.ticks%thrashAdmit == 0
}

// expected returns what a state of n bytes for tokens will likely add to
// the cache: n less the rows of the longest shared prefix its tokens start
// with, which share will try first (an estimate: rows that differ keep the
// state whole).
func (c *promptCache) expected(tokens []llama.Token, n int64) int64 {
	best := c.longestPrefix(tokens)
	if best == nil || int64(len(best.data)) >= n {
		return n
	}
	return n - int64(len(best.data))
}

// longestPrefix returns the longest shared prefix whose tokens tokens
// start with (and go past), or nil.
func (c *promptCache) longestPrefix(tokens []llama.Token) *sharedPrefix {
	var best *sharedPrefix
	for _, p := range c.prefixes {
		k := len(p.tokens)
		if k < len(tokens) && (best == nil || k > len(best.tokens)) && commonPrefix(p.tokens, tokens, k) == k {
			best = p
		}
	}
	return best
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
	if cap(b) == 0 {
		return
	}
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
	defer c.trim()
	need := int64(len(e.data))
	if need > c.budget {
		c.discard(e)
		return false
	}
	kept := c.entries[:0]
	for _, old := range c.entries {
		if !old.pinned && len(old.tokens) <= len(e.tokens) && commonPrefix(old.tokens, e.tokens, len(old.tokens)) == len(old.tokens) {
			c.size -= int64(len(old.data))
			c.discard(old)
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
			c.discard(e) // only pinned entries left: e does not fit
			return false
		}
		if c.entries[lru].hits > 0 {
			c.unused = 0
		} else {
			c.unused++
		}
		c.size -= int64(len(c.entries[lru].data))
		c.discard(c.entries[lru])
		c.entries = append(c.entries[:lru], c.entries[lru+1:]...)
	}
	c.entries = append(c.entries, e)
	c.size += need
	return true
}

// held returns the bytes the cache maps beside its entries and prefixes:
// the spare mappings and the scratch one.
func (c *promptCache) held() int64 {
	n := int64(cap(c.scratch))
	for _, sp := range c.spare {
		n += int64(cap(sp))
	}
	return n
}

// trim frees spare mappings, oldest first, then the scratch mapping, while
// the cache maps more than its budget, so that between requests the budget
// bounds everything it holds. (During one save or restore it may map one
// state more.)
func (c *promptCache) trim() {
	for len(c.spare) > 0 && c.size+c.held() > c.budget {
		freePromptData(c.spare[0])
		c.spare = slices.Delete(c.spare, 0, 1)
	}
	if c.scratch != nil && c.size+c.held() > c.budget {
		freePromptData(c.scratch)
		c.scratch = nil
	}
}

// discard frees e's data and its hold on a shared prefix; the caller has
// taken e's data out of size if it was counted.
func (c *promptCache) discard(e *promptEntry) {
	c.release(e.data)
	e.data = nil
	if p := e.prefix; p != nil {
		e.prefix = nil
		if p.refs--; p.refs == 0 {
			c.dropPrefix(p)
		}
	}
}

// dropPrefix frees p, which no entry refers to any more.
func (c *promptCache) dropPrefix(p *sharedPrefix) {
	if i := slices.Index(c.prefixes, p); i >= 0 {
		c.prefixes = slices.Delete(c.prefixes, i, i+1)
		c.size -= int64(len(p.data))
	}
	c.release(p.data)
	p.data = nil
}

// whole returns e's whole state: its data, or, with a shared prefix, the
// state put back together in the scratch mapping (valid until the next
// call).
func (c *promptCache) whole(e *promptEntry) ([]byte, error) {
	p := e.prefix
	if p == nil {
		return e.data, nil
	}
	n := len(e.data) + len(p.data)
	if cap(c.scratch) < n {
		freePromptData(c.scratch)
		c.scratch = nil
		b, err := newPromptData(n)
		if err != nil {
			return nil, err
		}
		c.scratch = b
	}
	joinState(c.scratch[:n], e.data, e.layout, p)
	return c.scratch[:n], nil
}

// share makes e, not yet in the cache and whole, refer to a shared prefix
// when one holds the same rows for a part of e's tokens. Otherwise it makes
// one, of the tokens e shares with a prefix (at least minSharedPrefix, less
// than all of that prefix: a more general one, say the system prompt
// without the start of one question) or else with a whole entry, which
// then refers to it too. When no rows are equal, or memory for the parts
// cannot be had, e stays whole. It compares rows with at most two prefixes
// or entries: a save is on the path of the request that drops the state.
func (c *promptCache) share(e *promptEntry) {
	if e.prefix != nil {
		return
	}
	lay, ok := parseStateLayout(e.data)
	if !ok || lay.cells != len(e.tokens) {
		return
	}
	e.layout = lay
	use := c.longestPrefix(e.tokens)
	if use != nil && !use.matches(e.data, lay, len(use.tokens)) {
		use = nil
	}
	if use == nil {
		use = c.newPrefix(e)
		if use == nil {
			return
		}
	}
	c.attach(e, use)
	if use.refs == 0 {
		c.dropPrefix(use)
	}
}

// newPrefix makes a shared prefix for e (see share) and returns it, or nil.
func (c *promptCache) newPrefix(e *promptEntry) *sharedPrefix {
	// A more general prefix than one e diverges from.
	var gen *sharedPrefix
	n := 0
	for _, p := range c.prefixes {
		k := commonPrefix(p.tokens, e.tokens, min(len(p.tokens), len(e.tokens))-1)
		if k >= minSharedPrefix && k < len(p.tokens) && k > n && p.layout.sameRows(e.layout) {
			gen, n = p, k
		}
	}
	// Else the tokens shared with the whole entry sharing most.
	var from *promptEntry
	if gen == nil {
		for _, o := range c.entries {
			if o.prefix != nil || o.layout.cells == 0 || !o.layout.sameRows(e.layout) {
				continue
			}
			if k := commonPrefix(o.tokens, e.tokens, min(len(o.tokens), len(e.tokens))-1); k >= minSharedPrefix && k > n {
				from, n = o, k
			}
		}
	}
	if gen == nil && from == nil {
		return nil
	}
	data, err := c.alloc(n * e.layout.rowBytes())
	if err != nil {
		return nil
	}
	cutPrefix(data, e.data, e.layout, n)
	p := &sharedPrefix{tokens: slices.Clone(e.tokens[:n]), layout: e.layout, data: data}
	if gen != nil && !gen.matches(e.data, e.layout, n) || from != nil && !p.matches(from.data, from.layout, n) {
		c.release(data)
		return nil
	}
	c.prefixes = append(c.prefixes, p)
	c.size += int64(len(data))
	if from != nil {
		before := int64(len(from.data))
		c.attach(from, p)
		c.size += int64(len(from.data)) - before
	}
	return p
}

// attach replaces e's whole state by what it holds besides p's rows and
// makes it refer to p; on failure e stays whole.
func (c *promptCache) attach(e *promptEntry, p *sharedPrefix) {
	rest, err := c.alloc(len(e.data) - len(p.tokens)*e.layout.rowBytes())
	if err != nil {
		return
	}
	cutRest(rest, e.data, e.layout, len(p.tokens))
	c.release(e.data)
	e.data, e.prefix = rest, p
	p.refs++
}

// free releases every entry.
func (c *promptCache) free() {
	if c == nil {
		return
	}
	for _, e := range c.entries {
		freePromptData(e.data)
	}
	for _, p := range c.prefixes {
		freePromptData(p.data)
	}
	for _, sp := range c.spare {
		freePromptData(sp)
	}
	freePromptData(c.scratch)
	c.entries, c.prefixes, c.size, c.spare, c.scratch = nil, nil, 0, nil, nil
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
	if size == 0 || int64(size) > c.budget || !c.admit(c.expected(sl.cached, int64(size))) {
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
	e := &promptEntry{tokens: append([]llama.Token(nil), sl.cached...), data: data, used: s.clock}
	c.share(e)
	c.add(e)
}

// restore copies entry's state into sl's sequence, replacing what it
// held, and reports whether llama.cpp took it.
func (s *sched) restore(sl *slot, e *promptEntry) bool {
	llama.MemorySeqRm(s.mem, sl.id, -1, -1)
	data, err := s.cache.whole(e)
	if err != nil {
		s.e.log.Debug("llama.cpp prompt cache: restore skipped", "model", s.e.info.Name, "err", err)
	}
	ok := err == nil && llama.StateSeqSetData(s.lctx, data, sl.id) != 0
	s.cache.trim() // the scratch mapping may go now
	if !ok {
		llama.MemorySeqRm(s.mem, sl.id, -1, -1)
		sl.cached = sl.cached[:0]
		return false
	}
	s.clock++
	e.used = s.clock
	e.hits++
	s.cache.dry = 0
	sl.cached = append(sl.cached[:0], e.tokens...)
	return true
}
