//go:build unix

package download

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// removeLockOnRelease: with flock a lock file can be unlinked while held;
// waiters notice the orphan (acquireLock compares inodes) and retry.
const removeLockOnRelease = true

func tryLock(f *os.File) (bool, error) {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return false, nil
		default:
			return false, err
		}
	}
}
