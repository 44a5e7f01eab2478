package llamacpp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/internal/gguf"
)

// domainReq is a chat request of one "domain": a long system prompt shared
// by every question of that domain, and the question.
func domainReq(domain, question string, maxTokens int) engine.Request {
	sys := fmt.Sprintf("You are the %s assistant. %s", domain,
		strings.Repeat("Answer briefly and precisely, and say when you do not know. ", 6))
	return engine.Request{
		Messages: []engine.Message{{Role: "system", Content: sys}, {Role: "user", Content: question}},
		Params:   engine.Params{MaxTokens: maxTokens},
	}
}

// checkSlots verifies the scheduler's bookkeeping against llama.cpp, on the
// loop's goroutine: every sequence holds exactly the positions of its cached
// tokens, and no slot serves a request once all calls have returned.
func checkSlots(t *testing.T, e *Engine) {
	t.Helper()
	var problems []string
	err := e.sched.do(func() {
		for _, sl := range e.sched.slots {
			max, err := llama.MemorySeqPosMax(e.sched.mem, sl.id)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			if int(max) != len(sl.cached)-1 {
				problems = append(problems, fmt.Sprintf("sequence %d: llama.cpp holds positions up to %d, the scheduler thinks %d tokens", sl.id, max, len(sl.cached)))
			}
			if sl.r != nil {
				problems = append(problems, fmt.Sprintf("sequence %d still serves a request", sl.id))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func TestPrefixReuse(t *testing.T) {
	e := openSmall(t, Options{Parallel: 2})
	ctx := context.Background()

	first, err := e.Generate(ctx, domainReq("finance", "How do bonds work?", 64), nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.TokensCached != 0 || first.Text != gguf.SynthReply {
		t.Fatalf("first request: cached %d, text %q", first.TokensCached, first.Text)
	}
	// The same prompt again: everything but the last token is reused.
	again, err := e.Generate(ctx, domainReq("finance", "How do bonds work?", 64), nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.TokensCached != again.TokensIn-1 || again.Text != gguf.SynthReply {
		t.Fatalf("same prompt: cached %d of %d, text %q", again.TokensCached, again.TokensIn, again.Text)
	}
	// Another question of the same domain reuses the system prompt.
	other, err := e.Generate(ctx, domainReq("finance", "What is an index fund?", 64), nil)
	if err != nil {
		t.Fatal(err)
	}
	sysOnly, err := e.chatTokens("", domainReq("finance", "", 1).Messages[:1])
	if err != nil {
		t.Fatal(err)
	}
	if other.TokensCached < len(sysOnly)-2 || other.TokensCached >= other.TokensIn {
		t.Fatalf("same domain, new question: cached %d of %d, the system turn alone has %d tokens", other.TokensCached, other.TokensIn, len(sysOnly))
	}
	// Another domain lands in the other (empty) sequence and keeps the
	// finance prefix warm; finance then hits again.
	med, err := e.Generate(ctx, domainReq("medical", "What helps a headache?", 64), nil)
	if err != nil {
		t.Fatal(err)
	}
	if med.TokensCached > 16 {
		t.Fatalf("new domain: cached %d tokens, want only the shared template start", med.TokensCached)
	}
	fin, err := e.Generate(ctx, domainReq("finance", "How do bonds work?", 64), nil)
	if err != nil {
		t.Fatal(err)
	}
	if fin.TokensCached < len(sysOnly)-2 {
		t.Fatalf("finance after medical: cached %d, want the warm finance prefix (%d)", fin.TokensCached, len(sysOnly))
	}
	checkSlots(t, e)
}

func TestPrefixCopiedFromBusySequence(t *testing.T) {
	e := openSmall(t, Options{Parallel: 2})
	ctx := context.Background()
	// Warm nothing; hold the first request in generation so that its
	// sequence is busy when a second request of its domain arrives.
	hold := make(chan struct{})
	var steps atomic.Int32
	e.sched.stepHook = func() {
		if steps.Add(1) == 3 { // prompt done, a couple of tokens sampled
			<-hold
		}
	}
	firstDone := make(chan error, 1)
	go func() {
		_, err := e.Generate(ctx, domainReq("finance", "How do bonds work?", 64), nil)
		firstDone <- err
	}()
	for steps.Load() < 3 {
		runtime.Gosched()
	}
	// The loop is held; queue the second request, then release.
	secondDone := make(chan engine.Result, 1)
	secondErr := make(chan error, 1)
	go func() {
		res, err := e.Generate(ctx, domainReq("finance", "What is an index fund?", 64), nil)
		secondDone <- res
		secondErr <- err
	}()
	waitQueued(e, 1)
	close(hold)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	res, err := <-secondDone, <-secondErr
	if err != nil {
		t.Fatal(err)
	}
	if res.TokensCached < 20 || res.Text != gguf.SynthReply {
		t.Fatalf("second request of a busy domain: cached %d of %d, text %q; want the system prompt copied", res.TokensCached, res.TokensIn, res.Text)
	}
	checkSlots(t, e)
}

func TestIgnoreEOS(t *testing.T) {
	e := openSmall(t, Options{})
	res, err := e.Generate(context.Background(), engine.Request{
		Messages: chatReq(0).Messages,
		Params:   engine.Params{MaxTokens: 40, IgnoreEOS: true},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.TokensOut != 40 || res.FinishReason != engine.FinishLength {
		t.Fatalf("IgnoreEOS: %d tokens, finish %q; want 40, length", res.TokensOut, res.FinishReason)
	}
	if !strings.HasPrefix(res.Text, gguf.SynthReply) || len(res.Text) <= len(gguf.SynthReply) {
		t.Fatalf("IgnoreEOS text %q, want the reply and more", res.Text)
	}
}

func TestChunkedPrefillBesideStreams(t *testing.T) {
	// A batch of 32 tokens: a long prompt is read in chunks while other
	// sequences keep generating, and every answer is right.
	e := openSmall(t, Options{Parallel: 3, BatchSize: 32, ContextSize: 1024})
	long := domainReq("legal", strings.Repeat("Please read this long question carefully. ", 30), 64)
	var wg sync.WaitGroup
	errs := make(chan error, 9)
	for i := range 9 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := chatReq(64)
			if i%3 == 0 {
				req = long
			}
			var pieces []string
			res, err := e.Generate(context.Background(), req, collect(&pieces))
			switch {
			case err != nil:
				errs <- err
			case res.Text != gguf.SynthReply || strings.Join(pieces, "") != res.Text:
				errs <- fmt.Errorf("request %d: text %q, streamed %q", i, res.Text, pieces)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkSlots(t, e)
}

func TestCloseFailsQueued(t *testing.T) {
	e := openSmall(t, Options{Parallel: 1})
	hold := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	e.sched.stepHook = func() { once.Do(func() { close(entered); <-hold }) }
	const n = 4
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := e.Generate(context.Background(), chatReq(64), nil)
			errs <- err
		}()
	}
	<-entered
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	// Close waits for the calls in flight, which wait for the held loop.
	close(hold)
	<-closed
	for range n {
		if err := <-errs; err != nil && !errors.Is(err, engine.ErrClosed) {
			t.Errorf("got %v, want nil or ErrClosed", err)
		}
	}
	if _, err := e.Generate(context.Background(), chatReq(4), nil); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestSharedCores(t *testing.T) {
	cores := NewCores(1)
	a := openSmall(t, Options{Cores: cores, Parallel: 2})
	b := openSmall(t, Options{Cores: cores, Parallel: 2})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := a
			if i%2 == 1 {
				e = b
			}
			res, err := e.Generate(context.Background(), chatReq(64), nil)
			if err == nil && res.Text != gguf.SynthReply {
				err = fmt.Errorf("text %q", res.Text)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if cores.free != cores.N() {
		t.Fatalf("%d of %d cores free after all decodes", cores.free, cores.N())
	}
}

func TestCoresBound(t *testing.T) {
	c := NewCores(3)
	var inUse, peak atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := 1 + i%5 // up to 5, capped at 3
			k := c.acquire(want, nil)
			if k != min(want, 3) {
				t.Errorf("acquire(%d) took %d", want, k)
			}
			now := inUse.Add(int32(k))
			for {
				p := peak.Load()
				if now <= p || peak.CompareAndSwap(p, now) {
					break
				}
			}
			runtime.Gosched()
			inUse.Add(-int32(k))
			c.release(k)
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 3 {
		t.Fatalf("%d cores in use at once, have 3", p)
	}
	var nilCores *Cores
	if nilCores.acquire(4, nil) != 0 || nilCores.N() != 0 {
		t.Fatal("a nil Cores bounds nothing")
	}
	nilCores.release(0)
}

func TestPromptCacheRestoresEvictedPrompt(t *testing.T) {
	// One sequence: every other domain overwrites it, so only the prompt
	// cache can bring finance back.
	e := openSmall(t, Options{Parallel: 1})
	ctx := context.Background()
	fin := domainReq("finance", "How do bonds work?", 64)
	if _, err := e.Generate(ctx, fin, nil); err != nil {
		t.Fatal(err)
	}
	med, err := e.Generate(ctx, domainReq("medical", "What helps a headache?", 64), nil)
	if err != nil {
		t.Fatal(err)
	}
	if med.TokensCached > 16 {
		t.Fatalf("medical reused %d tokens of finance", med.TokensCached)
	}
	again, err := e.Generate(ctx, fin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.TokensCached != again.TokensIn-1 || again.Text != gguf.SynthReply {
		t.Fatalf("finance again: cached %d of %d, text %q; want the saved prompt restored", again.TokensCached, again.TokensIn, again.Text)
	}
	checkSlots(t, e)
	var size, budget int64
	e.sched.do(func() { size, budget = e.sched.cache.size, e.sched.cache.budget })
	if size <= 0 || size > budget {
		t.Fatalf("prompt cache holds %d bytes of %d", size, budget)
	}
}

func TestPromptCacheOff(t *testing.T) {
	e := openSmall(t, Options{Parallel: 1, PromptCacheBytes: -1})
	ctx := context.Background()
	fin := domainReq("finance", "How do bonds work?", 64)
	e.Generate(ctx, fin, nil)
	e.Generate(ctx, domainReq("medical", "What helps a headache?", 64), nil)
	again, err := e.Generate(ctx, fin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.TokensCached > 16 || e.sched.cache != nil {
		t.Fatalf("cache off: %d tokens reused", again.TokensCached)
	}
}

func TestPromptCacheBudget(t *testing.T) {
	c := &promptCache{budget: 3 << 12}
	var clock uint64
	mk := func(toks ...llama.Token) *promptEntry {
		d, err := newPromptData(1 << 12)
		if err != nil {
			t.Fatal(err)
		}
		clock++
		return &promptEntry{tokens: toks, data: d, used: clock}
	}
	c.add(mk(1, 2, 3))
	c.add(mk(1, 2, 3, 4)) // extends the first: replaces it
	if len(c.entries) != 1 || len(c.entries[0].tokens) != 4 || !c.covers([]llama.Token{1, 2}) || c.covers([]llama.Token{1, 5}) {
		t.Fatalf("entries %v", c.entries)
	}
	c.add(mk(7))
	c.add(mk(8))
	c.add(mk(9)) // over budget: the least recently used (1,2,3,4) goes
	if c.size > c.budget || len(c.entries) != 3 || c.covers([]llama.Token{1, 2, 3, 4}) {
		t.Fatalf("after eviction: %d bytes, %d entries", c.size, len(c.entries))
	}
	if e, n := c.best([]llama.Token{8, 1}, 5); e == nil || n != 1 || e.tokens[0] != 8 {
		t.Fatalf("best: %v %d", e, n)
	}
	// An entry about to be restored survives an add that extends it or
	// needs its room.
	pin := c.entries[0]
	pin.pinned = true
	c.add(mk(append(append([]llama.Token(nil), pin.tokens...), 99)...))
	c.add(mk(10))
	c.add(mk(11))
	if !slices.Contains(c.entries, pin) || c.size > c.budget {
		t.Fatalf("the pinned entry was dropped (or the budget broken: %d)", c.size)
	}
	pin.pinned = false
	big, _ := newPromptData(4 << 12)
	if c.add(&promptEntry{tokens: []llama.Token{5}, data: big}) {
		t.Fatal("an entry larger than the budget was kept")
	}
	c.free()
	if c.size != 0 || len(c.entries) != 0 {
		t.Fatal("free left entries")
	}
}

// TestPromptCacheHoldsWithinBudget: the spare and scratch mappings count
// against the budget, so that it bounds all the cache maps between
// requests, not only its entries.
func TestPromptCacheHoldsWithinBudget(t *testing.T) {
	const page = 1 << 12
	c := &promptCache{budget: 3 * page}
	defer c.free()
	mk := func(n int, toks ...llama.Token) *promptEntry {
		d, err := newPromptData(n * page)
		if err != nil {
			t.Fatal(err)
		}
		return &promptEntry{tokens: toks, data: d}
	}
	for i := range 4 {
		c.add(mk(1, llama.Token(10+i)))
	}
	if c.size != 3*page || c.held() != 0 {
		t.Fatalf("full cache: entries %d bytes, spare and scratch %d bytes, budget %d", c.size, c.held(), c.budget)
	}
	// An entry that leaves makes room for its mapping to be kept.
	c.size -= page
	c.discard(c.entries[0])
	c.entries = c.entries[1:]
	if c.held() != page {
		t.Fatalf("with room, the dropped entry's mapping was not kept: %d bytes held", c.held())
	}
	// Over the budget, spare mappings go first, then the scratch one.
	scratch, err := newPromptData(2 * page)
	if err != nil {
		t.Fatal(err)
	}
	c.scratch = scratch
	c.trim()
	if len(c.spare) != 0 || c.scratch != nil || c.size+c.held() > c.budget {
		t.Fatalf("after trim: %d spare, scratch %v, %d bytes of %d", len(c.spare), c.scratch != nil, c.size+c.held(), c.budget)
	}
	if c.scratch, err = newPromptData(page); err != nil {
		t.Fatal(err)
	}
	c.trim()
	if c.scratch == nil {
		t.Fatal("the scratch mapping was freed although it fits the budget")
	}
	// An entry larger than the budget is refused, and its mapping not kept
	// beyond the budget.
	if c.add(mk(4, 99)) || c.size+c.held() > c.budget {
		t.Fatalf("oversized entry: kept, or %d bytes held of %d", c.size+c.held(), c.budget)
	}
}

func TestPromptCachePersists(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	fin := domainReq("finance", "How do bonds work?", 64)
	e := openSmall(t, Options{Parallel: 2, PromptCacheDir: dir})
	if _, err := e.Generate(ctx, fin, nil); err != nil {
		t.Fatal(err)
	}
	e.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*"+cacheSuffix))
	if len(files) != 1 {
		t.Fatalf("%d cache files after Close, want 1", len(files))
	}

	// A restart: the first request finds its prompt evaluated.
	e2 := openSmall(t, Options{Parallel: 2, PromptCacheDir: dir})
	res, err := e2.Generate(ctx, fin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.TokensCached != res.TokensIn-1 || res.Text != gguf.SynthReply {
		t.Fatalf("after restart: cached %d of %d, text %q", res.TokensCached, res.TokensIn, res.Text)
	}
	checkSlots(t, e2)
	e2.Close()

	// A damaged file is removed and ignored.
	files, _ = filepath.Glob(filepath.Join(dir, "*"+cacheSuffix))
	if len(files) == 0 {
		t.Fatal("no cache file after the second Close")
	}
	b, _ := os.ReadFile(files[0])
	b[len(b)/2] ^= 0xff
	os.WriteFile(files[0], b, 0o644)
	os.WriteFile(filepath.Join(dir, "junk"+cacheSuffix), []byte("not a cache file at all"), 0o644)
	e3 := openSmall(t, Options{Parallel: 2, PromptCacheDir: dir})
	res, err = e3.Generate(ctx, fin, nil)
	if err != nil || res.Text != gguf.SynthReply {
		t.Fatalf("with a damaged cache: %q, %v", res.Text, err)
	}
	if res.TokensCached > 16 {
		t.Fatalf("a damaged file was restored: %d tokens cached", res.TokensCached)
	}
	if _, err := os.Stat(filepath.Join(dir, "junk"+cacheSuffix)); !os.IsNotExist(err) {
		t.Fatalf("the junk file is still there: %v", err)
	}
}

func TestPromptCacheOtherModelIgnored(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	fin := domainReq("finance", "How do bonds work?", 64)
	e := openSmall(t, Options{Parallel: 1, PromptCacheDir: dir})
	e.Generate(ctx, fin, nil)
	e.Close()
	// The same directory with another model file (F32 instead of Q8_0).
	other, err := Open(ctx, synthModel(t, 0, "F32"), Options{LibDir: testLibDir(t), Logger: testLogger(t), Threads: 1,
		ContextSize: 512, Parallel: 1, PromptCacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	res, err := other.Generate(ctx, fin, nil)
	if err != nil || res.TokensCached > 16 {
		t.Fatalf("another model restored this one's state: cached %d, %v", res.TokensCached, err)
	}
}

func TestPromptCacheRestoreUnderEviction(t *testing.T) {
	// A budget for one state: saving the sequence before a restore must
	// not evict the entry being restored (it used to, and llama.cpp then
	// read unmapped memory).
	ctx := context.Background()
	fin := domainReq("finance", "How do bonds work?", 64)
	med := domainReq("medical", "What helps a headache?", 64)
	probe := openSmall(t, Options{Parallel: 1})
	if _, err := probe.Generate(ctx, fin, nil); err != nil {
		t.Fatal(err)
	}
	var size uint64
	probe.sched.do(func() { size = llama.StateSeqGetSize(probe.sched.lctx, 0) })
	probe.Close()

	e := openSmall(t, Options{Parallel: 1, PromptCacheBytes: int64(size) * 3 / 2})
	for i := range 3 {
		for j, req := range []engine.Request{fin, med} {
			res, err := e.Generate(ctx, req, nil)
			if err != nil || res.Text != gguf.SynthReply {
				t.Fatalf("round %d: %q, %v", i, res.Text, err)
			}
			// Only one state fits: finance's, saved first, stays.
			if i > 0 && j == 0 && res.TokensCached != res.TokensIn-1 {
				t.Fatalf("round %d: cached %d of %d, want the saved state restored", i, res.TokensCached, res.TokensIn)
			}
		}
	}
	checkSlots(t, e)
}

// Prompts that come back later than the cache holds them (a cycle longer
// than the cache) make it keep one save in thrashAdmit instead of copying
// every state only to evict it unused; a hit on an evicted entry ends that.
func TestPromptCacheAdmissionWhenThrashing(t *testing.T) {
	const size = 1 << 12
	c := &promptCache{budget: 3 * size}
	defer c.free()
	var clock uint64
	save := func(tok llama.Token) bool {
		if !c.admit(size) {
			return false
		}
		d, err := newPromptData(size)
		if err != nil {
			t.Fatal(err)
		}
		clock++
		return c.add(&promptEntry{tokens: []llama.Token{tok}, data: d, used: clock})
	}
	// A cycle of 5 prompts over room for 3: LRU evicts each before it
	// comes back, so every save is kept until thrashAfter evictions in a
	// row went unused.
	tok := llama.Token(0)
	for range 3 + thrashAfter {
		if !save(tok%5 + 100) {
			t.Fatalf("save %d refused before the cache was seen thrashing", tok)
		}
		tok++
	}
	if c.unused != thrashAfter {
		t.Fatalf("%d unused evictions counted, want %d", c.unused, thrashAfter)
	}
	kept := 0
	for range 4 * thrashAdmit {
		if save(tok%5 + 100) {
			kept++
		}
		tok++
	}
	if kept != 4 {
		t.Fatalf("thrashing: %d of %d saves kept, want 4", kept, 4*thrashAdmit)
	}
	// Room to spare: always saved.
	if c2 := (&promptCache{budget: 3 * size, unused: thrashAfter}); !c2.admit(size) {
		t.Fatal("a save that needs no eviction was refused")
	}
	// An entry evicted after a hit ends the spell.
	for _, e := range c.entries {
		e.hits = 1
	}
	for range 3 {
		for !save(tok%5 + 100) {
			tok++
		}
		tok++
	}
	if c.unused != 0 || !c.admit(size) {
		t.Fatalf("after evicting entries that had hits: unused %d, admit false", c.unused)
	}
}

// With the libraries make setup installs, the engine finds the pool pause
// call and decodes on the spinning pool, which it pauses when idle; the
// load watch's fewer threads run on the sleeping pool.
func TestThreadPools(t *testing.T) {
	e := openSmall(t, Options{Threads: 2})
	s := e.sched
	var pause uintptr
	var tp, spin, sleep llama.Threadpool
	s.do(func() { pause, tp, spin, sleep = s.pause, s.tp, s.tpSpin, s.tpSleep })
	if runtime.GOOS == "linux" && pause == 0 {
		t.Fatal("ggml_threadpool_pause not found in the loaded CPU back-end")
	}
	if pause != 0 && (spin == 0 || tp != spin) {
		t.Fatalf("attached pool %x, spinning pool %x", tp, spin)
	}
	if sleep == 0 {
		t.Fatal("no sleeping pool")
	}
	ctx := context.Background()
	// Another task takes one of the two CPUs: the engine computes with one
	// thread, on the sleeping pool; then with both again, on the spinning one.
	s.do(func() {
		w := s.load
		w.stat, w.next = "injected", time.Now().Add(time.Hour) // no sampling: keep the figure
		w.hostCPUs, w.ok, w.others = 2, true, 1
	})
	if _, err := e.Generate(ctx, domainReq("finance", "How do bonds work?", 4), nil); err != nil {
		t.Fatal(err)
	}
	var onBusy, onFree llama.Threadpool
	var busyThreads int
	s.do(func() { onBusy, busyThreads = s.tp, s.cur; s.load.others = 0 })
	if _, err := e.Generate(ctx, domainReq("finance", "What is a bond fund?", 4), nil); err != nil {
		t.Fatal(err)
	}
	s.do(func() { onFree = s.tp })
	if busyThreads != 1 || onBusy != sleep {
		t.Fatalf("with one CPU free: %d threads on pool %x, want 1 on the sleeping pool %x", busyThreads, onBusy, sleep)
	}
	if want := cmp.Or(spin, sleep); onFree != want {
		t.Fatalf("with both CPUs free again the pool is %x, want %x", onFree, want)
	}
}

// A prompt over Params.MaxPromptTokens is refused before anything is
// evaluated, with an error the caller can tell from others.
func TestMaxPromptTokens(t *testing.T) {
	e := openSmall(t, Options{})
	ctx := context.Background()
	req := domainReq("finance", "How do bonds work?", 4)
	req.Params.MaxPromptTokens = 5
	_, err := e.Generate(ctx, req, nil)
	if !errors.Is(err, engine.ErrOverBudget) || !strings.Contains(err.Error(), "the budget allows 5") {
		t.Fatalf("a long prompt over a 5-token budget: %v", err)
	}
	req.Params.MaxPromptTokens = 100000
	if _, err := e.Generate(ctx, req, nil); err != nil {
		t.Fatal(err)
	}
	long := engine.Request{Prompt: strings.Repeat("many words here ", 400), Params: engine.Params{MaxTokens: 2}}
	var cle *engine.ContextLengthError
	if _, err := e.Generate(ctx, long, nil); !errors.As(err, &cle) || !errors.Is(err, engine.ErrInvalidInput) || cle.Context != 512 {
		t.Fatalf("a prompt over the context: %v", err)
	}
}

// A prompt far past the context is refused without being tokenized, with
// a lower bound on its tokens; one just past it is tokenized and refused
// with its exact count. Both are context-length errors.
func TestContextLengthBound(t *testing.T) {
	e := openSmall(t, Options{})
	ctx := context.Background()
	piece := longestPiece(e.vocab)
	if piece <= 0 {
		t.Fatalf("longest piece %d", piece)
	}
	huge := engine.Request{Messages: []engine.Message{{Role: "user", Content: strings.Repeat("x", 512*lengthSlack*piece+1)}},
		Params: engine.Params{MaxTokens: 2}}
	var cle *engine.ContextLengthError
	_, err := e.Generate(ctx, huge, nil)
	if !errors.As(err, &cle) || !cle.AtLeast || cle.Tokens < 512 || !strings.Contains(err.Error(), "at least") {
		t.Fatalf("a prompt far past the context: %v (%+v)", err, cle)
	}
	long := engine.Request{Prompt: strings.Repeat("many words here ", 400), Params: engine.Params{MaxTokens: 2}}
	cle = nil
	if _, err := e.Generate(ctx, long, nil); !errors.As(err, &cle) || cle.AtLeast {
		t.Fatalf("a prompt just past the context: %v (%+v)", err, cle)
	}
	t.Logf("longest piece %d bytes; %v", piece, err)

	// Past 16 bytes per context token but within the bytes bound: counted
	// a piece at a time, refused once the pieces reach twice the context.
	words := strings.Repeat("many words here ", (512*lengthSlack*piece-1)/16)
	if len(words) <= 512*8*lengthSlack {
		t.Skipf("the longest piece (%d bytes) leaves no room between the bounds", piece)
	}
	cle = nil
	_, err = e.Generate(ctx, engine.Request{Messages: []engine.Message{{Role: "user", Content: words}}, Params: engine.Params{MaxTokens: 2}}, nil)
	if !errors.As(err, &cle) || !cle.AtLeast || cle.Tokens < 512 {
		t.Fatalf("%d bytes of words: %v (%+v)", len(words), err, cle)
	}
	// Each cut may add a token (a space prefix) or merge one away.
	whole, pieces := len(llama.Tokenize(e.vocab, words, false, false)), len(words)/lengthPiece+1
	if n := e.countUpTo(words, false, 1<<30); n < whole-pieces || n > whole+pieces {
		t.Errorf("counted by pieces: %d tokens, whole: %d", n, whole)
	}
}

// batchSeqs returns the sequence id of each token in b.
func batchSeqs(b llama.Batch) []llama.SeqId {
	n := int(b.NTokens)
	if n == 0 {
		return nil
	}
	ptrs := unsafe.Slice((**llama.SeqId)(unsafe.Pointer(b.SeqId)), n)
	out := make([]llama.SeqId, n)
	for i, p := range ptrs {
		out[i] = *p
	}
	return out
}

// TestBatchOrder checks the batch layout described at sched.fill: a prompt
// read by a sequence between two generating ones sits between their tokens,
// so every batch lists sequences in increasing id with each one's tokens
// together.
func TestBatchOrder(t *testing.T) {
	e := openSmall(t, Options{Parallel: 3})
	ctx := context.Background()
	long := func(i int) engine.Request {
		r := chatReq(300 + i)
		r.Params.IgnoreEOS = true
		return r
	}
	ready, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var batches [][]llama.SeqId
	var armed, gated bool
	e.sched.stepHook = func() {
		s := e.sched
		for !gated { // all three requests in before any generates much
			n := 0
			for _, sl := range s.slots {
				if sl.r != nil {
					n++
				}
			}
			s.mu.Lock()
			n += len(s.queue)
			s.mu.Unlock()
			if gated = n == 3; !gated {
				time.Sleep(time.Millisecond)
			}
		}
		if !armed {
			for _, sl := range s.slots {
				if sl.r == nil || !sl.hasNext {
					return
				}
			}
			armed = true
			close(ready)
			<-release
			return
		}
		mu.Lock()
		batches = append(batches, batchSeqs(s.batch))
		mu.Unlock()
	}
	cancels := map[int]context.CancelFunc{}
	var wg sync.WaitGroup
	for i := range 3 {
		c, cancel := context.WithCancel(ctx)
		cancels[300+i] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = e.Generate(c, long(i), nil)
		}()
	}
	<-ready
	// The loop is held with three sequences generating: stop the one in
	// the middle and queue a new prompt, which takes its sequence.
	cancels[e.sched.slots[1].r.params.MaxTokens]()
	newDone := make(chan error, 1)
	go func() {
		r := domainReq("finance", "Which savings account pays the most interest this year?", 8)
		_, err := e.Generate(ctx, r, nil)
		newDone <- err
	}()
	waitQueued(e, 1)
	close(release)
	if err := <-newDone; err != nil {
		t.Fatal(err)
	}
	for _, c := range cancels {
		c()
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	between := false
	for _, b := range batches {
		if !slices.IsSorted(b) {
			t.Fatalf("batch sequence ids %v: want increasing ids, each sequence's tokens together", b)
		}
		if slices.Contains(b, 0) && slices.Contains(b, 2) && len(b) > 3 && b[1] == 1 && b[len(b)-1] == 2 {
			between = true
		}
	}
	if !between {
		t.Fatalf("no batch held the new prompt between the two generating sequences: %v", batches)
	}
	checkSlots(t, e)
}

// waitQueued returns once n requests wait in e's queue.
func waitQueued(e *Engine, n int) {
	for {
		e.sched.mu.Lock()
		k := len(e.sched.queue)
		e.sched.mu.Unlock()
		if k == n {
			return
		}
		runtime.Gosched()
	}
}

func TestPromptCacheSharesSystemPrompt(t *testing.T) {
	// One sequence, three finance questions and another domain: each
	// question's state is saved when the next overwrites it, and the saved
	// states keep the finance system prompt's keys and values once.
	dir := t.TempDir()
	e := openSmall(t, Options{Parallel: 1, PromptCacheDir: dir})
	ctx := context.Background()
	qs := []engine.Request{
		domainReq("finance", "How do bonds work?", 64),
		domainReq("finance", "What is an index fund, and should I buy one?", 64),
		domainReq("finance", "Explain compound interest with an example.", 64),
		domainReq("medical", "What helps a headache?", 64),
	}
	for _, q := range qs {
		if _, err := e.Generate(ctx, q, nil); err != nil {
			t.Fatal(err)
		}
	}
	var prefixes, entries, refs int
	var size, whole int64
	err := e.sched.do(func() {
		c := e.sched.cache
		prefixes, entries, size = len(c.prefixes), len(c.entries), c.size
		for _, p := range c.prefixes {
			refs += p.refs
		}
		for _, ent := range c.entries {
			b, err := c.whole(ent)
			if err != nil {
				t.Error(err)
			}
			whole += int64(len(b))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if entries != 3 || prefixes != 1 || refs != 3 || size >= whole {
		t.Fatalf("prompt cache: %d entries, %d shared prefixes (%d refs), %d bytes for %d bytes of states; want 3 entries sharing one prefix",
			entries, prefixes, refs, size, whole)
	}
	// Each question comes back from its shared state, whole; and again
	// after a restart (written whole at Close, read back and shared again).
	restored := func(e *Engine, when string) {
		t.Helper()
		for _, q := range qs[:3] {
			res, err := e.Generate(ctx, q, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.TokensCached != res.TokensIn-1 || res.Text != gguf.SynthReply {
				t.Fatalf("%s, %q: cached %d of %d, text %q; want its state restored", when, q.Messages[1].Content, res.TokensCached, res.TokensIn, res.Text)
			}
			checkSlots(t, e)
		}
	}
	restored(e, "again")
	e.Close()
	e2 := openSmall(t, Options{Parallel: 1, PromptCacheDir: dir})
	restored(e2, "after a restart")
	e2.sched.do(func() { prefixes = len(e2.sched.cache.prefixes) })
	if prefixes == 0 {
		t.Fatal("the states read back share no prefix")
	}
}

// The scheduler's memo of generated tokens agrees with llama.cpp and holds
// at most one entry per token of the vocabulary; a generation without a
// callback still returns its whole text.
func TestTokenMemo(t *testing.T) {
	e := openSmall(t, Options{Parallel: 1})
	res, err := e.Generate(context.Background(), domainReq("finance", "How do bonds work?", 64), nil)
	if err != nil || res.Text != gguf.SynthReply {
		t.Fatalf("without a callback: %q, %v", res.Text, err)
	}
	err = e.sched.do(func() {
		if len(e.sched.tokens) == 0 || len(e.sched.tokens) > int(e.sched.nVocab) {
			t.Errorf("%d tokens remembered, vocabulary %d", len(e.sched.tokens), e.sched.nVocab)
		}
		for tok, ti := range e.sched.tokens {
			want, _ := tokenPiece(e.vocab, tok, nil)
			if ti.eog != llama.VocabIsEOG(e.vocab, tok) || !ti.eog && string(ti.piece) != string(want) {
				t.Errorf("token %d: remembered %q (eog %v), llama.cpp says %q", tok, ti.piece, ti.eog, want)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
