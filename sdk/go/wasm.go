//go:build wasip1

package sdk

import (
	"fmt"
	"unsafe"

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

//go:wasmimport extism:host/user mdsa_retrieve
func mdsaRetrieve(offset uint64) uint64

// callWasmRetrieve calls mdsa_retrieve; apart from callWasmHost so that a
// module imports it only when it calls Retrieve.
func callWasmRetrieve(function string, request []byte) ([]byte, error) {
	return callImport(function, request, mdsaRetrieve)
}

// Scratch buffers for the export's input and output. A wasm instance runs
// one export at a time on one thread and exports never re-enter, so each
// call can reuse them; their contents never outlive the call (the prompt
// export, the only one that reads its input from scratch, copies what it
// decodes). Buffers that grew past scratchMax are dropped after the call so
// that one large request does not pin memory.
var scratch struct {
	in, out []byte
}

const scratchMax = 64 << 10

// readInput copies the call's input into Go memory: into the input
// scratch buffer, or, when fresh is set, into a new buffer that the call
// owns (decoded strings may then point into it). Every input_load_u64 is a
// host call; the loop moves 32 bytes per iteration because each iteration
// also costs a termination check.
func readInput(fresh bool) []byte {
	n := extismInputLength()
	var buf []byte
	switch {
	case fresh:
		buf = make([]byte, n)
	case uint64(cap(scratch.in)) < n:
		scratch.in = make([]byte, n)
		fallthrough
	default:
		buf = scratch.in[:n]
	}
	if n < 8 {
		for i := range n {
			buf[i] = byte(extismInputLoadU8(i))
		}
		return buf
	}
	p := bytesPtr(buf)
	var i uint64
	for ; i+32 <= n; i += 32 {
		store8(p, i, extismInputLoadU64(i))
		store8(p, i+8, extismInputLoadU64(i+8))
		store8(p, i+16, extismInputLoadU64(i+16))
		store8(p, i+24, extismInputLoadU64(i+24))
	}
	// The rest in at most 4 reads; the last one may overlap what is there.
	if i+8 <= n {
		store8(p, i, extismInputLoadU64(i))
		i += 8
	}
	if i+8 <= n {
		store8(p, i, extismInputLoadU64(i))
		i += 8
	}
	if i+8 <= n {
		store8(p, i, extismInputLoadU64(i))
		i += 8
	}
	if i < n {
		store8(p, n-8, extismInputLoadU64(n-8))
	}
	return buf
}

// check is the default validate export's Check, recycled across calls
// (with the storage of its word lists) instead of allocated each time:
// allocations are expensive in the sandbox. inUse guards against a nested
// validation (a custom Validate calling the default one): that one gets a
// new Check. Validators must not keep a *Check after their call returns.
var check struct {
	c     *Check
	inUse bool
}

func getCheck() *Check {
	if check.inUse {
		return &Check{} // a nested validation
	}
	if check.c == nil {
		check.c = &Check{}
	}
	check.inUse = true
	return check.c
}

// putCheck recycles the Check that getCheck returned.
func putCheck(c *Check) {
	if c != check.c {
		return
	}
	c.recycle()
	check.inUse = false
}

// releaseScratch drops scratch buffers that grew too large.
func releaseScratch() {
	if cap(scratch.in) > scratchMax {
		scratch.in = nil
	}
	if cap(scratch.out) > scratchMax {
		scratch.out = nil
	}
}

// store8 writes v at p+i, little-endian; the caller guarantees the bytes
// exist.
func store8(p unsafe.Pointer, i, v uint64) { *(*uint64)(unsafe.Add(p, i)) = v }

// readBlock copies the kernel memory block at offset into Go memory.
func readBlock(offset uint64) []byte {
	n := extismLength(offset)
	buf := make([]byte, n)
	if n < 8 {
		for i := range n {
			buf[i] = byte(extismLoadU8(offset + i))
		}
		return buf
	}
	p := bytesPtr(buf)
	var i uint64
	for ; i+32 <= n; i += 32 {
		store8(p, i, extismLoadU64(offset+i))
		store8(p, i+8, extismLoadU64(offset+i+8))
		store8(p, i+16, extismLoadU64(offset+i+16))
		store8(p, i+24, extismLoadU64(offset+i+24))
	}
	for ; i+8 <= n; i += 8 {
		store8(p, i, extismLoadU64(offset+i))
	}
	if i < n {
		store8(p, n-8, extismLoadU64(offset+n-8))
	}
	return buf
}

// writeBlock allocates a kernel memory block and copies b into it.
func writeBlock(b []byte) uint64 {
	n := uint64(len(b))
	offset := extismAlloc(n)
	if n < 8 {
		for i := range n {
			extismStoreU8(offset+i, uint32(b[i]))
		}
		return offset
	}
	p := bytesPtr(b)
	var i uint64
	for ; i+32 <= n; i += 32 {
		extismStoreU64(offset+i, load8(p, int(i)))
		extismStoreU64(offset+i+8, load8(p, int(i+8)))
		extismStoreU64(offset+i+16, load8(p, int(i+16)))
		extismStoreU64(offset+i+24, load8(p, int(i+24)))
	}
	if i+8 <= n {
		extismStoreU64(offset+i, load8(p, int(i)))
		i += 8
	}
	if i+8 <= n {
		extismStoreU64(offset+i, load8(p, int(i)))
		i += 8
	}
	if i+8 <= n {
		extismStoreU64(offset+i, load8(p, int(i)))
		i += 8
	}
	if i < n {
		// Overlapping write of the last 8 bytes; the overlap rewrites the
		// same values.
		extismStoreU64(offset+n-8, load8(p, int(n-8)))
	}
	return offset
}

// callWasmHost sends request to a host function through kernel memory. The
// plugin allocates and frees the request block; the reply block is
// allocated by the host and freed here after it has been copied.
func callWasmHost(function string, request []byte) ([]byte, error) {
	var imp func(uint64) uint64
	switch function {
	case abi.HostGenerate:
		imp = mdsaGenerate
	case abi.HostEmbed:
		imp = mdsaEmbed
	case abi.HostCountTokens:
		imp = mdsaCountTokens
	default:
		return nil, fmt.Errorf("unknown host function %q", function)
	}
	return callImport(function, request, imp)
}

// callImport sends request to the host function imp and reads its reply.
func callImport(function string, request []byte, imp func(uint64) uint64) ([]byte, error) {
	in := writeBlock(request)
	out := imp(in)
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
	// The default prompt export only reads its input during the call, so
	// it uses the scratch buffer; the others get a buffer of their own so
	// that decoded strings need no copies.
	var in []byte
	owned := name != abi.ExportPrompt
	if name != abi.ExportDescribe {
		in = readInput(owned)
	}
	out, err := c.invoke(wasmHost, name, in, scratch.out, owned)
	if err != nil {
		extismErrorSet(writeBlock([]byte(err.Error())))
		releaseScratch()
		return 1
	}
	if cap(out) > cap(scratch.out) {
		scratch.out = out[:0]
	}
	extismOutputSet(writeBlock(out), uint64(len(out)))
	releaseScratch()
	return 0
}

//go:wasmexport describe
func exportDescribe() int32 { return runExport(abi.ExportDescribe) }

//go:wasmexport prompt
func exportPrompt() int32 { return runExport(abi.ExportPrompt) }

//go:wasmexport validate
func exportValidate() int32 { return runExport(abi.ExportValidate) }

//go:wasmexport tool
func exportTool() int32 { return runExport(abi.ExportTool) }

// ServeHandle serves the handle export. Only the sdk/go/handle package calls
// it, so that the export exists only in plugins that import that package.
func ServeHandle() int32 { return runExport(abi.ExportHandle) }
