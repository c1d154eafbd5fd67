package snap

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

var now0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func payload(t *testing.T, b chain.Block) chain.SnapshotPayload {
	t.Helper()
	p, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Crash state 1: the snapshot was taken, the process died before the block
// was appended. The next start adopts it with its real identity, and
// retention deletes it when it is old enough. A hand-made snapshot of the
// source under an older name is not ours: left alone, reported.
func TestReconcileAdoptsUnrecordedSnapshot(t *testing.T) {
	e := newFSEnv(t)
	e.cfg.Policy.Keep = time.Minute
	e.once(t, now0)
	// The tick in flight at the kill: snapshot taken as tick() takes it,
	// under the current tick's name, block never appended.
	d, err := e.deps().withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRunner(d, e.cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	inFlight, err := r.snapshot(r.srcs[0], now0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	handMade := SnapshotPath(e.dir, "src", now0.Add(-time.Hour))
	if err := e.fs.Snapshot(e.src, handMade, true); err != nil {
		t.Fatal(err)
	}

	rec, tick := e.once(t, now0.Add(2*time.Second))
	if len(rec.Adopted) != 1 || len(rec.Vanished) != 0 || !slices.Equal(rec.Foreign, []string{handMade}) {
		t.Fatalf("reconcile %+v, want %s adopted and %s foreign", rec, inFlight.Snapshot, handMade)
	}
	a := payload(t, rec.Adopted[0])
	if a.Snapshot != inFlight.Snapshot || a.UUID != inFlight.UUID || a.Generation != inFlight.Generation || !a.OTime.Equal(inFlight.OTime) || a.Source != "src" || a.SourcePath != e.src || a.ParentUUID != inFlight.ParentUUID {
		t.Errorf("adopted payload %+v, want the snapshot's real identity %+v", a, inFlight)
	}
	if len(tick.Deleted) != 0 {
		t.Errorf("tick deleted %v, want nothing (all young, the hand-made one not ours)", tick.Deleted)
	}

	// An hour later retention deletes the adopted snapshot with the other
	// old ones, and still not the hand-made one.
	rec, tick = e.once(t, now0.Add(time.Hour))
	if len(rec.Adopted)+len(rec.Vanished) != 0 {
		t.Errorf("second start reconciled again: %+v", rec)
	}
	var deleted []string
	for _, b := range tick.Deleted {
		deleted = append(deleted, payload(t, b).Snapshot)
	}
	slices.Sort(deleted)
	if want := []string{SnapshotPath(e.dir, "src", now0), inFlight.Snapshot, SnapshotPath(e.dir, "src", now0.Add(2*time.Second))}; !slices.Equal(deleted, want) {
		t.Errorf("deleted %q, want %q", deleted, want)
	}
	if _, err := os.Lstat(handMade); err != nil {
		t.Errorf("hand-made snapshot deleted: %v", err)
	}
	if err := e.fs.Delete(handMade); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, e.store, e.fs, SourceDir(e.dir, "src"))
}

// Crash state 2: retention deleted the snapshot, the process died before
// the block was appended. The next start records it as vanished.
func TestReconcileRecordsVanishedSnapshot(t *testing.T) {
	e := newFSEnv(t)
	_, tick := e.once(t, now0)
	gone := payload(t, tick.Created[0])
	if err := e.fs.Delete(gone.Snapshot); err != nil {
		t.Fatal(err)
	}

	rec, tick2 := e.once(t, now0.Add(time.Second))
	if len(rec.Vanished) != 1 || len(rec.Adopted) != 0 {
		t.Fatalf("reconcile %+v, want one vanished", rec)
	}
	v := payload(t, rec.Vanished[0])
	if v.Snapshot != gone.Snapshot || v.UUID != gone.UUID || !strings.Contains(v.Reason, "not on disk") {
		t.Errorf("vanished payload %+v, want %s with a reason", v, gone.Snapshot)
	}
	live, err := e.store.Live(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0].Snapshot != payload(t, tick2.Created[0]).Snapshot {
		t.Errorf("live %+v, want only the new snapshot", live)
	}
	checkConsistent(t, e.store, e.fs, SourceDir(e.dir, "src"))
}

// A recorded snapshot replaced on disk by another one at the same path:
// the recorded one vanished, the newcomer is foreign (its name is not
// newer than what the chain recorded, so it is not the tick in flight).
func TestReconcileReplacedSnapshot(t *testing.T) {
	e := newFSEnv(t)
	_, tick := e.once(t, now0)
	p := payload(t, tick.Created[0])
	if err := e.fs.Delete(p.Snapshot); err != nil {
		t.Fatal(err)
	}
	if err := e.fs.Snapshot(e.src, p.Snapshot, true); err != nil {
		t.Fatal(err)
	}
	rec, _ := e.once(t, now0.Add(time.Second))
	if len(rec.Vanished) != 1 || len(rec.Adopted) != 0 || !slices.Equal(rec.Foreign, []string{p.Snapshot}) {
		t.Fatalf("reconcile %+v, want one vanished and the replacement foreign", rec)
	}
	if v := payload(t, rec.Vanished[0]); !strings.Contains(v.Reason, "replaced") || v.UUID != p.UUID {
		t.Errorf("vanished %+v", v)
	}
	if _, err := os.Lstat(p.Snapshot); err != nil {
		t.Errorf("replacement touched: %v", err)
	}
}

// Anything in the snapshot directories that is not ours is left alone,
// never recorded, never deleted, and reported.
func TestForeignEntriesLeftAlone(t *testing.T) {
	e := newFSEnv(t)
	e.cfg.Policy.Keep = time.Millisecond
	srcDir := SourceDir(e.dir, "src")
	if err := os.MkdirAll(srcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	other := testenv.MkSubvol(t, filepath.Join(e.mnt, "other"))
	oldName := func(i int) string { return SnapshotPath(e.dir, "src", now0.Add(-time.Duration(i)*time.Hour)) }
	foreign := map[string]func(string) error{
		filepath.Join(srcDir, "notes.txt"):  func(p string) error { return os.WriteFile(p, []byte("x"), 0o644) },
		filepath.Join(srcDir, "manual"):     func(p string) error { return e.fs.Snapshot(e.src, p, true) },  // not our name
		oldName(1):                          func(p string) error { return e.fs.Snapshot(e.src, p, false) }, // writable
		oldName(2):                          func(p string) error { return e.fs.Snapshot(other, p, true) },  // another parent
		oldName(3):                          func(p string) error { return os.Mkdir(p, 0o755) },             // plain directory
		oldName(4):                          func(p string) error { return e.fs.Create(p) },                 // empty subvolume
		oldName(5):                          func(p string) error { return e.fs.Snapshot(e.src, p, true) },  // right parent and name, but not the tick in flight
		oldName(6):                          func(p string) error { return e.fs.Snapshot(e.src, p, true) },  // same
		filepath.Join(e.dir, "stray.txt"):   func(p string) error { return os.WriteFile(p, []byte("x"), 0o644) },
		filepath.Join(e.dir, "gone-source"): func(p string) error { return os.Mkdir(p, 0o700) }, // an unconfigured source
	}
	var want []string
	for p, mk := range foreign {
		if err := mk(p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	slices.Sort(want)

	// Dry-run prune reports them and changes nothing.
	pr, err := Prune(t.Context(), Deps{Chain: e.store, FS: e.fs, Now: func() time.Time { return now0 }}, e.cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pr.Foreign, want) || len(pr.Deleted) != 0 || len(pr.Adopted) != 0 {
		t.Errorf("dry-run prune %+v, want foreign %q", pr, want)
	}

	for i := range 3 {
		rec, tick := e.once(t, now0.Add(time.Duration(i)*time.Second))
		if i == 0 && !slices.Equal(rec.Foreign, want) {
			t.Errorf("foreign %q, want %q", rec.Foreign, want)
		}
		if len(rec.Adopted) != 0 {
			t.Errorf("adopted foreign entries: %+v", rec.Adopted)
		}
		if i > 0 && len(tick.Deleted) != 1 {
			t.Errorf("tick %d deleted %d, want the previous tick's snapshot", i, len(tick.Deleted))
		}
	}
	for _, p := range want {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("foreign %s touched: %v", p, err)
		}
	}
	blocks, err := e.store.Blocks(t.Context(), chain.Query{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		for _, p := range want {
			if strings.Contains(string(b.Payload), `"`+p+`"`) {
				t.Errorf("block %d mentions foreign %s", b.Height, p)
			}
		}
	}
	if res, err := e.store.Verify(t.Context(), chain.VerifyOptions{}); err != nil || !res.OK {
		t.Errorf("verify %+v, %v", res, err)
	}
}

func TestPruneAndList(t *testing.T) {
	e := newFSEnv(t)
	var made []string
	for i := range 5 {
		_, tick := e.once(t, now0.Add(time.Duration(i)*10*time.Second))
		made = append(made, payload(t, tick.Created[0]).Snapshot)
	}
	at := now0.Add(40 * time.Second) // ages 40, 30, 20, 10, 0 s
	d := Deps{Chain: e.store, FS: e.fs, Now: func() time.Time { return at }}

	list, err := List(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	var ages []time.Duration
	for _, s := range list.Snapshots {
		ages = append(ages, s.Age)
	}
	if want := []time.Duration{40 * time.Second, 30 * time.Second, 20 * time.Second, 10 * time.Second, 0}; !slices.Equal(ages, want) {
		t.Errorf("list ages %v, want %v", ages, want)
	}

	cfg := e.cfg
	cfg.Policy = Policy{Keep: 25 * time.Second}
	headBefore, err := e.store.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dry, err := Prune(t.Context(), d, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Kept != 3 || len(dry.Deleted) != 2 || dry.Deleted[0].Snapshot != made[0] || dry.Deleted[1].Snapshot != made[1] {
		t.Errorf("dry run %+v, want made[0:2] deleted, 3 kept", dry)
	}
	if head, _ := e.store.Head(t.Context()); head.Height != headBefore.Height {
		t.Errorf("dry run appended blocks: head %d -> %d", headBefore.Height, head.Height)
	}
	for _, p := range made {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("dry run removed %s: %v", p, err)
		}
	}

	res, err := Prune(t.Context(), d, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.DryRun || res.Kept != 3 || len(res.Deleted) != 2 {
		t.Errorf("prune %+v", res)
	}
	for _, p := range made[:2] {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pruned %s still on disk: %v", p, err)
		}
	}
	deleted, err := e.store.Blocks(t.Context(), chain.Query{From: headBefore.Height + 1, Kinds: []chain.Kind{chain.KindSnapshotDeleted}})
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 2 || payload(t, deleted[0]).Reason != "retention" {
		t.Errorf("deleted blocks %v", deleted)
	}
	checkConsistent(t, e.store, e.fs, SourceDir(e.dir, "src"))
}

// With tiers, prune keeps one snapshot per bucket.
func TestPruneTiers(t *testing.T) {
	e := newFSEnv(t)
	for i := range 6 {
		e.once(t, now0.Add(time.Duration(i)*20*time.Second)) // 0, 20, ... 100 s
	}
	cfg := e.cfg
	cfg.Policy = Policy{Keep: time.Second, Tiers: []Tier{{Every: time.Minute, For: time.Hour}}}
	d := Deps{Chain: e.store, FS: e.fs, Now: func() time.Time { return now0.Add(100 * time.Second) }}
	res, err := Prune(t.Context(), d, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	live, err := e.store.Live(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range live {
		got = append(got, filepath.Base(l.Snapshot))
	}
	// Buckets [12:00, 12:01): 0 20 40 -> 40; [12:01, 12:02): 60 80 100 -> 100.
	want := []string{"20250601T120040.000Z", "20250601T120140.000Z"}
	if !slices.Equal(got, want) || len(res.Deleted) != 4 {
		t.Errorf("live after tiered prune %q (deleted %d), want %q", got, len(res.Deleted), want)
	}
	checkConsistent(t, e.store, e.fs, SourceDir(e.dir, "src"))
}
