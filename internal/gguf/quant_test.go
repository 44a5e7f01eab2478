package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

func TestFloat16AllValuesRoundTrip(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := Float16ToFloat32(uint16(h))
		got := Float32ToFloat16(f)
		if math.IsNaN(float64(f)) {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("NaN %#04x -> %#04x, not a NaN", h, got)
			}
			continue
		}
		if got != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, got)
		}
	}
}

func TestFloat32ToFloat16Cases(t *testing.T) {
	for _, c := range []struct {
		f    float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},                           // largest finite
		{65519, 0x7bff},                           // just below the rounding midpoint
		{65520, 0x7c00},                           // midpoint rounds to even: Inf
		{1e9, 0x7c00},                             // overflow
		{float32(math.Inf(-1)), 0xfc00},           // -Inf
		{float32(math.Ldexp(1, -24)), 0x0001},     // smallest subnormal
		{float32(math.Ldexp(1, -25)), 0x0000},     // half of it: ties to even 0
		{float32(math.Ldexp(1.5, -25)), 0x0001},   // above the midpoint
		{float32(math.Ldexp(3, -25)), 0x0002},     // 1.5 ulp ties to even 2
		{float32(math.Ldexp(1, -14)), 0x0400},     // smallest normal
		{float32(math.Ldexp(1023, -24)), 0x03ff},  // largest subnormal
		{float32(math.Ldexp(2047, -25)), 0x0400},  // rounds up into the normals
		{1 + float32(math.Ldexp(1, -11)), 0x3c00}, // tie, even stays
		{1 + float32(math.Ldexp(3, -11)), 0x3c02}, // tie, odd rounds up
		{1e-30, 0x0000},
	} {
		if got := Float32ToFloat16(c.f); got != c.want {
			t.Errorf("Float32ToFloat16(%g) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
	if h := Float32ToFloat16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("NaN -> %#04x, not a NaN", h)
	}
}

// TestFloat32ToFloat16Nearest checks on random values that the result is the
// nearest binary16 value (ties to even).
func TestFloat32ToFloat16Nearest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		f := float32(math.Ldexp(r.Float64()*2-1, r.IntN(48)-30)) // 2^-30 .. 2^17
		h := Float32ToFloat16(f)
		got := float64(Float16ToFloat32(h))
		if math.IsInf(got, 0) {
			if math.Abs(float64(f)) < 65520 {
				t.Fatalf("%g -> Inf", f)
			}
			continue
		}
		diff := math.Abs(float64(f) - got)
		for _, nb := range []uint16{h + 1, h - 1} {
			if nb&0x7fff >= 0x7c00 || (h&0x7fff == 0 && nb == h-1) {
				continue
			}
			nd := math.Abs(float64(f) - float64(Float16ToFloat32(nb)))
			if nd < diff || (nd == diff && h&1 == 1) {
				t.Fatalf("%g -> %#04x (%g), but %#04x (%g) is nearer or even", f, h, got, nb, Float16ToFloat32(nb))
			}
		}
	}
}

func TestQuantizeQ8_0Layout(t *testing.T) {
	x := make([]float32, QK)
	for j := range x {
		x[j] = float32(4*j - 64) // -64..60
	}
	x[31] = 127 // amax 127: scale exactly 1
	got, err := Quantize(nil, Q8_0, x)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x00, 0x3c} // fp16 1.0, little endian
	for _, v := range x {
		want = append(want, byte(int8(v)))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Q8_0 block\n got %x\nwant %x", got, want)
	}
	back, err := Dequantize(nil, Q8_0, got)
	if err != nil {
		t.Fatal(err)
	}
	for j := range x {
		if back[j] != x[j] {
			t.Fatalf("value %d: %v, want %v", j, back[j], x[j])
		}
	}
}

func TestQuantizeQ4_0Layout(t *testing.T) {
	// Largest magnitude -8: d = -8/-8 = 1 and the code is value+8, so
	// byte j must hold element j (low nibble) and element j+16 (high).
	x := make([]float32, QK)
	for j := range x {
		x[j] = float32(j%16) - 8 // -8..7 twice
	}
	x[16+3] = 5 // make the high half differ from the low half
	got, err := Quantize(nil, Q4_0, x)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x00, 0x3c}
	for j := 0; j < 16; j++ {
		want = append(want, byte(x[j]+8)|byte(x[j+16]+8)<<4)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Q4_0 block\n got %x\nwant %x", got, want)
	}
	back, err := Dequantize(nil, Q4_0, got)
	if err != nil {
		t.Fatal(err)
	}
	for j := range x {
		if back[j] != x[j] {
			t.Fatalf("value %d: %v, want %v", j, back[j], x[j])
		}
	}

	// Largest magnitude positive: the scale is negative and the maximum
	// still comes back exactly, as code 0.
	y := make([]float32, QK)
	y[5] = 8
	y[20] = -3
	got, err = Quantize(nil, Q4_0, y)
	if err != nil {
		t.Fatal(err)
	}
	if d := Float16ToFloat32(binary.LittleEndian.Uint16(got)); d != -1 {
		t.Fatalf("scale %v, want -1", d)
	}
	back, _ = Dequantize(nil, Q4_0, got)
	if back[5] != 8 || back[20] != -3 || back[0] != 0 {
		t.Fatalf("dequantised %v", back)
	}
}

func TestQuantizeZeroBlock(t *testing.T) {
	for _, typ := range []TensorType{Q8_0, Q4_0} {
		got, err := Quantize(nil, typ, make([]float32, 2*QK))
		if err != nil {
			t.Fatal(err)
		}
		back, _ := Dequantize(nil, typ, got)
		for i, v := range back {
			if v != 0 {
				t.Fatalf("%v: value %d = %v, want 0", typ, i, v)
			}
		}
	}
}

// quantBound is the largest error quantisation may make on block x: half a
// step for Q8_0; one step for Q4_0 (its codes reach 7d on the side opposite
// the maximum, so values there may be clamped by up to d); plus the error
// from rounding the scale to fp16.
func quantBound(typ TensorType, x []float32) float64 {
	var amax float64
	for _, v := range x {
		amax = math.Max(amax, math.Abs(float64(v)))
	}
	scaleErr := amax * math.Ldexp(1, -10)
	if amax/127 < math.Ldexp(1, -14) { // subnormal fp16 scale: absolute error up to 2^-25 per unit of code
		scaleErr += 128 * math.Ldexp(1, -25)
	}
	if typ == Q8_0 {
		return amax/127/2 + scaleErr
	}
	return amax/8 + scaleErr
}

func checkQuantError(t testing.TB, typ TensorType, x []float32) {
	t.Helper()
	enc, err := Quantize(nil, typ, x)
	if err != nil {
		t.Fatalf("%v: %v", typ, err)
	}
	if want, _ := typ.Bytes(uint64(len(x))); uint64(len(enc)) != want {
		t.Fatalf("%v: %d bytes, want %d", typ, len(enc), want)
	}
	back, err := Dequantize(nil, typ, enc)
	if err != nil {
		t.Fatalf("%v: %v", typ, err)
	}
	if len(back) != len(x) {
		t.Fatalf("%v: %d values back, want %d", typ, len(back), len(x))
	}
	for b := 0; b < len(x)/QK; b++ {
		blk := x[b*QK : (b+1)*QK]
		bound := quantBound(typ, blk)
		for j, v := range blk {
			if e := math.Abs(float64(v) - float64(back[b*QK+j])); e > bound {
				t.Fatalf("%v block %d value %d: %v -> %v, error %g > bound %g", typ, b, j, v, back[b*QK+j], e, bound)
			}
		}
	}
}

func TestQuantizeErrorBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, typ := range []TensorType{Q8_0, Q4_0} {
		for i := 0; i < 2000; i++ {
			scale := math.Ldexp(1, r.IntN(36)-20)
			x := make([]float32, QK)
			for j := range x {
				x[j] = float32((r.Float64()*2 - 1) * scale)
			}
			checkQuantError(t, typ, x)
		}
	}
	// Mean error of Q4_0 on uniform data is about a quarter step.
	x := make([]float32, 1<<14)
	for j := range x {
		x[j] = float32(r.Float64()*2 - 1)
	}
	enc, _ := Quantize(nil, Q4_0, x)
	back, _ := Dequantize(nil, Q4_0, enc)
	var sum float64
	for j := range x {
		sum += math.Abs(float64(x[j] - back[j]))
	}
	if mean := sum / float64(len(x)); mean > 0.04 {
		t.Errorf("Q4_0 mean abs error %g on U(-1,1), want about 1/32", mean)
	}
}

func TestQuantizeRejects(t *testing.T) {
	cases := []struct {
		typ TensorType
		x   []float32
	}{
		{Q8_0, make([]float32, 31)},                               // not a whole block
		{Q4_0, append(make([]float32, 31), float32(math.NaN()))},  // NaN
		{Q8_0, append(make([]float32, 31), float32(math.Inf(1)))}, // Inf
		{Q4_0, append(make([]float32, 31), 1e7)},                  // scale beyond fp16
		{Q8_0, append(make([]float32, 31), 1e10)},                 // scale beyond fp16
		{TensorType(99), make([]float32, 32)},                     // unknown type
	}
	for i, c := range cases {
		dst := []byte("prefix")
		out, err := Quantize(dst, c.typ, c.x)
		if err == nil {
			t.Errorf("case %d (%v): no error", i, c.typ)
		}
		if string(out) != "prefix" {
			t.Errorf("case %d: dst changed to %q on error", i, out)
		}
	}
	if _, err := Quantize(nil, F16, []float32{1e10, float32(math.NaN())}); err != nil {
		t.Errorf("F16 should accept any value: %v", err)
	}
}

func TestQuantizeAppends(t *testing.T) {
	x := []float32{1, -2.5, 3}
	out, err := Quantize([]byte{0xAA}, F32, x)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 13 || out[0] != 0xAA {
		t.Fatalf("got %x", out)
	}
	back, err := Dequantize([]float32{7}, F32, out[1:])
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 4 || back[0] != 7 || back[2] != -2.5 {
		t.Fatalf("got %v", back)
	}
}

func TestDequantizeRejects(t *testing.T) {
	for _, c := range []struct {
		typ TensorType
		n   int
	}{{Q8_0, 33}, {Q4_0, 17}, {F16, 3}, {F32, 5}, {TensorType(7), 0}} {
		if _, err := Dequantize(nil, c.typ, make([]byte, c.n)); err == nil {
			t.Errorf("%v with %d bytes: no error", c.typ, c.n)
		}
	}
}

func TestTensorTypes(t *testing.T) {
	for _, c := range []struct {
		name     string
		typ      TensorType
		ggml     uint32
		ftype    uint32
		bs, size int
	}{
		{"F32", F32, 0, 0, 1, 4},
		{"f16", F16, 1, 1, 1, 2},
		{"Q4_0", Q4_0, 2, 2, 32, 18},
		{"q8_0", Q8_0, 8, 7, 32, 34},
	} {
		typ, err := ParseTensorType(c.name)
		if err != nil || typ != c.typ || uint32(typ) != c.ggml {
			t.Errorf("ParseTensorType(%q) = %v, %v", c.name, typ, err)
		}
		if typ.BlockSize() != c.bs || typ.BlockBytes() != c.size || typ.FileType() != c.ftype {
			t.Errorf("%v: block %d/%d bytes, file type %d", typ, typ.BlockSize(), typ.BlockBytes(), typ.FileType())
		}
	}
	if _, err := ParseTensorType("Q4_K"); err == nil {
		t.Error("Q4_K accepted")
	}
	if _, err := Q4_0.Bytes(33); err == nil {
		t.Error("Q4_0.Bytes(33) accepted")
	}
	if _, err := F32.Bytes(1 << 63); err == nil {
		t.Error("overflow accepted")
	}
	if TensorType(3).String() != "TensorType(3)" || ValueType(13).String() != "ValueType(13)" || TypeString.String() != "string" {
		t.Error("String methods")
	}
}

// FuzzDequantize feeds arbitrary bytes to Dequantize: it must not panic,
// must decode whole blocks to exactly BlockSize values each and must reject
// anything else.
func FuzzDequantize(f *testing.F) {
	f.Add(uint8(2), make([]byte, 18))
	f.Add(uint8(8), bytes.Repeat([]byte{0xff}, 34))
	f.Add(uint8(1), []byte{0x00, 0x7c, 0x01, 0x7e})
	f.Add(uint8(0), []byte{1, 2, 3})
	f.Add(uint8(5), []byte{})
	f.Fuzz(func(t *testing.T, typ uint8, data []byte) {
		tt := TensorType(typ)
		out, err := Dequantize(nil, tt, data)
		if !tt.Valid() || len(data)%tt.BlockBytes() != 0 {
			if err == nil {
				t.Fatalf("%v with %d bytes accepted", tt, len(data))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := len(data) / tt.BlockBytes() * tt.BlockSize(); len(out) != want {
			t.Fatalf("%d values, want %d", len(out), want)
		}
		if tt == Q4_0 || tt == Q8_0 {
			// Re-encoding decoded finite blocks must succeed and stay within bounds.
			finite := true
			for _, v := range out {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 1e5 {
					finite = false
				}
			}
			if finite {
				checkQuantError(t, tt, out)
			}
		}
	})
}

// FuzzQuantize quantises arbitrary float32 data and checks the error bound.
func FuzzQuantize(f *testing.F) {
	f.Add(make([]byte, 128))
	f.Add(bytes.Repeat([]byte{0x00, 0x00, 0x80, 0x3f}, 32))
	f.Add(bytes.Repeat([]byte{0x01, 0x00, 0x00, 0x00}, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := len(data) / 4 / QK * QK
		x := make([]float32, n)
		for i := range x {
			v := math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 4e5 {
				v = 0
			}
			x[i] = v
		}
		checkQuantError(t, Q8_0, x)
		checkQuantError(t, Q4_0, x)
	})
}
