package gguf

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

type testTensor struct {
	name  string
	shape []uint64
	typ   TensorType
	data  []float32
	mode  string // "data", "func" or "bytes"
}

func testTensors() []testTensor {
	gen := func(n int, f func(i int) float32) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = f(i)
		}
		return x
	}
	return []testTensor{
		{"f32.weight", []uint64{3, 5}, F32, gen(15, func(i int) float32 { return float32(i)*0.25 - 1 }), "data"},
		{"f16.weight", []uint64{8}, F16, gen(8, func(i int) float32 { return float32(i) - 3.5 }), "data"},
		{"q8.weight", []uint64{64, 3, 2}, Q8_0, gen(384, func(i int) float32 { return float32(math.Sin(float64(i))) }), "data"},
		{"q4.weight", []uint64{32, 7}, Q4_0, gen(224, func(i int) float32 { return float32(math.Cos(float64(i) * 0.3)) }), "func"},
		{"raw.weight", []uint64{32, 2, 1, 2}, Q8_0, gen(128, func(i int) float32 { return float32(i%17) - 8 }), "bytes"},
		{"f32.4d", []uint64{1, 2, 3, 4}, F32, gen(24, func(i int) float32 { return float32(i) }), "func"},
	}
}

func addTestTensors(t *testing.T, w *Writer, tts []testTensor) {
	t.Helper()
	for _, tt := range tts {
		var err error
		switch tt.mode {
		case "data":
			err = w.AddTensor(tt.name, tt.shape, tt.typ, tt.data)
		case "func":
			ne0 := int(tt.shape[0])
			data := tt.data
			err = w.AddTensorFunc(tt.name, tt.shape, tt.typ, func(row int, dst []float32) error {
				if len(dst) != ne0 {
					return errors.New("wrong row length")
				}
				copy(dst, data[row*ne0:])
				return nil
			})
		case "bytes":
			var raw []byte
			raw, err = Quantize(nil, tt.typ, tt.data)
			if err == nil {
				err = w.AddTensorBytes(tt.name, tt.shape, tt.typ, raw)
			}
		}
		if err != nil {
			t.Fatalf("add %s: %v", tt.name, err)
		}
	}
}

// setAllTypes sets one key of every scalar type and an array of every element type.
func setAllTypes(t *testing.T, w *Writer) map[string]any {
	t.Helper()
	w.SetUint8("t.u8", 200)
	w.SetInt8("t.i8", -100)
	w.SetUint16("t.u16", 60000)
	w.SetInt16("t.i16", -30000)
	w.SetUint32("t.u32", 4_000_000_000)
	w.SetInt32("t.i32", -2_000_000_000)
	w.SetUint64("t.u64", 1<<63+5)
	w.SetInt64("t.i64", -1<<62)
	w.SetFloat32("t.f32", 3.25)
	w.SetFloat64("t.f64", -1e300)
	w.SetBool("t.bool", true)
	w.SetBool("t.bool_false", false)
	w.SetString("t.str", "héllo\n▁world")
	w.SetString("t.empty", "")
	arrays := map[string]any{
		"a.u8":    []uint8{0, 1, 255},
		"a.i8":    []int8{-128, 0, 127},
		"a.u16":   []uint16{0, 65535},
		"a.i16":   []int16{-32768, 32767},
		"a.u32":   []uint32{1, 2, 3},
		"a.i32":   []int32{-1, 0, 1},
		"a.u64":   []uint64{1 << 40, 0},
		"a.i64":   []int64{-1 << 40, 7},
		"a.f32":   []float32{0.5, -1.25},
		"a.f64":   []float64{math.Pi, -0.0},
		"a.bool":  []bool{true, false, true},
		"a.str":   []string{"<unk>", "▁Once", "", "<0x0A>"},
		"a.empty": []int32{},
	}
	for _, k := range sortedKeys(arrays) {
		if err := w.SetArray(k, arrays[k]); err != nil {
			t.Fatal(err)
		}
	}
	return arrays
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func arrayValues(av parser.GGUFMetadataKVArrayValue) any {
	switch av.Type {
	case parser.GGUFMetadataValueTypeUint8:
		return av.ValuesUint8()
	case parser.GGUFMetadataValueTypeInt8:
		return av.ValuesInt8()
	case parser.GGUFMetadataValueTypeUint16:
		return av.ValuesUint16()
	case parser.GGUFMetadataValueTypeInt16:
		return av.ValuesInt16()
	case parser.GGUFMetadataValueTypeUint32:
		return av.ValuesUint32()
	case parser.GGUFMetadataValueTypeInt32:
		return av.ValuesInt32()
	case parser.GGUFMetadataValueTypeUint64:
		return av.ValuesUint64()
	case parser.GGUFMetadataValueTypeInt64:
		return av.ValuesInt64()
	case parser.GGUFMetadataValueTypeFloat32:
		return av.ValuesFloat32()
	case parser.GGUFMetadataValueTypeFloat64:
		return av.ValuesFloat64()
	case parser.GGUFMetadataValueTypeBool:
		return av.ValuesBool()
	case parser.GGUFMetadataValueTypeString:
		return av.ValuesString()
	}
	return nil
}

func TestWriterRoundTrip(t *testing.T) {
	for _, align := range []uint32{0, 8, 64, 4096} {
		t.Run(fmt.Sprintf("align%d", align), func(t *testing.T) {
			roundTrip(t, align)
		})
	}
}

func roundTrip(t *testing.T, align uint32) {
	w := NewWriter()
	w.SetString("general.architecture", "test")
	if align != 0 {
		w.SetUint32(KeyAlignment, align)
	}
	arrays := setAllTypes(t, w)
	tts := testTensors()
	addTestTensors(t, w, tts)

	path := filepath.Join(t.TempDir(), "rt.gguf")
	if err := w.WriteFile(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	size, err := w.Size()
	if err != nil || size != int64(len(file)) {
		t.Fatalf("Size() = %d, %v; file has %d bytes", size, err, len(file))
	}
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if gf.Header.Magic != parser.GGUFMagicGGUFLe || gf.Header.Version != parser.GGUFVersionV3 {
		t.Fatalf("header %v %v", gf.Header.Magic, gf.Header.Version)
	}
	if gf.Header.MetadataKVCount != uint64(len(w.kvs)) || gf.Header.TensorCount != uint64(len(tts)) {
		t.Fatalf("counts %d kv, %d tensors", gf.Header.MetadataKVCount, gf.Header.TensorCount)
	}
	kvs := gf.Header.MetadataKV
	// Keys keep their insertion order.
	for i, e := range w.kvs {
		if kvs[i].Key != e.key || uint32(kvs[i].ValueType) != uint32(e.typ) {
			t.Fatalf("kv %d = %s (%v), want %s (%v)", i, kvs[i].Key, kvs[i].ValueType, e.key, e.typ)
		}
	}
	get := func(k string) parser.GGUFMetadataKV {
		kv, ok := kvs.Get(k)
		if !ok {
			t.Fatalf("key %s missing", k)
		}
		return kv
	}
	scalars := []struct {
		key  string
		got  any
		want any
	}{
		{"t.u8", get("t.u8").ValueUint8(), uint8(200)},
		{"t.i8", get("t.i8").ValueInt8(), int8(-100)},
		{"t.u16", get("t.u16").ValueUint16(), uint16(60000)},
		{"t.i16", get("t.i16").ValueInt16(), int16(-30000)},
		{"t.u32", get("t.u32").ValueUint32(), uint32(4_000_000_000)},
		{"t.i32", get("t.i32").ValueInt32(), int32(-2_000_000_000)},
		{"t.u64", get("t.u64").ValueUint64(), uint64(1<<63 + 5)},
		{"t.i64", get("t.i64").ValueInt64(), int64(-1 << 62)},
		{"t.f32", get("t.f32").ValueFloat32(), float32(3.25)},
		{"t.f64", get("t.f64").ValueFloat64(), -1e300},
		{"t.bool", get("t.bool").ValueBool(), true},
		{"t.bool_false", get("t.bool_false").ValueBool(), false},
		{"t.str", get("t.str").ValueString(), "héllo\n▁world"},
		{"t.empty", get("t.empty").ValueString(), ""},
	}
	for _, s := range scalars {
		if s.got != s.want {
			t.Errorf("%s = %v, want %v", s.key, s.got, s.want)
		}
	}
	for k, want := range arrays {
		av := get(k).ValueArray()
		if av.Len != uint64(reflect.ValueOf(want).Len()) {
			t.Errorf("%s: length %d", k, av.Len)
			continue
		}
		if av.Len == 0 {
			if av.Type != parser.GGUFMetadataValueTypeInt32 {
				t.Errorf("%s: element type %v", k, av.Type)
			}
			continue
		}
		if got := arrayValues(av); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", k, got, want)
		}
	}

	// Tensor infos, offsets and data.
	wantAlign := uint64(align)
	if align == 0 {
		wantAlign = DefaultAlignment
	}
	if gf.TensorDataStartOffset%int64(wantAlign) != 0 {
		t.Fatalf("data starts at %d, not aligned to %d", gf.TensorDataStartOffset, wantAlign)
	}
	var off uint64
	for i, tt := range tts {
		ti := gf.TensorInfos[i]
		if ti.Name != tt.name || !reflect.DeepEqual(ti.Dimensions, tt.shape) || uint32(ti.Type) != uint32(tt.typ) {
			t.Fatalf("tensor %d = %s %v %v, want %s %v %v", i, ti.Name, ti.Dimensions, ti.Type, tt.name, tt.shape, tt.typ)
		}
		if ti.Offset != off || ti.Offset%wantAlign != 0 {
			t.Fatalf("%s at offset %d, want %d (alignment %d)", tt.name, ti.Offset, off, wantAlign)
		}
		n, _ := tt.typ.Bytes(uint64(len(tt.data)))
		if ti.Bytes() != n {
			t.Fatalf("%s: parser says %d bytes, want %d", tt.name, ti.Bytes(), n)
		}
		start := uint64(gf.TensorDataStartOffset) + ti.Offset
		got, err := Dequantize(nil, tt.typ, file[start:start+n])
		if err != nil {
			t.Fatal(err)
		}
		for b := 0; b < len(tt.data); b += tt.typ.BlockSize() {
			blk := tt.data[b : b+tt.typ.BlockSize()]
			bound := 0.0
			if tt.typ == Q4_0 || tt.typ == Q8_0 {
				bound = quantBound(tt.typ, blk)
			}
			for j, v := range blk {
				if e := math.Abs(float64(v - got[b+j])); e > bound {
					t.Fatalf("%s value %d: %v, want %v (bound %g)", tt.name, b+j, got[b+j], v, bound)
				}
			}
		}
		// Padding between tensors is zero.
		for _, p := range file[start+n : start+pad(n, wantAlign)] {
			if p != 0 {
				t.Fatalf("%s: non-zero padding", tt.name)
			}
		}
		off += pad(n, wantAlign)
	}
	if uint64(len(file)) != uint64(gf.TensorDataStartOffset)+off {
		t.Fatalf("file is %d bytes, want %d", len(file), uint64(gf.TensorDataStartOffset)+off)
	}
}

// TestWriterGoldenBytes checks the exact encoding of a minimal file against
// the GGUF specification, independently of any parser.
func TestWriterGoldenBytes(t *testing.T) {
	w := NewWriter()
	w.SetUint32("k", 7)
	if err := w.AddTensor("t", []uint64{2}, F32, []float32{1, -2}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	var want []byte
	want = append(want, "GGUF"...)
	want = le.AppendUint32(want, 3)
	want = le.AppendUint64(want, 1) // tensors
	want = le.AppendUint64(want, 1) // kvs
	want = le.AppendUint64(want, 1)
	want = append(want, 'k')
	want = le.AppendUint32(want, 4) // uint32
	want = le.AppendUint32(want, 7)
	want = le.AppendUint64(want, 1)
	want = append(want, 't')
	want = le.AppendUint32(want, 1) // n_dims
	want = le.AppendUint64(want, 2)
	want = le.AppendUint32(want, 0)                    // F32
	want = le.AppendUint64(want, 0)                    // offset
	want = append(want, make([]byte, 96-len(want))...) // 74 header bytes, padded to 32
	want = le.AppendUint32(want, math.Float32bits(1))
	want = le.AppendUint32(want, math.Float32bits(-2))
	want = append(want, make([]byte, 24)...) // pad the tensor to 32
	if !bytes.Equal(buf.Bytes(), want) || n != int64(len(want)) {
		t.Fatalf("encoding (%d bytes)\n got %x\nwant %x", n, buf.Bytes(), want)
	}
}

func TestWriterReplacesKey(t *testing.T) {
	w := NewWriter()
	w.SetString("a", "first")
	w.SetUint32("b", 1)
	w.SetUint64("a", 9)
	if len(w.kvs) != 2 || w.kvs[0].key != "a" || w.kvs[0].typ != TypeUint64 || w.kvs[0].val != uint64(9) {
		t.Fatalf("kvs = %+v", w.kvs)
	}
}

func TestWriterErrors(t *testing.T) {
	ok := []float32{0}
	cases := []struct {
		name string
		do   func(w *Writer) error
	}{
		{"empty name", func(w *Writer) error { return w.AddTensor("", []uint64{1}, F32, ok) }},
		{"long name", func(w *Writer) error { return w.AddTensor(strings.Repeat("x", 64), []uint64{1}, F32, ok) }},
		{"duplicate", func(w *Writer) error {
			_ = w.AddTensor("a", []uint64{1}, F32, ok)
			return w.AddTensor("a", []uint64{1}, F32, ok)
		}},
		{"bad type", func(w *Writer) error { return w.AddTensor("a", []uint64{1}, TensorType(12), ok) }},
		{"no dims", func(w *Writer) error { return w.AddTensor("a", nil, F32, nil) }},
		{"five dims", func(w *Writer) error { return w.AddTensor("a", []uint64{1, 1, 1, 1, 1}, F32, ok) }},
		{"zero dim", func(w *Writer) error { return w.AddTensor("a", []uint64{1, 0}, F32, nil) }},
		{"not a block", func(w *Writer) error { return w.AddTensor("a", []uint64{16, 2}, Q4_0, make([]float32, 32)) }},
		{"data length", func(w *Writer) error { return w.AddTensor("a", []uint64{2, 2}, F32, ok) }},
		{"huge", func(w *Writer) error {
			return w.AddTensorFunc("a", []uint64{1 << 40, 1 << 40}, F32, func(int, []float32) error { return nil })
		}},
		{"nil func", func(w *Writer) error { return w.AddTensorFunc("a", []uint64{1}, F32, nil) }},
		{"raw length", func(w *Writer) error { return w.AddTensorBytes("a", []uint64{32}, Q8_0, make([]byte, 33)) }},
		{"array type", func(w *Writer) error { return w.SetArray("a", []int{1}) }},
		{"nested array", func(w *Writer) error { return w.SetArray("a", [][]int32{{1}}) }},
		{"alignment type", func(w *Writer) error { w.SetUint64(KeyAlignment, 32); _, err := w.Size(); return err }},
		{"alignment value", func(w *Writer) error { w.SetUint32(KeyAlignment, 48); _, err := w.Size(); return err }},
		{"alignment small", func(w *Writer) error { w.SetUint32(KeyAlignment, 4); _, err := w.Size(); return err }},
		{"empty key", func(w *Writer) error { w.SetBool("", true); _, err := w.WriteTo(&bytes.Buffer{}); return err }},
		{"bad value", func(w *Writer) error {
			_ = w.AddTensor("a", []uint64{32}, Q8_0, append(make([]float32, 31), float32(math.NaN())))
			_, err := w.WriteTo(&bytes.Buffer{})
			return err
		}},
	}
	for _, c := range cases {
		if err := c.do(NewWriter()); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	w := NewWriter()
	if err := w.AddTensorFunc("a", []uint64{4, 3}, F32, func(row int, dst []float32) error {
		if row == 2 {
			return boom
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile(context.Background(), path); !errors.Is(err, boom) || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v, want it to wrap the row error and name the file", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("file changed to %q after a failed write", b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ok := NewWriter()
	_ = ok.AddTensor("a", []uint64{1}, F32, []float32{1})
	if err := ok.WriteFile(ctx, path); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v", err)
	}
	if err := ok.WriteFile(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the model (temporary files left?)", len(entries))
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 || st.Size() < 32 {
		t.Fatalf("mode %v size %d", st.Mode(), st.Size())
	}
	if err := ok.WriteFile(context.Background(), filepath.Join(dir, "missing", "m.gguf")); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// BenchmarkWriterQ4_0 measures encoding speed of streamed Q4_0 tensors.
func BenchmarkWriterQ4_0(b *testing.B) {
	w := NewWriter()
	row := randomRows("bench", 1024)
	for i := 0; i < 8; i++ {
		if err := w.AddTensorFunc("t"+string(rune('0'+i)), []uint64{1024, 1024}, Q4_0, row); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(8 * 1024 * 1024 * 4) // float32 input
	for i := 0; i < b.N; i++ {
		if _, err := w.WriteTo(discard{}); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
