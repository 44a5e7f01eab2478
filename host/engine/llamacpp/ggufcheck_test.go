package llamacpp

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func ggufHeader(version uint32, tensors, kvs uint64) []byte {
	b := []byte("GGUF")
	b = binary.LittleEndian.AppendUint32(b, version)
	b = binary.LittleEndian.AppendUint64(b, tensors)
	return binary.LittleEndian.AppendUint64(b, kvs)
}

func TestCheckGGUFHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string // substring of the error; "" = valid
	}{
		{"v3", ggufHeader(3, 10, 20), ""},
		{"v2", ggufHeader(2, 0, 0), ""},
		{"empty", nil, "not a GGUF file"},
		{"text", []byte("hello, this is not a model"), "not a GGUF file"},
		{"short", []byte("GGUF\x03\x00"), "truncated"},
		{"v1", ggufHeader(1, 1, 1), "unsupported GGUF version 1"},
		{"huge", ggufHeader(3, 1<<40, 1), "corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkGGUFHeader(tc.in)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestCheckModelFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.gguf")
	if err := checkModelFile(missing); err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing: %v", err)
	}
	if err := checkModelFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("dir: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.gguf")
	if err := os.WriteFile(garbage, []byte("this is not a model at all, just text"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkModelFile(garbage); err == nil || !strings.Contains(err.Error(), garbage) || !strings.Contains(err.Error(), "not a GGUF file") {
		t.Fatalf("garbage: %v", err)
	}
}

// FuzzCheckGGUFHeader makes sure arbitrary file heads never panic and that
// anything accepted really starts like a GGUF v2/v3 file.
func FuzzCheckGGUFHeader(f *testing.F) {
	f.Add(ggufHeader(3, 5, 7))
	f.Add([]byte("GGUF"))
	f.Add([]byte{})
	f.Add([]byte("\x00\x00\x00\x00garbage garbage garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkGGUFHeader(b) == nil {
			if len(b) < 24 || string(b[:4]) != "GGUF" {
				t.Fatalf("accepted %q", b)
			}
			if v := binary.LittleEndian.Uint32(b[4:8]); v != 2 && v != 3 {
				t.Fatalf("accepted version %d", v)
			}
		}
	})
}
