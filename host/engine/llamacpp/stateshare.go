package llamacpp

import (
	"bytes"
	"encoding/binary"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// Sharing a common prefix between saved states.
//
// Every prompt of a domain starts with the same system prompt, so the
// states the prompt cache keeps mostly hold the same keys and values: for
// the benchmark's finance prompts 334 of about 370 cells. The cache keeps
// such a prefix once (a sharedPrefix) and each entry only the rest of its
// state, and puts the whole state back together when it is restored or
// written to disk. A state is shared only when its bytes for the prefix
// are equal to the prefix's, compared when it is saved, so what is
// restored is byte for byte what llama.cpp wrote (less the source
// sequence ids of the cell records, which llama.cpp ignores on restore).

// minSharedPrefix is the fewest tokens worth a shared prefix.
const minSharedPrefix = 64

// stateLayout describes a sequence state as llama.cpp writes it
// (llama_state_seq_get_data of a KV cache): a magic number and the source
// sequence id, then of its streams exactly one holding cells 0..n-1
// at positions 0..n-1, the cells' records, then per layer the key rows and
// the value rows (not transposed), each row the same size for every cell.
// Any other state (recurrent memory, transposed values, cells out of
// order) has no layout and is kept whole.
type stateLayout struct {
	cells   int
	regions []stateRegion
}

// stateRegion is a part of a state: fixed bytes (row == 0), or one row of
// row bytes per cell.
type stateRegion struct {
	off, size, row int
	// records are the cells' records (position, sequence count, sequence
	// id): not compared, since the sequence id is the saving slot's.
	records bool
}

// Sizes of the parts of a state llama.cpp writes.
const (
	cellRecordSize = 12 // position int32, sequence count uint32, sequence id int32
	maxStateLayers = 4096
	maxStateRow    = 1 << 24
	maxStateStream = 1 << 16
)

// stateReader reads little-endian fields of a state, noting overruns.
type stateReader struct {
	b   []byte
	off int
	bad bool
}

// take returns the next n bytes, or nil after an overrun.
func (r *stateReader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b)-r.off < n {
		r.bad = true
		return nil
	}
	r.off += n
	return r.b[r.off-n : r.off]
}

func (r *stateReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *stateReader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// stateMagic starts every sequence state of this llama.cpp release, before
// the id of the sequence it was taken from.
const stateMagic = 0xaf143cd8

// parseStateLayout reads the layout of state b, or reports false when b is
// not a state of the form stateLayout describes, or not exactly one.
func parseStateLayout(b []byte) (stateLayout, bool) {
	var lay stateLayout
	r := &stateReader{b: b}
	fixed := 0 // start of the fixed bytes not yet in a region
	addRows := func(row int, records bool) {
		if r.off > fixed {
			lay.regions = append(lay.regions, stateRegion{off: fixed, size: r.off - fixed})
		}
		lay.regions = append(lay.regions, stateRegion{off: r.off, size: lay.cells * row, row: row, records: records})
		r.take(lay.cells * row)
		fixed = r.off
	}
	if r.u32() != stateMagic {
		return stateLayout{}, false
	}
	r.u32() // the sequence it was taken from
	streams := r.u32()
	if streams == 0 || streams > maxStateStream {
		return stateLayout{}, false
	}
	for range streams {
		n := int(r.u32())
		if r.bad {
			return stateLayout{}, false
		}
		if n == 0 {
			continue
		}
		if lay.cells != 0 || n > len(b)/cellRecordSize {
			return stateLayout{}, false // a second stream with cells
		}
		lay.cells = n
		rec := r.off
		for c := range n {
			if r.bad || len(b)-r.off < cellRecordSize {
				return stateLayout{}, false
			}
			pos := int32(binary.LittleEndian.Uint32(b[r.off:]))
			count := binary.LittleEndian.Uint32(b[r.off+4:])
			if pos != int32(c) || count != 1 {
				return stateLayout{}, false
			}
			r.off += cellRecordSize
		}
		r.off = rec
		addRows(cellRecordSize, true)
		transposed, layers := r.u32(), r.u32()
		if r.bad || transposed != 0 || layers == 0 || layers > maxStateLayers {
			return stateLayout{}, false
		}
		for range 2 * layers { // keys, then values
			r.u32() // type
			row := r.u64()
			if r.bad || row == 0 || row > maxStateRow {
				return stateLayout{}, false
			}
			addRows(int(row), false)
		}
	}
	if r.bad || lay.cells == 0 {
		return stateLayout{}, false
	}
	if r.off != len(b) {
		return stateLayout{}, false
	}
	if fixed < len(b) {
		lay.regions = append(lay.regions, stateRegion{off: fixed, size: len(b) - fixed})
	}
	return lay, true
}

// rowBytes is the size of one cell's rows over all regions.
func (l stateLayout) rowBytes() int {
	n := 0
	for _, rg := range l.regions {
		n += rg.row
	}
	return n
}

// sameRows reports whether l and m have the same rows in the same order.
func (l stateLayout) sameRows(m stateLayout) bool {
	i, j := 0, 0
	for {
		for i < len(l.regions) && l.regions[i].row == 0 {
			i++
		}
		for j < len(m.regions) && m.regions[j].row == 0 {
			j++
		}
		if i == len(l.regions) || j == len(m.regions) {
			return i == len(l.regions) && j == len(m.regions)
		}
		if l.regions[i].row != m.regions[j].row || l.regions[i].records != m.regions[j].records {
			return false
		}
		i++
		j++
	}
}

// sharedPrefix holds the rows of the first len(tokens) cells of the
// states sharing them, region after region, for the entries that refer to
// it.
type sharedPrefix struct {
	tokens []llama.Token
	layout stateLayout // of the state it was cut from
	data   []byte      // mapped outside the Go heap, like entry states
	refs   int
}

// matches reports whether full, a whole state of layout lay, holds p's
// rows for its first n cells (n at most len(p.tokens)).
func (p *sharedPrefix) matches(full []byte, lay stateLayout, n int) bool {
	if !lay.sameRows(p.layout) || lay.cells < n || n > len(p.tokens) {
		return false
	}
	at := 0
	for _, rg := range lay.regions {
		if rg.row == 0 {
			continue
		}
		k := n * rg.row
		if !rg.records && !bytes.Equal(full[rg.off:rg.off+k], p.data[at:at+k]) {
			return false
		}
		at += len(p.tokens) * rg.row
	}
	return true
}

// cutPrefix copies the rows of the first n cells of full (layout lay) into
// dst, which must hold n*lay.rowBytes() bytes.
func cutPrefix(dst, full []byte, lay stateLayout, n int) {
	at := 0
	for _, rg := range lay.regions {
		if rg.row != 0 {
			at += copy(dst[at:], full[rg.off:rg.off+n*rg.row])
		}
	}
}

// cutRest copies what full (layout lay) holds besides the rows of its
// first n cells into dst, which must hold len(full) - n*lay.rowBytes()
// bytes.
func cutRest(dst, full []byte, lay stateLayout, n int) {
	at := 0
	for _, rg := range lay.regions {
		skip := n * rg.row
		at += copy(dst[at:], full[rg.off+skip:rg.off+rg.size])
	}
}

// joinState writes the whole state of an entry with rest (from cutRest)
// and prefix p into dst, which must hold len(rest) + len(p.data) bytes.
func joinState(dst, rest []byte, lay stateLayout, p *sharedPrefix) {
	at, from, pre := 0, 0, 0
	n := len(p.tokens)
	for _, rg := range lay.regions {
		if rg.row != 0 {
			k := n * rg.row
			at += copy(dst[at:], p.data[pre:pre+k])
			pre += k
		}
		k := rg.size - n*rg.row
		at += copy(dst[at:], rest[from:from+k])
		from += k
	}
}
