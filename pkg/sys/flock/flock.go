// Package flock takes exclusive, non-blocking flock(2) locks on small pid
// files next to a database, so that a second process is refused with the
// holder's pid and the kernel drops the lock however the holder exits.
//
// It only locks; what a lock guards, and how a refusal is worded for the
// operator, is the caller's business.
package flock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// HeldError means another open file, in this or another process, holds
// the lock.
type HeldError struct {
	Path string // the lock file
	PID  int    // the holder's pid; 0 when it had not written it yet
}

// Error names the lock file and, when known, the holder's pid.
func (e *HeldError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("%s is held by another process", e.Path)
	}
	return fmt.Sprintf("%s is held by pid %d", e.Path, e.PID)
}

// Path is the lock file for the file at target with suffix appended, after
// resolving symlinks (when target exists), so every path to one file takes
// the same lock.
func Path(target, suffix string) string {
	if real, err := filepath.EvalSymlinks(target); err == nil {
		target = real
	}
	return target + suffix
}

// Lock is a held lock.
type Lock struct {
	f *os.File
}

// Acquire takes the lock at path without waiting and writes this process's
// pid into it. It returns *HeldError when the lock is held.
func Acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			buf := make([]byte, 32)
			n, _ := f.ReadAt(buf, 0) // a short or empty file only loses the pid
			pid, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
			return nil, errors.Join(&HeldError{Path: path, PID: pid}, f.Close())
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
	err := errors.Join(l.f.Truncate(0), l.f.Close())
	l.f = nil
	if err != nil {
		return fmt.Errorf("release lock: %w", err)
	}
	return nil
}
