package vector

import (
	"errors"
	"fmt"

	"github.com/ghostbridge/ghostbridge/pkg/sys/flock"
)

// ErrLocked is matched (errors.Is) by *LockedError.
var ErrLocked = errors.New("locked by another process")

// LockedError means another sync or reindex holds the vector lock of a
// chain database. Sync and reindex must not overlap: a sync writing
// through the alias to its old target after reindex read the cursor would
// leave blocks out of the new collection.
type LockedError struct {
	Path string // the lock file
	PID  int    // the holder's pid; 0 when it had not written it yet
}

// Error names the holder's pid and the lock file.
func (e *LockedError) Error() string {
	who := "another ghostbridge"
	if e.PID != 0 {
		who = fmt.Sprintf("another ghostbridge (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s holds %s: vector sync and vector reindex cannot run at the same time (stop the sync, e.g. systemctl stop, and retry)", who, e.Path)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// LockPath is the file whose flock guards vector work on the chain
// database at db. Symlinks are resolved, so every path to one database
// takes the same lock.
func LockPath(db string) string { return flock.Path(db, ".vector.lock") }

// acquireLock takes the lock at path without waiting; *LockedError when
// another open file (in this or another process) holds it.
func acquireLock(path string) (*flock.Lock, error) {
	l, err := flock.Acquire(path)
	var held *flock.HeldError
	if errors.As(err, &held) {
		return nil, &LockedError{Path: held.Path, PID: held.PID}
	}
	return l, err
}
