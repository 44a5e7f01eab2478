package plugin

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// lowerPriorityArg makes the test binary (see TestMain) lower its own
// priority as a compile child does and print each thread's nice value.
const lowerPriorityArg = "mdsa-test-lower-priority"

// reportLoweredThreads starts threads, lowers the process's priority,
// starts more, and prints "tid nice" for every thread it then has.
func reportLoweredThreads(w io.Writer) int {
	var wg sync.WaitGroup
	hold := make(chan struct{})
	start := func(n int) {
		var ready sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			ready.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread() // a thread of its own, kept until hold closes
				ready.Done()
				<-hold
			}()
		}
		ready.Wait()
	}
	start(4)
	lowerPriority()
	start(2)
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		fmt.Fprintln(w, err)
		return 1
	}
	for _, e := range ents {
		var tid int
		fmt.Sscan(e.Name(), &tid)
		prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err != nil {
			continue // the thread ended
		}
		fmt.Fprintf(w, "%d %d\n", tid, 20-prio)
	}
	close(hold)
	wg.Wait()
	return 0
}

// A compile child lowers every one of its threads, not only the one that
// asked: Linux keeps nice values per thread.
func TestLowerPriorityEveryThread(t *testing.T) {
	out, err := exec.Command(os.Args[0], lowerPriorityArg).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Fields(strings.TrimSpace(string(out)))
	if len(lines) < 2*6 {
		t.Fatalf("expected at least 6 threads, got:\n%s", out)
	}
	for i := 0; i+1 < len(lines); i += 2 {
		if lines[i+1] != fmt.Sprint(childNice) {
			t.Errorf("thread %s runs at nice %s, want %d; all:\n%s", lines[i], lines[i+1], childNice, out)
		}
	}
}
