package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/systemd"
)

// snapshotsIn lists the snapshots under dir/<source>, sorted by name.
func snapshotsIn(t *testing.T, dir, source string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, source))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// immutable sets the immutable attribute on path (even root cannot open
// it for writing then) and clears it when the test ends, so the temporary
// directory can be removed.
func immutable(t *testing.T, path string) {
	t.Helper()
	chattr, err := exec.LookPath("chattr")
	if err != nil {
		testenv.Skip(t, "chattr not found (install e2fsprogs)")
	}
	if out, err := exec.Command(chattr, "+i", path).CombinedOutput(); err != nil {
		testenv.Skip(t, "chattr +i "+path+": "+strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command(chattr, "-i", path).CombinedOutput(); err != nil {
			t.Errorf("chattr -i %s: %v: %s", path, err, out)
		}
	})
}

// TestUnwritableDatabase: an existing database the writers cannot open
// for writing is a one-line configuration error (exit 2) raised before any
// snapshot is taken or deleted; readers still work.
func TestUnwritableDatabase(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	snaps := filepath.Join(mnt, "snaps")
	work := t.TempDir()
	db := filepath.Join(work, "chain.db")
	run := func(args ...string) result {
		return runCLIWith(t, cliOptions{realClock: true}, append([]string{"--db", db}, args...)...)
	}
	srcFlags := []string{"--source", "data=" + src, "--dir", snaps}
	if r := run(append([]string{"snap", "run", "--once"}, srcFlags...)...); r.code != exitOK {
		t.Fatalf("first snap run --once: exit %d, stderr %s", r.code, r.stderr)
	}
	before := snapshotsIn(t, snaps, "data")
	if len(before) != 1 {
		t.Fatalf("after one tick: snapshots %v, want 1", before)
	}
	workBefore, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	immutable(t, db)

	want := `db = "` + db + `" (from --db): not writable: operation not permitted`
	for _, args := range [][]string{
		append([]string{"snap", "run", "--once"}, srcFlags...),
		append([]string{"snap", "run", "--once", "--format", "json"}, srcFlags...),
		append([]string{"snap", "prune", "--keep", "1ns"}, srcFlags...),
	} {
		r := run(args...)
		msg := r.stderr
		if slices.Contains(args, "json") {
			var e struct{ Error struct{ Message string } }
			if err := json.Unmarshal([]byte(r.stderr), &e); err != nil {
				t.Errorf("%v: stderr %q: %v", args, r.stderr, err)
			}
			msg = e.Error.Message
		}
		if r.code != exitUsage || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(msg, want) {
			t.Errorf("%v on an immutable database: exit %d, stdout %q, stderr %q; want exit 2, no stdout, one line containing %q",
				args, r.code, r.stdout, r.stderr, want)
		}
		if got := snapshotsIn(t, snaps, "data"); strings.Join(got, ",") != strings.Join(before, ",") {
			t.Errorf("%v changed the snapshots: %v, want %v", args, got, before)
		}
		workNow, err := os.ReadDir(work)
		if err != nil {
			t.Fatal(err)
		}
		if len(workNow) != len(workBefore) {
			t.Errorf("%v created files next to the database: %v, before %v", args, workNow, workBefore)
		}
	}
	if r := run("chain", "verify"); r.code != exitOK {
		t.Errorf("chain verify on the immutable database: exit %d, stderr %s", r.code, r.stderr)
	}
}

// TestSnapPruneFailurePrintsNothing: while `snap run` holds the database,
// `snap prune` fails (exit 1, the holder named on stderr) and prints no
// result on stdout in either format.
func TestSnapPruneFailurePrintsNothing(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	snaps := filepath.Join(mnt, "snaps")
	db := filepath.Join(t.TempDir(), "chain.db")
	srcFlags := []string{"--source", "data=" + src, "--dir", snaps}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newSyncBuffer()
	done := make(chan result, 1)
	go func() {
		done <- runCLIWith(t, cliOptions{ctx: ctx, out: out, realClock: true},
			append([]string{"--db", db, "snap", "run", "--interval", "10ms", "--format", "json"}, srcFlags...)...)
	}()
	for !strings.Contains(out.String(), `"type":"tick"`) {
		select {
		case <-out.wrote:
		case r := <-done:
			t.Fatalf("snap run ended before its first tick: exit %d, stderr %s", r.code, r.stderr)
		}
	}
	for _, format := range []string{"text", "json"} {
		r := runCLIWith(t, cliOptions{realClock: true},
			append([]string{"--db", db, "snap", "prune", "--keep", "1ns", "--format", format}, srcFlags...)...)
		if r.code != exitFailure || r.stdout != "" || !strings.Contains(r.stderr, "pid ") {
			t.Errorf("snap prune --format %s while snap run holds the lock: exit %d, stdout %q, stderr %q; want exit 1, empty stdout, the holder's pid",
				format, r.code, r.stdout, r.stderr)
		}
	}
	cancel()
	if r := <-done; r.code != exitOK {
		t.Errorf("snap run: exit %d, stderr %s", r.code, r.stderr)
	}
}

// failWriter is a stdout whose reader has gone.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// TestSnapRunStopsWhenStdoutFails: the loop stops by itself when stdout
// can no longer be written (exit 1 naming stdout) and leaves a sound
// chain. Were it to keep going, this test would never end.
func TestSnapRunStopsWhenStdoutFails(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	db := filepath.Join(t.TempDir(), "chain.db")
	ios, _, _, stderr := TestIO()
	ios.Out = failWriter{}
	app := NewApp(ios, func(string) string { return "" })
	app.DefaultConfigFiles = nil
	code := app.Run(context.Background(), []string{"--db", db, "snap", "run", "--source", src,
		"--dir", filepath.Join(mnt, "snaps"), "--interval", "10ms", "--format", "json"})
	if code != exitFailure || !strings.Contains(stderr.String(), "stdout: broken pipe") {
		t.Errorf("snap run with a failing stdout: exit %d, stderr %q; want 1 and an error naming stdout", code, stderr.String())
	}
	if r := runCLI(t, nil, "--db", db, "chain", "verify"); r.code != exitOK {
		t.Errorf("chain verify after the stop: exit %d, stdout %s, stderr %s", r.code, r.stdout, r.stderr)
	}
}

// TestRunDepsWatchdog: the watchdog timeout systemd sets (WATCHDOG_USEC)
// reaches pkg/snap, so the loop pings while it sleeps between ticks.
func TestRunDepsWatchdog(t *testing.T) {
	for _, c := range []struct {
		usec string
		want time.Duration
	}{{"", 0}, {"3000000", 3 * time.Second}} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", "")
		n, err := systemd.New()
		if err != nil {
			t.Fatal(err)
		}
		app := NewApp(&IOStreams{}, func(string) string { return "" })
		if got := app.runDeps(nil, nil, n).WatchdogInterval; got != c.want {
			t.Errorf("WATCHDOG_USEC=%q: Deps.WatchdogInterval = %v, want %v", c.usec, got, c.want)
		}
	}
}
