package llamacpp

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// fakeState writes a sequence state as llama.cpp does for a KV cache of
// streams streams (the cells in stream 1), with cells cells of layers
// layers, key rows of kRow bytes and value rows of vRow bytes. A row's
// bytes are cell*7+layer (+100 for values) plus tail for cells >= from, so
// two states agree on their first from cells.
func fakeState(seq int32, streams, cells, layers, kRow, vRow, from int, tail byte) []byte {
	var b []byte
	u32 := func(v uint32) { b = binary.LittleEndian.AppendUint32(b, v) }
	u32(stateMagic)
	u32(uint32(seq))
	u32(uint32(streams))
	for s := range streams {
		if s != 1 {
			u32(0)
			continue
		}
		u32(uint32(cells))
		for c := range cells {
			u32(uint32(c))
			u32(1)
			u32(uint32(seq))
		}
		u32(0) // values not transposed
		u32(uint32(layers))
		rows := func(row, base int) {
			u32(1) // type
			b = binary.LittleEndian.AppendUint64(b, uint64(row))
			for c := range cells {
				v := byte(c*7 + base)
				if c >= from {
					v += tail
				}
				b = append(b, bytes.Repeat([]byte{v}, row)...)
			}
		}
		for l := range layers {
			rows(kRow, l)
		}
		for l := range layers {
			rows(vRow, 100+l)
		}
	}
	return b
}

func TestParseStateLayout(t *testing.T) {
	st := fakeState(2, 4, 10, 3, 8, 6, 10, 0)
	lay, ok := parseStateLayout(st)
	if !ok || lay.cells != 10 {
		t.Fatalf("layout of a fake state: ok %v, %d cells", ok, lay.cells)
	}
	if got, want := lay.rowBytes(), cellRecordSize+3*8+3*6; got != want {
		t.Fatalf("row bytes %d, want %d", got, want)
	}
	end := 0
	for _, rg := range lay.regions {
		if rg.off != end {
			t.Fatalf("region at %d after %d: regions must tile the state", rg.off, end)
		}
		end = rg.off + rg.size
	}
	if end != len(st) {
		t.Fatalf("regions end at %d of %d", end, len(st))
	}

	bad := map[string][]byte{
		"empty":        nil,
		"wrong magic":  append([]byte{1, 2, 3, 4}, st[4:]...),
		"truncated":    st[:len(st)-1],
		"trailing":     append(append([]byte(nil), st...), 0),
		"no cells":     fakeState(2, 4, 0, 3, 8, 6, 0, 0),
		"out of order": swapCells(st),
		"transposed":   setTransposed(st, 10),
	}
	for name, b := range bad {
		if _, ok := parseStateLayout(b); ok {
			t.Errorf("%s: parsed", name)
		}
	}
}

// swapCells swaps the positions of the first two cell records of a fake
// state.
func swapCells(st []byte) []byte {
	b := append([]byte(nil), st...)
	rec := 4 + 4 + 4 + 4 + 4 // magic, seq, streams, stream 0's count, stream 1's count
	binary.LittleEndian.PutUint32(b[rec:], 1)
	binary.LittleEndian.PutUint32(b[rec+cellRecordSize:], 0)
	return b
}

// setTransposed marks a fake state of cells cells as having transposed
// values.
func setTransposed(st []byte, cells int) []byte {
	b := append([]byte(nil), st...)
	binary.LittleEndian.PutUint32(b[20+cells*cellRecordSize:], 1)
	return b
}

func TestSharedPrefixRoundTrip(t *testing.T) {
	// Two states of different lengths agreeing on their first 6 cells,
	// saved from different sequences.
	a := fakeState(0, 4, 9, 2, 8, 8, 6, 50)
	b := fakeState(3, 4, 12, 2, 8, 8, 6, 90)
	la, _ := parseStateLayout(a)
	lb, ok := parseStateLayout(b)
	if !ok || !la.sameRows(lb) {
		t.Fatal("two fake states of one model: layouts differ")
	}
	p := &sharedPrefix{tokens: make([]llama.Token, 6), layout: la, data: make([]byte, 6*la.rowBytes())}
	cutPrefix(p.data, a, la, 6)
	if !p.matches(b, lb, 6) {
		t.Fatal("b does not match the prefix cut from a")
	}
	if c := fakeState(3, 4, 12, 2, 8, 8, 5, 90); p.matches(c, lb, 6) {
		t.Fatal("a state differing in cell 5 matches")
	}
	for _, tc := range []struct {
		st  []byte
		lay stateLayout
	}{{a, la}, {b, lb}} {
		rest := make([]byte, len(tc.st)-len(p.data))
		cutRest(rest, tc.st, tc.lay, 6)
		got := make([]byte, len(tc.st))
		joinState(got, rest, tc.lay, p)
		// The cell records of the prefix are a's: only the sequence ids,
		// which llama.cpp ignores, may differ.
		want := append([]byte(nil), tc.st...)
		for _, rg := range tc.lay.regions {
			if rg.records {
				for c := range 6 {
					copy(want[rg.off+c*cellRecordSize+8:], got[rg.off+c*cellRecordSize+8:rg.off+c*cellRecordSize+12])
				}
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("state of %d bytes put back together differs", len(tc.st))
		}
	}
}

func TestPromptCacheSharing(t *testing.T) {
	c := &promptCache{budget: 1 << 20}
	defer c.free()
	mk := func(tokens []llama.Token, tail byte, seq int32) (*promptEntry, []byte) {
		st := fakeState(seq, 2, len(tokens), 2, 16, 16, len(tokens)-1, tail)
		d, err := newPromptData(len(st))
		if err != nil {
			t.Fatal(err)
		}
		copy(d, st)
		return &promptEntry{tokens: tokens, data: d}, st
	}
	whole := 0
	var ents []*promptEntry
	var states [][]byte
	for i := range 3 {
		e, st := mk(seqTokens(80, llama.Token(1000+i)), byte(i+1), int32(i))
		c.share(e)
		if !c.add(e) {
			t.Fatalf("entry %d not kept", i)
		}
		ents, states = append(ents, e), append(states, st)
		whole += len(st)
	}
	if len(c.prefixes) != 1 || c.prefixes[0].refs != 3 || len(c.prefixes[0].tokens) != 79 {
		t.Fatalf("want one prefix of 79 tokens for 3 entries, have %d", len(c.prefixes))
	}
	if c.size >= int64(whole)/2 {
		t.Fatalf("cache holds %d bytes for %d bytes of states", c.size, whole)
	}
	for i, e := range ents {
		got, err := c.whole(e)
		if err != nil {
			t.Fatal(err)
		}
		lay, ok := parseStateLayout(got)
		if !ok || len(got) != len(states[i]) {
			t.Fatalf("entry %d: put back together: %d bytes of %d", i, len(got), len(states[i]))
		}
		// Outside the cell records' sequence ids, byte for byte.
		want := append([]byte(nil), states[i]...)
		for _, rg := range lay.regions {
			if rg.records {
				for cl := range lay.cells {
					copy(want[rg.off+cl*cellRecordSize+8:rg.off+cl*cellRecordSize+12], got[rg.off+cl*cellRecordSize+8:])
				}
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("entry %d differs once put back together", i)
		}
	}
	// An entry with the same tokens but other rows is kept whole.
	st := fakeState(1, 2, 80, 2, 16, 16, 0, 33)
	other := &promptEntry{tokens: seqTokens(80, 2000), data: append([]byte(nil), st...)}
	sum := c.size
	c.share(other)
	if other.prefix != nil || len(other.data) != len(st) {
		t.Fatal("an entry whose rows differ from the prefix's refers to it")
	}
	if c.size != sum || c.prefixes[0].refs != 3 {
		t.Fatalf("sharing nothing changed the cache: %d bytes (was %d), %d refs", c.size, sum, c.prefixes[0].refs)
	}
	// Evicting every entry frees the prefix.
	for len(c.entries) > 0 {
		c.size -= int64(len(c.entries[0].data))
		c.discard(c.entries[0])
		c.entries = c.entries[1:]
	}
	if len(c.prefixes) != 0 || c.size != 0 {
		t.Fatalf("after every entry left: %d prefixes, %d bytes", len(c.prefixes), c.size)
	}
}

func FuzzParseStateLayout(f *testing.F) {
	f.Add(fakeState(1, 2, 4, 2, 8, 8, 4, 0))
	f.Add(fakeState(0, 1, 1, 1, 1, 1, 1, 0))
	f.Add([]byte{0xd8, 0x3c, 0x14, 0xaf, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		lay, ok := parseStateLayout(b)
		if !ok {
			return
		}
		end := 0
		for _, rg := range lay.regions {
			if rg.off != end || rg.size < 0 || rg.row != 0 && rg.size != rg.row*lay.cells {
				t.Fatalf("bad region %+v after %d", rg, end)
			}
			end = rg.off + rg.size
		}
		if end != len(b) {
			t.Fatalf("regions end at %d of %d", end, len(b))
		}
		// Cut at any cell and put back together: the same bytes.
		n := lay.cells / 2
		p := &sharedPrefix{tokens: make([]llama.Token, n), layout: lay, data: make([]byte, n*lay.rowBytes())}
		cutPrefix(p.data, b, lay, n)
		if !p.matches(b, lay, n) {
			t.Fatal("a state does not match its own prefix")
		}
		rest := make([]byte, len(b)-len(p.data))
		cutRest(rest, b, lay, n)
		got := make([]byte, len(b))
		joinState(got, rest, lay, p)
		if !bytes.Equal(got, b) {
			t.Fatal("cut and put back together: differs")
		}
	})
}

// After dryAfter saves without a restore, one save in dryAdmit is kept;
// a restore (dry reset) ends that.
func TestPromptCacheDrySpell(t *testing.T) {
	c := &promptCache{budget: 1 << 30}
	for i := range dryAfter {
		if !c.admit(1 << 10) {
			t.Fatalf("save %d refused before a dry spell", i)
		}
	}
	kept := 0
	for range 4 * dryAdmit {
		if c.admit(1 << 10) {
			kept++
		}
	}
	if kept != 4 {
		t.Fatalf("dry spell: %d of %d saves kept, want 4", kept, 4*dryAdmit)
	}
	c.dry = 0 // what a restore does
	for i := range dryAfter {
		if !c.admit(1 << 10) {
			t.Fatalf("save %d after a restore refused", i)
		}
	}
}

// TestPromptCacheExpectedSize: admission counts what a state will add once
// it shares the longest prefix its tokens start with, not its whole size,
// so a near-full cache that is thrashing still keeps states that fit once
// shared.
func TestPromptCacheExpectedSize(t *testing.T) {
	c := &promptCache{budget: 1 << 20}
	defer c.free()
	pd, err := newPromptData(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	c.prefixes = append(c.prefixes, &sharedPrefix{tokens: seqTokens(79, 79), data: pd, refs: 1})
	c.size = int64(len(pd))

	if got := c.expected(seqTokens(80, 500), 80<<10); got != 16<<10 {
		t.Errorf("a state starting with the prefix: expected %d bytes, want %d", got, 16<<10)
	}
	if got := c.expected(seqTokens(80, 500)[:79], 80<<10); got != 80<<10 {
		t.Errorf("tokens no longer than the prefix: expected %d, want the whole %d", got, 80<<10)
	}
	other := seqTokens(80, 500)
	other[3] = 9999
	if got := c.expected(other, 80<<10); got != 80<<10 {
		t.Errorf("tokens that leave the prefix: expected %d, want the whole %d", got, 80<<10)
	}

	// Thrashing and nearly full: the whole state would not fit, the shared
	// part does.
	c.size = c.budget - 32<<10
	c.unused = thrashAfter
	if c.admit(80 << 10) {
		t.Fatal("thrashing, a whole state over the budget was admitted at once")
	}
	if !c.admit(c.expected(seqTokens(80, 501), 80<<10)) {
		t.Fatal("thrashing, a state whose shared part fits was refused")
	}
}

// seqTokens returns the tokens 1, 2, ..., n-1 followed by last.
func seqTokens(n int, last llama.Token) []llama.Token {
	t := make([]llama.Token, n)
	for i := range t {
		t[i] = llama.Token(i + 1)
	}
	t[n-1] = last
	return t
}
