package vector

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// TestOnQdrantErrorCodes: every failed attempt is reported with its gRPC
// code, the client's retry-after error as ResourceExhausted, and a
// success is not reported.
func TestOnQdrantErrorCodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		s := newSyncer(Deps{}, Config{Collection: "c"})
		s.onError = func(op string, code codes.Code) { got = append(got, op+"/"+code.String()) }
		n := 0
		err := s.call(t.Context(), "upsert", func(context.Context) error {
			n++
			switch n {
			case 1:
				return fmt.Errorf("Upsert() failed: %w", &qdrant.QdrantResourceExhaustedError{Reason: "rate limit", RetryAfterS: 1})
			case 2:
				return fmt.Errorf("Upsert() failed: %w", status.Error(codes.Unavailable, "down"))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"upsert/ResourceExhausted", "upsert/Unavailable"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("reported %v, want %v", got, want)
		}
	})
}

// TestOnDrainWhenIdle: Run reports every drain through OnDrain, also the
// ones with nothing to send (OnSync is only called when the cursor
// moved), with the cursor and head; the first create of the collection
// reports NotFound from the get before it.
func TestOnDrainWhenIdle(t *testing.T) {
	e := newEnv(t, 5, qdranttest.Options{})
	e.cfg.Interval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mu sync.Mutex
	var drains []SyncResult
	var syncs int
	var errs []string
	err := Run(ctx, e.deps, e.cfg, RunOptions{
		OnSync: func(SyncResult) { mu.Lock(); syncs++; mu.Unlock() },
		OnDrain: func(r SyncResult) {
			mu.Lock()
			defer mu.Unlock()
			drains = append(drains, r)
			if len(drains) == 3 {
				cancel()
			}
		},
		OnQdrantError: func(op string, code codes.Code) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, op+"/"+code.String())
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(drains) < 3 || syncs != 1 {
		t.Fatalf("%d drains, %d syncs; want at least 3 drains and 1 sync", len(drains), syncs)
	}
	head := uint64(5)
	if d := drains[0]; d.Points != 6 || d.Cursor != head || d.Head != head {
		t.Errorf("first drain %+v, want 6 points, cursor and head %d", d, head)
	}
	for _, d := range drains[1:] {
		if d.Points != 0 || d.Cursor != head || d.Head != head {
			t.Errorf("idle drain %+v, want 0 points, cursor and head %d", d, head)
		}
	}
	if len(errs) == 0 || errs[0] != "get collection/NotFound" {
		t.Errorf("errors reported %v, want get collection/NotFound first", errs)
	}
}
