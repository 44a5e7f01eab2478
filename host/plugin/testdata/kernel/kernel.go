//go:build wasip1

// Package kernel is the raw Extism kernel glue shared by the test plugins:
// imports from extism:host/env and extism:host/user and helpers that move
// bytes in and out of kernel memory 8 bytes at a time.
package kernel

import "encoding/binary"

//go:wasmimport extism:host/env input_length
func inputLength() uint64

//go:wasmimport extism:host/env input_load_u64
func inputLoadU64(off uint64) uint64

//go:wasmimport extism:host/env input_load_u8
func inputLoadU8(off uint64) uint32

//go:wasmimport extism:host/env alloc
func alloc(n uint64) uint64

//go:wasmimport extism:host/env free
func free(off uint64)

//go:wasmimport extism:host/env length
func length(off uint64) uint64

//go:wasmimport extism:host/env load_u64
func loadU64(off uint64) uint64

//go:wasmimport extism:host/env load_u8
func loadU8(off uint64) uint32

//go:wasmimport extism:host/env store_u64
func storeU64(off, v uint64)

//go:wasmimport extism:host/env store_u8
func storeU8(off uint64, v uint32)

//go:wasmimport extism:host/env output_set
func outputSet(off, n uint64)

//go:wasmimport extism:host/env error_set
func errorSet(off uint64)

//go:wasmimport extism:host/env config_get
func configGet(off uint64) uint64

//go:wasmimport extism:host/env http_request
func httpRequest(req, body uint64) uint64

//go:wasmimport extism:host/user mdsa_generate
func mdsaGenerate(off uint64) uint64

//go:wasmimport extism:host/user mdsa_count_tokens
func mdsaCountTokens(off uint64) uint64

//go:wasmimport extism:host/user mdsa_embed
func mdsaEmbed(off uint64) uint64

// Input returns the input of the current call. It makes one kernel call
// (input_length); input_load_u64 is served natively by the host. A tail
// shorter than 8 bytes is read with one overlapping 8-byte load.
func Input() []byte {
	n := inputLength()
	b := make([]byte, n)
	if n < 8 {
		for i := uint64(0); i < n; i++ {
			b[i] = byte(inputLoadU8(i))
		}
		return b
	}
	for i := uint64(0); i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], inputLoadU64(i))
	}
	binary.LittleEndian.PutUint64(b[n-8:], inputLoadU64(n-8))
	return b
}

// write copies b into a fresh kernel memory block (one kernel call: alloc).
func write(b []byte) uint64 {
	n := uint64(len(b))
	off := alloc(n)
	if n < 8 {
		for i := uint64(0); i < n; i++ {
			storeU8(off+i, uint32(b[i]))
		}
		return off
	}
	for i := uint64(0); i+8 <= n; i += 8 {
		storeU64(off+i, binary.LittleEndian.Uint64(b[i:]))
	}
	storeU64(off+n-8, binary.LittleEndian.Uint64(b[n-8:]))
	return off
}

// read copies a kernel memory block out (one kernel call: length).
func read(off uint64) []byte {
	n := length(off)
	b := make([]byte, n)
	if n < 8 {
		for i := uint64(0); i < n; i++ {
			b[i] = byte(loadU8(off + i))
		}
		return b
	}
	for i := uint64(0); i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], loadU64(off+i))
	}
	binary.LittleEndian.PutUint64(b[n-8:], loadU64(off+n-8))
	return b
}

// Config returns the host-supplied config value for key, and whether it is set.
func Config(key string) (string, bool) {
	k := write([]byte(key))
	off := configGet(k)
	free(k)
	if off == 0 {
		return "", false
	}
	v := read(off)
	free(off)
	return string(v), true
}

// HTTPGet calls the Extism http_request function (the MDSA host denies it).
func HTTPGet(url string) {
	req := write([]byte(`{"url":"` + url + `","method":"GET"}`))
	httpRequest(req, 0)
}

// Output sets the call's output.
func Output(b []byte) {
	outputSet(write(b), uint64(len(b)))
}

// Error sets the call's error message.
func Error(msg string) {
	errorSet(write([]byte(msg)))
}

// Generate calls mdsa_generate with a JSON request and returns the JSON reply.
func Generate(req []byte) []byte {
	off := write(req)
	out := mdsaGenerate(off)
	free(off)
	return read(out)
}

// Embed calls mdsa_embed with a JSON request and returns the JSON reply.
func Embed(req []byte) []byte {
	off := write(req)
	out := mdsaEmbed(off)
	free(off)
	return read(out)
}

// CountTokens calls mdsa_count_tokens with a JSON request and returns the reply.
func CountTokens(req []byte) []byte {
	off := write(req)
	out := mdsaCountTokens(off)
	free(off)
	return read(out)
}

// OK outputs a fixed valid reply for export: a prompt response, a validation
// or a handle response.
func OK(export string) int32 {
	switch export {
	case "prompt":
		Output([]byte(`{"messages":[{"role":"user","content":"hello"}]}`))
	case "validate":
		Output([]byte(`{"ok":true,"score":1,"issues":[]}`))
	default:
		Output([]byte(`{"response":"done","validation":{"ok":true,"score":1,"issues":[]}}`))
	}
	return 0
}
