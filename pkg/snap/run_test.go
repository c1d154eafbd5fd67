package snap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// fsEnv is a real BTRFS on a loop device with a source subvolume, and a
// real SQLite chain.
type fsEnv struct {
	mnt, src, dir string
	fs            *btrfs.Subvolumes
	store         *chain.Store
	cfg           Config
}

func newFSEnv(t testing.TB) *fsEnv {
	t.Helper()
	mnt := testenv.BTRFS(t, 256<<20)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	if err := os.WriteFile(filepath.Join(src, "file"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := chain.Open(t.Context(), filepath.Join(t.TempDir(), "chain.db"), chain.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	dir := filepath.Join(mnt, "snapshots")
	return &fsEnv{
		mnt: mnt, src: src, dir: dir, fs: btrfs.New(), store: store,
		cfg: Config{Sources: []Source{{Name: "src", Path: src}}, Dir: dir, Interval: 20 * time.Millisecond, Policy: Policy{Keep: time.Hour}},
	}
}

func (e *fsEnv) deps() Deps { return Deps{Chain: e.store, FS: e.fs} }

// once runs one tick at the given clock.
func (e *fsEnv) once(t *testing.T, now time.Time) (ReconcileResult, TickResult) {
	t.Helper()
	var rec ReconcileResult
	var tick TickResult
	d := e.deps()
	d.Now = func() time.Time { return now }
	err := Run(t.Context(), d, e.cfg, RunOptions{Once: true,
		OnReconcile: func(r ReconcileResult) { rec = r },
		OnTick:      func(r TickResult) { tick = r },
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec, tick
}

// checkConsistent checks the invariants a crash must not break: the chain
// verifies, and the live snapshots are exactly our snapshots on disk.
func checkConsistent(t *testing.T, store *chain.Store, fs *btrfs.Subvolumes, dirs ...string) {
	t.Helper()
	res, err := store.Verify(t.Context(), chain.VerifyOptions{})
	if err != nil || !res.OK {
		t.Fatalf("chain verify: %+v, %v", res, err)
	}
	live, err := store.Live(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var recorded, onDisk []string
	for _, l := range live {
		recorded = append(recorded, l.Snapshot)
		info, err := fs.Info(l.Snapshot)
		if err != nil {
			t.Errorf("live snapshot %s: %v", l.Snapshot, err)
		} else if info.UUID != l.UUID {
			t.Errorf("live snapshot %s: uuid %s on disk, %s recorded", l.Snapshot, info.UUID, l.UUID)
		}
	}
	for _, dir := range dirs {
		names, err := fs.ListDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, n := range names {
			if _, err := ParseName(n); err == nil {
				onDisk = append(onDisk, filepath.Join(dir, n))
			}
		}
	}
	for _, p := range recorded {
		if !slices.Contains(onDisk, p) {
			t.Errorf("dangling: the chain records %s as live, it is not on disk", p)
		}
	}
	for _, p := range onDisk {
		if !slices.Contains(recorded, p) {
			t.Errorf("orphan: %s is on disk, the chain does not record it", p)
		}
	}
}

func TestOnce(t *testing.T) {
	e := newFSEnv(t)
	now := time.Date(2025, 6, 1, 12, 0, 0, 123_000_000, time.UTC)
	rec, tick := e.once(t, now)
	if len(rec.Adopted)+len(rec.Vanished)+len(rec.Foreign) != 0 {
		t.Errorf("fresh start reconciled %+v", rec)
	}
	if len(tick.Created) != 1 || len(tick.Deleted) != 0 {
		t.Fatalf("tick %+v", tick)
	}
	p, err := tick.Created[0].Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	srcInfo, err := e.fs.Info(e.src)
	if err != nil {
		t.Fatal(err)
	}
	want := SnapshotPath(e.dir, "src", now)
	if p.Snapshot != want || p.Source != "src" || p.SourcePath != e.src || p.ParentUUID != srcInfo.UUID || p.UUID == "" || p.Generation == 0 || p.OTime.IsZero() {
		t.Errorf("payload %+v, want snapshot %s of %s (uuid %s)", p, want, e.src, srcInfo.UUID)
	}
	info, err := e.fs.Info(want)
	if err != nil || !info.ReadOnly || info.UUID != p.UUID {
		t.Errorf("on disk: %+v, %v", info, err)
	}
	if b, err := os.ReadFile(filepath.Join(want, "file")); err != nil || string(b) != "data" {
		t.Errorf("snapshot content %q, %v", b, err)
	}
	if st, err := os.Stat(e.dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("snapshot dir mode %v, %v; want 0700", st.Mode().Perm(), err)
	}
	checkConsistent(t, e.store, e.fs, SourceDir(e.dir, "src"))
}

// The real loop on real BTRFS: every tick a snapshot, retention deleting
// what is older than keep, all recorded, and the disk matching the chain.
func TestRunLoop(t *testing.T) {
	e := newFSEnv(t)
	home := testenv.MkSubvol(t, filepath.Join(e.mnt, "home"))
	e.cfg.Sources = append(e.cfg.Sources, Source{Name: "home", Path: home})
	e.cfg.Policy.Keep = 60 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var ticks []TickResult
	err := Run(ctx, e.deps(), e.cfg, RunOptions{OnTick: func(r TickResult) {
		ticks = append(ticks, r)
		if len(ticks) == 15 {
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ticks) != 15 {
		t.Fatalf("%d ticks", len(ticks))
	}
	var deleted []chain.Block
	for i, r := range ticks {
		if r.Err != nil || len(r.Created) != 2 {
			t.Errorf("tick %d: %d created, err %v", i, len(r.Created), r.Err)
		}
		if !r.Time.Equal(r.Time.Truncate(e.cfg.Interval)) {
			t.Errorf("tick %d at %v: not on a %v boundary", i, r.Time, e.cfg.Interval)
		}
		if i > 0 {
			// Whatever the machine's load, the tick times and the missed
			// counts account for every boundary.
			if gap := r.Time.Sub(ticks[i-1].Time); uint64(gap/e.cfg.Interval)-1 != r.Missed {
				t.Errorf("tick %d: %v after the previous one but %d missed", i, gap, r.Missed)
			}
		}
		deleted = append(deleted, r.Deleted...)
	}
	if len(deleted) == 0 {
		t.Fatal("retention deleted nothing in 15 ticks with keep 3 intervals")
	}
	for _, b := range deleted {
		p, err := b.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if p.Reason != "retention" {
			t.Errorf("deleted %s with reason %q", p.Snapshot, p.Reason)
		}
		if _, err := os.Lstat(p.Snapshot); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("deleted snapshot %s still there: %v", p.Snapshot, err)
		}
	}
	checkConsistent(t, e.store, e.fs, SourceDir(e.dir, "src"), SourceDir(e.dir, "home"))
}

func TestRunLocked(t *testing.T) {
	e := newFSEnv(t)
	l, err := AcquireLock(LockPath(e.store.Path()))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	err = Run(t.Context(), e.deps(), e.cfg, RunOptions{Once: true})
	var le *LockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Fatalf("Run with the lock held = %v, want *LockedError naming pid %d", err, os.Getpid())
	}
	if _, err := os.Stat(e.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("locked out Run created %s", e.dir)
	}
	if _, err := Prune(t.Context(), e.deps(), e.cfg, false); !errors.As(err, &le) {
		t.Errorf("Prune with the lock held = %v, want *LockedError", err)
	}
}

func TestValidate(t *testing.T) {
	e := newFSEnv(t)
	other := testenv.BTRFS(t, 256<<20)
	plain := filepath.Join(e.mnt, "plain")
	if err := os.Mkdir(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(e.mnt, "afile")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A read-only snapshot: not writable even for root (EROFS).
	ro := filepath.Join(e.mnt, "frozen")
	if err := e.fs.Snapshot(e.src, ro, true); err != nil {
		t.Fatal(err)
	}
	home := testenv.MkSubvol(t, filepath.Join(e.mnt, "home"))
	ok := e.cfg
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // substrings of the one-line message
	}{
		{"source not a subvolume", func(c *Config) { c.Sources[0].Path = plain }, []string{plain, "is not a BTRFS subvolume"}},
		{"source missing", func(c *Config) { c.Sources[0].Path = filepath.Join(e.mnt, "nope") }, []string{"nope", "does not exist"}},
		{"source off BTRFS", func(c *Config) { c.Sources[0].Path = t.TempDir() }, []string{"is not a BTRFS subvolume"}},
		{"source relative", func(c *Config) { c.Sources[0].Path = "src" }, []string{`"src"`, "not absolute"}},
		{"no sources", func(c *Config) { c.Sources = nil }, []string{"at least one source"}},
		{"duplicate names", func(c *Config) { c.Sources = append(c.Sources, Source{Name: "src", Path: home}) }, []string{`"src"`, "unique"}},
		{"bad name", func(c *Config) { c.Sources[0].Name = "a/b" }, []string{`"a/b"`}},
		{"dir on another BTRFS", func(c *Config) { c.Dir = filepath.Join(other, "snaps") }, []string{other, "not on the filesystem of source src"}},
		{"dir off BTRFS", func(c *Config) { c.Dir = t.TempDir() }, []string{"not on the filesystem of source src"}},
		{"dir is a file", func(c *Config) { c.Dir = file }, []string{file, "is not a directory"}},
		{"dir under a file", func(c *Config) { c.Dir = filepath.Join(file, "x") }, []string{"is not a directory"}},
		{"dir relative", func(c *Config) { c.Dir = "snaps" }, []string{`"snaps"`, "not absolute"}},
		{"dir empty", func(c *Config) { c.Dir = "" }, []string{"dir: empty"}},
		{"dir cannot be created", func(c *Config) { c.Dir = filepath.Join(ro, "a", "b") }, []string{"cannot be created in " + ro, "read-only"}},
		{"interval 0", func(c *Config) { c.Interval = 0 }, []string{"interval 0s", "at least 10ms"}},
		{"interval negative", func(c *Config) { c.Interval = -time.Second }, []string{"interval -1s", "at least 10ms"}},
		{"interval 9ms", func(c *Config) { c.Interval = 9 * time.Millisecond }, []string{"interval 9ms"}},
		{"keep 0", func(c *Config) { c.Policy.Keep = 0 }, []string{"keep 0s", "greater than 0"}},
		{"tier zero", func(c *Config) { c.Policy.Tiers = []Tier{{Every: time.Minute, For: 0}} }, []string{"tier 1", "greater than 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			cfg.Sources = slices.Clone(ok.Sources)
			tt.modify(&cfg)
			err := Validate(t.Context(), e.fs, cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("message is more than one line: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
			// Run refuses the same config before creating anything.
			if err := Run(t.Context(), e.deps(), cfg, RunOptions{Once: true}); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Run = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if err := Validate(t.Context(), e.fs, ok); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if _, err := os.Stat(e.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Validate and refused Runs created %s", e.dir)
	}
	if _, err := os.Stat(LockPath(e.store.Path())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused Runs created the lock file")
	}
	head, err := e.store.Head(t.Context())
	if err != nil || head.Height != 0 {
		t.Errorf("refused Runs wrote to the chain: head %d, %v", head.Height, err)
	}
}

// The CLI's default puts the snapshot directory inside the source ("/" and
// /.snapshots/ghostbridge): each snapshot then holds an empty stub where
// the earlier snapshots are, and nothing recurses.
func TestDirInsideSource(t *testing.T) {
	e := newFSEnv(t)
	e.cfg.Dir = filepath.Join(e.src, ".snapshots", "ghostbridge")
	e.cfg.Policy.Keep = 1500 * time.Millisecond
	var last TickResult
	for i := range 4 {
		_, last = e.once(t, now0.Add(time.Duration(i)*time.Second))
	}
	if len(last.Created) != 1 || len(last.Deleted) != 1 {
		t.Fatalf("last tick %+v", last)
	}
	p := payload(t, last.Created[0])
	stubs, err := os.ReadDir(filepath.Join(p.Snapshot, ".snapshots", "ghostbridge", "src"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stubs {
		if ok, err := e.fs.IsSubvolume(filepath.Join(p.Snapshot, ".snapshots", "ghostbridge", "src", s.Name())); err != nil || ok {
			t.Errorf("snapshot holds a subvolume %s (%v): snapshots must not nest", s.Name(), err)
		}
	}
	checkConsistent(t, e.store, e.fs, SourceDir(e.cfg.Dir, "src"))
}
