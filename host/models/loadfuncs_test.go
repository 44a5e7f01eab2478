package models

import (
	"errors"
	"testing"
)

func TestOutOfMemory(t *testing.T) {
	for msg, want := range map[string]bool{
		"llama.cpp: ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer": true,
		"CUDA error: out of memory":    true,
		"mmap: cannot allocate memory": true,
		"unknown model architecture":   false,
	} {
		base := errors.New(msg)
		err := OutOfMemory(base)
		if errors.Is(err, ErrOutOfMemory) != want || !errors.Is(err, base) {
			t.Errorf("OutOfMemory(%q) = %v", msg, err)
		}
	}
	if OutOfMemory(nil) != nil {
		t.Error("OutOfMemory(nil) != nil")
	}
}
