package snap

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
	f *os.File
}

// LockPath is the lock file that guards the database at db. Symlinks are
// resolved (when db exists), so every path to one database takes the same
// lock.
func LockPath(db string) string {
	if real, err := filepath.EvalSymlinks(db); err == nil {
		db = real
	}
	return db + ".lock"
}

// AcquireLock takes the lock at path without waiting and writes this
// process's pid into it. It returns *LockedError when another open file
// (in this or another process) holds it.
func AcquireLock(path string) (*Lock, error) {
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
	return &Lock{f: f}, nil
}

// Release clears the pid and drops the lock. The file stays: removing it
// would let a newcomer lock a fresh file while a waiter locks the old one.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Truncate(0)
	err = errors.Join(err, l.f.Close())
	l.f = nil
	if err != nil {
		return fmt.Errorf("release lock: %w", err)
	}
	return nil
}
