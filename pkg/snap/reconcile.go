package snap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// ReconcileResult is what start-up reconciliation found and recorded.
type ReconcileResult struct {
	// Adopted are snapshots of ours found on disk that the chain did not
	// know (a crash between snapshot and append); retention handles them
	// from now on.
	Adopted []chain.Block `json:"adopted"`
	// Vanished are recorded snapshots no longer on disk (a crash between
	// delete and append, or someone else deleted them).
	Vanished []chain.Block `json:"vanished"`
	// Foreign are entries of the snapshot directories that are not ours;
	// they are left alone.
	Foreign []string `json:"foreign"`
}

// reportedForeign remembers the foreign paths already logged, so each is
// reported once per process however often it is seen.
var reportedForeign sync.Map

func (r *runner) reportForeign(path, why string) {
	if _, dup := reportedForeign.LoadOrStore(path, true); !dup {
		r.d.Logger.Warn("leaving foreign entry in snapshot directory alone", "snapshot", path, "why", why)
	}
}

// reconcilePlan is what reconcile would record.
type reconcilePlan struct {
	events  []chain.Event
	adopt   []chain.SnapshotPayload
	vanish  []string
	foreign []string
}

// planReconcile compares the chain's live snapshots with the source
// directories. A live snapshot that is gone (or is no longer the subvolume
// recorded) vanished; a read-only snapshot of a source under a name we
// write, that the chain does not know, is adopted; everything else in the
// source directories is foreign.
func (r *runner) planReconcile(ctx context.Context) (reconcilePlan, error) {
	var p reconcilePlan
	live, err := r.d.Chain.Live(ctx)
	if err != nil {
		return p, err
	}
	known := make(map[string]bool, len(live))
	for _, l := range live {
		why, err := r.gone(l)
		if err != nil {
			return p, fmt.Errorf("reconcile %s: %w", l.Snapshot, err)
		}
		if why == "" {
			known[l.Snapshot] = true
			continue
		}
		v := l.SnapshotPayload
		v.Reason = why + " at start-up"
		p.vanish = append(p.vanish, l.Snapshot)
		p.events = append(p.events, chain.Event{Time: r.d.Now(), Kind: chain.KindSnapshotVanished, Payload: v})
	}
	for _, s := range r.srcs {
		dir := SourceDir(r.cfg.Dir, s.Name)
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return p, fmt.Errorf("reconcile %s: %w", dir, err)
		}
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			if known[path] {
				continue
			}
			info, why, err := r.ours(s, path, e.Name())
			if err != nil {
				return p, fmt.Errorf("reconcile %s: %w", path, err)
			}
			if why != "" {
				p.foreign = append(p.foreign, path)
				r.reportForeign(path, why)
				continue
			}
			a := chain.SnapshotPayload{
				Source: s.Name, SourcePath: s.Path, Snapshot: path,
				UUID: info.UUID, ParentUUID: info.ParentUUID,
				Generation: info.Generation, OTime: info.OTime,
			}
			p.adopt = append(p.adopt, a)
			p.events = append(p.events, chain.Event{Time: r.d.Now(), Kind: chain.KindSnapshotAdopted, Payload: a})
		}
	}
	sort.Strings(p.foreign)
	return p, nil
}

// gone says why a recorded snapshot is no longer the one on disk, or ""
// when it still is.
func (r *runner) gone(l chain.LiveSnapshot) (string, error) {
	info, err := r.d.FS.Info(l.Snapshot)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "not on disk", nil
	case errors.Is(err, btrfs.ErrNotSubvolume), errors.Is(err, btrfs.ErrNotBtrfs):
		return "no longer a subvolume", nil
	case err != nil:
		return "", err
	case info.UUID != l.UUID:
		return fmt.Sprintf("replaced on disk by subvolume %s", info.UUID), nil
	}
	return "", nil
}

// ours says why the entry at path is not a snapshot this program made of
// source s, or "" with its info when it is.
func (r *runner) ours(s sourceState, path, name string) (btrfs.Info, string, error) {
	if _, err := ParseName(name); err != nil {
		return btrfs.Info{}, "name is not a snapshot time", nil
	}
	ok, err := r.d.FS.IsSubvolume(path)
	if err != nil {
		return btrfs.Info{}, "", err
	}
	if !ok {
		return btrfs.Info{}, "not a subvolume", nil
	}
	info, err := r.d.FS.Info(path)
	if err != nil {
		return btrfs.Info{}, "", err
	}
	if !info.ReadOnly {
		return info, "writable subvolume", nil
	}
	if info.ParentUUID != s.UUID {
		return info, fmt.Sprintf("parent %q is not source %s (%s)", info.ParentUUID, s.Name, s.UUID), nil
	}
	return info, "", nil
}

// reconcile records the plan in one transaction.
func (r *runner) reconcile(ctx context.Context) (ReconcileResult, error) {
	p, err := r.planReconcile(ctx)
	if err != nil {
		return ReconcileResult{}, err
	}
	res := ReconcileResult{Foreign: p.foreign}
	blocks, err := r.d.Chain.Append(ctx, p.events...)
	if err != nil {
		return res, fmt.Errorf("reconcile: %w", err)
	}
	for _, b := range blocks {
		switch b.Kind {
		case chain.KindSnapshotAdopted:
			res.Adopted = append(res.Adopted, b)
		case chain.KindSnapshotVanished:
			res.Vanished = append(res.Vanished, b)
		}
	}
	if len(blocks) > 0 {
		r.d.Logger.Info("reconciled chain with disk", "adopted", len(res.Adopted), "vanished", len(res.Vanished), "height", blocks[len(blocks)-1].Height)
	}
	return res, nil
}
