package llamacpp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/mdsa-go/mdsa/host/engine"
)

// genRequest is one generation handed to the scheduler. The caller (Generate)
// fills the inputs, submits it, and then only reads what the scheduler
// publishes under mu; the scheduler owns everything else.
type genRequest struct {
	ctx    context.Context
	tokens []llama.Token
	params engine.Params

	// signal gets a value (never blocking: capacity 1) whenever text or the
	// end has been published.
	signal chan struct{}
	// quiet: the caller takes no text as it comes (no TokenFunc), only
	// the result.
	quiet bool

	mu          sync.Mutex
	chunks      []string // text not yet handed to the caller's onToken
	done        bool
	res         engine.Result
	err         error
	callbackErr error // set by the caller: onToken failed, stop generating
}

// publish appends a chunk of text for the caller, and wakes it when it
// streams (waking a goroutine costs the scheduler tens of microseconds a
// token; without a callback only the end matters).
func (r *genRequest) publish(chunk string) error {
	if r.quiet {
		return nil
	}
	r.mu.Lock()
	r.chunks = append(r.chunks, chunk)
	r.mu.Unlock()
	r.notify()
	return nil
}

// end publishes the outcome.
func (r *genRequest) end(res engine.Result, err error) {
	r.mu.Lock()
	r.res, r.err, r.done = res, err, true
	r.mu.Unlock()
	r.notify()
}

func (r *genRequest) notify() {
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// take returns and forgets the published chunks, and whether the request
// has ended (then res and err are final).
func (r *genRequest) take(buf []string) (chunks []string, done bool, res engine.Result, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	chunks = append(buf[:0], r.chunks...)
	r.chunks = r.chunks[:0]
	return chunks, r.done, r.res, r.err
}

// stopReason reports why the scheduler should stop working on r: its
// context ended or its callback failed. nil means go on.
func (r *genRequest) stopReason() error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.callbackErr
}

// slot is one llama.cpp sequence of the scheduler's context: the tokens its
// KV cache holds and, while it serves a request, the state of that
// generation. Only the scheduler's goroutine touches a slot.
type slot struct {
	id  llama.SeqId
	ids []llama.SeqId // {id}, for batch.Add

	// cached are the tokens whose keys and values the sequence holds, at
	// positions 0..len(cached)-1. They outlive the request, so the next
	// request that starts with the same tokens evaluates only the rest.
	cached  []llama.Token
	lastUse uint64 // scheduler clock at the last assignment or release

	r       *genRequest   // nil when the slot is free
	res     engine.Result // r's result so far, published when it ends
	order   uint64        // admission order of r, for prefill priority
	next    int           // index of the next prompt token to evaluate
	sampler llama.Sampler
	st      *streamer
	pending llama.Token // sampled, to be evaluated at the next step
	hasNext bool        // pending is set: the slot is generating
	nIn     int         // tokens this slot put in the current batch
	outIdx  int32       // batch index of its token with logits, -1 if none
	// grammar is the grammar sampler of a constrained generation (0:
	// none), kept out of the chain (see sample); cands is its candidate
	// buffer. guard is set with a UTF-8 table: utf8 holds the incomplete
	// character the text ends in (see utf8guard.go).
	grammar llama.Sampler
	cands   []llama.TokenData
	guard   bool
	utf8    []byte
}

// sched runs every generation of one Engine on one llama.cpp context with
// one sequence per slot: each step decodes one batch holding the next token
// of every generating sequence and chunks of pending prompts (continuous
// batching). See the package documentation.
type sched struct {
	e       *Engine
	lctx    llama.Context
	mem     llama.Memory
	batch   llama.Batch
	nBatch  int // batch capacity: tokens per step
	nCtx    int // positions one sequence may use (Info.ContextSize)
	threads int
	nVocab  int32
	cores   *Cores
	// tokens remembers, per token generated so far, its text and whether
	// it ends generation: a call into llama.cpp costs 5-10 µs here, and
	// the same few thousand tokens come back all the time. At most one
	// entry per token of the vocabulary.
	tokens map[llama.Token]tokenInfo
	// tp is the attached pool: tpSpin (0 without the pause call) while
	// the engine computes with all its threads, tpSleep while fewer.
	tp, tpSpin, tpSleep llama.Threadpool
	pause               uintptr      // ggml_threadpool_pause; 0: unknown
	cache               *promptCache // nil: off
	load                *loadWatch
	cur                 int // threads the context computes with now (<= threads)

	mu      sync.Mutex
	queue   []*genRequest
	calls   []func() // to run on the loop's goroutine (see do)
	stopped bool     // the loop has ended; submit fails

	wake     chan struct{} // capacity 1: a request was queued
	loopDone chan struct{} // closed when the loop returns

	// Owned by the loop goroutine.
	slots []*slot
	clock uint64

	// stepHook, when set (by tests, before the first request), runs before
	// each step.
	stepHook func()
}

// submit queues r for the loop. It fails once the engine is closing.
func (s *sched) submit(r *genRequest) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return engine.ErrClosed
	}
	s.queue = append(s.queue, r)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// unqueue takes r out of the queue and reports whether it was there (not
// yet admitted).
func (s *sched) unqueue(r *genRequest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.Index(s.queue, r); i >= 0 {
		s.queue = slices.Delete(s.queue, i, i+1)
		return true
	}
	return false
}

// do runs fn on the loop's goroutine, between two steps, and waits for it.
// fn may use the context and the slots. It fails once the loop has ended.
func (s *sched) do(fn func()) error {
	done := make(chan struct{})
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return engine.ErrClosed
	}
	s.calls = append(s.calls, func() { fn(); close(done) })
	s.mu.Unlock()
	s.poke()
	<-done
	return nil
}

// runCalls runs the functions given to do.
func (s *sched) runCalls() {
	s.mu.Lock()
	calls := s.calls
	s.calls = nil
	s.mu.Unlock()
	for _, fn := range calls {
		fn()
	}
}

// poke wakes the loop if it is idle.
func (s *sched) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop is the scheduler's goroutine: it admits queued requests into free
// slots, decodes one batch per step, and ends when done is closed, failing
// what is left with engine.ErrClosed.
func (s *sched) loop(done <-chan struct{}) {
	defer close(s.loopDone)
	for {
		closing := false
		select {
		case <-done:
			closing = true
		default:
		}
		s.reap(closing)
		s.runCalls()
		if closing {
			s.mu.Lock()
			s.stopped = true
			q := s.queue
			s.queue = nil
			s.mu.Unlock()
			for _, r := range q {
				r.end(engine.Result{Model: s.e.info.Name}, engine.ErrClosed)
			}
			s.runCalls() // any that came before stopped was set
			return
		}
		s.admit()
		if !s.busy() {
			s.load.pause()
			s.idlePool()
			select {
			case <-s.wake:
			case <-done:
			}
			continue
		}
		s.step()
	}
}

// busy reports whether any slot serves a request.
func (s *sched) busy() bool {
	for _, sl := range s.slots {
		if sl.r != nil {
			return true
		}
	}
	return false
}

// reap ends the generations whose caller went away or whose callback
// failed, and all of them when the engine is closing.
func (s *sched) reap(closing bool) {
	for _, sl := range s.slots {
		if sl.r == nil {
			continue
		}
		why := sl.r.stopReason()
		if why == nil && closing {
			why = engine.ErrClosed
		}
		if why == nil {
			continue
		}
		var err error
		switch {
		case errors.Is(why, engine.ErrClosed) || errors.Is(why, context.Canceled) || errors.Is(why, context.DeadlineExceeded):
			if sl.hasNext || sl.res.TokensOut > 0 {
				err = fmt.Errorf("llamacpp: generation stopped after %d tokens: %w", sl.res.TokensOut, why)
			} else {
				err = fmt.Errorf("llamacpp: generation stopped while reading the prompt: %w", why)
			}
		default:
			err = fmt.Errorf("llamacpp: token callback: %w", why)
		}
		s.fail(sl, err, false)
	}
}

// admit moves queued requests into free slots, oldest first, and answers
// queued requests whose context has ended.
func (s *sched) admit() {
	s.mu.Lock()
	if len(s.queue) == 0 {
		s.mu.Unlock()
		return
	}
	var take, gone []*genRequest
	free := 0
	for _, sl := range s.slots {
		if sl.r == nil {
			free++
		}
	}
	kept := s.queue[:0]
	for _, r := range s.queue {
		switch {
		case r.ctx.Err() != nil:
			gone = append(gone, r)
		case len(take) < free:
			take = append(take, r)
		default:
			kept = append(kept, r)
		}
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	s.mu.Unlock()

	for _, r := range gone {
		r.end(engine.Result{Model: s.e.info.Name, TokensIn: len(r.tokens)},
			fmt.Errorf("llamacpp: waiting for a free sequence: %w", r.ctx.Err()))
	}
	for _, r := range take {
		s.assign(r)
	}
}

// commonPrefix is the length of the longest common prefix of a and b, at
// most limit.
func commonPrefix(a, b []llama.Token, limit int) int {
	n := min(len(a), len(b), limit)
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// assign gives r a free slot and makes the slot's sequence hold the
// longest prefix of r's prompt that is at hand, from the best of three
// sources:
//
//   - a free slot's own cache: the free slot sharing the longest prefix
//     (tie: an empty one, else the least recently used), where a match that
//     would throw away more than half of a slot's cache (say the first
//     tokens of the chat template, common to every domain) scores nothing,
//     since that slot is better kept for the prompts it holds;
//   - another slot, busy or free, holding a longer prefix: its sequence is
//     copied into the least valuable free slot;
//   - the prompt cache holding a longer prefix still: its saved state is
//     copied back into the least valuable free slot.
//
// The slot keeps the common prefix and drops the rest (saving its state to
// the prompt cache first when a sizeable part is dropped); the scheduler
// then evaluates only the remaining prompt tokens, at least the last one,
// for its logits.
func (s *sched) assign(r *genRequest) {
	limit := len(r.tokens) - 1
	var best *slot
	bestN, bestScore := 0, -1
	for _, sl := range s.slots {
		if sl.r != nil {
			continue
		}
		n := commonPrefix(sl.cached, r.tokens, limit)
		score := n
		if 2*n < len(sl.cached) {
			score = 0
		}
		if best == nil || score > bestScore || score == bestScore && s.cheaper(sl, best) {
			best, bestN, bestScore = sl, n, score
		}
	}
	var donor *slot
	donorN := bestN
	for _, sl := range s.slots {
		if sl == best {
			continue
		}
		if d := commonPrefix(sl.cached, r.tokens, limit); d > donorN {
			donor, donorN = sl, d
		}
	}
	entry, entryN := s.cache.best(r.tokens, limit)
	if entryN < max(bestN, donorN)+cacheMinGain {
		entry = nil
	}

	target, n := best, bestN
	switch {
	case entry != nil:
		target = s.cheapestFree()
		entry.pinned = true // saving the target must not evict it
		s.saveSlot(target)
		entry.pinned = false
		if s.restore(target, entry) {
			n = entryN
		} else {
			n = 0
		}
	case donor != nil:
		target = s.cheapestFree()
		s.saveSlot(target)
		if _, err := llama.MemorySeqRm(s.mem, target.id, -1, -1); err == nil {
			// Per-sequence buffers copy whole (llama.cpp copies the data at
			// the next decode); the tail is dropped below.
			if err := llama.MemorySeqCp(s.mem, donor.id, target.id, -1, -1); err == nil {
				target.cached = append(target.cached[:0], donor.cached...)
				n = donorN
			} else {
				target.cached = target.cached[:0]
				n = 0
			}
		} else {
			target, n = best, bestN
		}
	default:
		// Saving copies the whole sequence state (about a millisecond for
		// 10 MB into a reused mapping), so only when what would be lost is
		// worth more: a conversation's last turns, another domain's prompt,
		// a question that may come again.
		if drop := len(target.cached) - n; drop >= cacheMinDrop {
			s.saveSlot(target)
		}
	}
	if len(target.cached) > n {
		ok, err := llama.MemorySeqRm(s.mem, target.id, llama.Pos(n), -1)
		if err != nil || !ok {
			// The memory cannot drop a tail (recurrent models): start over.
			llama.MemorySeqRm(s.mem, target.id, -1, -1)
			n = 0
		}
		target.cached = target.cached[:n]
	}

	s.clock++
	target.r = r
	target.order = s.clock
	target.lastUse = s.clock
	target.next = n
	target.hasNext = false
	target.nIn = 0
	target.outIdx = -1
	var eog []llama.Token
	if r.params.IgnoreEOS {
		eog = s.e.specials.eog // Generate waited for them
	}
	target.sampler = newSampler(r.params, s.e.vocab, s.nVocab, eog)
	if r.params.Grammar != "" {
		// Generate checked that it parses.
		target.grammar = llama.SamplerInitGrammar(s.e.vocab, r.params.Grammar, "root")
	}
	target.guard, target.utf8 = target.grammar != 0 && s.e.utf8 != nil, nil
	target.st = newStreamer(r.params.Stop, r.publish)
	target.res = engine.Result{Model: s.e.info.Name, TokensIn: len(r.tokens), TokensCached: n}
}

// cheapestFree returns the free slot whose cache is worth least.
func (s *sched) cheapestFree() *slot {
	var c *slot
	for _, sl := range s.slots {
		if sl.r == nil && (c == nil || s.cheaper(sl, c)) {
			c = sl
		}
	}
	return c
}

// cheaper reports whether a's cache is worth less than b's: an empty one
// first, else the least recently used.
func (s *sched) cheaper(a, b *slot) bool {
	if ae, be := len(a.cached) == 0, len(b.cached) == 0; ae != be {
		return ae
	}
	return a.lastUse < b.lastUse
}

// step builds one batch (the next token of every generating slot, then
// prompt chunks of the slots still reading their prompt, oldest request
// first, up to the batch capacity), decodes it, and samples a token for
// every slot that asked for logits.
func (s *sched) step() {
	if s.stepHook != nil {
		s.stepHook()
	}
	s.batch.Clear()
	// First what each slot puts in: the next token of every generating
	// sequence, then chunks of waiting prompts, oldest first, within the
	// batch's capacity.
	budget := s.nBatch
	for _, sl := range s.slots {
		sl.nIn, sl.outIdx = 0, -1
		if sl.r != nil && sl.hasNext {
			sl.nIn = 1
			budget--
		}
	}
	for _, sl := range s.prefilling() {
		if budget <= 0 {
			break
		}
		sl.nIn = min(budget, len(sl.r.tokens)-sl.next)
		budget -= sl.nIn
	}
	// Then the batch, in sequence-id order with each sequence's tokens
	// together (see fill).
	var in []*slot
	for _, sl := range s.slots {
		if sl.nIn == 0 {
			continue
		}
		if err := s.fill(sl); err != nil {
			// The batch may hold part of this slot's tokens: build it
			// again without the slot, which fail has freed.
			s.fail(sl, err, true)
			s.step()
			return
		}
		in = append(in, sl)
	}
	if len(in) == 0 {
		return
	}

	if n := s.load.threads(time.Now(), s.threads); n != s.cur {
		llama.SetNThreads(s.lctx, int32(n), int32(n))
		s.e.log.Debug("compute threads changed with the machine's load", "model", s.e.info.Name, "from", s.cur, "to", n)
		s.cur = n
		if n < s.threads {
			s.attachPool(s.tpSleep)
		} else {
			s.attachPool(s.tpSpin)
		}
	}
	k := s.cores.acquire(s.cur, s.idlePool)
	ret, err := llama.Decode(s.lctx, s.batch)
	s.cores.release(k)
	switch {
	case err == nil && ret == 0:
	case err == nil && ret == 1:
		// No room in the KV cache. Idle sequences give their cells back
		// first; the batch is built again at the next step.
		if s.evictIdle() {
			return
		}
		for _, sl := range in {
			if sl.hasNext {
				s.finish(sl, engine.FinishLength)
			} else {
				s.fail(sl, fmt.Errorf("llamacpp: decoding the prompt: no room in the KV cache (context full)"), true)
			}
		}
		return
	default:
		if err == nil {
			err = decodeError("decoding a batch", ret)
		} else {
			err = fmt.Errorf("llamacpp: decoding a batch: %w", err)
		}
		for _, sl := range in {
			s.fail(sl, err, true)
		}
		return
	}

	for _, sl := range in {
		if sl.hasNext {
			sl.cached = append(sl.cached, sl.pending)
			sl.hasNext = false
		} else {
			sl.cached = append(sl.cached, sl.r.tokens[sl.next:sl.next+sl.nIn]...)
			sl.next += sl.nIn
		}
	}
	for _, sl := range in {
		if sl.outIdx >= 0 && sl.r != nil {
			s.accept(sl, s.sample(sl))
		}
	}
}

// fill adds sl's sl.nIn tokens to the batch: its sampled token, or the next
// chunk of its prompt with logits for the prompt's last token only.
//
// Slots are filled in sequence-id order, so each sequence's tokens lie
// together and sequences follow in increasing id. With one KV buffer per
// sequence, llama.cpp computes a batch as micro-batches of sequences whose
// ids follow each other (s, s+1, ...), taken in batch order, each sequence
// giving as many tokens as the one with fewest. In this order the first
// micro-batch takes one token of every sequence in a run of consecutive
// ids, generating or reading its prompt; with generating tokens first and
// prompt chunks after (llama-server's order), a prompt between two
// generating sequences splits the generating tokens into several
// micro-batches, and each computation of a micro-batch reads all the
// weights. See TestBatchOrderSplits.
func (s *sched) fill(sl *slot) error {
	if sl.hasNext {
		sl.outIdx = s.batch.NTokens
		if err := s.batch.Add(sl.pending, llama.Pos(len(sl.cached)), sl.ids, true); err != nil {
			return fmt.Errorf("llamacpp: filling the token batch: %w", err)
		}
		return nil
	}
	toks := sl.r.tokens
	for i := range sl.nIn {
		p := sl.next + i
		last := p == len(toks)-1
		if last {
			sl.outIdx = s.batch.NTokens
		}
		if err := s.batch.Add(toks[p], llama.Pos(p), sl.ids, last); err != nil {
			return fmt.Errorf("llamacpp: filling the prompt batch: %w", err)
		}
	}
	return nil
}

// prefilling returns the slots still reading their prompt, oldest first.
func (s *sched) prefilling() []*slot {
	var p []*slot
	for _, sl := range s.slots {
		if sl.r != nil && !sl.hasNext && sl.next < len(sl.r.tokens) {
			p = append(p, sl)
		}
	}
	slices.SortFunc(p, func(a, b *slot) int { return cmp.Compare(a.order, b.order) })
	return p
}

// accept handles the token sampled for sl: end of generation, a stop
// string, the token limit or a full context end the request; otherwise the
// token is evaluated at the next step.
func (s *sched) accept(sl *slot, tok llama.Token) {
	r := sl.r
	if tok < 0 {
		s.fail(sl, fmt.Errorf("llamacpp: sampling failed after %d tokens", sl.res.TokensOut), false)
		return
	}
	ti := s.token(tok)
	if ti.eog {
		s.finish(sl, engine.FinishStop)
		return
	}
	sl.res.TokensOut++
	b := ti.piece
	if sl.guard {
		sl.utf8 = advance(sl.utf8, b)
	}
	if stopped, _ := sl.st.push(b); stopped {
		s.finish(sl, engine.FinishStop)
		return
	}
	if p := r.params.MaxTokens; p > 0 && sl.res.TokensOut >= p {
		s.finish(sl, engine.FinishLength)
		return
	}
	if len(sl.cached) >= s.nCtx {
		s.finish(sl, engine.FinishLength)
		return
	}
	sl.pending, sl.hasNext = tok, true
}

// tokenInfo is what the scheduler needs of a generated token.
type tokenInfo struct {
	piece []byte // its text; never modified
	eog   bool
}

// token returns tok's info, asking llama.cpp the first time.
func (s *sched) token(tok llama.Token) tokenInfo {
	if ti, ok := s.tokens[tok]; ok {
		return ti
	}
	ti := tokenInfo{eog: llama.VocabIsEOG(s.e.vocab, tok)}
	if !ti.eog {
		var buf [32]byte
		b, _ := tokenPiece(s.e.vocab, tok, buf[:])
		ti.piece = slices.Clone(b)
	}
	if s.tokens == nil {
		s.tokens = make(map[llama.Token]tokenInfo)
	}
	s.tokens[tok] = ti
	return ti
}

// finish ends sl's request successfully with reason and frees the slot,
// which keeps its cache.
func (s *sched) finish(sl *slot, reason string) {
	r := sl.r
	if reason != engine.FinishStop || !sl.st.stopped {
		sl.st.flush()
	}
	res := sl.res
	res.FinishReason = reason
	res.Text = sl.st.Text()
	s.release(sl, false)
	r.end(res, nil)
}

// fail ends sl's request with err and frees the slot; dropCache also
// forgets what the sequence holds (after a failed decode its cells are in
// doubt).
func (s *sched) fail(sl *slot, err error, dropCache bool) {
	r := sl.r
	res := sl.res
	res.Text = sl.st.Text()
	s.release(sl, dropCache)
	r.end(res, err)
}

func (s *sched) release(sl *slot, dropCache bool) {
	if dropCache {
		llama.MemorySeqRm(s.mem, sl.id, -1, -1)
		sl.cached = sl.cached[:0]
	}
	llama.SamplerFree(sl.sampler)
	if sl.grammar != 0 {
		llama.SamplerFree(sl.grammar)
		sl.grammar = 0
	}
	s.clock++
	sl.r, sl.sampler, sl.st, sl.hasNext, sl.lastUse = nil, 0, nil, false, s.clock
}

// evictIdle frees the cells of every free slot's cache and reports whether
// there were any.
func (s *sched) evictIdle() bool {
	any := false
	for _, sl := range s.slots {
		if sl.r == nil && len(sl.cached) > 0 {
			llama.MemorySeqRm(s.mem, sl.id, -1, -1)
			sl.cached = sl.cached[:0]
			any = true
		}
	}
	return any
}
