package metrics

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
	"github.com/ghostbridge/ghostbridge/pkg/vector"
)

// gathered maps "name{label=value,...}" (labels in the registry's order)
// to the family's metric, from one Gather.
func gathered(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value is the value of the only metric of family name (a gauge or a
// counter), failing when it is absent.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	mf, ok := fams[name]
	if !ok || len(mf.GetMetric()) != 1 {
		t.Fatalf("metric %s: absent or not single (%v)", name, mf)
	}
	m := mf.GetMetric()[0]
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	t.Fatalf("metric %s is neither a gauge nor a counter", name)
	return 0
}

func histCount(t *testing.T, fams map[string]*dto.MetricFamily, name string) (uint64, float64) {
	t.Helper()
	mf, ok := fams[name]
	if !ok || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetHistogram() == nil {
		t.Fatalf("histogram %s absent", name)
	}
	h := mf.GetMetric()[0].GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}

func block(h uint64, at time.Time, kind chain.Kind) chain.Block {
	return chain.Block{Height: h, Time: at, Kind: kind}
}

func TestSnapMetrics(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	now := t0.Add(10 * time.Second)
	reg := NewRegistry("1.2.3")
	m := NewSnap(reg, SnapOptions{Interval: time.Second, Checkpoints: true, Now: func() time.Time { return now }})

	fams := gathered(t, reg)
	if mf, ok := fams["ghostbridge_chain_head_age_seconds"]; ok {
		t.Errorf("head age before any head is known: %v, want no series (0 would read as a fresh block)", mf)
	}
	m.SetLive(2)
	m.SetHead(block(5, t0, chain.KindSnapshotCreated))
	m.SetCheckpoint(4, t0.Add(-time.Minute))
	m.ObserveTick(snap.TickResult{
		Time:        t0.Add(time.Second),
		Created:     []chain.Block{block(7, t0.Add(time.Second), chain.KindSnapshotCreated), block(8, t0.Add(time.Second), chain.KindSnapshotCreated)},
		Deleted:     []chain.Block{block(9, t0.Add(2*time.Second), chain.KindSnapshotDeleted)},
		Vanished:    []chain.Block{},
		Missed:      3,
		Duration:    4 * time.Millisecond,
		Err:         errors.New("source x: boom"),
		CreateTimes: []time.Duration{time.Millisecond, 2 * time.Millisecond},
		DeleteTimes: []time.Duration{3 * time.Millisecond},
	})
	m.ObserveTick(snap.TickResult{Duration: 2 * time.Millisecond})
	// An older head reported late does not move the head back.
	m.SetHead(block(6, t0, chain.KindTicksMissed))

	fams = gathered(t, reg)
	for name, want := range map[string]float64{
		"ghostbridge_snap_ticks_total":                   2,
		"ghostbridge_snap_tick_errors_total":             1,
		"ghostbridge_snap_ticks_missed_total":            3,
		"ghostbridge_snap_snapshots_live":                3, // 2 + 2 created - 1 deleted
		"ghostbridge_snap_snapshots_created_total":       2,
		"ghostbridge_snap_snapshots_deleted_total":       1,
		"ghostbridge_snap_snapshots_vanished_total":      0,
		"ghostbridge_snap_interval_seconds":              1,
		"ghostbridge_chain_height":                       9,
		"ghostbridge_chain_head_timestamp_seconds":       float64(t0.Add(2*time.Second).UnixNano()) / 1e9,
		"ghostbridge_chain_head_age_seconds":             8,
		"ghostbridge_chain_checkpoint_height":            4,
		"ghostbridge_chain_checkpoint_timestamp_seconds": float64(t0.Add(-time.Minute).Unix()),
		"ghostbridge_build_info":                         1,
	} {
		if got := value(t, fams, name); math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if n, sum := histCount(t, fams, "ghostbridge_snap_tick_duration_seconds"); n != 2 || math.Abs(sum-0.006) > 1e-9 {
		t.Errorf("tick duration: %d samples, sum %v; want 2, 0.006", n, sum)
	}
	if n, _ := histCount(t, fams, "ghostbridge_snap_snapshot_create_duration_seconds"); n != 2 {
		t.Errorf("create latency: %d samples, want 2", n)
	}
	if n, _ := histCount(t, fams, "ghostbridge_snap_snapshot_delete_duration_seconds"); n != 1 {
		t.Errorf("delete latency: %d samples, want 1", n)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing: the runtime and process collectors are not registered", name)
		}
	}
	now = now.Add(5 * time.Second)
	if got := value(t, gathered(t, reg), "ghostbridge_chain_head_age_seconds"); got != 13 {
		t.Errorf("head age 5s later = %v, want 13 (computed at scrape time)", got)
	}
}

// TestSnapMetricsNoCheckpoints: without a signing key the checkpoint
// gauges are not exposed at all (an absent checkpoint is not an old one).
func TestSnapMetricsNoCheckpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewSnap(reg, SnapOptions{Interval: time.Second})
	fams := gathered(t, reg)
	for _, name := range []string{"ghostbridge_chain_checkpoint_height", "ghostbridge_chain_checkpoint_timestamp_seconds"} {
		if _, ok := fams[name]; ok {
			t.Errorf("%s exposed without checkpoints", name)
		}
	}
	if _, ok := fams["ghostbridge_snap_ticks_total"]; !ok {
		t.Error("ghostbridge_snap_ticks_total missing")
	}
}

func TestVectorMetrics(t *testing.T) {
	for _, tc := range []struct {
		name      string
		chainHead func() (uint64, error)
		cursor    uint64
		synced    bool
		seenHead  uint64
		wantLag   float64
		wantHead  float64
	}{
		{"nothing synced", nil, 0, false, 9, 10, 9},
		{"behind", nil, 4, true, 9, 5, 9},
		{"caught up", nil, 9, true, 9, 0, 9},
		{"chain read at scrape", func() (uint64, error) { return 20, nil }, 9, true, 9, 11, 20},
		{"chain read fails", func() (uint64, error) { return 0, errors.New("db gone") }, 4, true, 9, 5, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := NewVector(reg, VectorOptions{Collection: "events", ChainHead: tc.chainHead})
			m.SetCursor(tc.cursor, tc.synced)
			m.SetHead(tc.seenHead)
			fams := gathered(t, reg)
			if got := value(t, fams, "ghostbridge_vector_sync_lag_blocks"); got != tc.wantLag {
				t.Errorf("lag = %v, want %v", got, tc.wantLag)
			}
			if got := value(t, fams, "ghostbridge_vector_chain_height"); got != tc.wantHead {
				t.Errorf("chain height = %v, want %v (the same scrape as the lag)", got, tc.wantHead)
			}
			wantCursor := float64(tc.cursor)
			if !tc.synced {
				wantCursor = -1
			}
			if got := value(t, fams, "ghostbridge_vector_sync_cursor"); got != wantCursor {
				t.Errorf("cursor = %v, want %v", got, wantCursor)
			}
			if l := fams["ghostbridge_vector_sync_cursor"].GetMetric()[0].GetLabel(); len(l) != 1 || l[0].GetName() != "collection" || l[0].GetValue() != "events" {
				t.Errorf("cursor labels %v, want collection=events", l)
			}
		})
	}
}

// TestVectorMetricsScrapeConsistent: a chain that grows between reads
// (each read one block higher) still gives one scrape whose lag is its
// chain height minus its cursor, and scraping stores nothing: the next
// scrape reads the chain again.
func TestVectorMetricsScrapeConsistent(t *testing.T) {
	var reads uint64
	reg := prometheus.NewRegistry()
	m := NewVector(reg, VectorOptions{Collection: "events", ChainHead: func() (uint64, error) {
		reads++
		return 100 + reads, nil
	}})
	m.SetCursor(90, true)
	for i := range 20 {
		fams := gathered(t, reg)
		head, cur, lag := value(t, fams, "ghostbridge_vector_chain_height"), value(t, fams, "ghostbridge_vector_sync_cursor"), value(t, fams, "ghostbridge_vector_sync_lag_blocks")
		if lag != head-cur {
			t.Fatalf("scrape %d: lag %v with chain height %v and cursor %v", i, lag, head, cur)
		}
		if want := float64(100 + i + 1); head != want {
			t.Fatalf("scrape %d: chain height %v, want %v (one chain read per scrape)", i, head, want)
		}
	}
}

func TestVectorMetricsDrainAndErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewVector(reg, VectorOptions{Collection: "events"})
	m.ObserveBatch(99, 150)
	m.ObserveDrain(vector.SyncResult{From: 0, To: 150, Points: 151, Skipped: []uint64{7}, Cursor: 150, Head: 150, Duration: 20 * time.Millisecond})
	m.ObserveDrain(vector.SyncResult{Cursor: 150, Head: 152, Duration: time.Millisecond}) // idle: nothing sent
	m.ObserveQdrantError("get collection", codes.NotFound)
	m.ObserveQdrantError("upsert", codes.Unavailable)
	m.ObserveQdrantError("upsert", codes.Unavailable)

	fams := gathered(t, reg)
	for name, want := range map[string]float64{
		"ghostbridge_vector_points_upserted_total": 150,
		"ghostbridge_vector_blocks_skipped_total":  1,
		"ghostbridge_vector_sync_cursor":           150,
		"ghostbridge_vector_chain_height":          152,
		"ghostbridge_vector_sync_lag_blocks":       2,
	} {
		if got := value(t, fams, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if n, _ := histCount(t, fams, "ghostbridge_vector_drain_duration_seconds"); n != 2 {
		t.Errorf("drains: %d samples, want 2", n)
	}
	got := map[string]float64{}
	for _, mt := range fams["ghostbridge_vector_qdrant_errors_total"].GetMetric() {
		l := map[string]string{}
		for _, lp := range mt.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		got[l["op"]+"/"+l["code"]+"/"+l["collection"]] = mt.GetCounter().GetValue()
	}
	want := map[string]float64{"get_collection/NotFound/events": 1, "upsert/Unavailable/events": 2}
	if len(got) != len(want) {
		t.Errorf("qdrant errors %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("qdrant errors %s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// TestRegistriesIndependent: two registries in one process (two loops in
// a test binary) do not collide; nothing goes to the global registry.
func TestRegistriesIndependent(t *testing.T) {
	a, b := NewRegistry("x"), NewRegistry("y")
	NewSnap(a, SnapOptions{})
	NewSnap(b, SnapOptions{})
	NewVector(a, VectorOptions{Collection: "c"})
	NewVector(b, VectorOptions{Collection: "c"})
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range fams {
		if len(mf.GetName()) > len(Namespace) && mf.GetName()[:len(Namespace)+1] == Namespace+"_" {
			t.Errorf("%s registered on the global registry", mf.GetName())
		}
	}
}
