package gguf

import (
	"fmt"
	"math/bits"
	"strings"
)

// ValueType is the type tag of a GGUF metadata value, as stored in the file.
type ValueType uint32

// Metadata value types, numbered as in the GGUF specification.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	TypeUint8: "uint8", TypeInt8: "int8", TypeUint16: "uint16", TypeInt16: "int16",
	TypeUint32: "uint32", TypeInt32: "int32", TypeFloat32: "float32", TypeBool: "bool",
	TypeString: "string", TypeArray: "array", TypeUint64: "uint64", TypeInt64: "int64",
	TypeFloat64: "float64",
}

// String returns the lower-case name of the type, e.g. "uint32".
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// TensorType is a ggml tensor data type, numbered as ggml's enum ggml_type.
// Only the types the writer can encode have constants here.
type TensorType uint32

// Tensor data types the writer can encode.
const (
	// F32 is IEEE 754 binary32, little endian.
	F32 TensorType = 0
	// F16 is IEEE 754 binary16, little endian.
	F16 TensorType = 1
	// Q4_0 stores blocks of 32 values as an fp16 scale d followed by 16
	// bytes: byte j holds element j in its low nibble and element j+16 in its
	// high nibble; a value is (q-8)*d. 18 bytes per block.
	Q4_0 TensorType = 2
	// Q8_0 stores blocks of 32 values as an fp16 scale d followed by 32
	// signed bytes q; a value is q*d. 34 bytes per block.
	Q8_0 TensorType = 8
)

// QK is the number of values in one Q4_0 or Q8_0 block.
const QK = 32

// String returns ggml's name of the type, e.g. "Q4_0".
func (t TensorType) String() string {
	switch t {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case Q4_0:
		return "Q4_0"
	case Q8_0:
		return "Q8_0"
	}
	return fmt.Sprintf("TensorType(%d)", uint32(t))
}

// ParseTensorType returns the type named s ("F32", "F16", "Q8_0", "Q4_0";
// case-insensitive).
func ParseTensorType(s string) (TensorType, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "F32":
		return F32, nil
	case "F16":
		return F16, nil
	case "Q4_0":
		return Q4_0, nil
	case "Q8_0":
		return Q8_0, nil
	}
	return 0, fmt.Errorf("gguf: unsupported tensor type %q (want F32, F16, Q8_0 or Q4_0)", s)
}

// Valid reports whether the writer can encode tensors of type t.
func (t TensorType) Valid() bool {
	switch t {
	case F32, F16, Q4_0, Q8_0:
		return true
	}
	return false
}

// BlockSize returns the number of values per block: 1 for F32 and F16, 32
// for the quantised types. A row length must be a multiple of it.
func (t TensorType) BlockSize() int {
	switch t {
	case Q4_0, Q8_0:
		return QK
	}
	return 1
}

// BlockBytes returns the encoded size of one block in bytes (0 for a type the
// writer cannot encode).
func (t TensorType) BlockBytes() int {
	switch t {
	case F32:
		return 4
	case F16:
		return 2
	case Q4_0:
		return 2 + QK/2
	case Q8_0:
		return 2 + QK
	}
	return 0
}

// Bytes returns the encoded size of n values of type t. It fails when the
// type is unsupported, n is not a whole number of blocks or the size
// overflows.
func (t TensorType) Bytes(n uint64) (uint64, error) {
	if !t.Valid() {
		return 0, fmt.Errorf("gguf: unsupported tensor type %v", t)
	}
	bs := uint64(t.BlockSize())
	if n%bs != 0 {
		return 0, fmt.Errorf("gguf: %d values is not a whole number of %v blocks of %d", n, t, bs)
	}
	hi, lo := bits.Mul64(n/bs, uint64(t.BlockBytes()))
	if hi != 0 {
		return 0, fmt.Errorf("gguf: %d values of %v overflow a 64-bit size", n, t)
	}
	return lo, nil
}

// FileType returns the value of general.file_type (llama.cpp's enum
// llama_ftype) for a model whose large tensors are of type t.
func (t TensorType) FileType() uint32 {
	switch t {
	case F16:
		return 1
	case Q4_0:
		return 2
	case Q8_0:
		return 7
	}
	return 0 // ALL_F32
}
