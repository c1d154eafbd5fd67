package vector

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// TestLostCollectionRefilled: a collection deleted behind the sync's back
// is recreated and refilled from height 0, not from the old cursor, both
// when it is gone at start and when it vanishes in the middle of a drain.
func TestLostCollectionRefilled(t *testing.T) {
	e := newEnv(t, 100, qdranttest.Options{})
	e.cfg.SkipPoison = true // a lost collection must never look like poison
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	e.srv.DeleteCollection("events")
	appendVaried(t, e.chain, 100, 20)
	res, err := Sync(t.Context(), e.deps, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(t)
	if res.From != 0 || res.Points != 121 || len(res.Skipped) != 0 {
		t.Fatalf("after loss at start: %+v", res)
	}

	// Vanishes after the first upsert of the next drain.
	appendVaried(t, e.chain, 120, 400)
	deleted := false
	e.srv.AfterUpsert(func(string, []uint64) {
		if !deleted {
			deleted = true
			e.srv.DeleteCollection("events")
		}
	})
	res, err = Sync(t.Context(), e.deps, e.cfg)
	e.srv.AfterUpsert(nil)
	if err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(t)
	if len(res.Skipped) != 0 || !deleted {
		t.Fatalf("after loss mid-drain: %+v (deleted %v)", res, deleted)
	}
	if !strings.Contains(e.logs.String(), "qdrant collection missing") {
		t.Errorf("loss not logged:\n%s", e.logs.String())
	}
}

// TestRestoredFromOlderCopy: Qdrant restored from a copy that lacks the
// last blocks (and one whose last point is from another chain) is
// re-synced from the last block it really holds.
func TestRestoredFromOlderCopy(t *testing.T) {
	e := newEnv(t, 300, qdranttest.Options{})
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	var lost []uint64
	for h := uint64(251); h <= 300; h++ {
		lost = append(lost, h)
	}
	e.srv.DeletePoints("events", lost...)
	appendVaried(t, e.chain, 300, 10)
	res, err := Sync(t.Context(), e.deps, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.checkExactlyOnce(t)
	if res.From != 251 || res.Points != 60 {
		t.Fatalf("resync %+v, want 60 points from 251", res)
	}
	if !strings.Contains(e.logs.String(), "cursor=300 height=250") {
		t.Errorf("resume not logged:\n%s", e.logs.String())
	}

	// The point at the cursor exists but carries another hash.
	_, err = e.client.SetPayload(t.Context(), &qdrant.SetPayloadPoints{
		CollectionName: "events", Wait: qdrant.PtrOf(true),
		Payload:        map[string]*qdrant.Value{"hash": qdrant.NewValueString("00")},
		PointsSelector: qdrant.NewPointsSelector(qdrant.NewIDNum(310)),
	})
	if status.Code(err) == codes.Unimplemented {
		e.srv.DeletePoints("events", 310) // the stand-in has no SetPayload
	} else if err != nil {
		t.Fatal(err)
	}
	res, err = Sync(t.Context(), e.deps, e.cfg)
	if err != nil || res.Points != 1 || res.From != 310 {
		t.Fatalf("resync of a foreign point: %+v %v", res, err)
	}
	e.checkExactlyOnce(t)
}

// TestErrorClasses: only InvalidArgument on a one-point upsert, with the
// collection still as configured, is poison; the rest is retried, re-ensured
// or fatal, even with SkipPoison.
func TestErrorClasses(t *testing.T) {
	fatal := func(code codes.Code) func(*testing.T, *env, error) {
		return func(t *testing.T, e *env, err error) {
			var re *RefusedError
			var pe *PoisonError
			if !errors.As(err, &re) || status.Code(err) != code || errors.As(err, &pe) || strings.Contains(err.Error(), "skip-poison") {
				t.Fatalf("err %v, want a refusal with %s", err, code)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		opts   qdranttest.Options
		key    string
		inject func(*env)
		check  func(*testing.T, *env, error)
	}{
		{"internal and unknown retried", qdranttest.Options{}, "", func(e *env) {
			e.srv.FailCalls("Upsert", status.Error(codes.Internal, "x"), status.Error(codes.Unknown, "y"))
		}, func(t *testing.T, e *env, err error) {
			if err != nil {
				t.Fatal(err)
			}
			e.checkExactlyOnce(t)
		}},
		{"wrong key", qdranttest.Options{APIKey: "right"}, "wrong", func(*env) {}, fatal(codes.Unauthenticated)},
		{"read-only key", qdranttest.Options{APIKey: "right", ReadOnlyAPIKey: "ro"}, "ro", func(e *env) {
			e.srv.CreateCollection("events", DefaultDim, qdrant.Distance_Cosine)
		}, fatal(codes.PermissionDenied)},
		{"failed precondition", qdranttest.Options{}, "", func(e *env) {
			e.srv.FailCalls("Upsert", status.Error(codes.FailedPrecondition, "z"))
		}, fatal(codes.FailedPrecondition)},
		{"collection replaced with another size", qdranttest.Options{}, "", func(e *env) {
			done := false
			e.srv.AfterUpsert(func(string, []uint64) {
				if !done {
					done = true
					e.srv.DeleteCollection("events")
					e.srv.CreateCollection("events", 32, qdrant.Distance_Cosine)
				}
			})
		}, func(t *testing.T, e *env, err error) {
			if !errors.Is(err, ErrCollectionMismatch) {
				t.Fatalf("err %v, want mismatch", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 200, tc.opts)
			e.cfg.SkipPoison = true
			d := e.deps
			if tc.key != "" || tc.opts.APIKey != "" {
				cl, err := Connect(Conn{Host: e.srv.Host(), Port: e.srv.Port(), APIKey: tc.key})
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				d.Qdrant = cl
			}
			tc.inject(e)
			res, err := Sync(t.Context(), d, e.cfg)
			tc.check(t, e, err)
			if len(res.Skipped) != 0 {
				t.Fatalf("skipped %v", res.Skipped)
			}
			if cs, _ := e.chain.Cursors(t.Context(), skippedPrefix("events")); len(cs) != 0 {
				t.Fatalf("recorded as poison: %v", cs)
			}
		})
	}
}

// TestSyncAndReindexExclusive: while one caller holds the vector lock (a
// running sync), a reindex or a second sync fails at once naming the
// holder; after it stops, reindex runs.
func TestSyncAndReindexExclusive(t *testing.T) {
	e := newEnv(t, 50, qdranttest.Options{})
	n := &notes{}
	d := e.deps
	d.Notifier = n
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	synced := make(chan struct{}, 1)
	go func() {
		done <- Run(ctx, d, e.cfg, RunOptions{OnSync: func(SyncResult) {
			select {
			case synced <- struct{}{}:
			default:
			}
		}})
	}()
	<-synced
	_, err := Reindex(t.Context(), e.deps, e.cfg, ReindexOptions{})
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.PID != os.Getpid() || !strings.Contains(err.Error(), "cannot run at the same time") {
		t.Fatalf("reindex beside a sync: %v", err)
	}
	if _, err := Sync(t.Context(), e.deps, e.cfg); !errors.Is(err, ErrLocked) {
		t.Fatalf("second sync: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := Reindex(t.Context(), e.deps, e.cfg, ReindexOptions{}); err != nil {
		t.Fatalf("reindex after the sync stopped: %v", err)
	}
	e.checkExactlyOnce(t)
}

// TestReindexTwiceInOneInstant: two reindexes at the same clock reading
// get distinct targets; the second deletes the first's collection, never
// the one the alias serves; the target's cursors are cleaned up.
func TestReindexTwiceInOneInstant(t *testing.T) {
	e := newEnv(t, 80, qdranttest.Options{})
	clock := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	e.deps.Now = func() time.Time { return clock }
	r1, err := Reindex(t.Context(), e.deps, e.cfg, ReindexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Reindex(t.Context(), e.deps, e.cfg, ReindexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Target == r2.Target || r2.Previous != r1.Target || !r2.PreviousDeleted {
		t.Fatalf("reindexes %+v then %+v", r1, r2)
	}
	if got := e.srv.Aliases()["events"]; got != r2.Target {
		t.Fatalf("alias serves %q, want %q", got, r2.Target)
	}
	if _, ok := e.srv.IDs(r2.Target); !ok {
		t.Fatal("live collection deleted")
	}
	e.checkExactlyOnce(t)
	cs, err := e.chain.Cursors(t.Context(), "vector/events-")
	if err != nil || len(cs) != 0 {
		t.Fatalf("target cursors left: %v %v", cs, err)
	}
}

// TestEnsureRefusesAliasName: when creating the collection fails because an
// alias has its name, ensure reports it rather than taking it as created.
func TestEnsureRefusesAliasName(t *testing.T) {
	e := newEnv(t, 5, qdranttest.Options{})
	e.srv.CreateCollection("other", DefaultDim, qdrant.Distance_Cosine)
	if err := e.client.CreateAlias(t.Context(), "events", "other"); err != nil {
		t.Fatal(err)
	}
	// Qdrant answers the first Get NotFound, as if the alias appeared
	// between the get and the create.
	e.srv.FailCalls("Get", status.Error(codes.NotFound, "Not found: Collection `events` doesn't exist!"))
	_, err := Sync(t.Context(), e.deps, e.cfg)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "Alias with the same name already exists") {
		t.Fatalf("err %v", err)
	}
}

// TestSyncWaitsForApply: sync upserts with wait=true, so every point is
// applied when the cursor moves; a wait=false upsert would still be queued
// (the stand-in applies those only after an hour).
func TestSyncWaitsForApply(t *testing.T) {
	e := newEnv(t, 150, qdranttest.Options{AsyncDelay: time.Hour})
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Pending(); n != 0 {
		t.Fatalf("%d upserts acknowledged but not applied", n)
	}
	e.checkExactlyOnce(t)
}

// TestStatusExactCountAndSkipped: status counts points exactly and lists
// blocks skipped as poison.
func TestStatusExactCountAndSkipped(t *testing.T) {
	e := newEnv(t, 60, qdranttest.Options{})
	e.srv.RejectPoint(17)
	e.srv.RejectPoint(5)
	e.cfg.SkipPoison = true
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	st, err := Status(t.Context(), e.deps, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Points != 59 || len(st.Skipped) != 2 || st.Skipped[0] != 5 || st.Skipped[1] != 17 {
		t.Fatalf("status %+v", st)
	}
}
