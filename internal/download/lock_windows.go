//go:build windows

package download

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// removeLockOnRelease: an open file cannot be deleted safely on Windows, so
// the DEST.lock file stays (it is empty and harmless).
const removeLockOnRelease = false

func tryLock(f *os.File) (bool, error) {
	var ov windows.Overlapped
	err := windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ov)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, windows.ERROR_LOCK_VIOLATION):
		return false, nil
	default:
		return false, err
	}
}
