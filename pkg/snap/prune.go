package snap

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// PruneResult is what Prune did (or, dry, would do) and the JSON contract
// of `snap prune`.
type PruneResult struct {
	DryRun   bool                 `json:"dry_run"`
	Deleted  []chain.LiveSnapshot `json:"deleted"`
	Kept     int                  `json:"kept"`
	Adopted  []string             `json:"adopted"`  // snapshots reconciliation adopted (or would)
	Vanished []string             `json:"vanished"` // recorded snapshots found gone
	Foreign  []string             `json:"foreign"`  // entries left alone
}

// Prune reconciles the chain with the disk and applies cfg.Policy once,
// with the same reconciliation, retention and safety checks as Run: what
// the policy no longer keeps is deleted and recorded, the newest snapshot
// of each source is always kept. With dryRun it changes nothing (no lock,
// no directories, no blocks) and reports what it would delete. Like Run it
// holds the database's lock, so it fails with *LockedError while `snap run`
// is running, and it refuses a snapshot directory bound to another chain
// (ErrInvalidConfig).
func Prune(ctx context.Context, d Deps, cfg Config, dryRun bool) (res PruneResult, err error) {
	res = PruneResult{DryRun: dryRun, Deleted: []chain.LiveSnapshot{}, Adopted: []string{}, Vanished: []string{}, Foreign: []string{}}
	d, err = d.withDefaults()
	if err != nil {
		return res, err
	}
	if err := ValidateChain(ctx, d.FS, cfg, d.Chain); err != nil {
		return res, err
	}
	if !dryRun {
		lock, err := AcquireLock(LockPath(d.Chain.Path()))
		if err != nil {
			return res, err
		}
		defer func() { err = errors.Join(err, lock.Release()) }()
	}
	r, err := newRunner(d, cfg, false)
	if err != nil {
		return res, err
	}
	if dryRun {
		plan, err := r.planReconcile(ctx)
		if err != nil {
			return res, err
		}
		res.Foreign, res.Vanished = plan.foreign, plan.vanish
		for _, a := range plan.adopt {
			res.Adopted = append(res.Adopted, a.Snapshot)
		}
		live, err := d.Chain.Live(ctx)
		if err != nil {
			return res, err
		}
		gone := make(map[string]bool, len(plan.vanish))
		for _, v := range plan.vanish {
			gone[v] = true
		}
		var cands []chain.LiveSnapshot
		for _, l := range live {
			if !gone[l.Snapshot] {
				cands = append(cands, l)
			}
		}
		for _, a := range plan.adopt {
			cands = append(cands, chain.LiveSnapshot{Time: d.Now(), SnapshotPayload: a})
		}
		_, del := r.plan(r.configured(cands), nil)
		res.Kept = len(cands) - len(del)
		if del != nil {
			res.Deleted = del
		}
		return res, nil
	}

	rec, err := r.reconcile(ctx)
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	res.Foreign = rec.Foreign
	for _, b := range rec.Adopted {
		if p, err := b.Snapshot(); err == nil {
			res.Adopted = append(res.Adopted, p.Snapshot)
		}
	}
	for _, b := range rec.Vanished {
		if p, err := b.Snapshot(); err == nil {
			res.Vanished = append(res.Vanished, p.Snapshot)
		}
	}
	before, err := d.Chain.Live(ctx)
	if err != nil {
		return res, err
	}
	byPath := make(map[string]chain.LiveSnapshot, len(before))
	for _, l := range before {
		byPath[l.Snapshot] = l
	}
	events, rerr := r.retention(ctx, nil, nil)
	blocks, err := d.Chain.Append(ctx, events...)
	if err != nil {
		return res, fmt.Errorf("prune: %w", errors.Join(rerr, err))
	}
	live, err := d.Chain.Live(ctx)
	if err != nil {
		return res, errors.Join(rerr, err)
	}
	res.Kept = len(live)
	for _, b := range blocks {
		p, err := b.Snapshot()
		if err != nil {
			continue
		}
		switch b.Kind {
		case chain.KindSnapshotDeleted:
			res.Deleted = append(res.Deleted, byPath[p.Snapshot])
		case chain.KindSnapshotVanished:
			res.Vanished = append(res.Vanished, p.Snapshot)
		}
	}
	return res, rerr
}

// Entry is one live snapshot as `snap list` shows it.
type Entry struct {
	chain.LiveSnapshot
	Age time.Duration `json:"age_ns"`
}

// ListResult is the JSON contract of `snap list`.
type ListResult struct {
	Snapshots []Entry `json:"snapshots"`
}

// List returns the snapshots the chain records as live, oldest first, with
// their age at d.Now().
func List(ctx context.Context, d Deps) (ListResult, error) {
	d, err := d.withDefaults()
	if err != nil {
		return ListResult{}, err
	}
	live, err := d.Chain.Live(ctx)
	if err != nil {
		return ListResult{}, err
	}
	now := d.Now()
	res := ListResult{Snapshots: make([]Entry, 0, len(live))}
	for _, l := range live {
		res.Snapshots = append(res.Snapshots, Entry{LiveSnapshot: l, Age: now.Sub(snapTime(l))})
	}
	return res, nil
}
