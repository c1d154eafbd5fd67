package snap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

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
	// Foreign are entries of the snapshot directory and its source
	// directories that are not ours; they are left alone.
	Foreign []string `json:"foreign"`
}

// reportForeign logs a foreign entry the first time this runner sees it.
func (r *runner) reportForeign(path, why string) {
	if r.reported[path] {
		return
	}
	r.reported[path] = true
	r.d.Logger.Warn("leaving foreign entry in snapshot directory alone", "snapshot", path, "why", why)
}

// reconcilePlan is what reconcile would record.
type reconcilePlan struct {
	events  []chain.Event
	adopt   []chain.SnapshotPayload
	vanish  []string
	foreign []string
}

// otimeSlack is how far before the chain head's block time the creation
// time of a snapshot in flight at a crash may be: block times come from
// the clock after the snapshot, and the kernel's timestamps are coarse.
const otimeSlack = time.Second

// planReconcile compares the chain's live snapshots with the snapshot
// directory. A live snapshot that is gone (or is no longer the subvolume
// recorded) vanished. A kill can only leave one unrecorded snapshot per
// source, the one of the tick in flight, so at most one entry per source is
// adopted: the newest read-only snapshot of the source under a name we
// write, named after anything the chain ever recorded for that source (or,
// when it recorded none, named no earlier than the chain head's block
// time), and created no earlier than the head's block time, less
// otimeSlack. Everything else is foreign.
func (r *runner) planReconcile(ctx context.Context) (reconcilePlan, error) {
	p := reconcilePlan{adopt: []chain.SnapshotPayload{}, vanish: []string{}, foreign: []string{}}
	live, err := r.d.Chain.Live(ctx)
	if err != nil {
		return p, err
	}
	known := make(map[string]bool, len(live))
	for _, l := range live {
		_, why, err := r.gone(l)
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
	head, err := r.d.Chain.Head(ctx)
	if err != nil {
		return p, fmt.Errorf("reconcile: %w", err)
	}
	last, err := r.lastRecorded(ctx)
	if err != nil {
		return p, fmt.Errorf("reconcile: %w", err)
	}
	if err := r.foreignInDir(&p); err != nil {
		return p, err
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
		type candidate struct {
			path string
			at   time.Time
			info btrfs.Info
		}
		var cands []candidate
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
			at, _ := ParseName(e.Name()) // ours checked it parses
			cands = append(cands, candidate{path, at, info})
		}
		// Newest first; only the newest can be the tick in flight.
		sort.Slice(cands, func(i, j int) bool { return cands[i].at.After(cands[j].at) })
		for i, c := range cands {
			why := ""
			lastAt, recorded := last[s.Name]
			switch {
			case i > 0:
				why = "older than another unrecorded snapshot of the source; only the tick in flight at a crash is adopted"
			case recorded && !c.at.After(lastAt):
				why = fmt.Sprintf("named no later than %s, the newest snapshot this chain recorded for source %s", lastAt.Format(TimeLayout), s.Name)
			case !recorded && c.at.Before(head.Time.Add(-otimeSlack)):
				why = fmt.Sprintf("named before the chain head (block %d at %s)", head.Height, head.Time.Format(time.RFC3339Nano))
			case c.info.OTime.Before(head.Time.Add(-otimeSlack)):
				why = fmt.Sprintf("created %s, before the chain head (block %d at %s)", c.info.OTime.Format(time.RFC3339Nano), head.Height, head.Time.Format(time.RFC3339Nano))
			}
			if why != "" {
				p.foreign = append(p.foreign, c.path)
				r.reportForeign(c.path, why)
				continue
			}
			a := chain.SnapshotPayload{
				Source: s.Name, SourcePath: s.Path, Snapshot: c.path,
				UUID: c.info.UUID, ParentUUID: c.info.ParentUUID,
				Generation: c.info.Generation, OTime: c.info.OTime,
			}
			p.adopt = append(p.adopt, a)
			p.events = append(p.events, chain.Event{Time: r.d.Now(), Kind: chain.KindSnapshotAdopted, Payload: a})
		}
	}
	sort.Strings(p.foreign)
	return p, nil
}

// foreignInDir adds the entries directly in the snapshot directory that
// are not the directory of a configured source (nor the chain marker).
func (r *runner) foreignInDir(p *reconcilePlan) error {
	entries, err := os.ReadDir(r.cfg.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reconcile %s: %w", r.cfg.Dir, err)
	}
	configured := make(map[string]bool, len(r.srcs))
	for _, s := range r.srcs {
		configured[s.Name] = true
	}
	for _, e := range entries {
		if e.Name() == MarkerName || configured[e.Name()] {
			continue
		}
		path := filepath.Join(r.cfg.Dir, e.Name())
		p.foreign = append(p.foreign, path)
		r.reportForeign(path, "not the directory of a configured source")
	}
	return nil
}

// lastRecordedPage is how many snapshot blocks lastRecorded reads at a time.
const lastRecordedPage = 256

// lastRecorded returns, per configured source, the name time of the newest
// snapshot the chain recorded as created or adopted (whether or not it has
// since been deleted). It reads the chain newest first and stops once every
// source is found.
func (r *runner) lastRecorded(ctx context.Context) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(r.srcs))
	want := make(map[string]bool, len(r.srcs))
	for _, s := range r.srcs {
		want[s.Name] = true
	}
	to := uint64(0) // 0: up to the head
	for len(out) < len(want) {
		bs, err := r.d.Chain.Blocks(ctx, chain.Query{To: to, Limit: lastRecordedPage, Newest: true,
			Kinds: []chain.Kind{chain.KindSnapshotCreated, chain.KindSnapshotAdopted}})
		if err != nil {
			return nil, err
		}
		for i := len(bs) - 1; i >= 0; i-- {
			p, err := bs[i].Snapshot()
			if err != nil {
				return nil, err
			}
			if _, done := out[p.Source]; done || !want[p.Source] {
				continue
			}
			if at, err := ParseName(filepath.Base(p.Snapshot)); err == nil {
				out[p.Source] = at
			}
		}
		if len(bs) < lastRecordedPage || bs[0].Height == 0 {
			break
		}
		to = bs[0].Height - 1
		if to == 0 {
			break // To 0 would mean the head again; height 0 is genesis
		}
	}
	return out, nil
}

// gone says why a recorded snapshot is no longer the one on disk, or ""
// with its info when it still is.
func (r *runner) gone(l chain.LiveSnapshot) (btrfs.Info, string, error) {
	info, err := r.d.FS.Info(l.Snapshot)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return info, "not on disk", nil
	case errors.Is(err, btrfs.ErrNotSubvolume), errors.Is(err, btrfs.ErrNotBtrfs):
		return info, "no longer a subvolume", nil
	case err != nil:
		return info, "", err
	case info.UUID != l.UUID:
		return info, fmt.Sprintf("replaced on disk by subvolume %s", info.UUID), nil
	}
	return info, "", nil
}

// ours says why the entry at path cannot be a snapshot this program made
// of source s, or "" with its info when it may be.
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
	res := ReconcileResult{Adopted: []chain.Block{}, Vanished: []chain.Block{}, Foreign: []string{}}
	p, err := r.planReconcile(ctx)
	if err != nil {
		return res, err
	}
	res.Foreign = p.foreign
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
