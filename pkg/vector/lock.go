package vector

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
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
func LockPath(db string) string {
	if real, err := filepath.EvalSymlinks(db); err == nil {
		db = real
	}
	return db + ".vector.lock"
}

// lock is an exclusive flock; the kernel drops it when the holder exits,
// however it exits.
type lock struct {
	f *os.File
}

// acquireLock takes the lock at path without waiting and writes this
// process's pid into it; *LockedError when another open file (in this or
// another process) holds it.
func acquireLock(path string) (*lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			buf := make([]byte, 32)
			n, _ := f.ReadAt(buf, 0) // a short or empty file only loses the pid
			pid, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
			return nil, errors.Join(&LockedError{Path: path, PID: pid}, f.Close())
		}
		return nil, errors.Join(fmt.Errorf("lock %s: %w", path, err), f.Close())
	}
	if err := f.Truncate(0); err != nil {
		return nil, errors.Join(fmt.Errorf("lock %s: %w", path, err), f.Close())
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return nil, errors.Join(fmt.Errorf("lock %s: %w", path, err), f.Close())
	}
	return &lock{f: f}, nil
}

// release clears the pid and drops the lock. The file stays: removing it
// would let a newcomer lock a fresh file while a waiter locks the old one.
func (l *lock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := errors.Join(l.f.Truncate(0), l.f.Close())
	l.f = nil
	if err != nil {
		return fmt.Errorf("release lock: %w", err)
	}
	return nil
}
