package netup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Files of a try in its state directory. The lock is held by the try
// process for as long as it runs, so a state file whose lock is free
// belongs to a try whose process died before confirm or rollback.
const (
	tryStateFile = "try.json"
	tryLockFile  = "try.lock"
	trySocket    = "try.sock"
	tryVersion   = 1
)

// Errors of net try.
var (
	// ErrRolledBack is returned by Try when no confirmation came in time
	// (or the process was interrupted) and the previous state was
	// restored.
	ErrRolledBack = errors.New("rolled back")
	// ErrNoTry is returned by Confirm and Rollback when no try is pending.
	ErrNoTry = errors.New("no net try is pending")
	// ErrTryPending is wrapped by PendingTryError.
	ErrTryPending = errors.New("a net try is pending")
	// ErrTryExpired is returned by Confirm for a try that can no longer
	// be confirmed: its deadline passed, or the host rebooted, before a
	// confirmation came.
	ErrTryExpired = errors.New("the net try expired unconfirmed")
)

// TryInfo describes a try that has not been confirmed or rolled back.
type TryInfo struct {
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	Deadline time.Time `json:"deadline"`
	// Waiting is true while the try process still waits for a
	// confirmation; false when it died (killed, host crash) before
	// either happened.
	Waiting bool `json:"waiting"`
	// Expired is true for a try whose process is gone and whose
	// deadline has passed, or that was started before the host last
	// booted: like an unconfirmed "commit confirmed", it can no longer be
	// confirmed, and the next net up, net try, net down or net try
	// --rollback restores the previous state.
	Expired bool `json:"expired"`
	// Overdue is true for a try process that still waits (stopped or
	// stuck) past its deadline instead of rolling back: its watchdog, or
	// Rollback, kills it and rolls back.
	Overdue bool `json:"overdue,omitempty"`
	// Rebooted is true when the host booted since the try started.
	Rebooted bool `json:"rebooted,omitempty"`
	// BootID is the kernel's boot ID when the try started.
	BootID string `json:"boot_id,omitempty"`
	// ProcStart is the try process's start time (clock ticks after
	// boot, /proc/PID/stat), which tells it from a later process that
	// got the same PID.
	ProcStart uint64 `json:"proc_start,omitempty"`
	Path      string `json:"state_file"`
}

// judge sets the fields of info that depend on the moment: waiting says
// whether the try process still holds the lock.
func (info *TryInfo) judge(now time.Time, bootID string, waiting bool) {
	info.Waiting = waiting
	info.Rebooted = info.BootID != "" && bootID != "" && info.BootID != bootID
	info.Expired = !waiting && (info.Rebooted || now.After(info.Deadline))
	info.Overdue = waiting && now.After(info.Deadline.Add(stoppedGrace))
}

// why says how an expired try expired.
func (info TryInfo) why() string {
	if info.Rebooted {
		return "the host rebooted before it was confirmed"
	}
	return "its deadline " + info.Deadline.UTC().Format(time.RFC3339) + " passed unconfirmed"
}

// bootIDFile holds the kernel's random ID of the current boot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// currentBootID is the kernel's ID of this boot, or "" when unreadable
// (a try is then judged by its deadline alone).
func currentBootID() string {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// PendingTryError refuses a change while a try is unconfirmed.
type PendingTryError struct{ TryInfo }

func (e *PendingTryError) Error() string {
	if e.Expired {
		return fmt.Sprintf("a net try started %s expired: %s (process %d is gone; state in %s): 'ghostbridge net up', 'net down' or 'net try --rollback' restores the previous state",
			e.Started.UTC().Format(time.RFC3339), e.why(), e.PID, e.Path)
	}
	if e.Waiting {
		return fmt.Sprintf("a net try (pid %d) is waiting for 'ghostbridge net confirm' until %s; confirm it or interrupt it first",
			e.PID, e.Deadline.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("a net try started %s was never confirmed (process %d is gone; state in %s): run 'ghostbridge net confirm' to keep the new state or 'ghostbridge net try --rollback' to restore the previous one",
		e.Started.UTC().Format(time.RFC3339), e.PID, e.Path)
}

// Is makes errors.Is(err, ErrTryPending) true.
func (e *PendingTryError) Is(target error) bool { return target == ErrTryPending }

// ExpiredTryError is Up or Try having rolled back an expired try (see
// TryInfo.Expired) instead of doing their own work: the configuration
// that try applied was never confirmed, so it is not applied again
// unasked, as at boot, where a reboot is what expired the try.
type ExpiredTryError struct {
	TryInfo
	Restored int
}

func (e *ExpiredTryError) Error() string {
	return fmt.Sprintf("%s the net try started %s (%s; %d %s restored) and stopped there, so the configuration that try applied is not applied again unconfirmed: check it, then run 'ghostbridge net try' (or 'net up')",
		ErrRolledBack, e.Started.UTC().Format(time.RFC3339), e.why(), e.Restored, plural(e.Restored, "change", "changes"))
}

// Is makes errors.Is(err, ErrRolledBack) true.
func (e *ExpiredTryError) Is(target error) bool { return target == ErrRolledBack }

// tryState is the state file: who is trying, and the state to go back to.
type tryState struct {
	Version int `json:"version"`
	TryInfo
	Snapshot Snapshot `json:"snapshot"`
	// After is the host just after the try applied its changes, and
	// Scope what its plan touched: a rollback undoes only what differs
	// between Snapshot and After within Scope, so changes others made
	// while the try waited stay. Nil while the changes are being
	// applied: a rollback then restores Snapshot within Scope.
	After *Snapshot `json:"after,omitempty"`
	Scope Scope     `json:"scope"`
}

// rollback restores what st recorded.
func (st tryState) rollback(ctx context.Context, d Deps) (Result, error) {
	if st.After == nil {
		// The try died while applying: everything within scope that
		// differs from before is its doing or a half-made change.
		return restore(ctx, d, st.Snapshot, func(c Change) bool { return inScope(c, st.Scope) })
	}
	return RestoreChanged(ctx, d, st.Snapshot, *st.After, st.Scope)
}

// TryOptions adjust Try.
type TryOptions struct {
	// StateDir holds the state file (0600), the lock and the socket
	// Confirm talks to. It is created (0700) when missing.
	StateDir string
	// Timeout is how long to wait for Confirm before rolling back.
	Timeout time.Duration
	// OnChange is called after each change is applied.
	OnChange func(Change)
	// OnWaiting is called once the changes are applied and Try waits.
	OnWaiting func(Result, TryInfo)
	// OnRecorded is called once the state file is written and before
	// anything changes; the command starts its Watchdog process here,
	// so a rollback happens even when this process dies. An error
	// aborts the try with nothing changed.
	OnRecorded func(TryInfo) error
	// Now is the clock for the recorded times; nil: time.Now.
	Now func() time.Time
}

// TryResult is the outcome of Try; the JSON contract of the last line of
// `net try`.
type TryResult struct {
	Result
	Confirmed  bool `json:"confirmed"`
	RolledBack bool `json:"rolled_back"`
	// Reason says why the try rolled back: "timeout", "interrupted", or
	// "expired" when it found an earlier try expired (ExpiredTryError)
	// and rolled that back instead.
	Reason   string   `json:"reason,omitempty"`
	Restored []Change `json:"restored"`
}

// Try converges the host to cfg like Up, after recording the state it
// observed before, then waits for Confirm. Without a confirmation within
// opts.Timeout, or when ctx ends first (SIGINT, SIGTERM), it restores the
// recorded state and returns an error wrapping ErrRolledBack. If the
// process dies while waiting, the state file stays behind: PendingTry
// reports it, Up and Try refuse to run, and Rollback (or Down) restores
// it. A host already in sync is left alone and nothing waits.
func Try(ctx context.Context, d Deps, cfg Config, opts TryOptions) (TryResult, error) {
	res := TryResult{Result: Result{Changes: []Change{}}, Restored: []Change{}}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.StateDir == "" || opts.Timeout <= 0 {
		return res, errors.New("net try: a state directory and a positive timeout are required")
	}
	lock, err := lockTry(opts.StateDir)
	if err != nil {
		return res, err
	}
	defer lock.Close()
	statePath := filepath.Join(opts.StateDir, tryStateFile)
	if _, err := os.Stat(statePath); err == nil {
		st, err := readTry(statePath)
		if err != nil {
			return res, err
		}
		st.judge(now(), currentBootID(), false) // we hold the lock: its process is gone
		if !st.Expired {
			return res, &PendingTryError{st.TryInfo}
		}
		restored, err := rollbackLocked(ctx, d, opts.StateDir, opts.OnChange)
		res.Restored = restored.Changes
		if err != nil {
			return res, fmt.Errorf("roll back the expired net try started %s: %w", st.Started.UTC().Format(time.RFC3339), err)
		}
		res.RolledBack, res.Reason = true, "expired"
		return res, &ExpiredTryError{TryInfo: st.TryInfo, Restored: len(restored.Changes)}
	}
	cs, err := Prepare(ctx, d, cfg)
	if err != nil {
		return res, err
	}
	if len(cs) == 0 {
		res.InSync, res.Confirmed = true, true
		return res, nil
	}
	res.Changes = cs
	before, err := TakeSnapshot(ctx, d, offloadScope(cs))
	if err != nil {
		return res, fmt.Errorf("record the state before changing it: %w", err)
	}
	start := now()
	self, err := procStat(os.Getpid())
	if err != nil {
		return res, err
	}
	st := tryState{Version: tryVersion, TryInfo: TryInfo{PID: os.Getpid(), Started: start.UTC(), Deadline: start.Add(opts.Timeout).UTC(), Waiting: true,
		BootID: currentBootID(), ProcStart: self.start, Path: statePath}, Snapshot: before, Scope: scopeOf(cs)}
	if err := writeFileAtomic(statePath, st); err != nil {
		return res, err
	}
	sockPath := filepath.Join(opts.StateDir, trySocket)
	if err := os.Remove(sockPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("stale socket %s: %w", sockPath, err)
	}
	ln, err := net.Listen("unix", sockPath)
	if err != nil {
		return res, errors.Join(fmt.Errorf("listen on %s: %w", sockPath, err), os.Remove(statePath))
	}
	defer func() { _ = ln.Close() }() // also removes the socket file
	if err := os.Chmod(sockPath, 0o600); err != nil {
		return res, errors.Join(fmt.Errorf("socket %s: %w", sockPath, err), os.Remove(statePath))
	}
	if opts.OnRecorded != nil {
		if err := opts.OnRecorded(st.TryInfo); err != nil {
			return res, errors.Join(err, os.Remove(statePath))
		}
	}

	if err := applyAll(ctx, d, cs, opts.OnChange, before); err != nil {
		return res, errors.Join(err, os.Remove(statePath))
	}
	res.Applied = true
	after, err := TakeSnapshot(ctx, d, before.offloadFeatures())
	if err == nil {
		st.After = &after
		err = writeFileAtomic(statePath, st)
	}
	if err != nil {
		// Without a record of what the try changed, the rollback
		// cannot be told from others' changes later: undo it now.
		_, rerr := st.rollback(context.WithoutCancel(ctx), d)
		return res, errors.Join(fmt.Errorf("record the applied state: %w", err), rerr, os.Remove(statePath))
	}
	if opts.OnWaiting != nil {
		opts.OnWaiting(res.Result, st.TryInfo)
	}

	confirms := make(chan net.Conn)
	stop := make(chan struct{})
	defer close(stop)
	go acceptConfirms(ln, confirms, stop)
	timer := time.NewTimer(opts.Timeout)
	defer timer.Stop()
	select {
	case conn := <-confirms:
		err := os.Remove(statePath)
		if err == nil {
			_, err = conn.Write([]byte("ok\n"))
		} else {
			_, _ = conn.Write([]byte("error: " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"))
		}
		err = errors.Join(err, conn.Close())
		res.Confirmed = err == nil
		return res, err
	case <-timer.C:
		res.Reason = "timeout"
	case <-ctx.Done():
		res.Reason = "interrupted"
	}
	// Refuse confirmations from now on: the answer is rollback.
	_ = ln.Close()
	restored, err := st.rollback(context.WithoutCancel(ctx), d)
	res.Restored = restored.Changes
	if err != nil {
		// The state file stays, so `net try --rollback` can finish.
		return res, fmt.Errorf("no confirmation (%s) and the rollback failed; state kept in %s: %w", res.Reason, statePath, err)
	}
	res.RolledBack = true
	if err := os.Remove(statePath); err != nil {
		return res, fmt.Errorf("%w, but %w", ErrRolledBack, err)
	}
	if res.Reason == "timeout" {
		return res, fmt.Errorf("no 'net confirm' within %s: %w to the previous state", opts.Timeout, ErrRolledBack)
	}
	return res, fmt.Errorf("interrupted before 'net confirm': %w to the previous state", ErrRolledBack)
}

// acceptConfirms passes on each connection that asks to confirm.
func acceptConfirms(ln net.Listener, out chan<- net.Conn, stop <-chan struct{}) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || strings.TrimSpace(line) != "confirm" {
				_ = conn.Close()
				return
			}
			_ = conn.SetReadDeadline(time.Time{})
			select {
			case out <- conn:
			case <-stop:
				_ = conn.Close()
			}
		}()
	}
}

// ConfirmResult is the JSON contract of `net confirm`.
type ConfirmResult struct {
	Confirmed bool `json:"confirmed"`
	// Orphaned is true when the try's process had died: the new state
	// is kept and the record of the old one dropped.
	Orphaned bool `json:"orphaned"`
	PID      int  `json:"pid"`
}

// Confirm keeps the state a try applied: it tells the waiting try
// process, or, when that process died, drops the state file it left.
func Confirm(ctx context.Context, dir string) (ConfirmResult, error) {
	statePath := filepath.Join(dir, tryStateFile)
	info, err := readTry(statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return ConfirmResult{}, ErrNoTry
	}
	if err != nil {
		return ConfirmResult{}, err
	}
	var dl net.Dialer
	conn, derr := dl.DialContext(ctx, "unix", filepath.Join(dir, trySocket))
	if derr == nil {
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte("confirm\n")); err != nil {
			return ConfirmResult{}, fmt.Errorf("confirm try %d: %w", info.PID, err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		switch {
		case strings.TrimSpace(line) == "ok":
			return ConfirmResult{Confirmed: true, PID: info.PID}, nil
		case err == nil:
			return ConfirmResult{}, fmt.Errorf("confirm try %d: %s", info.PID, strings.TrimSpace(line))
		}
		// The try stopped listening: it is rolling back.
	}
	lock, err := lockTry(dir)
	if err != nil {
		return ConfirmResult{}, fmt.Errorf("too late to confirm: %w", err)
	}
	defer lock.Close()
	st, err := readTry(statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return ConfirmResult{}, fmt.Errorf("too late to confirm: %w (try %d has finished)", ErrNoTry, info.PID)
	}
	if err != nil {
		return ConfirmResult{}, err
	}
	if st.judge(time.Now(), currentBootID(), false); st.Expired {
		return ConfirmResult{}, fmt.Errorf("too late to confirm the try of pid %d: %s; 'ghostbridge net up', 'net down' or 'net try --rollback' restores the previous state: %w",
			st.PID, st.why(), ErrTryExpired)
	}
	if err := os.Remove(statePath); err != nil {
		return ConfirmResult{}, err
	}
	return ConfirmResult{Confirmed: true, Orphaned: true, PID: info.PID}, nil
}

// Rollback restores the state recorded by a try whose process died, or
// that is stuck past its deadline (see Watchdog; it is killed first).
func Rollback(ctx context.Context, d Deps, dir string, onChange func(Change)) (Result, error) {
	lock, err := lockOverdue(ctx, dir, time.Now)
	if err != nil {
		return Result{Changes: []Change{}}, err
	}
	defer lock.Close()
	return rollbackLocked(ctx, d, dir, onChange)
}

// rollbackLocked is Rollback with the lock held by the caller.
func rollbackLocked(ctx context.Context, d Deps, dir string, onChange func(Change)) (Result, error) {
	res := Result{Changes: []Change{}}
	statePath := filepath.Join(dir, tryStateFile)
	st, err := readTry(statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return res, ErrNoTry
	}
	if err != nil {
		return res, err
	}
	if res, err = st.rollback(ctx, d); err != nil {
		return res, err
	}
	for _, c := range res.Changes {
		if onChange != nil {
			onChange(c)
		}
	}
	return res, os.Remove(statePath)
}

// PendingTry reports the try in dir that is neither confirmed nor rolled
// back, or nil.
func PendingTry(dir string) (*TryInfo, error) {
	if dir == "" {
		return nil, nil
	}
	st, err := readTry(filepath.Join(dir, tryStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info := st.TryInfo
	lock, err := lockTry(dir)
	if err == nil {
		lock.Close()
	} else if !errors.Is(err, ErrTryPending) {
		return nil, err
	}
	info.judge(time.Now(), currentBootID(), err != nil)
	return &info, nil
}

func pendingErr(info *TryInfo) error {
	if info == nil {
		return nil
	}
	return &PendingTryError{*info}
}

// settlePendingTry lets Up run when no try is pending in dir. A pending
// try that expired is rolled back, and Up stops there with an
// *ExpiredTryError; any other pending try is a *PendingTryError.
func settlePendingTry(ctx context.Context, d Deps, dir string, onChange func(Change)) (Result, error) {
	res := Result{Changes: []Change{}}
	info, err := PendingTry(dir)
	if err != nil || info == nil {
		return res, err
	}
	if !info.Expired {
		return res, &PendingTryError{*info}
	}
	res, err = Rollback(ctx, d, dir, onChange)
	if err != nil {
		return res, fmt.Errorf("roll back the expired net try started %s: %w", info.Started.UTC().Format(time.RFC3339), err)
	}
	res.Applied = len(res.Changes) > 0
	return res, &ExpiredTryError{TryInfo: *info, Restored: len(res.Changes)}
}

// tryLock is an exclusive flock on the state directory's lock file.
type tryLock struct{ f *os.File }

func (l tryLock) Close() { _ = l.f.Close() } // closing drops the flock

// lockTry takes the lock without waiting; when a try process holds it,
// the error is a *PendingTryError.
func lockTry(dir string) (tryLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tryLock{}, fmt.Errorf("state directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, tryLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return tryLock{}, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			info := TryInfo{Waiting: true, Path: filepath.Join(dir, tryStateFile)}
			if st, rerr := readTry(info.Path); rerr == nil {
				info = st.TryInfo
				info.Waiting = true
			}
			return tryLock{}, &PendingTryError{info}
		}
		return tryLock{}, fmt.Errorf("lock %s: %w", path, err)
	}
	return tryLock{f}, nil
}

func readTry(path string) (tryState, error) {
	var st tryState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("try state %s: %w", path, err)
	}
	if st.Version != tryVersion {
		return st, fmt.Errorf("try state %s: version %d, want %d", path, st.Version, tryVersion)
	}
	st.Path = path
	return st, nil
}

// writeFileAtomic writes v as JSON to path (0600) through a temporary
// file, synced before the rename, so a crash leaves the old file or the
// whole new one.
func writeFileAtomic(path string, v any) (err error) {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".try-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return errors.Join(fmt.Errorf("write %s: %w", path, err), f.Close())
	}
	if _, err := f.Write(b); err != nil {
		return errors.Join(fmt.Errorf("write %s: %w", path, err), f.Close())
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
