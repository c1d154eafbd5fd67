package netup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/sys/regfile"
	"golang.org/x/sys/unix"
)

// Files of a try in its state directory. The lock is held by the try
// process for as long as it runs, so a state file whose lock is free
// belongs to a try whose process died before confirm or rollback.
const (
	tryStateFile = "try.json"
	// unconfirmedFile names the configuration of the last try that was
	// rolled back unconfirmed: Up refuses to apply it unasked.
	unconfirmedFile = "unconfirmed.json"
	tryLockFile     = "try.lock"
	trySocket       = "try.sock"
	tryVersion      = 1
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
	// ErrUnconfirmedConfig is wrapped by UnconfirmedConfigError.
	ErrUnconfirmedConfig = errors.New("the configuration was tried and rolled back unconfirmed")
)

// RestoreHint tells the operator how to roll back a try that can no
// longer be confirmed.
const RestoreHint = "'ghostbridge net up', 'net down' or 'net try --rollback' restores the previous state"

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
	// ConfigDigest identifies the configuration the try applies (see
	// ConfigDigest): once the try is rolled back unconfirmed, Up refuses
	// that configuration until a try of it is confirmed.
	ConfigDigest string `json:"config_digest,omitempty"`
	Path         string `json:"state_file"`
}

// judge sets the fields of info that depend on the moment: waiting says
// whether the try process still holds the lock.
func (info *TryInfo) judge(now time.Time, bootID string, waiting bool) {
	info.Waiting = waiting
	info.Rebooted = info.BootID != "" && bootID != "" && info.BootID != bootID
	info.Expired = !waiting && (info.Rebooted || now.After(info.Deadline))
	info.Overdue = waiting && now.After(info.Deadline.Add(stoppedGrace))
}

// Why says how an expired try expired.
func (info TryInfo) Why() string {
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
		return fmt.Sprintf("a net try started %s expired: %s (process %d is gone; state in %s): %s",
			e.Started.UTC().Format(time.RFC3339), e.Why(), e.PID, e.Path, RestoreHint)
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
	return fmt.Sprintf("%s the net try started %s (%s; %d %s restored) and stopped there, so the configuration that try applied is not applied again unconfirmed: check it, then run 'ghostbridge net try' and 'net confirm' (or 'net up --force')",
		ErrRolledBack, e.Started.UTC().Format(time.RFC3339), e.Why(), e.Restored, plural(e.Restored, "change", "changes"))
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

// rollback restores what st recorded. After a reboot, the kernel side
// of the host is what the boot made of it, not what the try left: the
// bridges' devices come back down and without addresses, the flow tables
// empty, the NIC maybe configured by the boot. Undoing only what the try
// changed would leave the bridges that were already converged before it
// in that state, so a rollback after a reboot restores the whole
// recorded state of what ghostbridge owns (see bootScope).
func (st tryState) rollback(ctx context.Context, d Deps, bootID string) (Result, error) {
	if st.BootID != "" && bootID != "" && st.BootID != bootID {
		sc := st.bootScope()
		return restore(ctx, d, st.Snapshot, func(c Change) bool { return st.restoresAfterBoot(c, sc) })
	}
	if st.After == nil {
		// The try died while applying: everything within scope that
		// differs from before is its doing or a half-made change.
		return restore(ctx, d, st.Snapshot, func(c Change) bool { return inScope(c, st.Scope) })
	}
	return RestoreChanged(ctx, d, st.Snapshot, *st.After, st.Scope)
}

// bootScope is what a rollback after a reboot restores: the try's own
// scope and, from the recorded previous state, every bridge ghostbridge
// owns with its ports and uplink (their links, addresses, routes and
// offloads) and every kernel parameter it recorded.
func (st tryState) bootScope() Scope {
	sc := Scope{Bridges: slices.Clone(st.Scope.Bridges), Devices: slices.Clone(st.Scope.Devices), Sysctls: slices.Clone(st.Scope.Sysctls)}
	addTo := func(list *[]string, v string) {
		if v != "" && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for _, name := range sortedKeys(st.Snapshot.Bridges) {
		b := st.Snapshot.Bridges[name]
		if b.ExternalIDs[idOwner] != idOwnerValue {
			continue
		}
		addTo(&sc.Bridges, name)
		addTo(&sc.Devices, name)
		addTo(&sc.Devices, b.ExternalIDs[idUplink])
		for _, pn := range sortedKeys(b.Ports) {
			if b.Ports[pn].ExternalIDs[idOwner] == idOwnerValue {
				addTo(&sc.Devices, pn)
			}
		}
	}
	for _, k := range sortedKeys(st.Snapshot.RootIDs) {
		if key, ok := strings.CutPrefix(k, idSysctl); ok {
			addTo(&sc.Sysctls, key)
		}
	}
	return sc
}

// restoresAfterBoot reports whether a rollback after a reboot makes
// restore change c: anything within sc, except that ports others added
// to ghostbridge's bridges (a VM's tap device) stay unless the try
// itself changed them.
func (st tryState) restoresAfterBoot(c Change, sc Scope) bool {
	if !inScope(c, sc) {
		return false
	}
	if c.Kind != KindPort {
		return true
	}
	if st.Snapshot.Bridges[c.Bridge].Ports[c.Target].ExternalIDs[idOwner] == idOwnerValue {
		return true
	}
	if st.After == nil {
		return inScope(c, st.Scope)
	}
	return changedByUs(c, st.Snapshot, *st.After, st.Scope)
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
	// Now is the clock for the recorded start and deadline, and for
	// judging whether a try found in StateDir has expired; nil:
	// time.Now. The wait itself is a timer until that deadline.
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
	// The offloads of every uplink ghostbridge owns are recorded too: a
	// rollback after a reboot restores them (see tryState.rollback).
	feats := offloadScope(cs)
	if err := ownedOffloads(ctx, d, feats, cfg.Offloads); err != nil {
		return res, err
	}
	before, err := TakeSnapshot(ctx, d, feats)
	if err != nil {
		return res, fmt.Errorf("record the state before changing it: %w", err)
	}
	// One deadline for both the record and the timer; time.Now's
	// monotonic reading keeps the timer right when the wall clock steps.
	start := now()
	deadline := start.Add(opts.Timeout)
	self, err := procStat(os.Getpid())
	if err != nil {
		return res, err
	}
	st := tryState{Version: tryVersion, TryInfo: TryInfo{PID: os.Getpid(), Started: start.UTC(), Deadline: deadline.UTC(), Waiting: true,
		BootID: currentBootID(), ProcStart: self.start, ConfigDigest: ConfigDigest(cfg), Path: statePath}, Snapshot: before, Scope: scopeOf(cs)}
	if err := writeFileAtomic(statePath, st); err != nil {
		return res, err
	}
	sockPath := filepath.Join(opts.StateDir, trySocket)
	if err := os.Remove(sockPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("stale socket %s: %w", sockPath, err)
	}
	ln, err := net.Listen("unix", sockPath)
	if err != nil {
		return res, errors.Join(fmt.Errorf("listen on %s: %w", sockPath, err), regfile.RemoveDurable(statePath))
	}
	defer func() { _ = ln.Close() }() // also removes the socket file
	if err := os.Chmod(sockPath, 0o600); err != nil {
		return res, errors.Join(fmt.Errorf("socket %s: %w", sockPath, err), regfile.RemoveDurable(statePath))
	}
	if opts.OnRecorded != nil {
		if err := opts.OnRecorded(st.TryInfo); err != nil {
			return res, errors.Join(err, regfile.RemoveDurable(statePath))
		}
	}

	if err := applyAll(ctx, d, cs, opts.OnChange, before); err != nil {
		return res, errors.Join(err, regfile.RemoveDurable(statePath))
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
		_, rerr := st.rollback(context.WithoutCancel(ctx), d, st.BootID)
		return res, errors.Join(fmt.Errorf("record the applied state: %w", err), rerr, regfile.RemoveDurable(statePath))
	}
	if opts.OnWaiting != nil {
		opts.OnWaiting(res.Result, st.TryInfo)
	}

	confirms := make(chan net.Conn)
	stop := make(chan struct{})
	defer close(stop)
	go acceptConfirms(ln, confirms, stop)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case conn := <-confirms:
		err := regfile.RemoveDurable(statePath)
		if err == nil {
			err = clearUnconfirmed(opts.StateDir, st.ConfigDigest)
		}
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
	restored, err := st.rollback(context.WithoutCancel(ctx), d, st.BootID)
	res.Restored = restored.Changes
	if err != nil {
		// The state file stays, so `net try --rollback` can finish.
		return res, fmt.Errorf("no confirmation (%s) and the rollback failed; state kept in %s: %w", res.Reason, statePath, err)
	}
	res.RolledBack = true
	why := "no 'net confirm' within " + opts.Timeout.String()
	if res.Reason != "timeout" {
		why = "interrupted before 'net confirm'"
	}
	if err := errors.Join(recordUnconfirmed(opts.StateDir, st.TryInfo, why), regfile.RemoveDurable(statePath)); err != nil {
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
	if errors.Is(err, ErrTryPending) {
		// The try process stopped listening, or the watchdog holds
		// the lock: either way the try is being undone.
		return ConfirmResult{}, fmt.Errorf("too late to confirm: the net try of pid %d is being rolled back: %w", info.PID, ErrTryExpired)
	}
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
		return ConfirmResult{}, fmt.Errorf("too late to confirm the try of pid %d: %s; %s: %w",
			st.PID, st.Why(), RestoreHint, ErrTryExpired)
	}
	if err := errors.Join(regfile.RemoveDurable(statePath), clearUnconfirmed(dir, st.ConfigDigest)); err != nil {
		return ConfirmResult{}, err
	}
	return ConfirmResult{Confirmed: true, Orphaned: true, PID: info.PID}, nil
}

// Rollback restores the state recorded by a try whose process died, or
// that is stuck past its deadline (see Watchdog; it is killed first).
func Rollback(ctx context.Context, d Deps, dir string, onChange func(Change)) (Result, error) {
	lock, err := lockOverdue(ctx, d, dir, time.Now)
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
	boot := currentBootID()
	if res, err = st.rollback(ctx, d, boot); err != nil {
		return res, err
	}
	for _, c := range res.Changes {
		if onChange != nil {
			onChange(c)
		}
	}
	st.judge(time.Now(), boot, false)
	why := "rolled back before it was confirmed"
	if st.Expired {
		why = st.Why()
	}
	return res, errors.Join(recordUnconfirmed(dir, st.TryInfo, why), regfile.RemoveDurable(statePath))
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

// writeFileAtomic writes v as JSON to path (0600), durably: a crash
// leaves the old file or the whole new one.
func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := regfile.WriteAtomic(path, b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// unconfirmed is the record of a try rolled back unconfirmed.
type unconfirmed struct {
	ConfigDigest string    `json:"config_digest"`
	Started      time.Time `json:"started"`
	Why          string    `json:"why"`
}

// ConfigDigest identifies cfg: the SHA-256 of its JSON encoding, in hex.
func ConfigDigest(cfg Config) string {
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(fmt.Sprintf("encode config: %v", err)) // plain values: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// recordUnconfirmed notes that the configuration of the try info was
// rolled back unconfirmed, so Up does not apply it unasked later (at the
// next boot, say).
func recordUnconfirmed(dir string, info TryInfo, why string) error {
	if info.ConfigDigest == "" {
		return nil
	}
	return writeFileAtomic(filepath.Join(dir, unconfirmedFile), unconfirmed{ConfigDigest: info.ConfigDigest, Started: info.Started, Why: why})
}

// clearUnconfirmed drops the record of an unconfirmed configuration
// once a configuration with digest is confirmed or forced.
func clearUnconfirmed(dir, digest string) error {
	u, err := readUnconfirmed(dir)
	if err != nil || u == nil || u.ConfigDigest != digest {
		return err
	}
	return regfile.RemoveDurable(filepath.Join(dir, unconfirmedFile))
}

func readUnconfirmed(dir string) (*unconfirmed, error) {
	if dir == "" {
		return nil, nil
	}
	path := filepath.Join(dir, unconfirmedFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var u unconfirmed
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &u, nil
}

// UnconfirmedConfigError is Up refusing the configuration of a try that
// was rolled back unconfirmed.
type UnconfirmedConfigError struct {
	Started time.Time
	Why     string
}

func (e *UnconfirmedConfigError) Error() string {
	return fmt.Sprintf("this network configuration was applied by the net try started %s and rolled back unconfirmed (%s): apply it with 'ghostbridge net try' and 'net confirm', or with 'ghostbridge net up --force'",
		e.Started.UTC().Format(time.RFC3339), e.Why)
}

// Is makes errors.Is(err, ErrUnconfirmedConfig) true.
func (e *UnconfirmedConfigError) Is(target error) bool { return target == ErrUnconfirmedConfig }

// checkUnconfirmed refuses cfg when it is the configuration of the last
// try rolled back unconfirmed in dir.
func checkUnconfirmed(dir string, cfg Config) error {
	u, err := readUnconfirmed(dir)
	if err != nil || u == nil || u.ConfigDigest != ConfigDigest(cfg) {
		return err
	}
	return &UnconfirmedConfigError{Started: u.Started, Why: u.Why}
}

// ownedOffloads adds to feats, per device, the offloads ghostbridge
// manages on the uplinks of the bridges it owns: the configured ones and
// those recorded as switched off.
func ownedOffloads(ctx context.Context, d Deps, feats map[string][]string, configured []string) error {
	brs, err := d.OVS.Bridges(ctx)
	if err != nil {
		return fmt.Errorf("read Open vSwitch: %w", err)
	}
	for _, name := range sortedKeys(brs) {
		b := brs[name]
		up := b.ExternalIDs[idUplink]
		if b.ExternalIDs[idOwner] != idOwnerValue || up == "" {
			continue
		}
		for _, f := range append(strings.Split(b.ExternalIDs[idUplinkOffload], ","), configured...) {
			if f != "" && !slices.Contains(feats[up], f) {
				feats[up] = append(feats[up], f)
			}
		}
	}
	return nil
}
