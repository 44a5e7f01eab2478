//go:build wasip1

package sdk

import (
	"encoding/binary"
	"fmt"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// The Extism kernel ABI. Offsets and lengths are i64 and address the
// kernel's memory, not this module's, so every byte crosses through these
// calls; the *_u64 forms move 8 bytes per call.

//go:wasmimport extism:host/env input_length
func extismInputLength() uint64

//go:wasmimport extism:host/env input_load_u64
func extismInputLoadU64(offset uint64) uint64

//go:wasmimport extism:host/env input_load_u8
func extismInputLoadU8(offset uint64) uint32

//go:wasmimport extism:host/env alloc
func extismAlloc(length uint64) uint64

//go:wasmimport extism:host/env free
func extismFree(offset uint64)

//go:wasmimport extism:host/env length
func extismLength(offset uint64) uint64

//go:wasmimport extism:host/env load_u64
func extismLoadU64(offset uint64) uint64

//go:wasmimport extism:host/env load_u8
func extismLoadU8(offset uint64) uint32

//go:wasmimport extism:host/env store_u64
func extismStoreU64(offset, value uint64)

//go:wasmimport extism:host/env store_u8
func extismStoreU8(offset uint64, value uint32)

//go:wasmimport extism:host/env output_set
func extismOutputSet(offset, length uint64)

//go:wasmimport extism:host/env error_set
func extismErrorSet(offset uint64)

// The MDSA host functions: (offset of the JSON request) -> offset of the
// JSON reply, both blocks in kernel memory.

//go:wasmimport extism:host/user mdsa_generate
func mdsaGenerate(offset uint64) uint64

//go:wasmimport extism:host/user mdsa_embed
func mdsaEmbed(offset uint64) uint64

//go:wasmimport extism:host/user mdsa_count_tokens
func mdsaCountTokens(offset uint64) uint64

// readInput copies the call's input into Go memory.
func readInput() []byte {
	n := extismInputLength()
	buf := make([]byte, n)
	var i uint64
	for ; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], extismInputLoadU64(i))
	}
	if i < n {
		if n >= 8 {
			// Re-read the last 8 bytes (overlapping) instead of a byte loop.
			binary.LittleEndian.PutUint64(buf[n-8:], extismInputLoadU64(n-8))
		} else {
			for ; i < n; i++ {
				buf[i] = byte(extismInputLoadU8(i))
			}
		}
	}
	return buf
}

// readBlock copies the kernel memory block at offset into Go memory.
func readBlock(offset uint64) []byte {
	n := extismLength(offset)
	buf := make([]byte, n)
	var i uint64
	for ; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], extismLoadU64(offset+i))
	}
	if i < n {
		if n >= 8 {
			binary.LittleEndian.PutUint64(buf[n-8:], extismLoadU64(offset+n-8))
		} else {
			for ; i < n; i++ {
				buf[i] = byte(extismLoadU8(offset + i))
			}
		}
	}
	return buf
}

// writeBlock allocates a kernel memory block and copies b into it.
func writeBlock(b []byte) uint64 {
	n := uint64(len(b))
	offset := extismAlloc(n)
	var i uint64
	for ; i+8 <= n; i += 8 {
		extismStoreU64(offset+i, binary.LittleEndian.Uint64(b[i:]))
	}
	if i < n {
		if n >= 8 {
			// Overlapping write of the last 8 bytes; the overlap rewrites
			// the same values.
			extismStoreU64(offset+n-8, binary.LittleEndian.Uint64(b[n-8:]))
		} else {
			for ; i < n; i++ {
				extismStoreU8(offset+i, uint32(b[i]))
			}
		}
	}
	return offset
}

// callWasmHost sends request to a host function through kernel memory. The
// plugin allocates and frees the request block; the reply block is
// allocated by the host and freed here after it has been copied.
func callWasmHost(function string, request []byte) ([]byte, error) {
	in := writeBlock(request)
	var out uint64
	switch function {
	case abi.HostGenerate:
		out = mdsaGenerate(in)
	case abi.HostEmbed:
		out = mdsaEmbed(in)
	case abi.HostCountTokens:
		out = mdsaCountTokens(in)
	default:
		extismFree(in)
		return nil, fmt.Errorf("unknown host function %q", function)
	}
	extismFree(in)
	if out == 0 {
		return nil, &HostError{Function: function, Code: abi.ErrUnavailable, Message: "the host returned no reply"}
	}
	reply := readBlock(out)
	extismFree(out)
	return reply, nil
}

// runExport serves one export call: input from the kernel, output or error
// back to it. It returns the export's status (0 = success).
func runExport(name string) (status int32) {
	defer func() {
		if r := recover(); r != nil {
			extismErrorSet(writeBlock([]byte(fmt.Sprintf("%s: sdk panicked: %v", name, r))))
			status = 1
		}
	}()
	c, err := Registered()
	if err != nil {
		extismErrorSet(writeBlock([]byte(name + ": " + err.Error())))
		return 1
	}
	var in []byte
	if name != abi.ExportDescribe {
		in = readInput()
	}
	out, err := c.Invoke(wasmHost, name, in)
	if err != nil {
		extismErrorSet(writeBlock([]byte(err.Error())))
		return 1
	}
	extismOutputSet(writeBlock(out), uint64(len(out)))
	return 0
}

//go:wasmexport describe
func exportDescribe() int32 { return runExport(abi.ExportDescribe) }

//go:wasmexport prompt
func exportPrompt() int32 { return runExport(abi.ExportPrompt) }

//go:wasmexport validate
func exportValidate() int32 { return runExport(abi.ExportValidate) }

// ServeHandle serves the handle export. Only the sdk/go/handle package calls
// it, so that the export exists only in plugins that import that package.
func ServeHandle() int32 { return runExport(abi.ExportHandle) }
