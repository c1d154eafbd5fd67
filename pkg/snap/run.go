package snap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// TickResult is what one tick did. Err holds the tick's non-fatal
// problems (a source that could not be snapshotted, a snapshot that could
// not be deleted or failed the safety checks, a chain that could not be
// written); the loop carries on after them.
type TickResult struct {
	Time     time.Time     `json:"time"` // the wall-clock boundary the tick ran for
	Created  []chain.Block `json:"created"`
	Deleted  []chain.Block `json:"deleted"`
	Vanished []chain.Block `json:"vanished"`
	Missed   uint64        `json:"missed"` // boundaries skipped since the previous tick
	Duration time.Duration `json:"duration_ns"`
	Err      error         `json:"-"`

	// CreateTimes and DeleteTimes are how long each snapshot the tick
	// created, and each one retention deleted, took on the filesystem
	// (monotonic clock; failed calls are not included). They are for
	// metrics and not part of the JSON.
	CreateTimes []time.Duration `json:"-"`
	DeleteTimes []time.Duration `json:"-"`

	// healthy: every source was snapshotted (or skipped on a name
	// collision) and the chain was written. Retention problems are in Err
	// but do not make the loop unhealthy: restarting it would not help.
	healthy bool
}

// RunOptions tune Run.
type RunOptions struct {
	// Once takes one tick (after reconciling) and returns; the tick's
	// errors are returned.
	Once bool
	// OnTick, when set, is called after every tick.
	OnTick func(TickResult)
	// OnReconcile, when set, is called once after start-up reconciliation.
	OnReconcile func(ReconcileResult)
}

// sourceState is a configured source with its subvolume UUID, which its
// snapshots carry as parent UUID.
type sourceState struct {
	Source
	UUID string
}

type runner struct {
	d    Deps
	cfg  Config
	srcs []sourceState

	reported map[string]bool // foreign entries already logged
	refused  map[string]bool // live rows that failed the delete checks, already logged

	// While the chain cannot be written: events done on disk but not yet
	// recorded, the snapshots they deleted, and the ticks skipped.
	pending        []chain.Event
	pendingDeleted map[string]bool
	skipped        *chain.TicksMissedPayload
	broken         bool

	// The filesystem call times of the tick in hand (TickResult.CreateTimes
	// and DeleteTimes).
	createTimes, deleteTimes []time.Duration
}

// newRunner reads each source's UUID and, when create is set, makes the
// snapshot directories (0700: snapshots keep old copies of files whose
// permissions may since have been tightened).
func newRunner(d Deps, cfg Config, create bool) (*runner, error) {
	cfg.Dir = filepath.Clean(cfg.Dir)
	r := &runner{d: d, cfg: cfg, reported: map[string]bool{}, refused: map[string]bool{}, pendingDeleted: map[string]bool{}}
	for _, s := range cfg.Sources {
		info, err := d.FS.Info(s.Path)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", s.Name, err)
		}
		if create {
			if err := os.MkdirAll(SourceDir(cfg.Dir, s.Name), 0o700); err != nil {
				return nil, fmt.Errorf("source %s: snapshot directory: %w", s.Name, err)
			}
		}
		r.srcs = append(r.srcs, sourceState{Source: s, UUID: info.UUID})
	}
	return r, nil
}

// configured returns the snapshots of configured sources: retention
// leaves those of a source no longer configured alone.
func (r *runner) configured(snaps []chain.LiveSnapshot) []chain.LiveSnapshot {
	out := make([]chain.LiveSnapshot, 0, len(snaps))
	for _, l := range snaps {
		if _, ok := r.source(l.Source); ok {
			out = append(out, l)
		}
	}
	return out
}

func (r *runner) source(name string) (sourceState, bool) {
	for _, s := range r.srcs {
		if s.Name == name {
			return s, true
		}
	}
	return sourceState{}, false
}

// Run validates cfg, takes the database's lock, binds the snapshot
// directory to the chain (MarkerName), reconciles the chain with the disk,
// and then snapshots every source at each wall-clock multiple of
// cfg.Interval, recording each snapshot and each retention deletion in the
// chain, until ctx is cancelled. On cancellation it finishes the tick in
// hand and returns nil. Errors that stop it: invalid config or a snapshot
// directory bound to another chain (ErrInvalidConfig), the lock held
// (*LockedError), a chain that cannot be read or written at start-up. Once
// running, a chain that cannot be written is reported per tick: snapshots
// pause, retention carries on, and its deletions are recorded when the
// chain can be written again.
func Run(ctx context.Context, d Deps, cfg Config, opts RunOptions) (err error) {
	d, err = d.withDefaults()
	if err != nil {
		return err
	}
	if err := Validate(ctx, d.FS, cfg); err != nil {
		return err
	}
	lock, err := AcquireLock(LockPath(d.Chain.Path()))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, lock.Release()) }()
	id, err := d.Chain.ChainID(ctx)
	if err != nil {
		return err
	}
	if err := checkOwner(filepath.Clean(cfg.Dir), id); err != nil {
		return err
	}
	r, err := newRunner(d, cfg, true)
	if err != nil {
		return err
	}
	if err := claimDir(r.cfg.Dir, id); err != nil {
		return err
	}
	rec, err := r.reconcile(ctx)
	if err != nil {
		return err
	}
	if opts.OnReconcile != nil {
		opts.OnReconcile(rec)
	}
	if opts.Once {
		res := r.tick(context.WithoutCancel(ctx), d.Now().UTC().Truncate(time.Millisecond), nil)
		if opts.OnTick != nil {
			opts.OnTick(res)
		}
		return res.Err
	}
	return r.loop(ctx, opts)
}

// schedule returns the tick to run after the clock read now, given the
// previous tick prev (zero at start): the next multiple of iv after now,
// and the boundaries between prev and it that were skipped because a tick
// overran. Computing from the clock every time means no drift.
func schedule(now, prev time.Time, iv time.Duration) (next time.Time, missed *chain.TicksMissedPayload) {
	next = now.Truncate(iv).Add(iv)
	if prev.IsZero() {
		return next, nil
	}
	if n := next.Sub(prev)/iv - 1; n > 0 {
		missed = &chain.TicksMissedPayload{Count: uint64(n), From: prev.Add(iv).UTC(), To: next.Add(-iv).UTC()}
	}
	return next, missed
}

func (r *runner) loop(ctx context.Context, opts RunOptions) error {
	defer r.d.notify(NotifyStopping)
	r.d.Logger.Info("snapshot loop started", "interval", r.cfg.Interval, "keep", r.cfg.Policy.Keep, "sources", len(r.srcs))
	var prev, warned time.Time
	ready, healthy := false, false
	lastPing := time.Now() // monotonic: the watchdog counts real time whatever Deps.Now says
	for {
		next, missed := schedule(r.d.Now(), prev, r.cfg.Interval)
		// Sleep in slices and re-read the wall clock after each, so a clock
		// stepped back during the sleep does not stall the loop, and the
		// watchdog hears from a healthy loop however long the interval.
		for {
			now := r.d.Now()
			if n, m := schedule(now, prev, r.cfg.Interval); n.Before(next) {
				next, missed = n, m
			}
			if !prev.IsZero() && !next.After(prev) && !warned.Equal(prev) {
				warned = prev
				r.d.Logger.Warn("wall clock stepped back", "previous_tick", prev, "next_tick", next)
			}
			wait := next.Sub(now)
			if wait <= 0 {
				break
			}
			wait = min(wait, r.cfg.Interval)
			if wd := r.d.WatchdogInterval; wd > 0 {
				wait = min(wait, wd/2)
			}
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				r.d.Logger.Info("snapshot loop stopped")
				return nil
			case <-timer.C:
			}
			if healthy && r.d.WatchdogInterval > 0 && time.Since(lastPing) >= r.d.WatchdogInterval/2 {
				r.d.notify(NotifyWatchdog)
				lastPing = time.Now()
			}
		}
		if ctx.Err() != nil {
			r.d.Logger.Info("snapshot loop stopped")
			return nil
		}
		// The tick in hand is finished even if ctx is cancelled meanwhile.
		res := r.tick(context.WithoutCancel(ctx), next.UTC(), missed)
		prev = next
		healthy = res.healthy
		if opts.OnTick != nil {
			opts.OnTick(res)
		}
		if res.Err != nil {
			r.d.Logger.Error("tick failed", "err", res.Err)
		}
		if !healthy {
			continue
		}
		if !ready {
			r.d.notify(NotifyReady)
			ready = true
		}
		r.d.notify(NotifyWatchdog)
		lastPing = time.Now()
	}
}

// tick snapshots every source for time at, applies retention, and records
// it all in one transaction. Filesystem work comes first and the record
// after it: a crash in between leaves a snapshot without a block (adopted
// at the next start) or a block whose snapshot is gone (recorded as
// vanished), never a block for something that was not done.
//
// When the chain cannot be written, the tick's new snapshots are removed
// again (they cannot be recorded), its deletions are kept to be recorded
// by the first tick that can write, and the following ticks take no
// snapshots (they are recorded as missed) but still apply retention, so a
// full disk is not made fuller.
func (r *runner) tick(ctx context.Context, at time.Time, missed *chain.TicksMissedPayload) (res TickResult) {
	start := r.d.Now()
	res = TickResult{Time: at, Created: []chain.Block{}, Deleted: []chain.Block{}, Vanished: []chain.Block{}}
	r.createTimes, r.deleteTimes = nil, nil
	defer func() { res.CreateTimes, res.DeleteTimes = r.createTimes, r.deleteTimes }()
	var events []chain.Event
	var errs []error
	if missed != nil {
		res.Missed = missed.Count
		r.d.Logger.Warn("ticks missed: previous tick overran", "count", missed.Count, "from", missed.From, "to", missed.To)
		events = append(events, chain.Event{Time: start, Kind: chain.KindTicksMissed, Payload: missed})
	}
	var created []chain.LiveSnapshot
	failed := map[string]bool{}
	var head *chain.Block // the newest block this tick recorded
	if r.broken {
		// Record what is pending first; snapshots resume only once the
		// chain takes it.
		all := append(append([]chain.Event{}, r.pending...), events...)
		if r.skipped != nil {
			all = append(all, chain.Event{Time: start, Kind: chain.KindTicksMissed, Payload: *r.skipped})
		}
		blocks, err := r.d.Chain.Append(ctx, all...)
		if err != nil {
			if r.skipped == nil {
				r.skipped = &chain.TicksMissedPayload{From: at}
			}
			r.skipped.Count++
			r.skipped.To = at
			retire, rerr := r.retention(ctx, nil, failed)
			events = append(events, retire...)
			return r.unwritten(res, at, start, nil, events, append(errs, rerr), err)
		}
		if n := len(blocks); n > 0 {
			head = &blocks[n-1]
		}
		r.d.Logger.Info("chain written again; snapshots resume", "recorded", len(blocks))
		r.broken, r.pending, r.skipped, events = false, nil, nil, nil
		clear(r.pendingDeleted)
		res.add(blocks)
	}
	snapshotsOK := true
	for _, s := range r.srcs {
		p, err := r.snapshot(s, at)
		if errors.Is(err, btrfs.ErrExists) {
			// A clock stepped back reuses names: skip the source this
			// tick rather than fail it.
			r.d.Logger.Warn("snapshot name taken; skipping source this tick", "source", s.Name, "snapshot", SnapshotPath(r.cfg.Dir, s.Name, at))
			failed[s.Name] = true
			continue
		}
		if err != nil {
			errs = append(errs, err)
			failed[s.Name] = true
			snapshotsOK = false
			continue
		}
		now := r.d.Now()
		events = append(events, chain.Event{Time: now, Kind: chain.KindSnapshotCreated, Payload: p})
		created = append(created, chain.LiveSnapshot{Time: now, SnapshotPayload: p})
	}
	retire, err := r.retention(ctx, created, failed)
	events = append(events, retire...)
	errs = append(errs, err)

	blocks, err := r.d.Chain.Append(ctx, events...)
	if err != nil {
		r.d.Logger.Error("chain cannot be written; snapshots paused, retention goes on", "err", err)
		r.broken = true
		return r.unwritten(res, at, start, created, events, errs, err)
	}
	res.add(blocks)
	if n := len(blocks); n > 0 {
		head = &blocks[n-1]
	}
	if head != nil && r.d.AfterAppend != nil {
		r.d.AfterAppend(ctx, *head)
	}
	res.Duration = r.d.Now().Sub(start)
	res.Err = errors.Join(errs...)
	res.healthy = snapshotsOK
	if n := len(blocks); n > 0 {
		r.d.Logger.Debug("tick", "time", at, "created", len(res.Created), "deleted", len(res.Deleted), "height", blocks[n-1].Height, "duration", res.Duration)
	}
	return res
}

// add files recorded blocks under what they record.
func (res *TickResult) add(blocks []chain.Block) {
	for _, b := range blocks {
		switch b.Kind {
		case chain.KindSnapshotCreated:
			res.Created = append(res.Created, b)
		case chain.KindSnapshotDeleted:
			res.Deleted = append(res.Deleted, b)
		case chain.KindSnapshotVanished:
			res.Vanished = append(res.Vanished, b)
		}
	}
}

// unwritten finishes a tick whose events the chain did not take: the new
// snapshots are removed (they cannot be recorded) and the rest is kept
// for the first tick that can write.
func (r *runner) unwritten(res TickResult, at, start time.Time, created []chain.LiveSnapshot, events []chain.Event, errs []error, appendErr error) TickResult {
	for _, c := range created {
		if err := r.d.FS.Delete(c.Snapshot); err != nil {
			r.d.Logger.Error("cannot remove unrecorded snapshot", "source", c.Source, "snapshot", c.Snapshot, "err", err)
		}
	}
	for _, ev := range events {
		if ev.Kind == chain.KindSnapshotCreated {
			continue
		}
		r.pending = append(r.pending, ev)
		if p, ok := ev.Payload.(chain.SnapshotPayload); ok {
			r.pendingDeleted[p.Snapshot] = true
		}
	}
	errs = append(errs, fmt.Errorf("tick %s: chain not written: %w", at.Format(TimeLayout), appendErr))
	res.Duration = r.d.Now().Sub(start)
	res.Err = errors.Join(errs...)
	return res
}

// snapshot takes the read-only snapshot of s for time at and reads back
// what the chain records about it.
func (r *runner) snapshot(s sourceState, at time.Time) (chain.SnapshotPayload, error) {
	dst := SnapshotPath(r.cfg.Dir, s.Name, at)
	began := time.Now()
	if err := r.d.FS.Snapshot(s.Path, dst, true); err != nil {
		if !errors.Is(err, btrfs.ErrExists) {
			r.d.Logger.Error("snapshot failed", "source", s.Name, "snapshot", dst, "err", err)
		}
		return chain.SnapshotPayload{}, fmt.Errorf("source %s: %w", s.Name, err)
	}
	r.createTimes = append(r.createTimes, time.Since(began))
	info, err := r.d.FS.Info(dst)
	if err != nil {
		// Unrecorded and unrecordable: remove it rather than leave an
		// orphan until the next start.
		if derr := r.d.FS.Delete(dst); derr != nil {
			r.d.Logger.Error("cannot remove unrecorded snapshot; it is adopted at next start", "snapshot", dst, "err", derr)
		}
		return chain.SnapshotPayload{}, fmt.Errorf("source %s: %w", s.Name, err)
	}
	r.d.Logger.Debug("snapshot created", "source", s.Name, "snapshot", dst)
	return chain.SnapshotPayload{
		Source: s.Name, SourcePath: s.Path, Snapshot: dst,
		UUID: info.UUID, ParentUUID: info.ParentUUID,
		Generation: info.Generation, OTime: info.OTime,
	}, nil
}

// plan applies the policy to cands and then spares, per source, the
// newest snapshot (a source that stopped working keeps its last one) and
// every snapshot of the sources in skip (their snapshot failed this tick).
func (r *runner) plan(cands []chain.LiveSnapshot, skip map[string]bool) (keep, del []chain.LiveSnapshot) {
	type best struct {
		i int
		t time.Time
	}
	newest := map[string]best{}
	for i, c := range cands {
		t := snapTime(c)
		if b, ok := newest[c.Source]; !ok || newer(c, cands[b.i], t, b.t) {
			newest[c.Source] = best{i, t}
		}
	}
	spare := map[string]bool{}
	for _, b := range newest {
		spare[cands[b.i].Snapshot] = true
	}
	keep, planned := Plan(cands, r.d.Now(), r.cfg.Policy)
	for _, l := range planned {
		if spare[l.Snapshot] || skip[l.Source] {
			keep = append(keep, l)
			continue
		}
		del = append(del, l)
	}
	return keep, del
}

// retention deletes what the policy no longer keeps among the recorded
// snapshots (and those just created) and returns the events to record.
func (r *runner) retention(ctx context.Context, created []chain.LiveSnapshot, skip map[string]bool) ([]chain.Event, error) {
	live, err := r.d.Chain.Live(ctx)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	cands := make([]chain.LiveSnapshot, 0, len(live)+len(created))
	for _, l := range r.configured(live) {
		if !r.pendingDeleted[l.Snapshot] {
			cands = append(cands, l)
		}
	}
	_, del := r.plan(append(cands, created...), skip)
	var events []chain.Event
	var errs []error
	for _, l := range del {
		ev, err := r.retire(ctx, l, "retention")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ev.Kind != "" {
			events = append(events, ev)
		}
	}
	return events, errors.Join(errs...)
}

// ErrUnsafeDelete is wrapped by the error of a recorded snapshot that
// failed the checks made before deleting it; it is left alone.
var ErrUnsafeDelete = errors.New("refusing to delete")

// retire deletes the recorded snapshot l and returns the event that
// records it: deleted with reason, or vanished when it was already gone or
// replaced (a replacement is left alone). The live index is derived state,
// so before deleting anything it checks that l is one of our snapshots:
// the path is where we put snapshots of a configured source, the block at
// l.Height recorded exactly l, and the subvolume on disk is read-only with
// the recorded UUID and parent, the parent being the source. When a check
// fails nothing is deleted or recorded: the first time the error wraps
// ErrUnsafeDelete, later it is nil with an empty event.
func (r *runner) retire(ctx context.Context, l chain.LiveSnapshot, reason string) (chain.Event, error) {
	if err := r.checkRecord(ctx, l); err != nil {
		return chain.Event{}, r.refuse(l, err)
	}
	s, _ := r.source(l.Source) // checkRecord found it
	info, why, err := r.gone(l)
	switch {
	case err != nil:
		r.d.Logger.Error("retention: cannot inspect snapshot", "source", l.Source, "snapshot", l.Snapshot, "err", err)
		return chain.Event{}, err
	case why != "":
		// Gone or replaced: recorded as vanished below.
	case !info.ReadOnly:
		return chain.Event{}, r.refuse(l, errors.New("the subvolume is writable"))
	case info.ParentUUID != l.ParentUUID || l.ParentUUID != s.UUID:
		return chain.Event{}, r.refuse(l, fmt.Errorf("parent %q on disk, %q recorded, source %s is %q", info.ParentUUID, l.ParentUUID, s.Name, s.UUID))
	}
	p := l.SnapshotPayload
	if why != "" {
		p.Reason = why + " when " + reason + " came to delete it"
		r.d.Logger.Warn("recorded snapshot vanished", "source", l.Source, "snapshot", l.Snapshot, "why", why)
		return chain.Event{Time: r.d.Now(), Kind: chain.KindSnapshotVanished, Payload: p}, nil
	}
	began := time.Now()
	if err := r.d.FS.Delete(l.Snapshot); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			p.Reason = "not on disk when " + reason + " came to delete it"
			return chain.Event{Time: r.d.Now(), Kind: chain.KindSnapshotVanished, Payload: p}, nil
		}
		r.d.Logger.Error("retention: delete failed", "source", l.Source, "snapshot", l.Snapshot, "err", err)
		return chain.Event{}, err
	}
	r.deleteTimes = append(r.deleteTimes, time.Since(began))
	r.d.Logger.Debug("snapshot deleted", "source", l.Source, "snapshot", l.Snapshot, "reason", reason)
	p.Reason = reason
	return chain.Event{Time: r.d.Now(), Kind: chain.KindSnapshotDeleted, Payload: p}, nil
}

// checkRecord checks that l names a snapshot path of a configured source
// and is exactly what the block at l.Height recorded.
func (r *runner) checkRecord(ctx context.Context, l chain.LiveSnapshot) error {
	s, ok := r.source(l.Source)
	if !ok {
		return fmt.Errorf("source %q is not configured", l.Source)
	}
	at, err := ParseName(filepath.Base(l.Snapshot))
	if err != nil || l.Snapshot != SnapshotPath(r.cfg.Dir, s.Name, at) {
		return fmt.Errorf("path is not a snapshot path under %s", SourceDir(r.cfg.Dir, s.Name))
	}
	if l.Height == 0 {
		return errors.New("not recorded")
	}
	b, err := r.d.Chain.Get(ctx, l.Height)
	if err != nil {
		return err
	}
	if b.Kind != chain.KindSnapshotCreated && b.Kind != chain.KindSnapshotAdopted {
		return fmt.Errorf("block %d is %s, not a snapshot creation", b.Height, b.Kind)
	}
	p, err := b.Snapshot()
	if err != nil {
		return err
	}
	q := l.SnapshotPayload
	if p.Source != q.Source || p.SourcePath != q.SourcePath || p.Snapshot != q.Snapshot || p.UUID != q.UUID ||
		p.ParentUUID != q.ParentUUID || p.Generation != q.Generation || !p.OTime.Equal(q.OTime) || p.Reason != q.Reason {
		return fmt.Errorf("block %d recorded %s (uuid %s), not this", b.Height, p.Snapshot, p.UUID)
	}
	return nil
}

// refuse logs and returns why l is not deleted, the first time only:
// after that it returns nil, with no event to record.
func (r *runner) refuse(l chain.LiveSnapshot, why error) error {
	if r.refused[l.Snapshot] {
		return nil
	}
	r.refused[l.Snapshot] = true
	err := fmt.Errorf("%w %s (live at height %d): %w", ErrUnsafeDelete, l.Snapshot, l.Height, why)
	r.d.Logger.Error("retention: recorded snapshot failed the safety checks; left alone", "source", l.Source, "snapshot", l.Snapshot, "height", l.Height, "err", err)
	return err
}

var _ Snapshotter = (*btrfs.Subvolumes)(nil)
