package download

import (
	"context"
	"fmt"
	"os"
	"time"
)

// lockPoll is how often a waiting Fetch retries a held lock.
const lockPoll = 50 * time.Millisecond

// fileLock is an exclusive lock on PATH (a DEST.lock file next to the
// download). It is an OS advisory lock on an open file, so a process that
// dies releases it; a lock file left behind is harmless.
type fileLock struct {
	f    *os.File
	path string
}

// acquireLock takes the lock at path. With wait it polls until the lock is
// free or ctx ends; without, it fails at once with ErrBusy.
func acquireLock(ctx context.Context, path string, wait bool) (*fileLock, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		for {
			ok, err := tryLock(f)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("lock %s: %w", path, err)
			}
			if ok {
				break
			}
			if !wait {
				f.Close()
				return nil, fmt.Errorf("lock %s: %w", path, ErrBusy)
			}
			t := time.NewTimer(lockPoll)
			select {
			case <-ctx.Done():
				t.Stop()
				f.Close()
				return nil, fmt.Errorf("waiting for another download holding %s: %w", path, ctx.Err())
			case <-t.C:
			}
		}
		// The holder we waited for may have removed the file on release:
		// our lock then guards an orphan, so start over on the new path.
		held, err1 := f.Stat()
		cur, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, cur) {
			return &fileLock{f: f, path: path}, nil
		}
		f.Close()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
	}
}

// release drops the lock, removing the lock file first where the platform
// allows that safely (see removeLockOnRelease).
func (l *fileLock) release() {
	if removeLockOnRelease {
		os.Remove(l.path)
	}
	l.f.Close()
}
