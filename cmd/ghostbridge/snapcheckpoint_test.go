package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

// TestSnapRunSignsCheckpoints: snap run with a signing key and
// checkpoint_every=1 writes the checkpoint file after its tick, and the
// incremental chain verify starts from it. A key file others can read stops
// snap run with exit 2 before any snapshot.
func TestSnapRunSignsCheckpoints(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	if err := os.WriteFile(filepath.Join(src, "file"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "chain.db")
	snaps := filepath.Join(mnt, "snaps")
	keys := t.TempDir()
	k := keygen(t, keys, "snap-host")
	env := trustEnv(k, filepath.Join(keys, "checkpoint"))
	env["GHOSTBRIDGE_CHAIN_CHECKPOINT_EVERY"] = "1"
	run := func(args ...string) result {
		return runCLIWith(t, cliOptions{realClock: true, env: env}, append([]string{"--db", db}, args...)...)
	}

	if err := os.Chmod(k.signing, 0o644); err != nil {
		t.Fatal(err)
	}
	r := run("snap", "run", "--once", "--source", "data="+src, "--dir", snaps)
	if r.code != exitUsage || !strings.Contains(r.stderr, k.signing) || !strings.Contains(r.stderr, "0644") {
		t.Fatalf("snap run with a 0644 key: exit %d, stderr %q; want exit 2 naming the key file and its mode", r.code, r.stderr)
	}
	if _, err := os.Stat(db); err == nil {
		t.Error("snap run with a bad key created the database")
	}
	if entries, _ := os.ReadDir(filepath.Join(snaps, "data")); len(entries) != 0 {
		t.Errorf("snap run with a bad key took snapshots: %v", entries)
	}
	if err := os.Chmod(k.signing, 0o600); err != nil {
		t.Fatal(err)
	}

	for i := range 2 {
		r = run("snap", "run", "--once", "--source", "data="+src, "--dir", snaps)
		if r.code != exitOK {
			t.Fatalf("snap run --once #%d: exit %d, stderr %s", i, r.code, r.stderr)
		}
	}
	cp, err := os.ReadFile(env["GHOSTBRIDGE_CHAIN_CHECKPOINT_FILE"])
	if err != nil {
		t.Fatalf("checkpoint file after snap run: %v", err)
	}
	// Genesis and one snapshot per tick: the second tick signed 3 blocks.
	if lines := strings.Split(string(cp), "\n"); len(lines) < 3 || lines[1] != "3" {
		t.Errorf("checkpoint file signs %q, want size 3:\n%s", lines, cp)
	}
	v := decodeVerify(t, run("chain", "verify", "--format", "json"))
	if !v.OK || v.Mode != "incremental" || v.Checkpoint == nil || v.Checkpoint.Size != 3 {
		t.Errorf("chain verify after snap run: %+v; want ok, incremental from the checkpoint of 3", v)
	}
}
