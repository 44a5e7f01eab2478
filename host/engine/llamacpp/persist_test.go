package llamacpp

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// FuzzReadCacheFile feeds arbitrary files to the prompt cache reader: it
// must refuse what it cannot use, never panic, and never hand back a state
// whose checksum it did not verify.
func FuzzReadCacheFile(f *testing.F) {
	var fp [32]byte
	fp[0] = 7
	dir := f.TempDir()
	good := filepath.Join(dir, "seed"+cacheSuffix)
	data, err := newPromptData(64)
	if err != nil {
		f.Fatal(err)
	}
	copy(data, "some state bytes")
	if err := writeCacheFile(good, fp, []llama.Token{1, 2, 3}, data); err != nil {
		f.Fatal(err)
	}
	freePromptData(data)
	seed, _ := os.ReadFile(good)
	f.Add(seed)
	f.Add([]byte(cacheMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "x"+cacheSuffix)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		e, err := readCacheFile(path, fp, 1<<20)
		if err != nil {
			return
		}
		defer freePromptData(e.data)
		if len(e.tokens) == 0 || len(e.data) == 0 {
			t.Fatalf("accepted an empty entry: %d tokens, %d bytes", len(e.tokens), len(e.data))
		}
		// Whatever was accepted writes back to the same bytes.
		out := filepath.Join(t.TempDir(), "y"+cacheSuffix)
		if err := writeCacheFile(out, fp, e.tokens, e.data); err != nil {
			t.Fatal(err)
		}
		if back, _ := os.ReadFile(out); string(back) != string(b) {
			t.Fatal("an accepted file does not round-trip")
		}
	})
}

func TestCacheFileRoundTrip(t *testing.T) {
	var fp, other [32]byte
	fp[1], other[1] = 1, 2
	data, _ := newPromptData(100)
	copy(data, "state")
	path := filepath.Join(t.TempDir(), "a"+cacheSuffix)
	if err := writeCacheFile(path, fp, []llama.Token{5, 6}, data); err != nil {
		t.Fatal(err)
	}
	e, err := readCacheFile(path, fp, 1<<20)
	if err != nil || len(e.tokens) != 2 || e.tokens[1] != 6 || string(e.data[:5]) != "state" {
		t.Fatalf("round trip: %+v, %v", e, err)
	}
	freePromptData(e.data)
	if _, err := readCacheFile(path, other, 1<<20); err == nil {
		t.Fatal("a file of another fingerprint was accepted")
	}
	if _, err := readCacheFile(path, fp, 10); err != errCacheFull {
		t.Fatalf("no room: %v, want errCacheFull", err)
	}
}
