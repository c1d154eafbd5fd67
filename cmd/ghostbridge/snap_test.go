package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

// jsonLines decodes stdout of a streaming command: one object per line.
func jsonLines(t *testing.T, stdout string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stdout line %q: %v", line, err)
		}
		if m["schema"] != float64(1) {
			t.Errorf("line %q: schema is %v, want 1", line, m["schema"])
		}
		for _, p := range nullPaths(m, "") {
			t.Errorf("line %q: %s is null", line, p)
		}
		out = append(out, m)
	}
	return out
}

func TestSnapRunOnceBTRFS(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	if err := os.WriteFile(filepath.Join(src, "file"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "chain.db")
	snaps := filepath.Join(mnt, "snaps")
	run := func(args ...string) result {
		return runCLIWith(t, cliOptions{realClock: true}, append([]string{"--db", db}, args...)...)
	}

	r := run("snap", "run", "--once", "--source", "data="+src, "--dir", snaps, "--format", "json")
	if r.code != exitOK {
		t.Fatalf("snap run --once: exit %d, stderr %s", r.code, r.stderr)
	}
	lines := jsonLines(t, r.stdout)
	if len(lines) != 2 || lines[0]["type"] != "reconcile" || lines[1]["type"] != "tick" {
		t.Fatalf("snap run --once --format json printed %v, want a reconcile line and a tick line", lines)
	}
	created, _ := lines[1]["created"].([]any)
	if len(created) != 1 {
		t.Fatalf("tick created %d snapshots, want 1: %v", len(created), lines[1])
	}
	st, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("database mode %o, want 600", perm)
	}

	// Text mode prints what the tick did; the flags override the config.
	r = run("snap", "run", "--once", "--source", "data="+src, "--dir", snaps)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "created  height ") {
		t.Fatalf("snap run --once (text): exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	r = run("snap", "list", "--format", "json")
	var list struct {
		Schema    int `json:"schema"`
		Snapshots []struct {
			Source   string `json:"source"`
			Snapshot string `json:"snapshot"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || r.code != exitOK {
		t.Fatalf("snap list: exit %d, %v: %s", r.code, err, r.stdout)
	}
	if len(list.Snapshots) != 2 || list.Snapshots[0].Source != "data" {
		t.Fatalf("snap list: %+v, want 2 snapshots of source data", list.Snapshots)
	}
	for _, s := range list.Snapshots {
		if _, err := os.Stat(filepath.Join(s.Snapshot, "file")); err != nil {
			t.Errorf("snapshot %s: %v", s.Snapshot, err)
		}
	}

	if r := run("chain", "verify"); r.code != exitOK {
		t.Errorf("chain verify: exit %d, stdout %s, stderr %s", r.code, r.stdout, r.stderr)
	}

	// A keep shorter than the snapshots' age deletes them all but what
	// the policy keeps; --dry-run first changes nothing.
	r = run("snap", "prune", "--dry-run", "--keep", "1ns", "--source", "data="+src, "--dir", snaps, "--format", "json")
	if r.code != exitOK || !strings.Contains(r.stdout, `"dry_run": true`) {
		t.Fatalf("snap prune --dry-run: exit %d, stdout %s, stderr %s", r.code, r.stdout, r.stderr)
	}
	var prune map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &prune); err != nil {
		t.Fatal(err)
	}
	for _, p := range nullPaths(prune, "") {
		t.Errorf("snap prune --dry-run --format json: %s is null: %s", p, r.stdout)
	}
	for _, s := range list.Snapshots {
		if _, err := os.Stat(s.Snapshot); err != nil {
			t.Errorf("dry run removed %s: %v", s.Snapshot, err)
		}
	}
}

// TestSnapRunStopsCleanly: cancelling the context (what SIGTERM does in
// main) finishes the tick in hand and exits 0, not 130.
func TestSnapRunStopsCleanly(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	db := filepath.Join(t.TempDir(), "chain.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newSyncBuffer()
	done := make(chan result, 1)
	go func() {
		done <- runCLIWith(t, cliOptions{ctx: ctx, out: out, realClock: true},
			"--db", db, "snap", "run", "--source", src, "--dir", filepath.Join(mnt, "snaps"), "--interval", "10ms", "--format", "json")
	}()
	for !strings.Contains(out.String(), `"type":"tick"`) {
		select {
		case <-out.wrote:
		case r := <-done:
			t.Fatalf("snap run ended before its first tick: exit %d, stderr %s", r.code, r.stderr)
		}
	}
	cancel()
	r := <-done
	if r.code != exitOK {
		t.Fatalf("snap run after cancel: exit %d, want 0; stderr %s", r.code, r.stderr)
	}
	for _, l := range jsonLines(t, r.stdout) {
		if l["type"] != "tick" && l["type"] != "reconcile" {
			t.Errorf("unexpected line type %v", l["type"])
		}
	}
	if r := runCLI(t, nil, "--db", db, "chain", "verify"); r.code != exitOK {
		t.Errorf("chain verify after stop: exit %d, stderr %s", r.code, r.stderr)
	}
}

// TestBadInputBTRFS: mistakes only a real filesystem can show, each a
// one-line error, exit 2, nothing created.
func TestBadInputBTRFS(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	plain := filepath.Join(mnt, "plain")
	if err := os.Mkdir(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	readOnly := t.TempDir()
	if err := unix.Mount("tmpfs", readOnly, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
		testenv.Skip(t, "cannot mount a read-only tmpfs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := unix.Unmount(readOnly, 0); err != nil {
			t.Errorf("unmount %s: %v", readOnly, err)
		}
	})
	cases := []struct {
		name string
		args func(work string) []string
		want string
	}{
		{"source not a subvolume", func(w string) []string {
			return []string{"--db", filepath.Join(w, "chain.db"), "snap", "run", "--once", "--source", plain, "--dir", filepath.Join(mnt, "snaps-1")}
		}, "is not a BTRFS subvolume"},
		{"source missing", func(w string) []string {
			return []string{"--db", filepath.Join(w, "chain.db"), "snap", "run", "--once", "--source", filepath.Join(mnt, "nope"), "--dir", filepath.Join(mnt, "snaps-2")}
		}, "does not exist"},
		{"dir on another filesystem", func(w string) []string {
			return []string{"--db", filepath.Join(w, "chain.db"), "snap", "run", "--once", "--source", src, "--dir", filepath.Join(w, "snaps")}
		}, "not on the filesystem of source"},
		{"db on a read-only filesystem", func(w string) []string {
			return []string{"--db", filepath.Join(readOnly, "chain.db"), "snap", "run", "--once", "--source", src, "--dir", filepath.Join(mnt, "snaps-3")}
		}, "read-only file system"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			work := t.TempDir()
			r := runCLIWith(t, cliOptions{realClock: true}, c.args(work)...)
			checkOneLineUsageError(t, r, c.want, work)
			for _, d := range []string{readOnly, mnt} {
				entries, err := os.ReadDir(d)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range entries {
					if n := e.Name(); n != "src" && n != "plain" {
						t.Errorf("created %s", filepath.Join(d, n))
					}
				}
			}
		})
	}
}
