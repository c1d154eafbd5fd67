package snap

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// sqlite3 edits db with the sqlite3 shell, as someone with write access
// to the file would.
func sqlite3(t *testing.T, db string, statements ...string) string {
	t.Helper()
	return testenv.SQLite3(t, db, statements...)
}

// testRunner is the runner Run would build, for driving ticks by hand.
func (e *fsEnv) testRunner(t *testing.T, now *time.Time) *runner {
	t.Helper()
	d := e.deps()
	d.Now = func() time.Time { return *now }
	d, err := d.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRunner(d, e.cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A second database pointed at the same snapshot directory is refused:
// each would take the other's snapshots for strays.
func TestSnapshotDirBoundToOneChain(t *testing.T) {
	e := newFSEnv(t)
	e.once(t, now0)
	marker := filepath.Join(e.dir, MarkerName)
	st, err := os.Stat(marker)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("marker %s: %v, %v; want 0600", marker, st, err)
	}
	idA, err := e.store.ChainID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	other, err := chain.Open(t.Context(), filepath.Join(t.TempDir(), "other.db"), chain.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	idB, err := other.ChainID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("snapshot directory %s belongs to chain %s, this database is chain %s", e.dir, idA, idB)
	d := Deps{Chain: other, FS: e.fs, Now: func() time.Time { return now0.Add(time.Hour) }}
	for name, err := range map[string]error{
		"Run":           Run(t.Context(), d, e.cfg, RunOptions{Once: true}),
		"ValidateChain": ValidateChain(t.Context(), e.fs, e.cfg, other),
	} {
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s = %v, want ErrInvalidConfig with %q", name, err, want)
		}
	}
	if _, err := Prune(t.Context(), d, e.cfg, false); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Prune = %v, want ErrInvalidConfig", err)
	}
	if head, _ := other.Head(t.Context()); head.Height != 0 {
		t.Errorf("refused chain written: head %d", head.Height)
	}
	checkConsistent(t, e.store, e.fs, SourceDir(e.dir, "src"))
	// The owner still runs.
	e.once(t, now0.Add(time.Second))
}

// Rows forged into the derived live table never get a subvolume deleted:
// one names a writable data subvolume, one a writable subvolume at a
// snapshot-shaped path claiming a real block's height.
func TestForgedLiveRowsNotDeleted(t *testing.T) {
	e := newFSEnv(t)
	e.cfg.Policy.Keep = time.Second
	_, tick := e.once(t, now0)
	real := tick.Created[0]
	srcInfo, err := e.fs.Info(e.src)
	if err != nil {
		t.Fatal(err)
	}
	data := testenv.MkSubvol(t, filepath.Join(e.mnt, "data"))
	shaped := SnapshotPath(e.dir, "src", now0.Add(-time.Hour))
	if err := e.fs.Create(shaped); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{data, shaped} {
		info, err := e.fs.Info(path)
		if err != nil {
			t.Fatal(err)
		}
		p, err := json.Marshal(chain.SnapshotPayload{Source: "src", SourcePath: e.src, Snapshot: path, UUID: info.UUID,
			ParentUUID: srcInfo.UUID, Generation: info.Generation, OTime: now0.Add(-2 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		sqlite3(t, e.store.Path(), fmt.Sprintf(`INSERT INTO live (snapshot, height, time_ns, source, payload) VALUES ('%s', %d, %d, 'src', '%s')`,
			path, real.Height, now0.Add(-2*time.Hour).UnixNano(), p))
	}
	if live, err := e.store.Live(t.Context()); err != nil || len(live) != 3 {
		t.Fatalf("live after forging %d rows, %v; want 3", len(live), err)
	}
	headBefore, err := e.store.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	d := e.deps()
	d.Now = func() time.Time { return now0.Add(time.Minute) }
	var res TickResult
	err = Run(t.Context(), d, e.cfg, RunOptions{Once: true, OnTick: func(r TickResult) { res = r }})
	if !errors.Is(err, ErrUnsafeDelete) || !strings.Contains(err.Error(), data) || !strings.Contains(err.Error(), shaped) {
		t.Errorf("Run = %v, want ErrUnsafeDelete naming %s and %s", err, data, shaped)
	}
	for _, path := range []string{data, shaped} {
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("forged row's subvolume %s deleted: %v", path, err)
		}
	}
	// The real, recorded snapshot was deleted by retention; nothing
	// recorded the forged ones.
	if len(res.Deleted) != 1 || payload(t, res.Deleted[0]).Snapshot != payload(t, real).Snapshot {
		t.Errorf("deleted %v, want only %s", res.Deleted, payload(t, real).Snapshot)
	}
	blocks, err := e.store.Blocks(t.Context(), chain.Query{From: headBefore.Height + 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if strings.Contains(string(b.Payload), `"`+data+`"`) || strings.Contains(string(b.Payload), `"`+shaped+`"`) {
			t.Errorf("block %d (%s) records a forged row: %s", b.Height, b.Kind, b.Payload)
		}
	}
}

// A source deleted mid-run: every tick fails for it, and its snapshots
// stay (retention skips a failed source and never deletes a source's
// newest snapshot), while the other source carries on.
func TestSourceDeletedMidRunKeepsSnapshots(t *testing.T) {
	e := newFSEnv(t)
	home := testenv.MkSubvol(t, filepath.Join(e.mnt, "home"))
	e.cfg.Sources = append(e.cfg.Sources, Source{Name: "home", Path: home})
	e.cfg.Policy.Keep = 5 * time.Second
	now := now0
	r := e.testRunner(t, &now)
	for range 3 {
		if res := r.tick(t.Context(), now, nil); res.Err != nil {
			t.Fatal(res.Err)
		}
		now = now.Add(time.Second)
	}
	if err := e.fs.Delete(home); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		res := r.tick(t.Context(), now, nil)
		if res.Err == nil || res.healthy {
			t.Errorf("tick %d after the source went: err %v, healthy %v; want a failed tick", i, res.Err, res.healthy)
		}
		for _, b := range res.Deleted {
			if p := payload(t, b); p.Source == "home" {
				t.Errorf("tick %d deleted %s of the failed source", i, p.Snapshot)
			}
		}
		now = now.Add(time.Second)
	}
	live, err := e.store.Live(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var homeLive, srcLive int
	for _, l := range live {
		switch l.Source {
		case "home":
			homeLive++
		case "src":
			srcLive++
		}
	}
	if homeLive != 3 || srcLive != 5 {
		t.Errorf("live: home %d (want 3), src %d (want 5)", homeLive, srcLive)
	}

	// Prune much later, with the source out of the config: src keeps its
	// newest snapshot, the unconfigured source's snapshots are left alone.
	e.cfg.Sources = e.cfg.Sources[:1]
	res, err := Prune(t.Context(), Deps{Chain: e.store, FS: e.fs, Now: func() time.Time { return now.Add(time.Hour) }}, e.cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Kept != 4 || len(res.Deleted) != 4 {
		t.Errorf("prune kept %d deleted %d, want src's newest and home's 3 kept, 4 deleted", res.Kept, len(res.Deleted))
	}
	checkConsistent(t, e.store, e.fs, SourceDir(e.dir, "src"), SourceDir(e.dir, "home"))
}

// chattr runs chattr on paths (root can write through any mode bits, not
// through the immutable flag).
func chattr(t *testing.T, flag string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if out, err := exec.Command("chattr", flag, p).CombinedOutput(); err != nil {
			testenv.Skip(t, fmt.Sprintf("chattr %s %s: %v: %s", flag, p, err, out))
		}
	}
}

// A chain that cannot be written does not stop the loop: snapshots pause
// (and the failed tick's snapshot is removed), retention goes on, and its
// deletions and the skipped ticks are recorded once the chain can be
// written again.
func TestChainUnwritableMidRun(t *testing.T) {
	e := newFSEnv(t)
	e.cfg.Policy.Keep = 1500 * time.Millisecond
	now := now0
	r := e.testRunner(t, &now)
	for range 2 {
		if res := r.tick(t.Context(), now, nil); res.Err != nil || !res.healthy {
			t.Fatal(res.Err)
		}
		now = now.Add(time.Second)
	}
	db := e.store.Path()
	files := []string{db + "-wal"}
	chattr(t, "+i", files...)
	restored := false
	restore := func() {
		if !restored {
			chattr(t, "-i", files...)
			restored = true
		}
	}
	defer restore()

	res := r.tick(t.Context(), now, nil) // T2: snapshot taken, append fails
	if res.Err == nil || res.healthy || !strings.Contains(res.Err.Error(), "chain not written") {
		t.Fatalf("tick with an immutable database: err %v, healthy %v; want the append to fail", res.Err, res.healthy)
	}
	if _, err := os.Lstat(SnapshotPath(e.dir, "src", now)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unrecorded snapshot of the failed tick left on disk: %v", err)
	}
	first := SnapshotPath(e.dir, "src", now0)
	if _, err := os.Lstat(first); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("retention did not delete %s while the chain was unwritable: %v", first, err)
	}
	now = now.Add(time.Second)
	res = r.tick(t.Context(), now, nil) // T3: no snapshot
	if res.Err == nil || res.healthy {
		t.Errorf("second tick while unwritable: err %v, healthy %v", res.Err, res.healthy)
	}
	if _, err := os.Lstat(SnapshotPath(e.dir, "src", now)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("snapshot taken while the chain cannot be written: %v", err)
	}
	restore()
	now = now.Add(time.Second)
	res = r.tick(t.Context(), now, nil) // T4: all recorded
	if res.Err != nil || !res.healthy || len(res.Created) != 1 {
		t.Fatalf("tick after restoring: %+v", res)
	}
	var deleted []string
	for _, b := range res.Deleted {
		deleted = append(deleted, filepath.Base(payload(t, b).Snapshot))
	}
	// now0 deleted while broken, now0+1s deleted by T4's retention.
	if want := []string{"20250601T120000.000Z", "20250601T120001.000Z"}; !slices.Equal(deleted, want) {
		t.Errorf("deleted recorded %q, want %q", deleted, want)
	}
	missed, err := e.store.Blocks(t.Context(), chain.Query{Kinds: []chain.Kind{chain.KindTicksMissed}})
	if err != nil {
		t.Fatal(err)
	}
	if len(missed) != 1 {
		t.Fatalf("%d ticks.missed blocks, want 1 for the ticks skipped", len(missed))
	}
	var m chain.TicksMissedPayload
	if err := json.Unmarshal(missed[0].Payload, &m); err != nil {
		t.Fatal(err)
	}
	if m.Count != 1 || !m.From.Equal(now0.Add(3*time.Second)) {
		t.Errorf("ticks.missed %+v, want 1 from %v", m, now0.Add(3*time.Second))
	}
	checkConsistent(t, e.store, e.fs, SourceDir(e.dir, "src"))
}

// Two paths to one database (one a symlink) take the same lock.
func TestLockThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "chain.db")
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link.db")
	if err := os.Symlink(db, link); err != nil {
		t.Fatal(err)
	}
	if LockPath(link) != LockPath(db) {
		t.Errorf("LockPath(%s) = %s, LockPath(%s) = %s; want the same", link, LockPath(link), db, LockPath(db))
	}
	l, err := AcquireLock(LockPath(db))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := AcquireLock(LockPath(link)); !errors.Is(err, ErrLocked) {
		t.Errorf("lock through the symlink = %v, want ErrLocked", err)
	}
	// A database that does not exist yet keeps its own path.
	if got, want := LockPath(filepath.Join(dir, "new.db")), filepath.Join(dir, "new.db.lock"); got != want {
		t.Errorf("LockPath of a new database = %s, want %s", got, want)
	}
}

// Empty lists encode as [], never null.
func TestResultsEncodeEmptyArrays(t *testing.T) {
	e := newFSEnv(t)
	rec, tick := e.once(t, now0)
	dry, err := Prune(t.Context(), Deps{Chain: e.store, FS: e.fs, Now: func() time.Time { return now0 }}, e.cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	wet, err := Prune(t.Context(), Deps{Chain: e.store, FS: e.fs, Now: func() time.Time { return now0 }}, e.cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"reconcile": rec, "tick": tick, "dry prune": dry, "prune": wet} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "null") {
			t.Errorf("%s encodes null: %s", name, b)
		}
	}
}
