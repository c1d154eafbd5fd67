package netup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// After the deadline, a try process that still holds the lock is given
// stoppedGrace to roll back by itself when it is stopped (SIGSTOP,
// a debugger) and hungGrace otherwise; then it is killed, so that the
// previous state comes back however the try process is stuck.
const (
	stoppedGrace = time.Second
	hungGrace    = 30 * time.Second
)

// Watchdog guards the try in dir whose deadline is deadline: it returns
// as soon as that try is confirmed or rolled back, and once the deadline
// has passed without either it rolls the try back like Rollback. A try
// process that still lives then is left to roll back by itself, but not
// forever: stopped (SIGSTOP) it is killed stoppedGrace after the
// deadline, running but stuck hungGrace after it. It is meant to run in
// its own session, detached from the terminal the try was started from.
func Watchdog(ctx context.Context, d Deps, dir string, deadline time.Time, onChange func(Change)) (Result, error) {
	res := Result{Changes: []Change{}}
	path := filepath.Join(dir, tryStateFile)
	for {
		st, err := readTry(path)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && !st.Deadline.Equal(deadline)) {
			return res, nil // confirmed, rolled back, or another try's
		}
		if err != nil {
			return res, err
		}
		left := time.Until(deadline.Add(stoppedGrace))
		if left <= 0 {
			lock, err := lockOverdue(ctx, d, dir, time.Now)
			if err == nil {
				res, err := rollbackLocked(ctx, d, dir, onChange)
				lock.Close()
				if errors.Is(err, ErrNoTry) {
					return res, nil
				}
				return res, err
			}
			if !errors.Is(err, ErrTryPending) {
				return res, err
			}
			left = 0 // the try process lives and is rolling back
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(min(max(left, 100*time.Millisecond), time.Second)):
		}
	}
}

// lockOverdue takes the try lock like lockTry. When a try process holds
// it past its deadline, stopped for longer than stoppedGrace or running
// for longer than hungGrace, it kills that process and takes the lock
// once the kernel has released it; before then the error is the
// *PendingTryError of lockTry. A PID and start time mean something only
// within the boot that recorded them, so a try recorded in another boot
// (or with no boot ID) is never signalled.
func lockOverdue(ctx context.Context, d Deps, dir string, now func() time.Time) (tryLock, error) {
	lock, err := lockTry(dir)
	var pe *PendingTryError
	if err == nil || !errors.As(err, &pe) || pe.ProcStart == 0 || !sameBoot(pe.BootID, currentBootID()) {
		return lock, err
	}
	ps, serr := procStat(pe.PID)
	if serr != nil || ps.start != pe.ProcStart {
		return lock, err // not the try process: someone else holds the lock briefly
	}
	late := now().Sub(pe.Deadline)
	if !(ps.stopped() && late > stoppedGrace || late > hungGrace) {
		return lock, err
	}
	if kerr := killTry(pe.TryInfo, currentBootID()); kerr != nil {
		return lock, errors.Join(err, kerr)
	}
	// The kernel drops the lock once the killed process is gone, which
	// takes milliseconds unless it is stuck in the kernel (D state):
	// wait, backing off, and say so when it takes long.
	wait := 20 * time.Millisecond
	for waited := time.Duration(0); ; waited += wait {
		lock, err := lockTry(dir)
		if !errors.Is(err, ErrTryPending) {
			return lock, err
		}
		if waited >= 5*time.Second {
			d.log().Warn("killed net try still holds its lock", "pid", pe.PID, "waited", waited.Round(time.Second))
			wait = min(wait*2, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return tryLock{}, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// sameBoot reports whether a recorded boot ID is the current one; an
// unknown ID matches nothing.
func sameBoot(recorded, current string) bool {
	return recorded != "" && recorded == current
}

// procInfo is what /proc/PID/stat says about a process.
type procInfo struct {
	state byte   // R, S, D, T (stopped), t (traced), Z ...
	start uint64 // clock ticks after boot
}

func (p procInfo) stopped() bool { return p.state == 'T' || p.state == 't' }

func procStat(pid int) (procInfo, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return procInfo{}, fmt.Errorf("process %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after the last ')' start with the state (field 3).
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 20 || len(f[0]) != 1 {
		return procInfo{}, fmt.Errorf("%s: unexpected format", path)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procInfo{}, fmt.Errorf("%s: start time: %w", path, err)
	}
	return procInfo{state: f[0][0], start: start}, nil
}

// killTry sends SIGKILL to the try process of info, through a pidfd
// opened before checking that the PID still names that process, so a
// later process given the same PID is never hit. It signals nothing
// unless info was recorded in the current boot (bootID).
func killTry(info TryInfo, bootID string) error {
	if !sameBoot(info.BootID, bootID) {
		return nil
	}
	fd, err := unix.PidfdOpen(info.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stuck net try %d: %w", info.PID, err)
	}
	defer func() { _ = unix.Close(fd) }()
	if ps, err := procStat(info.PID); err != nil || ps.start != info.ProcStart {
		return nil // gone, or another process now
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill stuck net try %d: %w", info.PID, err)
	}
	return nil
}
