package bytesize

import (
	"math"
	"testing"
)

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", -1023: "-1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		10 << 20: "10.0 MiB", 258_800_000: "246.8 MiB", 3 << 30: "3.0 GiB", -(3 << 30): "-3.0 GiB",
		5 << 50: "5.0 PiB", math.MaxInt64: "8192.0 PiB",
	} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}
