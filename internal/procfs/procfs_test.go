package procfs

import (
	"os"
	"runtime"
	"testing"
)

func TestRSS(t *testing.T) {
	n, ok := RSS(os.Getpid())
	if runtime.GOOS != "linux" {
		if ok {
			t.Fatal("an RSS without /proc")
		}
		return
	}
	if !ok || n == 0 {
		t.Fatalf("RSS of this process: %d %v", n, ok)
	}
	if _, ok := RSS(-1); ok {
		t.Fatal("an RSS for pid -1")
	}
}

func TestCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no /proc")
	}
	before, ok := CPU(os.Getpid())
	if !ok {
		t.Fatal("no CPU time for this process")
	}
	// Spin until the process's CPU time moves (it counts in 10 ms ticks).
	x := 0
	for i := 0; ; i++ {
		x += i * i
		if i%1_000_000 == 0 {
			if now, _ := CPU(os.Getpid()); now > before {
				break
			}
		}
	}
	_ = x
	if _, ok := CPU(-1); ok {
		t.Fatal("CPU time for pid -1")
	}
}
