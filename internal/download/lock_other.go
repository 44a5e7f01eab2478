//go:build !unix && !windows

package download

import "os"

// removeLockOnRelease is false: there is no lock to guard the removal.
const removeLockOnRelease = false

// tryLock always succeeds: this platform has no advisory file locks, so
// concurrent fetches of one destination are not excluded here.
func tryLock(*os.File) (bool, error) { return true, nil }
