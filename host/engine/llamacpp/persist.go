package llamacpp

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/mdsa-go/mdsa/internal/atomicfile"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// A prompt cache file (NAME.kv in Options.PromptCacheDir) holds one entry:
//
//	magic      8 bytes  "MDSAKV01"
//	model     32 bytes  fingerprint of the model file and the context (see fingerprint)
//	tokens     4 bytes  count n (little endian), then n × 4 bytes of token ids
//	state      8 bytes  length m, then m bytes of llama.cpp sequence state
//	crc        4 bytes  CRC-32C of everything before it
//
// Files are written to a temporary name and renamed, so a crash leaves
// either the old file or the new one.
const (
	cacheMagic  = "MDSAKV01"
	cacheSuffix = ".kv"
	// maxCacheTokens bounds the token count a file may claim.
	maxCacheTokens = 1 << 24
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// fingerprint identifies what a saved state is valid for: the model file
// (path, size, modification time) and llama.cpp's description of the model
// and context. A state saved for anything else is never restored.
func (s *sched) fingerprint() ([32]byte, error) {
	e := s.e
	st, err := os.Stat(e.info.Path)
	if err != nil {
		return [32]byte{}, fmt.Errorf("llamacpp: prompt cache: %w", err)
	}
	abs, _ := filepath.Abs(e.info.Path)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00%d\x00%d\x00%d", abs, st.Size(), st.ModTime().UnixNano(),
		e.info.Description, e.info.Params, s.nCtx, s.nVocab)
	var fp [32]byte
	h.Sum(fp[:0])
	return fp, nil
}

// loadPromptCache reads the entries an earlier run saved in dir into the
// prompt cache, newest first while they fit its budget. Damaged files and
// files of another model or context are removed. It runs before the loop
// starts.
func (s *sched) loadPromptCache(dir string) {
	if s.cache == nil || dir == "" {
		return
	}
	log := s.e.log.With("model", s.e.info.Name, "dir", dir)
	fp, err := s.fingerprint()
	if err != nil {
		log.Warn("llama.cpp prompt cache not loaded", "err", err)
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("llama.cpp prompt cache not loaded", "err", err)
		}
		return
	}
	type file struct {
		path string
		mod  int64
	}
	var files []file
	for _, de := range ents {
		if !de.Type().IsRegular() || !strings.HasSuffix(de.Name(), cacheSuffix) {
			continue
		}
		if info, err := de.Info(); err == nil {
			files = append(files, file{filepath.Join(dir, de.Name()), info.ModTime().UnixNano()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return int(b.mod - a.mod) })
	loaded := 0
	for i, f := range files {
		ent, err := readCacheFile(f.path, fp, s.cache.budget-s.cache.size)
		switch {
		case errors.Is(err, errCacheFull):
			continue
		case err != nil:
			log.Warn("llama.cpp prompt cache: removing a file that cannot be used", "file", f.path, "err", err)
			os.Remove(f.path)
			continue
		}
		ent.used = uint64(len(files) - i) // newer files are more recently used
		s.cache.share(ent)
		if s.cache.add(ent) {
			loaded++
		}
	}
	s.clock = uint64(len(files) + 1)
	log.Debug("llama.cpp prompt cache loaded", "entries", loaded, "bytes", s.cache.size)
}

// errCacheFull says a file is fine but does not fit what is left of the
// budget.
var errCacheFull = errors.New("llamacpp: prompt cache full")

// readCacheFile reads and checks one file; the state goes into memory from
// newPromptData, at most room bytes.
func readCacheFile(path string, fp [32]byte, room int64) (*promptEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	crc := crc32.New(crcTable)
	r := io.TeeReader(bufio.NewReaderSize(f, 1<<20), crc)
	var head [8 + 32 + 4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, fmt.Errorf("reading the header: %w", err)
	}
	if string(head[:8]) != cacheMagic {
		return nil, errors.New("not a prompt cache file")
	}
	if [32]byte(head[8:40]) != fp {
		return nil, errors.New("saved for another model file or context")
	}
	n := int64(binary.LittleEndian.Uint32(head[40:]))
	if n == 0 || n > maxCacheTokens || 4*n > st.Size() {
		return nil, fmt.Errorf("bad token count %d", n)
	}
	raw := make([]byte, 4*n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("reading the tokens: %w", err)
	}
	tokens := make([]llama.Token, n)
	for i := range tokens {
		tokens[i] = llama.Token(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	var lenb [8]byte
	if _, err := io.ReadFull(r, lenb[:]); err != nil {
		return nil, fmt.Errorf("reading the state length: %w", err)
	}
	m := binary.LittleEndian.Uint64(lenb[:])
	if want := uint64(8+32+4+4*n+8+4) + m; m == 0 || want != uint64(st.Size()) {
		return nil, fmt.Errorf("state length %d does not match the file's size %d", m, st.Size())
	}
	if int64(m) > room {
		return nil, errCacheFull
	}
	data, err := newPromptData(int(m))
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(r, data); err != nil {
		freePromptData(data)
		return nil, fmt.Errorf("reading the state: %w", err)
	}
	sum := crc.Sum32()
	var crcb [4]byte
	if _, err := io.ReadFull(r, crcb[:]); err != nil || binary.LittleEndian.Uint32(crcb[:]) != sum {
		freePromptData(data)
		return nil, errors.New("checksum mismatch (damaged file)")
	}
	return &promptEntry{tokens: tokens, data: data}, nil
}

// savePromptCache saves the sequences' caches into the prompt cache and
// writes every entry to dir, removing the files of entries no longer
// kept. It runs after the loop has ended. Failures are logged: closing an
// engine never fails for its cache.
func (s *sched) savePromptCache(dir string) {
	if s.cache == nil || dir == "" {
		return
	}
	log := s.e.log.With("model", s.e.info.Name, "dir", dir)
	for _, sl := range s.slots {
		s.saveSlot(sl)
	}
	fp, err := s.fingerprint()
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		log.Warn("llama.cpp prompt cache not saved", "err", err)
		return
	}
	keep := map[string]bool{}
	for _, ent := range s.cache.entries {
		name := entryName(ent)
		keep[name] = true
		data, err := s.cache.whole(ent)
		if err == nil {
			err = writeCacheFile(filepath.Join(dir, name), fp, ent.tokens, data)
		}
		if err != nil {
			log.Warn("llama.cpp prompt cache: an entry not saved", "err", err)
			delete(keep, name)
		}
	}
	if ents, err := os.ReadDir(dir); err == nil {
		for _, de := range ents {
			if strings.HasSuffix(de.Name(), cacheSuffix) && !keep[de.Name()] {
				os.Remove(filepath.Join(dir, de.Name()))
			}
		}
	}
	log.Debug("llama.cpp prompt cache saved", "entries", len(keep), "bytes", s.cache.size)
}

// entryName names an entry's file by its tokens.
func entryName(e *promptEntry) string {
	h := sha256.New()
	var b [4]byte
	for _, t := range e.tokens {
		binary.LittleEndian.PutUint32(b[:], uint32(t))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:12]) + cacheSuffix
}

// writeCacheFile writes one entry, its tokens and whole state,
// atomically (see atomicfile).
func writeCacheFile(path string, fp [32]byte, tokens []llama.Token, data []byte) error {
	return atomicfile.Write(path, func(out io.Writer) error {
		crc := crc32.New(crcTable)
		w := io.MultiWriter(out, crc)
		var b4 [4]byte
		var b8 [8]byte
		w.Write([]byte(cacheMagic)) // write errors show at the end
		w.Write(fp[:])
		binary.LittleEndian.PutUint32(b4[:], uint32(len(tokens)))
		w.Write(b4[:])
		for _, t := range tokens {
			binary.LittleEndian.PutUint32(b4[:], uint32(t))
			w.Write(b4[:])
		}
		binary.LittleEndian.PutUint64(b8[:], uint64(len(data)))
		w.Write(b8[:])
		w.Write(data)
		binary.LittleEndian.PutUint32(b4[:], crc.Sum32())
		_, err := out.Write(b4[:])
		return err
	})
}
