package snap

import (
	"errors"
	"fmt"

	"github.com/ghostbridge/ghostbridge/pkg/sys/flock"
)

// ErrLocked is matched (errors.Is) by *LockedError.
var ErrLocked = errors.New("locked by another process")

// LockedError means another process holds the lock of a chain database.
type LockedError struct {
	Path string // the lock file
	PID  int    // the holder's pid; 0 when it had not written it yet
}

// Error names the holder's pid and the lock file.
func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("another ghostbridge holds %s", e.Path)
	}
	return fmt.Sprintf("another ghostbridge (pid %d) holds %s", e.PID, e.Path)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is an exclusive flock on a file next to a chain database; the kernel
// drops it when the holder exits, however it exits.
type Lock struct {
	l *flock.Lock
}

// LockPath is the lock file that guards the database at db. Symlinks are
// resolved (when db exists), so every path to one database takes the same
// lock.
func LockPath(db string) string { return flock.Path(db, ".lock") }

// AcquireLock takes the lock at path without waiting and writes this
// process's pid into it. It returns *LockedError when another open file
// (in this or another process) holds it.
func AcquireLock(path string) (*Lock, error) {
	l, err := flock.Acquire(path)
	var held *flock.HeldError
	if errors.As(err, &held) {
		return nil, &LockedError{Path: held.Path, PID: held.PID}
	}
	if err != nil {
		return nil, err
	}
	return &Lock{l: l}, nil
}

// Release clears the pid and drops the lock.
func (l *Lock) Release() error {
	if l == nil {
		return nil
	}
	return l.l.Release()
}
