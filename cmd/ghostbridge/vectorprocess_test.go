package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// TestVectorSyncKill9BetweenUpsertAndCommit runs the real binary against
// the stand-in (served by this test process on 127.0.0.1) and SIGKILLs it
// inside an upsert: Qdrant has applied the batch, the process never hears
// the answer, so the cursor is not advanced over points that exist. A
// restart must end with exactly one point per block, no gaps.
func TestVectorSyncKill9BetweenUpsertAndCommit(t *testing.T) {
	bin := builtBinary(t)
	const blocks = 1200
	db := bigChain(t, blocks)
	srv := qdranttest.Start(t, qdranttest.Options{})
	env := append(cleanEnv(),
		"GHOSTBRIDGE_VECTOR_HOST="+srv.Host(),
		"GHOSTBRIDGE_VECTOR_PORT="+strconv.Itoa(srv.Port()),
		"GHOSTBRIDGE_VECTOR_BATCH=100",
	)

	// Kill during the 6th upsert: the first window (4 batches) is
	// committed, the second is in flight.
	cmd := exec.Command(bin, "--db", db, "vector", "sync")
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited closes when the process is gone; waitErr is then its status.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	killed := make(chan struct{})
	var calls atomic.Int32
	srv.AfterUpsert(func(string, []uint64) {
		if calls.Add(1) == 6 {
			// The batch is applied; the answer waits until the process
			// is gone, so it can never commit the cursor over it.
			_ = cmd.Process.Kill()
			<-exited
			close(killed)
		}
	})
	select {
	case <-killed:
	case <-exited:
		if calls.Load() < 6 {
			t.Fatalf("vector sync ended before the kill: %v; stderr %s", waitErr, stderr.String())
		}
		<-killed
	}
	srv.AfterUpsert(nil)

	cur, ok := cursorOf(t, db)
	ids, _ := srv.IDs("ghostbridge-events")
	if !ok || cur+1 >= uint64(len(ids)) {
		t.Fatalf("after kill: cursor %d (set %v) with %d points: the kill did not fall between upsert and commit; stderr %s", cur, ok, len(ids), stderr.String())
	}
	t.Logf("killed with cursor %d and %d points stored", cur, len(ids))

	restart := exec.Command(bin, "--db", db, "vector", "sync", "--once")
	restart.Env = env
	if out, err := restart.CombinedOutput(); err != nil {
		t.Fatalf("restart: %v: %s", err, out)
	}
	ids, _ = srv.IDs("ghostbridge-events")
	if len(ids) != blocks+1 {
		t.Fatalf("%d points for %d blocks", len(ids), blocks+1)
	}
	for i, id := range ids {
		if id != uint64(i) {
			t.Fatalf("point %d has id %d", i, id)
		}
	}
	if cur, _ := cursorOf(t, db); cur != blocks {
		t.Fatalf("cursor %d, want %d", cur, blocks)
	}
}

// TestVectorSyncProcessSIGTERMDuringOutage: the real binary, retrying
// while Qdrant answers Unavailable, stops on SIGTERM with exit 0 (systemd
// must not mark the unit failed), having logged the outage once.
func TestVectorSyncProcessSIGTERMDuringOutage(t *testing.T) {
	bin := builtBinary(t)
	db := bigChain(t, 50)
	srv := qdranttest.Start(t, qdranttest.Options{})
	down := make([]codes.Code, 100000)
	for i := range down {
		down[i] = codes.Unavailable
	}
	srv.FailUpserts(down...)
	cmd := exec.Command(bin, "--db", db, "vector", "sync")
	cmd.Env = append(cleanEnv(),
		"GHOSTBRIDGE_VECTOR_HOST="+srv.Host(),
		"GHOSTBRIDGE_VECTOR_PORT="+strconv.Itoa(srv.Port()))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for srv.UpsertCalls() < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("vector sync after SIGTERM: %v, want exit 0; stderr %s", err, stderr.String())
	}
	if n := strings.Count(stderr.String(), "qdrant unavailable"); n != 1 {
		t.Errorf("outage logged %d times, want once; stderr %s", n, stderr.String())
	}
	if _, ok := cursorOf(t, db); ok {
		t.Error("cursor moved although Qdrant acknowledged nothing")
	}
}

// BenchmarkVectorSyncRSS runs the real binary's `vector sync` (interval
// 10ms) against the stand-in served by this process while 10,000 blocks
// are appended one at a time, and reports its VmRSS when 1,000 and 10,000
// of them are in Qdrant, and its peak: the steady state must not grow.
//
//	go test ./cmd/ghostbridge -run '^$' -bench VectorSyncRSS -benchtime 1x
func BenchmarkVectorSyncRSS(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "ghostbridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v: %s", err, out)
	}
	const blocks = 10000
	for b.Loop() {
		db := filepath.Join(b.TempDir(), "chain.db")
		st, err := chain.Open(b.Context(), db, chain.Options{Create: true})
		if err != nil {
			b.Fatal(err)
		}
		srv := qdranttest.Start(b, qdranttest.Options{})
		var synced atomic.Int64
		srv.AfterUpsert(func(_ string, ids []uint64) { synced.Add(int64(len(ids))) })
		cmd := exec.Command(bin, "--db", db, "vector", "sync")
		cmd.Env = append(cleanEnv(),
			"GHOSTBRIDGE_VECTOR_HOST="+srv.Host(),
			"GHOSTBRIDGE_VECTOR_PORT="+strconv.Itoa(srv.Port()),
			"GHOSTBRIDGE_VECTOR_INTERVAL=10ms")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		exited := make(chan struct{})
		var waitErr error
		go func() { waitErr = cmd.Wait(); close(exited) }()
		at := time.Now().UTC()
		var rss1k, rss10k float64
		for i := range blocks {
			at = at.Add(time.Second)
			ev := chain.Event{Time: at, Kind: chain.KindSnapshotCreated, Payload: chain.SnapshotPayload{
				Source: "root", SourcePath: "/", Snapshot: "/.snapshots/ghostbridge/root/" + at.Format("20060102T150405.000Z"),
				UUID: fmt.Sprintf("uuid-%d", i), ParentUUID: "parent", Generation: uint64(1000 + i), OTime: at,
			}}
			if _, err := st.Append(b.Context(), ev); err != nil {
				b.Fatal(err)
			}
			time.Sleep(time.Millisecond)
			if i+1 == 1000 || i+1 == blocks {
				// Genesis plus i+1 blocks.
				for synced.Load() < int64(i+2) {
					select {
					case <-exited:
						b.Fatalf("vector sync exited: %v: %s", waitErr, stderr.String())
					case <-time.After(time.Millisecond):
					}
				}
				rss := testenv.ProcStatusMB(b, cmd.Process.Pid, "VmRSS")
				if i+1 == 1000 {
					rss1k = rss
				} else {
					rss10k = rss
				}
				srv.ClearPoints("ghostbridge-events")
			}
		}
		peak := testenv.ProcStatusMB(b, cmd.Process.Pid, "VmHWM")
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if waitErr != nil {
			b.Fatalf("vector sync: %v: %s", waitErr, stderr.String())
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(rss1k, "rss-MB@1k")
		b.ReportMetric(rss10k, "rss-MB@10k")
		b.ReportMetric(peak, "peak-rss-MB")
	}
}
