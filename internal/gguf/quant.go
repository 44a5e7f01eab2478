package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Largest finite binary16 value.
const maxFloat16 = 65504

// Float32ToFloat16 converts f to IEEE 754 binary16 bits, rounding to nearest
// with ties to even. Values beyond the binary16 range become ±Inf; NaN stays
// NaN (a quiet NaN).
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff

	if exp == 0xff { // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // re-biased exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e > 0 {
		// Normal: keep 10 of the 23 mantissa bits, round to nearest even. A
		// carry out of the mantissa correctly bumps the exponent (up to Inf).
		h := uint32(e)<<10 | mant>>13
		rem := mant & 0x1fff
		if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	// Subnormal or zero: the value is m * 2^-24 with m < 1024.
	shift := uint32(126 - exp) // bits of the 24-bit significand to drop
	if shift > 24 {
		return sign // below half the smallest subnormal: ±0
	}
	full := mant | 0x800000 // exp >= 102 here, so the float32 is normal
	m := full >> shift
	rem := full & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || (rem == half && m&1 == 1) {
		m++
	}
	return sign | uint16(m)
}

// Float16ToFloat32 converts IEEE 754 binary16 bits to float32 (exactly).
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0:
		v := float32(mant) * (1.0 / (1 << 24)) // exact: mant < 2^10
		if sign != 0 {
			v = -v
		}
		return v
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// Quantize appends the encoding of src as type t to dst and returns the
// extended slice. len(src) must be a multiple of t.BlockSize(). For Q8_0 and
// Q4_0 every value must be finite and small enough for the block's fp16 scale
// (|x| up to about 8.3e6 for Q8_0 and 5.2e5 for Q4_0); F32 and F16 accept any
// value (F16 rounds out-of-range values to ±Inf).
func Quantize(dst []byte, t TensorType, src []float32) ([]byte, error) {
	n, err := t.Bytes(uint64(len(src)))
	if err != nil {
		return dst, err
	}
	start := len(dst)
	dst = grow(dst, int(n))
	out := dst[start:]
	switch t {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToFloat16(v))
		}
	case Q8_0:
		for b := 0; b < len(src)/QK; b++ {
			if err := quantizeBlockQ8(out[b*34:b*34+34], src[b*QK:b*QK+QK]); err != nil {
				return dst[:start], fmt.Errorf("gguf: Q8_0 block %d: %w", b, err)
			}
		}
	case Q4_0:
		for b := 0; b < len(src)/QK; b++ {
			if err := quantizeBlockQ4(out[b*18:b*18+18], src[b*QK:b*QK+QK]); err != nil {
				return dst[:start], fmt.Errorf("gguf: Q4_0 block %d: %w", b, err)
			}
		}
	}
	return dst, nil
}

// grow extends dst by n bytes, reusing its capacity when possible.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst[:len(dst)+n]
	}
	out := make([]byte, len(dst)+n, len(dst)+n+len(dst)/4)
	copy(out, dst)
	return out
}

// blockScale checks a block and returns its absolute maximum and the value
// with the largest magnitude (first one on ties).
func blockScale(x []float32) (amax, maxv float32, err error) {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, 0, fmt.Errorf("value %d is not finite (%v)", i, v)
		}
		if a := float32(math.Abs(float64(v))); a > amax {
			amax, maxv = a, v
		}
	}
	return amax, maxv, nil
}

// scaleOf rounds d to fp16 and returns its bits and the reciprocal of the
// rounded value (0 when it is 0), so that codes are chosen against the scale
// the reader will actually use.
func scaleOf(d float32) (uint16, float32, error) {
	if math.Abs(float64(d)) > maxFloat16 {
		return 0, 0, fmt.Errorf("scale %g exceeds the fp16 range", d)
	}
	h := Float32ToFloat16(d)
	dr := Float16ToFloat32(h)
	if dr == 0 {
		return h, 0, nil
	}
	return h, 1 / dr, nil
}

func quantizeBlockQ8(out []byte, x []float32) error {
	amax, _, err := blockScale(x)
	if err != nil {
		return err
	}
	h, id, err := scaleOf(amax / 127)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(out, h)
	for j, v := range x {
		q := math.Round(float64(v * id))
		q = max(-127, min(127, q))
		out[2+j] = byte(int8(q))
	}
	return nil
}

func quantizeBlockQ4(out []byte, x []float32) error {
	_, maxv, err := blockScale(x)
	if err != nil {
		return err
	}
	// The value of largest magnitude maps to code 0, i.e. -8*d, so the
	// whole range [-8d, 7d] is used with the extreme on the exact side.
	h, id, err := scaleOf(maxv / -8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(out, h)
	for j := 0; j < QK/2; j++ {
		lo := nibble(x[j]*id + 8.5)
		hi := nibble(x[j+QK/2]*id + 8.5)
		out[2+j] = lo | hi<<4
	}
	return nil
}

// nibble truncates v toward zero and clamps it to 0..15.
func nibble(v float32) byte {
	switch {
	case v < 1: // also catches negatives, which truncate to 0 or below
		return 0
	case v >= 15:
		return 15
	}
	return byte(v)
}

// Dequantize decodes src, which must hold whole blocks of type t, appends
// the values to dst and returns the extended slice.
func Dequantize(dst []float32, t TensorType, src []byte) ([]float32, error) {
	if !t.Valid() {
		return dst, fmt.Errorf("gguf: unsupported tensor type %v", t)
	}
	bb := t.BlockBytes()
	if len(src)%bb != 0 {
		return dst, fmt.Errorf("gguf: %d bytes is not a whole number of %v blocks of %d bytes", len(src), t, bb)
	}
	nb := len(src) / bb
	switch t {
	case F32:
		for i := 0; i < nb; i++ {
			dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:])))
		}
	case F16:
		for i := 0; i < nb; i++ {
			dst = append(dst, Float16ToFloat32(binary.LittleEndian.Uint16(src[2*i:])))
		}
	case Q8_0:
		for b := 0; b < nb; b++ {
			blk := src[b*34 : b*34+34]
			d := Float16ToFloat32(binary.LittleEndian.Uint16(blk))
			for _, q := range blk[2:] {
				dst = append(dst, float32(int8(q))*d)
			}
		}
	case Q4_0:
		for b := 0; b < nb; b++ {
			blk := src[b*18 : b*18+18]
			d := Float16ToFloat32(binary.LittleEndian.Uint16(blk))
			qs := blk[2:]
			for _, q := range qs {
				dst = append(dst, float32(int(q&0x0f)-8)*d)
			}
			for _, q := range qs {
				dst = append(dst, float32(int(q>>4)-8)*d)
			}
		}
	}
	return dst, nil
}
