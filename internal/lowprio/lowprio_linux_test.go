package lowprio

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

// processArg makes the test binary (see TestMain) lower its own priority
// as a compile child does and print each thread's nice value.
const processArg = "mdsa-test-lower-process"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == processArg {
		os.Exit(reportLoweredThreads(os.Stdout))
	}
	os.Exit(m.Run())
}

// nice is the nice value of thread tid.
func nice(tid int) (int, error) {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	return 20 - prio, err
}

// reportLoweredThreads starts threads, lowers the process, starts more,
// and prints "tid nice" for every thread it then has.
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
	Process()
	start(2)
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		fmt.Fprintln(w, err)
		return 1
	}
	for _, e := range ents {
		var tid int
		fmt.Sscan(e.Name(), &tid)
		if n, err := nice(tid); err == nil {
			fmt.Fprintf(w, "%d %d\n", tid, n)
		}
	}
	close(hold)
	wg.Wait()
	return 0
}

// Process lowers every one of the process's threads, not only the one
// that asked: Linux keeps nice values per thread.
func TestProcessLowersEveryThread(t *testing.T) {
	out, err := exec.Command(os.Args[0], processArg).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	fields := strings.Fields(strings.TrimSpace(string(out)))
	if len(fields) < 2*6 {
		t.Fatalf("expected at least 6 threads, got:\n%s", out)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] != fmt.Sprint(Nice) {
			t.Errorf("thread %s runs at nice %s, want %d; all:\n%s", fields[i], fields[i+1], Nice, out)
		}
	}
}
