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
