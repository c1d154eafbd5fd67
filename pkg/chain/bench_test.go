package chain

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// genChain writes n blocks (after genesis) of realistic snapshot events
// into a new database at path, in large transactions.
func genChain(tb testing.TB, path string, n int) *Store {
	tb.Helper()
	ctx := context.Background()
	s, err := Open(ctx, path, Options{Create: true})
	if err != nil {
		tb.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 10000
	evs := make([]Event, 0, batch)
	for i := 1; i <= n; i++ {
		t := base.Add(time.Duration(i) * time.Second)
		snap := fmt.Sprintf("/.snapshots/ghostbridge/root/%s", t.Format("20060102T150405.000Z"))
		evs = append(evs, Event{Time: t, Kind: KindSnapshotCreated, Payload: SnapshotPayload{
			Source: "root", SourcePath: "/", Snapshot: snap,
			UUID: "5f0c8a36-2a8e-4a4e-9d5c-1f7c2b3a4d5e", ParentUUID: "0e2a4b6c-8d0e-4f1a-9b3c-5d7e9f1a3b5c",
			Generation: uint64(1000 + i), OTime: t,
		}})
		if len(evs) == batch || i == n {
			if _, err := s.Append(ctx, evs...); err != nil {
				tb.Fatal(err)
			}
			evs = evs[:0]
		}
	}
	return s
}

var (
	benchOnce  sync.Once
	benchStore *Store
)

func BenchmarkVerify1M(b *testing.B) {
	benchOnce.Do(func() {
		dir, err := filepath.Abs(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		benchStore = genChain(b, filepath.Join(dir, "chain.db"), 1_000_000)
	})
	ctx := context.Background()
	for _, w := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			for b.Loop() {
				res, err := benchStore.Verify(ctx, VerifyOptions{Workers: w})
				if err != nil || !res.OK {
					b.Fatal(res, err)
				}
			}
			b.ReportMetric(float64(1_000_001*b.N)/b.Elapsed().Seconds(), "blocks/s")
		})
	}
}
