package vector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// TestSyncExactlyOnceUnderFaults syncs a 600-block chain while the
// stand-in misbehaves in each way Qdrant can, and checks the result is one
// point per block, no gaps, cursor at the head, and that the fault really
// happened (retries counted, outage logged once and its end once).
func TestSyncExactlyOnceUnderFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(*qdranttest.Server)
	}{
		{"none", func(*qdranttest.Server) {}},
		{"unavailable x3", func(s *qdranttest.Server) {
			s.FailUpserts(codes.Unavailable, codes.Unavailable, codes.Unavailable)
		}},
		{"resource exhausted", func(s *qdranttest.Server) {
			s.FailUpserts(codes.ResourceExhausted, codes.ResourceExhausted)
		}},
		{"deadline exceeded", func(s *qdranttest.Server) { s.FailUpserts(codes.DeadlineExceeded) }},
		{"connection dropped mid-batch", func(s *qdranttest.Server) { s.DropConnections(2) }},
		{"applied but answer lost", func(s *qdranttest.Server) { s.LoseAnswers(3) }},
	} {
		for _, parallel := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/parallel=%d", tc.name, parallel), func(t *testing.T) {
				e := newEnv(t, 600, qdranttest.Options{})
				e.cfg.Parallel = parallel
				tc.inject(e.srv)
				res, err := Sync(t.Context(), e.deps, e.cfg)
				if err != nil {
					t.Fatal(err)
				}
				e.checkExactlyOnce(t)
				if res.Points != 601 || res.To != 600 {
					t.Errorf("result %+v, want 601 points to 600", res)
				}
				logs := e.logs.String()
				down, up := strings.Count(logs, "qdrant unavailable"), strings.Count(logs, "qdrant available again")
				if tc.name == "none" {
					if res.Retries != 0 || down != 0 || e.srv.UpsertCalls() != 13 {
						t.Errorf("clean sync: %d retries, %d outage logs, %d upserts (want 0, 0, 13)", res.Retries, down, e.srv.UpsertCalls())
					}
					return
				}
				if res.Retries == 0 || e.srv.UpsertCalls() <= 13 {
					t.Errorf("fault not exercised: %d retries, %d upserts", res.Retries, e.srv.UpsertCalls())
				}
				// One batch at a time: the faults make one outage, logged
				// exactly once with its end exactly once. Parallel batches
				// may meet them in separate outages, each with one end.
				if parallel == 1 && (down != 1 || up != 1) || down == 0 || down != up {
					t.Errorf("outage logged %d times, end %d times:\n%s", down, up, logs)
				}
			})
		}
	}
}

// TestOutageLoggedOnce: a run of failures is one outage: one warning
// when it starts, one line when it ends, however many retries.
func TestOutageLoggedOnce(t *testing.T) {
	e := newEnv(t, 300, qdranttest.Options{})
	e.cfg.Parallel = 1
	e.srv.FailUpserts(codes.Unavailable, codes.ResourceExhausted, codes.Unavailable, codes.DeadlineExceeded, codes.Unavailable)
	res, err := Sync(t.Context(), e.deps, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(t)
	logs := e.logs.String()
	if res.Retries != 5 || strings.Count(logs, "qdrant unavailable") != 1 || strings.Count(logs, "qdrant available again") != 1 || !strings.Contains(logs, "retries=5") {
		t.Fatalf("%d retries, logs:\n%s", res.Retries, logs)
	}
}

// TestSyncResumesFromCursor: a second sync sends only new blocks.
func TestSyncResumesFromCursor(t *testing.T) {
	e := newEnv(t, 120, qdranttest.Options{})
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	calls := e.srv.UpsertCalls()
	appendVaried(t, e.chain, 120, 30)
	res, err := Sync(t.Context(), e.deps, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.From != 121 || res.Points != 30 || e.srv.UpsertCalls() != calls+1 {
		t.Fatalf("resumed sync %+v with %d new upserts; want 30 points from 121 in 1 upsert", res, e.srv.UpsertCalls()-calls)
	}
	e.checkExactlyOnce(t)
	// Nothing pending: no upsert at all.
	if res, err := Sync(t.Context(), e.deps, e.cfg); err != nil || res.Points != 0 || e.srv.UpsertCalls() != calls+1 {
		t.Fatalf("idle sync %+v, %v", res, err)
	}
}

// TestPayloadHoldsBlockFields checks one stored point against its block.
func TestPayloadHoldsBlockFields(t *testing.T) {
	e := newEnv(t, 10, qdranttest.Options{})
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	b, err := e.chain.Get(t.Context(), 4)
	if err != nil {
		t.Fatal(err)
	}
	pl, ok := e.srv.Payload(e.cfg.Collection, 4)
	if !ok {
		t.Fatal("point 4 missing")
	}
	hash, _ := b.Hash.MarshalText()
	prev, _ := b.Prev.MarshalText()
	for k, want := range map[string]string{
		"time": b.Time.UTC().Format(time.RFC3339Nano), "kind": string(b.Kind), "hash": string(hash),
		"prev": string(prev), "payload": string(b.Payload), "source": "home",
		"snapshot": "/.snapshots/ghostbridge/home/" + b.Time.Format("20060102T150405.000Z"),
	} {
		if got := pl[k].GetStringValue(); got != want {
			t.Errorf("payload %s = %q, want %q", k, got, want)
		}
	}
	if pl["height"].GetIntegerValue() != 4 || pl["generation"].GetIntegerValue() != 1003 {
		t.Errorf("payload height %v generation %v", pl["height"], pl["generation"])
	}
	info, err := e.client.GetCollectionInfo(t.Context(), e.cfg.Collection)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"height", "kind", "source", "time"} {
		if _, ok := info.GetPayloadSchema()[f]; !ok {
			t.Errorf("no payload index on %s", f)
		}
	}
}

// TestMismatchedCollectionRefused: an existing collection with another
// size or distance is refused and left untouched.
func TestMismatchedCollectionRefused(t *testing.T) {
	for _, tc := range []struct {
		size uint64
		dist qdrant.Distance
	}{{32, qdrant.Distance_Cosine}, {64, qdrant.Distance_Dot}} {
		e := newEnv(t, 20, qdranttest.Options{})
		e.srv.CreateCollection("events", tc.size, tc.dist)
		_, err := Sync(t.Context(), e.deps, e.cfg)
		var me *MismatchError
		if !errors.Is(err, ErrCollectionMismatch) || !errors.As(err, &me) {
			t.Fatalf("size %d %s: err %v, want mismatch", tc.size, tc.dist, err)
		}
		if !strings.Contains(err.Error(), "refusing") {
			t.Errorf("unclear error: %v", err)
		}
		info, err := e.client.GetCollectionInfo(t.Context(), "events")
		if err != nil {
			t.Fatal(err)
		}
		if size, dist, _ := collectionParams(info); size != tc.size || dist != Distance(tc.dist.String()) || info.GetPointsCount() != 0 {
			t.Fatalf("collection changed: size %d %s, %d points", size, dist, info.GetPointsCount())
		}
		if _, ok, _ := e.chain.Cursor(t.Context(), CursorName("events")); ok {
			t.Fatal("cursor set although nothing was synced")
		}
	}
}

// TestAPIKey: a wrong key is Unauthenticated, fails at once (no retry
// loop), and the right key works.
func TestAPIKey(t *testing.T) {
	e := newEnv(t, 5, qdranttest.Options{APIKey: "right"})
	bad, err := Connect(Conn{Host: e.srv.Host(), Port: e.srv.Port(), APIKey: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	d := e.deps
	d.Qdrant = bad
	_, err = Sync(t.Context(), d, e.cfg)
	if status.Code(err) != codes.Unauthenticated || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong key: %v (code %s)", err, status.Code(err))
	}
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(t)
}

// TestPoisonBlock: a block Qdrant refuses for good stops the sync with its
// height and the cursor just before it; SkipPoison records it and moves on.
func TestPoisonBlock(t *testing.T) {
	e := newEnv(t, 300, qdranttest.Options{})
	e.srv.RejectPoint(137)
	_, err := Sync(t.Context(), e.deps, e.cfg)
	var pe *PoisonError
	if !errors.As(err, &pe) || pe.Height != 137 || !strings.Contains(err.Error(), "block 137") {
		t.Fatalf("err %v, want poison at 137", err)
	}
	if cur, _, _ := e.chain.Cursor(t.Context(), CursorName("events")); cur != 136 {
		t.Fatalf("cursor %d, want 136", cur)
	}
	cfg := e.cfg
	cfg.SkipPoison = true
	res, err := Sync(t.Context(), e.deps, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 1 || res.Skipped[0] != 137 {
		t.Fatalf("skipped %v", res.Skipped)
	}
	if h, ok, _ := e.chain.Cursor(t.Context(), skippedCursorName("events", 137)); !ok || h != 137 {
		t.Fatal("skip not recorded in the chain database")
	}
	ids, _ := e.srv.IDs("events")
	if len(ids) != 300 || ids[136] != 136 || ids[137] != 138 {
		t.Fatalf("%d points, around 137: %s", len(ids), fmtIDs(ids[135:139]))
	}
	if !strings.Contains(e.logs.String(), "height=137") {
		t.Errorf("skip not logged:\n%s", e.logs.String())
	}
}

// TestRunStopsOnCancelDuringOutage: with Qdrant refusing upserts,
// cancelling Run ends it with nil and the cursor unmoved; READY was sent
// (the collection checked out) and STOPPING ends it.
func TestRunStopsOnCancelDuringOutage(t *testing.T) {
	e := newEnv(t, 50, qdranttest.Options{})
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	appendVaried(t, e.chain, 50, 10)
	codesDown := make([]codes.Code, 1_000_000)
	for i := range codesDown {
		codesDown[i] = codes.Unavailable
	}
	e.srv.FailUpserts(codesDown...)
	n := &notes{}
	d := e.deps
	d.Notifier = n
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, d, e.cfg, RunOptions{}) }()
	for e.srv.UpsertCalls() < 10 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if cur, _, _ := e.chain.Cursor(t.Context(), CursorName("events")); cur != 50 {
		t.Fatalf("cursor %d, want 50", cur)
	}
	if got := n.String(); got != "READY=1,STOPPING=1" {
		t.Fatalf("notifications %q", got)
	}
}

// TestRunOnceNotifies: a healthy Run sends READY then STOPPING.
func TestRunOnceNotifies(t *testing.T) {
	e := newEnv(t, 30, qdranttest.Options{})
	n := &notes{}
	d := e.deps
	d.Notifier = n
	var synced []SyncResult
	if err := Run(t.Context(), d, e.cfg, RunOptions{Once: true, OnSync: func(r SyncResult) { synced = append(synced, r) }}); err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(t)
	if got := n.String(); got != "READY=1,STOPPING=1" {
		t.Fatalf("notifications %q", got)
	}
	if len(synced) != 1 || synced[0].Points != 31 {
		t.Fatalf("OnSync %+v", synced)
	}
}

type notes struct {
	syncBuffer
}

func (n *notes) Notify(s string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.b.Len() > 0 {
		n.b.WriteString(",")
	}
	n.b.WriteString(s)
	return nil
}
