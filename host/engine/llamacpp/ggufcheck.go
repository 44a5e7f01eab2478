package llamacpp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// ggufMagic opens every GGUF file.
var ggufMagic = [4]byte{'G', 'G', 'U', 'F'}

// checkModelFile gives a clear error, naming path, for the common ways a
// model file is wrong before llama.cpp sees it: missing, not a regular file,
// or not GGUF at all. llama.cpp's own failure message is terse and goes to
// its log, so these cases are caught here first.
func checkModelFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("llamacpp: model file %s does not exist: %w", path, err)
		}
		return fmt.Errorf("llamacpp: model file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("llamacpp: model path %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("llamacpp: opening model file %s: %w", path, err)
	}
	defer f.Close()
	var head [24]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("llamacpp: reading model file %s: %w", path, err)
	}
	if err := checkGGUFHeader(head[:n]); err != nil {
		return fmt.Errorf("llamacpp: model file %s: %w", path, err)
	}
	return nil
}

// checkGGUFHeader validates the fixed GGUF header: magic, a version llama.cpp
// reads (2 or 3), and tensor and metadata counts that fit the format. b holds
// the first bytes of the file (24 are enough).
func checkGGUFHeader(b []byte) error {
	if len(b) < 4 || [4]byte(b[:4]) != ggufMagic {
		return errors.New("not a GGUF file (missing GGUF magic); is it a complete download of a .gguf model?")
	}
	if len(b) < 24 {
		return fmt.Errorf("truncated GGUF header (%d bytes)", len(b))
	}
	version := binary.LittleEndian.Uint32(b[4:8])
	if version != 2 && version != 3 {
		return fmt.Errorf("unsupported GGUF version %d (want 2 or 3)", version)
	}
	tensors := binary.LittleEndian.Uint64(b[8:16])
	kvs := binary.LittleEndian.Uint64(b[16:24])
	const sane = 1 << 24
	if tensors > sane || kvs > sane {
		return fmt.Errorf("corrupt GGUF header (%d tensors, %d metadata keys)", tensors, kvs)
	}
	return nil
}
