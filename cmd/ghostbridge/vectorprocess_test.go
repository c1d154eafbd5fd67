package main

import (
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

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
