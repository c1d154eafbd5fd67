package diag

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
)

// loopIntervals is how many snapshot intervals may pass without a block
// before the loop counts as stopped: one tick late is a slow disk, three
// is a loop that is not running.
const loopIntervals = 3

// SnapshotChecks returns snapshots.loop, snapshots.count and
// snapshots.orphans for the snapshot configuration cfg. fs reads the
// snapshot directory (nil: the real BTRFS ioctls).
func SnapshotChecks(in ChainInputs, cfg snap.Config, fs snap.Snapshotter) []Check {
	return []Check{
		{Name: "snapshots.loop", Run: func(ctx context.Context) Outcome { return loopAlive(ctx, in, cfg) }},
		{Name: "snapshots.count", Run: func(ctx context.Context) Outcome { return liveCount(ctx, in, cfg) }},
		{Name: "snapshots.orphans", Run: func(ctx context.Context) Outcome { return orphans(ctx, in, cfg, fs) }},
	}
}

func loopAlive(ctx context.Context, in ChainInputs, cfg snap.Config) Outcome {
	return withChain(ctx, in.DB, func(st *chain.Store) Outcome {
		head, err := st.Head(ctx)
		if err != nil {
			return Unknown("run ghostbridge chain head to see the error", "cannot read the chain head: %v", err)
		}
		limit := loopIntervals * cfg.Interval
		age := in.now().Sub(head.Time)
		if age >= limit {
			return Fail(hintStartLoop,
				"no block for %s (last: height %d, %s at %s); the loop appends one every %s",
				age.Round(time.Millisecond), head.Height, head.Kind, head.Time.Format(time.RFC3339), cfg.Interval)
		}
		return Pass("last block %s ago (height %d, %s), within %d intervals of %s",
			max(age, 0).Round(time.Millisecond), head.Height, head.Kind, loopIntervals, cfg.Interval)
	})
}

// MaxLive is the most live snapshots one source can have under policy p
// with snapshots every interval: those younger than Keep, one per Every
// bucket of each tier younger than its For, and the one of the tick in
// flight whose deletion is not recorded yet. Buckets of a tier overlap
// the Keep window, so the bound is loose by design: it catches retention
// that stopped, not one snapshot too many.
func MaxLive(interval time.Duration, p snap.Policy) int {
	if interval <= 0 {
		return 0
	}
	ceilDiv := func(a, b time.Duration) int { return int((a + b - 1) / b) }
	n := ceilDiv(p.Keep, interval) + 1
	for _, t := range p.Tiers {
		if t.Every <= 0 || t.For <= 0 {
			continue
		}
		every := max(t.Every, interval)
		n += ceilDiv(t.For, every) + 1
	}
	return n + 1
}

func liveCount(ctx context.Context, in ChainInputs, cfg snap.Config) Outcome {
	return withChain(ctx, in.DB, func(st *chain.Store) Outcome {
		live, err := st.Live(ctx)
		if err != nil {
			return Unknown("run ghostbridge snap list to see the error", "cannot read live snapshots: %v", err)
		}
		per := map[string]int{}
		others := 0
		for _, l := range live {
			if slices.ContainsFunc(cfg.Sources, func(s snap.Source) bool { return s.Name == l.Source }) {
				per[l.Source]++
			} else {
				others++
			}
		}
		bound := MaxLive(cfg.Interval, cfg.Policy)
		var over, empty []string
		total := 0
		for _, s := range cfg.Sources {
			n := per[s.Name]
			total += n
			if n > bound {
				over = append(over, fmt.Sprintf("%s has %d", s.Name, n))
			}
			if n == 0 {
				empty = append(empty, s.Name)
			}
		}
		extra := ""
		if others > 0 {
			extra = fmt.Sprintf("; %d more of sources no longer configured (retention leaves them alone)", others)
		}
		switch {
		case len(over) > 0:
			return Warn("retention is not keeping up: ghostbridge snap prune --dry-run lists what it would delete; check journalctl -u ghostbridge-snap.service for delete errors",
				"too many live snapshots: %s, retention allows at most %d per source (keep %s every %s)%s",
				strings.Join(over, ", "), bound, cfg.Policy.Keep, cfg.Interval, extra)
		case len(empty) > 0:
			return Warn(hintStartLoop, "no live snapshot of %s%s", strings.Join(empty, ", "), extra)
		}
		return Pass("%d live %s across %d %s, at most %d per source%s",
			total, plural(uint64(total), "snapshot", "snapshots"), len(cfg.Sources), plural(uint64(len(cfg.Sources)), "source", "sources"), bound, extra)
	})
}

// orphans compares the snapshot directory with the chain's live set the
// way `snap prune --dry-run` does. A tick in flight (a snapshot taken or
// deleted, its block not yet committed) differs from the chain for a
// moment only, so when the first look finds something, a second look
// after the next block is committed decides: only what both find counts.
func orphans(ctx context.Context, in ChainInputs, cfg snap.Config, fs snap.Snapshotter) Outcome {
	return withChain(ctx, in.DB, func(st *chain.Store) Outcome {
		d := snap.Deps{Chain: st, FS: fs, Now: in.Now}
		look := func() (snap.PruneResult, *Outcome) {
			res, err := snap.Prune(ctx, d, cfg, true)
			if errors.Is(err, snap.ErrInvalidConfig) {
				o := Fail("fix snap.sources or snap.dir (ghostbridge config show); ghostbridge snap prune --dry-run reports the same",
					"snapshot directory cannot be checked: %v", err)
				return res, &o
			}
			if err != nil {
				o := Unknown("run ghostbridge snap prune --dry-run to see the error", "cannot compare the snapshot directory with the chain: %v", err)
				return res, &o
			}
			return res, nil
		}
		head, err := st.Head(ctx)
		if err != nil {
			return Unknown("run ghostbridge chain head to see the error", "cannot read the chain head: %v", err)
		}
		res, o := look()
		if o != nil {
			return *o
		}
		foreign, vanished, adopted := res.Foreign, res.Vanished, res.Adopted
		if len(foreign) > 0 || len(vanished) > 0 || len(adopted) > 0 {
			waitForBlock(ctx, st, head.Height, min(2*cfg.Interval, settleMax))
			res, o = look()
			if o != nil {
				return *o
			}
			foreign, vanished, adopted = intersect(foreign, res.Foreign), intersect(vanished, res.Vanished), intersect(adopted, res.Adopted)
		}
		if len(foreign) == 0 && len(vanished) == 0 && len(adopted) == 0 {
			return Pass("every entry of %s is a snapshot the chain records live", cfg.Dir)
		}
		var parts []string
		if len(adopted) > 0 {
			parts = append(parts, fmt.Sprintf("%d unrecorded %s of the snapshot loop, left by a crash: %s",
				len(adopted), plural(uint64(len(adopted)), "snapshot", "snapshots"), listShort(adopted)))
		}
		if len(foreign) > 0 {
			parts = append(parts, fmt.Sprintf("%d %s the chain does not record: %s",
				len(foreign), plural(uint64(len(foreign)), "entry", "entries"), listShort(foreign)))
		}
		if len(vanished) > 0 {
			parts = append(parts, fmt.Sprintf("%d recorded %s gone from disk: %s",
				len(vanished), plural(uint64(len(vanished)), "snapshot", "snapshots"), listShort(vanished)))
		}
		var hints []string
		if len(adopted) > 0 {
			hints = append(hints, "ghostbridge snap run adopts the unrecorded snapshots when it starts (systemctl start ghostbridge-snap.service), or ghostbridge snap prune records them now")
		}
		if len(foreign) > 0 {
			hints = append(hints, "inspect each entry; delete one that is not needed with btrfs subvolume delete PATH (snap never deletes what it did not record)")
		}
		if len(vanished) > 0 {
			hints = append(hints, "ghostbridge snap prune records the missing snapshots as vanished; find out who deleted them")
		}
		hint := strings.Join(hints, "; ")
		return Warn(hint, "%s", strings.Join(parts, "; "))
	})
}

// settleMax bounds how long orphans waits for a tick in flight to commit;
// with a long interval, a tick in flight during the first look is rare.
const settleMax = time.Second

// settlePoll is how often waitForBlock reads the head.
const settlePoll = 10 * time.Millisecond

// waitForBlock waits until the chain has a block above height, or for at
// most d, or until ctx ends. A stopped loop appends nothing: then it
// simply waits d.
func waitForBlock(ctx context.Context, st *chain.Store, height uint64, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(settlePoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
			if h, err := st.Head(ctx); err != nil || h.Height > height {
				return
			}
		}
	}
}

func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// listShort names the first few paths so the detail stays one line.
func listShort(paths []string) string {
	const show = 3
	if len(paths) <= show {
		return strings.Join(paths, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(paths[:show], ", "), len(paths)-show)
}
