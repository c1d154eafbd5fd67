package snap

import (
	"path/filepath"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// snapTime is the time a snapshot stands for: the tick time in its name
// (exact wall-clock boundaries, so tier buckets split cleanly), else the
// filesystem's creation time, else the time of the block that recorded it.
func snapTime(s chain.LiveSnapshot) time.Time {
	if t, err := ParseName(filepath.Base(s.Snapshot)); err == nil {
		return t
	}
	if !s.OTime.IsZero() {
		return s.OTime
	}
	return s.Time
}

// newer orders snapshots a and b, whose snapTimes are ta and tb, by time,
// then path, so ties break the same way every time. The caller passes the
// times: parsing them from names is most of the cost of a plan.
func newer(a, b chain.LiveSnapshot, ta, tb time.Time) bool {
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	return a.Snapshot > b.Snapshot
}

// Plan splits recorded snapshots into those policy p keeps at now and those
// it deletes; both keep the input order. A snapshot is kept when it is
// younger than p.Keep, or when it is the newest of its source in an
// Every-aligned bucket of a tier and younger than that tier's For. Buckets
// are aligned to absolute multiples of Every (UTC), so they do not move as
// time passes. Plan is pure: it only looks at its arguments.
func Plan(snaps []chain.LiveSnapshot, now time.Time, p Policy) (keep, del []chain.LiveSnapshot) {
	kept := make([]bool, len(snaps))
	// Each snapshot's time once: it is parsed from the name, and the tiers
	// and their comparisons would otherwise parse it again and again.
	times := make([]time.Time, len(snaps))
	bySource := make(map[string][]int)
	for i, s := range snaps {
		times[i] = snapTime(s)
		if now.Sub(times[i]) < p.Keep {
			kept[i] = true
		}
		bySource[s.Source] = append(bySource[s.Source], i)
	}
	for _, tier := range p.Tiers {
		if tier.Every <= 0 || tier.For <= 0 {
			continue
		}
		for _, idx := range bySource {
			newest := make(map[int64]int)
			for _, i := range idx {
				t := times[i]
				if now.Sub(t) >= tier.For {
					continue
				}
				bucket := t.Truncate(tier.Every).UnixNano()
				if j, ok := newest[bucket]; !ok || newer(snaps[i], snaps[j], t, times[j]) {
					newest[bucket] = i
				}
			}
			for _, i := range newest {
				kept[i] = true
			}
		}
	}
	for i, s := range snaps {
		if kept[i] {
			keep = append(keep, s)
		} else {
			del = append(del, s)
		}
	}
	return keep, del
}
