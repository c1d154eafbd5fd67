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

// Prune reconciles the chain with the disk and applies cfg.Policy once:
// what the policy no longer keeps is deleted and recorded. With dryRun it
// changes nothing (no lock, no directories, no blocks) and reports what it
// would delete. Like Run it holds the database's lock, so it fails with
// *LockedError while `snap run` is running.
func Prune(ctx context.Context, d Deps, cfg Config, dryRun bool) (res PruneResult, err error) {
	res.DryRun = dryRun
	d, err = d.withDefaults()
	if err != nil {
		return res, err
	}
	if err := Validate(ctx, d.FS, cfg); err != nil {
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
	if dryRun {
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
		keep, del := Plan(cands, d.Now(), cfg.Policy)
		res.Deleted, res.Kept = del, len(keep)
		return res, nil
	}

	if _, err := d.Chain.Append(ctx, plan.events...); err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	if live, err = d.Chain.Live(ctx); err != nil {
		return res, err
	}
	keep, del := Plan(live, d.Now(), cfg.Policy)
	res.Kept = len(keep)
	var events []chain.Event
	var errs []error
	var deleted []chain.LiveSnapshot
	for _, l := range del {
		ev, err := r.retire(l, "retention")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ev.Kind == chain.KindSnapshotDeleted {
			deleted = append(deleted, l)
		} else {
			res.Vanished = append(res.Vanished, l.Snapshot)
		}
		events = append(events, ev)
	}
	if _, err := d.Chain.Append(ctx, events...); err != nil {
		return res, fmt.Errorf("prune: %w", errors.Join(append(errs, err)...))
	}
	res.Deleted = deleted
	return res, errors.Join(errs...)
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
