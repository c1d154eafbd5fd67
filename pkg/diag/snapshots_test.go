package diag

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// snapHost is a real snapshot host: a BTRFS loop filesystem with one
// source subvolume, a chain database the snapshot loop wrote, and the
// loop's configuration.
type snapHost struct {
	mnt, src, db string
	cfg          snap.Config
	t0           time.Time // first tick
	ticks        int
}

// newSnapHost runs the snapshot loop for n ticks, one interval apart from
// t0, with the real chain and real BTRFS, as `snap run` would have.
func newSnapHost(t testing.TB, n int) *snapHost {
	t.Helper()
	mnt := testenv.BTRFS(t, 256<<20)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	if err := os.WriteFile(filepath.Join(src, "file"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &snapHost{
		mnt: mnt, src: src, db: filepath.Join(t.TempDir(), "chain.db"),
		cfg: snap.Config{
			Sources:  []snap.Source{{Name: "src", Path: src}},
			Dir:      filepath.Join(mnt, "snapshots"),
			Interval: time.Second,
			Policy:   snap.Policy{Keep: time.Hour},
		},
		// A whole second, so tick names and times line up.
		t0: time.Now().Add(-time.Hour).Truncate(time.Second),
	}
	for range n {
		h.tick(t)
	}
	return h
}

// open opens the host's chain, creating it when create is set; the
// caller closes it.
func (h *snapHost) open(t testing.TB, create bool) *chain.Store {
	t.Helper()
	st, err := chain.Open(context.Background(), h.db, chain.Options{Create: create})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// tick runs one tick of the loop at the next interval.
func (h *snapHost) tick(t testing.TB) {
	t.Helper()
	st := h.open(t, true)
	defer st.Close()
	now := h.t0.Add(time.Duration(h.ticks) * h.cfg.Interval)
	h.ticks++
	d := snap.Deps{Chain: st, FS: btrfs.New(), Now: func() time.Time { return now }}
	if err := snap.Run(context.Background(), d, h.cfg, snap.RunOptions{Once: true}); err != nil {
		t.Fatal(err)
	}
}

// last is the time of the newest block, as the store stamped it.
func (h *snapHost) last(t testing.TB) time.Time {
	t.Helper()
	st := h.open(t, false)
	defer st.Close()
	head, err := st.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return head.Time
}

// inputs reads the database as of at.
func (h *snapHost) inputs(at time.Time) ChainInputs {
	return ChainInputs{DB: h.db, Now: func() time.Time { return at }, NoTrust: "chain.verifier_key is not set"}
}

// run runs the chain and snapshots checks as of at.
func (h *snapHost) run(t *testing.T, at time.Time, cfg snap.Config) Report {
	t.Helper()
	in := h.inputs(at)
	checks := append(SnapshotChecks(in, cfg, nil), ChainChecks(in)...)
	return Run(t.Context(), checks, Options{Timeout: time.Minute})
}

func TestSnapshotAndChainChecks(t *testing.T) {
	h := newSnapHost(t, 5)
	healthy := h.last(t).Add(500 * time.Millisecond)

	t.Run("healthy", func(t *testing.T) {
		got := h.run(t, healthy, h.cfg)
		ExpectCheck(t, got, "snapshots.loop", StatusPass, "", "last block 500ms ago (height 5, snapshot.created)")
		ExpectCheck(t, got, "snapshots.count", StatusPass, "", "5 live snapshots across 1 source")
		ExpectCheck(t, got, "snapshots.orphans", StatusPass, "", "every entry of "+h.cfg.Dir)
		ExpectCheck(t, got, "chain.verify", StatusPass, "", "6 blocks verified up to height 5 (full; not anchored to a signed checkpoint: chain.verifier_key is not set)")
		ExpectCheck(t, got, "chain.head_age", StatusPass, "", "head at height 5")
	})

	t.Run("loop stopped", func(t *testing.T) {
		got := h.run(t, h.last(t).Add(10*time.Minute), h.cfg)
		ExpectCheck(t, got, "snapshots.loop", StatusFail, "systemctl start ghostbridge-snap.service", "no block for 10m0s (last: height 5")
		ExpectCheck(t, got, "chain.head_age", StatusPass, "", "10m0s old")
	})

	t.Run("clock behind the head", func(t *testing.T) {
		got := h.run(t, h.last(t).Add(-time.Hour), h.cfg)
		ExpectCheck(t, got, "chain.head_age", StatusFail, "timedatectl", "in the future")
	})

	t.Run("too many live snapshots", func(t *testing.T) {
		// The loop kept an hour; retention of 1s allows 3 per source.
		tight := h.cfg
		tight.Policy = snap.Policy{Keep: time.Second}
		got := h.run(t, healthy, tight)
		ExpectCheck(t, got, "snapshots.count", StatusWarn, "snap prune --dry-run", "too many live snapshots: src has 5, retention allows at most 3 per source")
	})

	t.Run("orphan entries", func(t *testing.T) {
		junk := filepath.Join(h.cfg.Dir, "junk")
		if err := os.Mkdir(junk, 0o755); err != nil {
			t.Fatal(err)
		}
		writable := testenv.MkSubvol(t, snap.SnapshotPath(h.cfg.Dir, "src", h.t0.Add(-time.Minute)))
		t.Cleanup(func() {
			_ = os.Remove(junk)
			_ = btrfs.New().Delete(writable)
		})
		got := h.run(t, healthy, h.cfg)
		ExpectCheck(t, got, "snapshots.orphans", StatusWarn, "btrfs subvolume delete", "2 entries the chain does not record: ")
		ExpectCheck(t, got, "snapshots.orphans", StatusWarn, "", junk)
		ExpectCheck(t, got, "snapshots.orphans", StatusWarn, "", writable)
	})
}

// TestSnapshotVanished: a recorded snapshot deleted behind the chain's
// back is reported with the command that records it.
func TestSnapshotVanished(t *testing.T) {
	h := newSnapHost(t, 3)
	st := h.open(t, false)
	live, err := st.Live(t.Context())
	st.Close()
	if err != nil || len(live) != 3 {
		t.Fatalf("live = %d, %v", len(live), err)
	}
	if err := btrfs.New().Delete(live[0].Snapshot); err != nil {
		t.Fatal(err)
	}
	got := h.run(t, h.last(t), h.cfg)
	ExpectCheck(t, got, "snapshots.orphans", StatusWarn, "ghostbridge snap prune", "1 recorded snapshot gone from disk: "+live[0].Snapshot)
}

// TestChainTampered: a block edited with the sqlite3 shell fails
// chain.verify at that height.
func TestChainTampered(t *testing.T) {
	h := newSnapHost(t, 4)
	out := testenv.SQLite3(t, h.db, `UPDATE blocks SET payload = replace(payload, '"src"', '"sRc"') WHERE height = 2; SELECT 'changes', changes();`)
	if out != "changes|1" {
		t.Fatalf("tamper script changed nothing: %q", out)
	}
	got := h.run(t, h.last(t), h.cfg)
	ExpectCheck(t, got, "chain.verify", StatusFail, "chain verify --full", "chain does not verify: height 2: hash_mismatch")
}

// TestChainMissingDatabase: every check that reads the chain fails with
// a hint, and the database is not created.
func TestChainMissingDatabase(t *testing.T) {
	mnt := testenv.BTRFS(t, 256<<20)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	db := filepath.Join(t.TempDir(), "none", "chain.db")
	in := ChainInputs{DB: db}
	cfg := snap.Config{Sources: []snap.Source{{Name: "src", Path: src}}, Dir: filepath.Join(mnt, "snapshots"), Interval: time.Second, Policy: snap.Policy{Keep: time.Minute}}
	r := Run(t.Context(), append(SnapshotChecks(in, cfg, nil), ChainChecks(in)...), Options{Timeout: time.Minute})
	if len(r.Checks) != 5 {
		t.Fatalf("%d checks", len(r.Checks))
	}
	for _, c := range r.Checks {
		ExpectResult(t, c, StatusFail, []string{"chain database " + db + " does not exist"}, []string{"ghostbridge snap run"})
	}
	if _, err := os.Stat(filepath.Dir(db)); !os.IsNotExist(err) {
		t.Errorf("diag created %s: %v", filepath.Dir(db), err)
	}
}

// TestChainVerifyIncremental: with a signed checkpoint, chain.verify is
// incremental from it; a checkpoint the chain does not extend fails.
func TestChainVerifyIncremental(t *testing.T) {
	h := newSnapHost(t, 3)
	skey, vkey, err := chain.GenerateKey("diag-test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := chain.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := chain.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "checkpoint")
	st := h.open(t, false)
	_, err = st.SignCheckpoint(t.Context(), chain.SignOptions{Signer: signer, File: file})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	h.tick(t)
	h.tick(t)
	note, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	in := h.inputs(h.last(t))
	in.Trust = &chain.Trust{Checkpoint: note, Verifier: verifier}
	r := Run(t.Context(), ChainChecks(in), Options{Timeout: time.Minute})
	ExpectCheck(t, r, "chain.verify", StatusPass, "", "up to height 5 (incremental, from the signed checkpoint of 4 blocks)")

	// A checkpoint signed by another key is not trusted.
	_, otherV, err := chain.GenerateKey("other")
	if err != nil {
		t.Fatal(err)
	}
	in.Trust.Verifier, err = chain.NewVerifier(otherV)
	if err != nil {
		t.Fatal(err)
	}
	r = Run(t.Context(), ChainChecks(in), Options{Timeout: time.Minute})
	ExpectCheck(t, r, "chain.verify", StatusFail, "chain verify --full", "checkpoint_unknown_key")

	in.Trust, in.TrustErr = nil, os.ErrPermission
	r = Run(t.Context(), ChainChecks(in), Options{Timeout: time.Minute})
	ExpectCheck(t, r, "chain.verify", StatusFail, "chain.verifier_key", "cannot load the trusted checkpoint")
}

func TestMaxLive(t *testing.T) {
	tests := []struct {
		interval time.Duration
		p        snap.Policy
		want     int
	}{
		{time.Second, snap.Policy{Keep: time.Minute}, 62},
		{time.Second, snap.Policy{Keep: 1500 * time.Millisecond}, 4},
		{time.Second, snap.Policy{Keep: time.Minute, Tiers: []snap.Tier{{Every: time.Minute, For: time.Hour}}}, 62 + 61},
		// A tier finer than the interval keeps at most one per tick.
		{time.Minute, snap.Policy{Keep: time.Minute, Tiers: []snap.Tier{{Every: time.Second, For: time.Hour}}}, 3 + 61},
		{0, snap.Policy{Keep: time.Minute}, 0},
	}
	for _, tt := range tests {
		if got := MaxLive(tt.interval, tt.p); got != tt.want {
			t.Errorf("MaxLive(%s, %+v) = %d, want %d", tt.interval, tt.p, got, tt.want)
		}
	}
}

// TestSnapshotOrphansUnrecorded: a snapshot of the source taken the way
// the loop takes one, under the next tick's name, whose block was never
// appended (the loop killed between the two) and with the loop stopped
// since, warns with the commands that adopt it.
func TestSnapshotOrphansUnrecorded(t *testing.T) {
	h := newSnapHost(t, 3)
	inFlight := snap.SnapshotPath(h.cfg.Dir, "src", h.t0.Add(time.Duration(h.ticks)*h.cfg.Interval))
	if err := btrfs.New().Snapshot(h.src, inFlight, true); err != nil {
		t.Fatal(err)
	}
	got := h.run(t, h.last(t).Add(10*time.Minute), h.cfg)
	ExpectCheck(t, got, "snapshots.orphans", StatusWarn, "ghostbridge snap run adopts", "1 unrecorded snapshot of the snapshot loop, left by a crash: "+inFlight)
	ExpectCheck(t, got, "snapshots.orphans", StatusWarn, "ghostbridge snap prune records them now", "")
	ExpectCheck(t, got, "snapshots.loop", StatusFail, "", "no block for 10m0s")
}
