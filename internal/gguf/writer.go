package gguf

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF format version the writer produces.
const Version = 3

// DefaultAlignment is the tensor data alignment used when the metadata has no
// general.alignment key.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that overrides the tensor data alignment.
// Its value must be a uint32 power of two, at least 8.
const KeyAlignment = "general.alignment"

// MaxTensorName is the longest tensor name, in bytes, that ggml accepts
// (GGML_MAX_NAME less the terminating NUL).
const MaxTensorName = 63

// MaxDims is the largest number of dimensions a ggml tensor can have.
const MaxDims = 4

// RowFunc fills dst with row number row of a tensor. A row is the
// len(dst) == shape[0] values that share one index over the other
// dimensions; rows are numbered from 0 in file order (the first dimension
// varies fastest). The writer calls it once per row, in order, from one
// goroutine; dst is reused between calls.
type RowFunc func(row int, dst []float32) error

type kv struct {
	key  string
	typ  ValueType
	elem ValueType // element type when typ is TypeArray
	val  any       // the Go value: a scalar, or a slice for arrays
}

type tensor struct {
	name  string
	shape []uint64
	typ   TensorType
	rows  int    // product of shape[1:]
	size  uint64 // encoded bytes
	data  []float32
	raw   []byte
	fill  RowFunc
}

// Writer assembles a GGUF v3 file: metadata key/values, kept in the order
// they were first set, and tensors, stored in the order they were added.
// Setting a key again replaces its value in place. A Writer is not safe for
// concurrent use.
type Writer struct {
	kvs     []kv
	keys    map[string]int
	tensors []*tensor
	names   map[string]bool
}

// NewWriter returns an empty Writer.
func NewWriter() *Writer {
	return &Writer{keys: map[string]int{}, names: map[string]bool{}}
}

func (w *Writer) set(key string, typ, elem ValueType, val any) {
	if i, ok := w.keys[key]; ok {
		w.kvs[i] = kv{key: key, typ: typ, elem: elem, val: val}
		return
	}
	w.keys[key] = len(w.kvs)
	w.kvs = append(w.kvs, kv{key: key, typ: typ, elem: elem, val: val})
}

// SetUint8 sets key to a uint8 value.
func (w *Writer) SetUint8(key string, v uint8) { w.set(key, TypeUint8, 0, v) }

// SetInt8 sets key to an int8 value.
func (w *Writer) SetInt8(key string, v int8) { w.set(key, TypeInt8, 0, v) }

// SetUint16 sets key to a uint16 value.
func (w *Writer) SetUint16(key string, v uint16) { w.set(key, TypeUint16, 0, v) }

// SetInt16 sets key to an int16 value.
func (w *Writer) SetInt16(key string, v int16) { w.set(key, TypeInt16, 0, v) }

// SetUint32 sets key to a uint32 value.
func (w *Writer) SetUint32(key string, v uint32) { w.set(key, TypeUint32, 0, v) }

// SetInt32 sets key to an int32 value.
func (w *Writer) SetInt32(key string, v int32) { w.set(key, TypeInt32, 0, v) }

// SetUint64 sets key to a uint64 value.
func (w *Writer) SetUint64(key string, v uint64) { w.set(key, TypeUint64, 0, v) }

// SetInt64 sets key to an int64 value.
func (w *Writer) SetInt64(key string, v int64) { w.set(key, TypeInt64, 0, v) }

// SetFloat32 sets key to a float32 value.
func (w *Writer) SetFloat32(key string, v float32) { w.set(key, TypeFloat32, 0, v) }

// SetFloat64 sets key to a float64 value.
func (w *Writer) SetFloat64(key string, v float64) { w.set(key, TypeFloat64, 0, v) }

// SetBool sets key to a bool value.
func (w *Writer) SetBool(key string, v bool) { w.set(key, TypeBool, 0, v) }

// SetString sets key to a string value.
func (w *Writer) SetString(key string, v string) { w.set(key, TypeString, 0, v) }

// SetArray sets key to an array. values must be a slice of one of uint8,
// int8, uint16, int16, uint32, int32, uint64, int64, float32, float64, bool
// or string; the element type follows from the Go type. The slice is kept,
// not copied, until the file is written. Nested arrays are not supported.
func (w *Writer) SetArray(key string, values any) error {
	var elem ValueType
	switch values.(type) {
	case []uint8:
		elem = TypeUint8
	case []int8:
		elem = TypeInt8
	case []uint16:
		elem = TypeUint16
	case []int16:
		elem = TypeInt16
	case []uint32:
		elem = TypeUint32
	case []int32:
		elem = TypeInt32
	case []uint64:
		elem = TypeUint64
	case []int64:
		elem = TypeInt64
	case []float32:
		elem = TypeFloat32
	case []float64:
		elem = TypeFloat64
	case []bool:
		elem = TypeBool
	case []string:
		elem = TypeString
	default:
		return fmt.Errorf("gguf: metadata key %q: unsupported array type %T", key, values)
	}
	w.set(key, TypeArray, elem, values)
	return nil
}

// Alignment returns the tensor data alignment: the value of
// general.alignment, or DefaultAlignment when the key is not set. It fails
// when the key holds something other than a uint32 power of two >= 8.
func (w *Writer) Alignment() (uint32, error) {
	i, ok := w.keys[KeyAlignment]
	if !ok {
		return DefaultAlignment, nil
	}
	e := w.kvs[i]
	v, isU32 := e.val.(uint32)
	if !isU32 || e.typ != TypeUint32 {
		return 0, fmt.Errorf("gguf: metadata key %s must be a uint32, not %v", KeyAlignment, e.typ)
	}
	if v < 8 || v&(v-1) != 0 {
		return 0, fmt.Errorf("gguf: metadata key %s = %d: must be a power of two >= 8", KeyAlignment, v)
	}
	return v, nil
}

// AddTensor adds a tensor whose values are data, in file order (the first
// dimension varies fastest, as in ggml's ne[]). shape has 1 to 4 dimensions,
// shape[0] must be a multiple of typ.BlockSize() and len(data) the product of
// shape. data is kept, not copied: do not change it until the file is written.
func (w *Writer) AddTensor(name string, shape []uint64, typ TensorType, data []float32) error {
	t, err := w.newTensor(name, shape, typ)
	if err != nil {
		return err
	}
	if n := uint64(t.rows) * shape[0]; uint64(len(data)) != n {
		return fmt.Errorf("gguf: tensor %q: shape %v needs %d values, got %d", name, shape, n, len(data))
	}
	t.data = data
	w.add(t)
	return nil
}

// AddTensorFunc adds a tensor whose rows are produced by fill while the file
// is written, so that the whole tensor never has to be in memory. The same
// shape rules as for AddTensor apply. fill must return the same values each
// time it is called if the Writer writes more than once.
func (w *Writer) AddTensorFunc(name string, shape []uint64, typ TensorType, fill RowFunc) error {
	t, err := w.newTensor(name, shape, typ)
	if err != nil {
		return err
	}
	if fill == nil {
		return fmt.Errorf("gguf: tensor %q: nil row function", name)
	}
	t.fill = fill
	w.add(t)
	return nil
}

// AddTensorBytes adds a tensor whose data is already encoded as typ (for
// example produced by Quantize). len(raw) must equal the encoded size of
// shape. raw is kept, not copied.
func (w *Writer) AddTensorBytes(name string, shape []uint64, typ TensorType, raw []byte) error {
	t, err := w.newTensor(name, shape, typ)
	if err != nil {
		return err
	}
	if uint64(len(raw)) != t.size {
		return fmt.Errorf("gguf: tensor %q: %v %v needs %d bytes, got %d", name, typ, shape, t.size, len(raw))
	}
	t.raw = raw
	w.add(t)
	return nil
}

func (w *Writer) add(t *tensor) {
	w.names[t.name] = true
	w.tensors = append(w.tensors, t)
}

func (w *Writer) newTensor(name string, shape []uint64, typ TensorType) (*tensor, error) {
	switch {
	case name == "":
		return nil, errors.New("gguf: empty tensor name")
	case len(name) > MaxTensorName:
		return nil, fmt.Errorf("gguf: tensor name %q is %d bytes, the limit is %d", name, len(name), MaxTensorName)
	case w.names[name]:
		return nil, fmt.Errorf("gguf: duplicate tensor %q", name)
	case !typ.Valid():
		return nil, fmt.Errorf("gguf: tensor %q: unsupported type %v", name, typ)
	case len(shape) == 0 || len(shape) > MaxDims:
		return nil, fmt.Errorf("gguf: tensor %q: %d dimensions, want 1 to %d", name, len(shape), MaxDims)
	}
	n := uint64(1)
	for i, d := range shape {
		if d == 0 {
			return nil, fmt.Errorf("gguf: tensor %q: dimension %d is 0", name, i)
		}
		hi, lo := bits.Mul64(n, d)
		if hi != 0 || lo > math.MaxInt64 {
			return nil, fmt.Errorf("gguf: tensor %q: shape %v is too large", name, shape)
		}
		n = lo
	}
	if bs := uint64(typ.BlockSize()); shape[0]%bs != 0 {
		return nil, fmt.Errorf("gguf: tensor %q: row length %d is not a multiple of the %v block size %d", name, shape[0], typ, bs)
	}
	size, err := typ.Bytes(n)
	if err != nil {
		return nil, fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	rows := n / shape[0]
	if rows > math.MaxInt32 || shape[0] > math.MaxInt32 {
		return nil, fmt.Errorf("gguf: tensor %q: shape %v is too large", name, shape)
	}
	return &tensor{name: name, shape: append([]uint64(nil), shape...), typ: typ, rows: int(rows), size: size}, nil
}

// layout returns the header (everything before the tensor data, padded)
// and each tensor's offset from the start of the data section.
func (w *Writer) layout() (header []byte, offsets []uint64, align uint64, err error) {
	a, err := w.Alignment()
	if err != nil {
		return nil, nil, 0, err
	}
	align = uint64(a)
	offsets = make([]uint64, len(w.tensors))
	var off uint64
	for i, t := range w.tensors {
		offsets[i] = off
		off += pad(t.size, align)
	}

	b := make([]byte, 0, 4096)
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint32(b, Version)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(w.tensors)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(w.kvs)))
	for _, e := range w.kvs {
		if e.key == "" {
			return nil, nil, 0, errors.New("gguf: empty metadata key")
		}
		b = appendString(b, e.key)
		b = binary.LittleEndian.AppendUint32(b, uint32(e.typ))
		if e.typ == TypeArray {
			b = binary.LittleEndian.AppendUint32(b, uint32(e.elem))
			b, err = appendArray(b, e.val)
		} else {
			b, err = appendScalar(b, e.val)
		}
		if err != nil {
			return nil, nil, 0, fmt.Errorf("gguf: metadata key %q: %w", e.key, err)
		}
	}
	for i, t := range w.tensors {
		b = appendString(b, t.name)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.shape)))
		for _, d := range t.shape {
			b = binary.LittleEndian.AppendUint64(b, d)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(t.typ))
		b = binary.LittleEndian.AppendUint64(b, offsets[i])
	}
	b = append(b, make([]byte, pad(uint64(len(b)), align)-uint64(len(b)))...)
	return b, offsets, align, nil
}

func pad(n, align uint64) uint64 { return (n + align - 1) / align * align }

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func appendScalar(b []byte, v any) ([]byte, error) {
	le := binary.LittleEndian
	switch x := v.(type) {
	case uint8:
		return append(b, x), nil
	case int8:
		return append(b, byte(x)), nil
	case uint16:
		return le.AppendUint16(b, x), nil
	case int16:
		return le.AppendUint16(b, uint16(x)), nil
	case uint32:
		return le.AppendUint32(b, x), nil
	case int32:
		return le.AppendUint32(b, uint32(x)), nil
	case uint64:
		return le.AppendUint64(b, x), nil
	case int64:
		return le.AppendUint64(b, uint64(x)), nil
	case float32:
		return le.AppendUint32(b, math.Float32bits(x)), nil
	case float64:
		return le.AppendUint64(b, math.Float64bits(x)), nil
	case bool:
		if x {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case string:
		return appendString(b, x), nil
	}
	return b, fmt.Errorf("unsupported value type %T", v) // unreachable: the setters fix the types
}

func appendArray(b []byte, v any) ([]byte, error) {
	le := binary.LittleEndian
	n := func(l int) []byte { return le.AppendUint64(b, uint64(l)) }
	switch x := v.(type) {
	case []uint8:
		b = n(len(x))
		b = append(b, x...)
	case []int8:
		b = n(len(x))
		for _, e := range x {
			b = append(b, byte(e))
		}
	case []uint16:
		b = n(len(x))
		for _, e := range x {
			b = le.AppendUint16(b, e)
		}
	case []int16:
		b = n(len(x))
		for _, e := range x {
			b = le.AppendUint16(b, uint16(e))
		}
	case []uint32:
		b = n(len(x))
		for _, e := range x {
			b = le.AppendUint32(b, e)
		}
	case []int32:
		b = n(len(x))
		for _, e := range x {
			b = le.AppendUint32(b, uint32(e))
		}
	case []uint64:
		b = n(len(x))
		for _, e := range x {
			b = le.AppendUint64(b, e)
		}
	case []int64:
		b = n(len(x))
		for _, e := range x {
			b = le.AppendUint64(b, uint64(e))
		}
	case []float32:
		b = n(len(x))
		for _, e := range x {
			b = le.AppendUint32(b, math.Float32bits(e))
		}
	case []float64:
		b = n(len(x))
		for _, e := range x {
			b = le.AppendUint64(b, math.Float64bits(e))
		}
	case []bool:
		b = n(len(x))
		for _, e := range x {
			if e {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	case []string:
		b = n(len(x))
		for _, e := range x {
			b = appendString(b, e)
		}
	default:
		return b, fmt.Errorf("unsupported array type %T", v) // unreachable: SetArray checks
	}
	return b, nil
}

// Size returns the number of bytes the file will have.
func (w *Writer) Size() (int64, error) {
	header, offsets, align, err := w.layout()
	if err != nil {
		return 0, err
	}
	total := uint64(len(header))
	if n := len(w.tensors); n > 0 {
		total += offsets[n-1] + pad(w.tensors[n-1].size, align)
	}
	return int64(total), nil
}

// WriteTo writes the file to out. It implements io.WriterTo.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	return w.Encode(context.Background(), out)
}

// Encode writes the file to out and returns the number of bytes written. It
// stops with ctx's error when ctx is cancelled, leaving a truncated file.
func (w *Writer) Encode(ctx context.Context, out io.Writer) (int64, error) {
	header, offsets, align, err := w.layout()
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: out}
	bw := bufio.NewWriterSize(cw, 1<<20)
	if _, err := bw.Write(header); err != nil {
		return cw.n, fmt.Errorf("gguf: write header: %w", err)
	}
	var (
		rowBuf []float32
		encBuf []byte
		zeros  = make([]byte, align)
		pos    uint64
	)
	for i, t := range w.tensors {
		if err := ctx.Err(); err != nil {
			return cw.n, fmt.Errorf("gguf: write tensor %q: %w", t.name, err)
		}
		if pos != offsets[i] { // cannot happen: offsets come from the same sizes
			return cw.n, fmt.Errorf("gguf: internal error: tensor %q at %d, want %d", t.name, pos, offsets[i])
		}
		switch {
		case t.raw != nil:
			if _, err := bw.Write(t.raw); err != nil {
				return cw.n, fmt.Errorf("gguf: write tensor %q: %w", t.name, err)
			}
		default:
			ne0 := int(t.shape[0])
			if cap(rowBuf) < ne0 {
				rowBuf = make([]float32, ne0)
			}
			row := rowBuf[:ne0]
			for r := 0; r < t.rows; r++ {
				if r&255 == 255 {
					if err := ctx.Err(); err != nil {
						return cw.n, fmt.Errorf("gguf: write tensor %q: %w", t.name, err)
					}
				}
				src := row
				if t.data != nil {
					src = t.data[r*ne0 : (r+1)*ne0]
				} else if err := t.fill(r, row); err != nil {
					return cw.n, fmt.Errorf("gguf: tensor %q row %d: %w", t.name, r, err)
				}
				encBuf, err = Quantize(encBuf[:0], t.typ, src)
				if err != nil {
					return cw.n, fmt.Errorf("gguf: tensor %q row %d: %w", t.name, r, err)
				}
				if _, err := bw.Write(encBuf); err != nil {
					return cw.n, fmt.Errorf("gguf: write tensor %q: %w", t.name, err)
				}
			}
		}
		padded := pad(t.size, align)
		if _, err := bw.Write(zeros[:padded-t.size]); err != nil {
			return cw.n, fmt.Errorf("gguf: write tensor %q padding: %w", t.name, err)
		}
		pos += padded
	}
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("gguf: write: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteFile writes the file to path atomically: it writes a temporary file
// in the same directory, syncs it and renames it over path, so readers see
// either the old file or the complete new one. The file gets mode 0644.
func (w *Writer) WriteFile(ctx context.Context, path string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("gguf: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = w.Encode(ctx, f); err != nil {
		return fmt.Errorf("gguf: write %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("gguf: write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("gguf: write %s: sync: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("gguf: write %s: close: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("gguf: write %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil { // best effort: persist the rename
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
