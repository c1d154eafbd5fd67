package snap

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// buildGhostbridge builds the CLI into a temp dir and returns its path.
func buildGhostbridge(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		testenv.Skip(t, "go command not found: cannot build ghostbridge")
	}
	out, err := exec.Command(gobin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not in a module")
	}
	bin := filepath.Join(t.TempDir(), "ghostbridge")
	cmd := exec.Command(gobin, "build", "-o", bin, "./cmd/ghostbridge")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return bin
}

// TestCrashKill9 kills a real `ghostbridge snap run` with SIGKILL at random
// moments, restarts it each time (`--once`: reconcile, one tick), and
// checks that the chain verifies (no gap, no broken link) and that the live
// snapshots are exactly our snapshots on disk: no orphan, no dangling block.
func TestCrashKill9(t *testing.T) {
	e := newFSEnv(t)
	e.store.Close() // the CLI owns the database from here
	bin := buildGhostbridge(t)
	db := filepath.Join(t.TempDir(), "chain.db")
	args := []string{"--db", db, "--log-level", "debug", "snap", "run",
		"--source", "src=" + e.src, "--dir", e.dir, "--interval", "50ms", "--keep", "1s"}

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	const kills = 30
	for i := range kills {
		var logs bytes.Buffer
		run := exec.Command(bin, args...)
		run.Stdout, run.Stderr = &logs, &logs
		run.Env = append(os.Environ(), "NOTIFY_SOCKET=", "GHOSTBRIDGE_TEST_STRICT=")
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		// A random moment: during start-up, reconciliation, a snapshot, a
		// commit or a delete.
		time.Sleep(time.Duration(rng.Int64N(int64(400 * time.Millisecond))))
		if err := run.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := run.Wait()
		if ws, ok := run.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("kill %d: snap run exited by itself (%v) before the kill:\n%s", i, err, logs.String())
		}

		restart := exec.Command(bin, append(args, "--once")...)
		restart.Env = run.Env
		if out, err := restart.CombinedOutput(); err != nil {
			t.Fatalf("kill %d: restart: %v\n%s\nkilled run's log:\n%s", i, err, out, logs.String())
		}
		store, err := chain.Open(t.Context(), db, chain.Options{})
		if err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		t.Run(fmt.Sprintf("after kill %d", i), func(t *testing.T) {
			checkConsistent(t, store, btrfs.New(), SourceDir(e.dir, "src"))
		})
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.Fatalf("kill %d: killed run's log:\n%s", i, logs.String())
		}
	}

	// Report which crash windows the kills hit.
	store, err := chain.Open(t.Context(), db, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	count := map[chain.Kind]int{}
	blocks, err := store.Blocks(t.Context(), chain.Query{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		count[b.Kind]++
	}
	t.Logf("%d kills: %d blocks; created %d, deleted %d, adopted %d (killed between snapshot and record), vanished %d (killed between delete and record), ticks.missed %d",
		kills, len(blocks), count[chain.KindSnapshotCreated], count[chain.KindSnapshotDeleted],
		count[chain.KindSnapshotAdopted], count[chain.KindSnapshotVanished], count[chain.KindTicksMissed])
	if count[chain.KindSnapshotCreated] == 0 {
		t.Error("no snapshot was ever recorded: the kills tested nothing")
	}
}
