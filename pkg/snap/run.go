package snap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// TickResult is what one tick did. Err holds the tick's non-fatal
// problems (a source that could not be snapshotted, a snapshot that could
// not be deleted); the loop carries on after them.
type TickResult struct {
	Time     time.Time     `json:"time"` // the wall-clock boundary the tick ran for
	Created  []chain.Block `json:"created"`
	Deleted  []chain.Block `json:"deleted"`
	Vanished []chain.Block `json:"vanished,omitempty"`
	Missed   uint64        `json:"missed"` // boundaries skipped since the previous tick
	Duration time.Duration `json:"duration_ns"`
	Err      error         `json:"-"`
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
}

// newRunner reads each source's UUID and, when create is set, makes the
// snapshot directories (0700: snapshots keep old copies of files whose
// permissions may since have been tightened).
func newRunner(d Deps, cfg Config, create bool) (*runner, error) {
	r := &runner{d: d, cfg: cfg}
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

// Run validates cfg, takes the database's lock, reconciles the chain with
// the disk, and then snapshots every source at each wall-clock multiple of
// cfg.Interval, recording each snapshot and each retention deletion in the
// chain, until ctx is cancelled. On cancellation it finishes the tick in
// hand and returns nil. Errors that stop it: invalid config
// (ErrInvalidConfig), the lock held (*LockedError), a chain that cannot be
// written.
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
	r, err := newRunner(d, cfg, true)
	if err != nil {
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
		res, err := r.tick(context.WithoutCancel(ctx), d.Now().UTC().Truncate(time.Millisecond), nil)
		if err != nil {
			return err
		}
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
	var prev time.Time
	ready := false
	for {
		next, missed := schedule(r.d.Now(), prev, r.cfg.Interval)
		if !prev.IsZero() && !next.After(prev) {
			r.d.Logger.Warn("wall clock stepped back", "previous_tick", prev, "next_tick", next)
		}
		if !r.sleepUntil(ctx, next) {
			r.d.Logger.Info("snapshot loop stopped")
			return nil
		}
		// The tick in hand is finished even if ctx is cancelled meanwhile.
		res, err := r.tick(context.WithoutCancel(ctx), next.UTC(), missed)
		if err != nil {
			return err
		}
		prev = next
		if opts.OnTick != nil {
			opts.OnTick(res)
		}
		if res.Err != nil {
			r.d.Logger.Error("tick failed", "err", res.Err)
			continue
		}
		if !ready {
			r.d.notify(NotifyReady)
			ready = true
		}
		r.d.notify(NotifyWatchdog)
	}
}

// sleepUntil waits until the clock reads at least t; false when ctx ended
// first.
func (r *runner) sleepUntil(ctx context.Context, t time.Time) bool {
	for {
		d := t.Sub(r.d.Now())
		if d <= 0 {
			return ctx.Err() == nil
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
}

// tick snapshots every source for time at, applies retention, and records
// it all in one transaction. Filesystem work comes first and the record
// after it: a crash in between leaves a snapshot without a block (adopted
// at the next start) or a block whose snapshot is gone (recorded as
// vanished), never a block for something that was not done. The error is
// fatal (the chain could not be written); per-source problems go in
// TickResult.Err.
func (r *runner) tick(ctx context.Context, at time.Time, missed *chain.TicksMissedPayload) (TickResult, error) {
	start := r.d.Now()
	res := TickResult{Time: at}
	var events []chain.Event
	var errs []error
	if missed != nil {
		res.Missed = missed.Count
		r.d.Logger.Warn("ticks missed: previous tick overran", "count", missed.Count, "from", missed.From, "to", missed.To)
		events = append(events, chain.Event{Time: start, Kind: chain.KindTicksMissed, Payload: missed})
	}
	var created []chain.LiveSnapshot
	for _, s := range r.srcs {
		p, err := r.snapshot(s, at)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		now := r.d.Now()
		events = append(events, chain.Event{Time: now, Kind: chain.KindSnapshotCreated, Payload: p})
		created = append(created, chain.LiveSnapshot{Time: now, SnapshotPayload: p})
	}
	retire, err := r.retention(ctx, created)
	events = append(events, retire...)
	errs = append(errs, err)

	blocks, err := r.d.Chain.Append(ctx, events...)
	if err != nil {
		return res, fmt.Errorf("tick %s: %w", at.Format(TimeLayout), err)
	}
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
	res.Duration = r.d.Now().Sub(start)
	res.Err = errors.Join(errs...)
	if n := len(blocks); n > 0 {
		r.d.Logger.Debug("tick", "time", at, "created", len(res.Created), "deleted", len(res.Deleted), "height", blocks[n-1].Height, "duration", res.Duration)
	}
	return res, nil
}

// snapshot takes the read-only snapshot of s for time at and reads back
// what the chain records about it.
func (r *runner) snapshot(s sourceState, at time.Time) (chain.SnapshotPayload, error) {
	dst := SnapshotPath(r.cfg.Dir, s.Name, at)
	if err := r.d.FS.Snapshot(s.Path, dst, true); err != nil {
		r.d.Logger.Error("snapshot failed", "source", s.Name, "snapshot", dst, "err", err)
		return chain.SnapshotPayload{}, fmt.Errorf("source %s: %w", s.Name, err)
	}
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

// retention deletes what the policy no longer keeps among the recorded
// snapshots (and those just created) and returns the events to record.
func (r *runner) retention(ctx context.Context, created []chain.LiveSnapshot) ([]chain.Event, error) {
	live, err := r.d.Chain.Live(ctx)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	_, del := Plan(append(live, created...), r.d.Now(), r.cfg.Policy)
	var events []chain.Event
	var errs []error
	for _, l := range del {
		ev, err := r.retire(l, "retention")
		if err != nil {
			r.d.Logger.Error("retention: delete failed", "source", l.Source, "snapshot", l.Snapshot, "err", err)
			errs = append(errs, err)
			continue
		}
		events = append(events, ev)
	}
	return events, errors.Join(errs...)
}

// retire deletes the recorded snapshot l, after checking that the
// subvolume at its path is still the one recorded, and returns the event
// that records it: deleted with reason, or vanished when it was already
// gone or replaced (a replacement is left alone).
func (r *runner) retire(l chain.LiveSnapshot, reason string) (chain.Event, error) {
	why, err := r.gone(l)
	if err != nil {
		return chain.Event{}, err
	}
	p := l.SnapshotPayload
	if why != "" {
		p.Reason = why + " when " + reason + " came to delete it"
		r.d.Logger.Warn("recorded snapshot vanished", "source", l.Source, "snapshot", l.Snapshot, "why", why)
		return chain.Event{Time: r.d.Now(), Kind: chain.KindSnapshotVanished, Payload: p}, nil
	}
	if err := r.d.FS.Delete(l.Snapshot); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			p.Reason = "not on disk when " + reason + " came to delete it"
			return chain.Event{Time: r.d.Now(), Kind: chain.KindSnapshotVanished, Payload: p}, nil
		}
		return chain.Event{}, err
	}
	r.d.Logger.Debug("snapshot deleted", "source", l.Source, "snapshot", l.Snapshot, "reason", reason)
	p.Reason = reason
	return chain.Event{Time: r.d.Now(), Kind: chain.KindSnapshotDeleted, Payload: p}, nil
}

var _ Snapshotter = (*btrfs.Subvolumes)(nil)
