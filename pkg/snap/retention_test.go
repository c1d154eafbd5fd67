package snap

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// snapAt is a recorded snapshot of source taken at t0 + offset.
func snapAt(source string, offset time.Duration) chain.LiveSnapshot {
	at := t0.Add(offset)
	return chain.LiveSnapshot{
		Time: at.Add(3 * time.Millisecond),
		SnapshotPayload: chain.SnapshotPayload{
			Source:   source,
			Snapshot: SnapshotPath("/snaps", source, at),
			OTime:    at.Add(2 * time.Millisecond),
		},
	}
}

// offsets lists the snapshots' offsets from t0 in seconds.
func offsets(snaps []chain.LiveSnapshot) []float64 {
	out := []float64{}
	for _, s := range snaps {
		out = append(out, snapTime(s).Sub(t0).Seconds())
	}
	return out
}

func series(source string, from, to, step time.Duration) []chain.LiveSnapshot {
	var out []chain.LiveSnapshot
	for d := from; d <= to; d += step {
		out = append(out, snapAt(source, d))
	}
	return out
}

func TestPlan(t *testing.T) {
	s := time.Second
	tests := []struct {
		name     string
		snaps    []chain.LiveSnapshot
		now      time.Duration // from t0
		policy   Policy
		wantKeep []float64
	}{
		{
			name:     "empty",
			now:      0,
			policy:   Policy{Keep: time.Minute},
			wantKeep: []float64{},
		},
		{
			name:     "keep is exclusive: exactly keep old is deleted",
			snaps:    series("root", 0, 5*s, s),
			now:      65 * s,
			policy:   Policy{Keep: time.Minute},
			wantKeep: []float64{},
		},
		{
			name:     "one nanosecond younger than keep is kept",
			snaps:    []chain.LiveSnapshot{snapAt("root", 5*s)},
			now:      65*s - 1,
			policy:   Policy{Keep: time.Minute},
			wantKeep: []float64{5},
		},
		{
			name:     "1 Hz with keep 1m keeps the last minute",
			snaps:    series("root", 0, 120*s, s),
			now:      120 * s,
			policy:   Policy{Keep: time.Minute},
			wantKeep: floats(61, 120),
		},
		{
			name:     "snapshots from the future (clock stepped back) are kept",
			snaps:    []chain.LiveSnapshot{snapAt("root", 10*s)},
			now:      0,
			policy:   Policy{Keep: s},
			wantKeep: []float64{10},
		},
		{
			name:  "tier keeps the newest per aligned bucket",
			snaps: series("root", 0, 300*s, 10*s),
			now:   300 * s,
			// Buckets [0,60) [60,120) ... [300,360): newest of each is
			// 50, 110, 170, 230, 290, 300; keep adds 295+ (only 300).
			policy:   Policy{Keep: 5 * s, Tiers: []Tier{{Every: time.Minute, For: time.Hour}}},
			wantKeep: []float64{50, 110, 170, 230, 290, 300},
		},
		{
			name:  "tier For is exclusive and counts from now",
			snaps: series("root", 0, 300*s, 10*s),
			now:   300 * s,
			// For 250s: ages < 250 means times > 50: buckets [60,120)... keep
			// 110,170,230,290,300; bucket [0,60) has 50 only at age 250 = For: out.
			policy:   Policy{Keep: s, Tiers: []Tier{{Every: time.Minute, For: 250 * s}}},
			wantKeep: []float64{110, 170, 230, 290, 300},
		},
		{
			name:  "bucket boundary: a snapshot exactly on the boundary starts a bucket",
			snaps: []chain.LiveSnapshot{snapAt("root", 59*s), snapAt("root", 60*s), snapAt("root", 61*s)},
			now:   120 * s,
			// [0,60): 59; [60,120): 61 is newest, 60 goes.
			policy:   Policy{Keep: s, Tiers: []Tier{{Every: time.Minute, For: time.Hour}}},
			wantKeep: []float64{59, 61},
		},
		{
			name:  "grid of tiers",
			snaps: series("root", 0, 7200*s, 30*s),
			now:   7200 * s,
			// keep 1m: 7170 (age 30), 7200 (age 0); every 10m for 1h:
			// newest in each 10-minute bucket younger than 1h: 3600 is age
			// 3600 = For, out; 4170, 4770, ... 6570, 7170, 7200; every 1h
			// for 1d: 3570 and 7170 and 7200.
			policy: Policy{Keep: time.Minute, Tiers: []Tier{
				{Every: 10 * time.Minute, For: time.Hour},
				{Every: time.Hour, For: 24 * time.Hour},
			}},
			wantKeep: []float64{3570, 4170, 4770, 5370, 5970, 6570, 7170, 7200},
		},
		{
			name: "sources are bucketed separately",
			snaps: []chain.LiveSnapshot{
				snapAt("root", 10*s), snapAt("home", 20*s), snapAt("root", 30*s), snapAt("home", 40*s),
			},
			now:      100 * s,
			policy:   Policy{Keep: s, Tiers: []Tier{{Every: time.Minute, For: time.Hour}}},
			wantKeep: []float64{30, 40},
		},
		{
			name:     "zero tiers are ignored",
			snaps:    series("root", 0, 3*s, s),
			now:      10 * s,
			policy:   Policy{Keep: 8 * s, Tiers: []Tier{{Every: 0, For: time.Hour}, {Every: s, For: 0}}},
			wantKeep: []float64{3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keep, del := Plan(tt.snaps, t0.Add(tt.now), tt.policy)
			if got := offsets(keep); !slices.Equal(got, tt.wantKeep) {
				t.Errorf("keep = %v, want %v", got, tt.wantKeep)
			}
			if len(keep)+len(del) != len(tt.snaps) {
				t.Fatalf("keep %d + delete %d != %d snapshots", len(keep), len(del), len(tt.snaps))
			}
			// Together they are the input, each side in input order.
			seen := map[string]int{}
			for _, s := range append(slices.Clone(keep), del...) {
				seen[s.Snapshot]++
			}
			for _, s := range tt.snaps {
				if seen[s.Snapshot] != 1 {
					t.Errorf("%s appears %d times in keep+delete", s.Snapshot, seen[s.Snapshot])
				}
			}
			if !slices.IsSortedFunc(del, func(a, b chain.LiveSnapshot) int { return snapTime(a).Compare(snapTime(b)) }) {
				t.Errorf("delete not in input order: %v", offsets(del))
			}
		})
	}
}

func floats(from, to int) []float64 {
	var out []float64
	for i := from; i <= to; i++ {
		out = append(out, float64(i))
	}
	return out
}

// The time a snapshot stands for is its name's tick time; without a name
// in our format, the filesystem's creation time, then the block's time.
func TestSnapTime(t *testing.T) {
	s := snapAt("root", time.Second)
	if got := snapTime(s); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("named: %v", got)
	}
	s.Snapshot = filepath.Join("/snaps/root", "manual")
	if got := snapTime(s); !got.Equal(s.OTime) {
		t.Errorf("unnamed: %v, want otime %v", got, s.OTime)
	}
	s.OTime = time.Time{}
	if got := snapTime(s); !got.Equal(s.Time) {
		t.Errorf("no otime: %v, want block time %v", got, s.Time)
	}
}

func TestPlanIsPure(t *testing.T) {
	snaps := series("root", 0, 100*time.Second, time.Second)
	orig := slices.Clone(snaps)
	p := Policy{Keep: 10 * time.Second, Tiers: []Tier{{Every: 30 * time.Second, For: time.Hour}}}
	k1, d1 := Plan(snaps, t0.Add(100*time.Second), p)
	k2, d2 := Plan(snaps, t0.Add(100*time.Second), p)
	if !slices.Equal(offsets(k1), offsets(k2)) || !slices.Equal(offsets(d1), offsets(d2)) {
		t.Error("two calls disagree")
	}
	if !slices.EqualFunc(snaps, orig, func(a, b chain.LiveSnapshot) bool { return a.Snapshot == b.Snapshot }) {
		t.Error("Plan changed its input")
	}
}
