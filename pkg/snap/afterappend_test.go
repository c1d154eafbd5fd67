package snap

import (
	"context"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// TestAfterAppend: the hook sees the newest block of each tick that
// recorded blocks, after it is committed.
func TestAfterAppend(t *testing.T) {
	e := newFSEnv(t)
	var heads []chain.Block
	var atCall []chain.Block
	d := e.deps()
	d.AfterAppend = func(ctx context.Context, head chain.Block) {
		heads = append(heads, head)
		stored, err := e.store.Head(ctx)
		if err != nil {
			t.Error(err)
		}
		atCall = append(atCall, stored)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 2 {
		d.Now = func() time.Time { return now.Add(time.Duration(i) * time.Second) }
		if err := Run(t.Context(), d, e.cfg, RunOptions{Once: true}); err != nil {
			t.Fatal(err)
		}
	}
	if len(heads) != 2 {
		t.Fatalf("AfterAppend called %d times, want once per tick (2)", len(heads))
	}
	for i, h := range heads {
		if h.Height != uint64(i+1) || h.Kind != chain.KindSnapshotCreated || atCall[i].Hash != h.Hash {
			t.Errorf("call %d: head %d %s (stored head %d); want the committed snapshot block at height %d", i, h.Height, h.Kind, atCall[i].Height, i+1)
		}
	}
}
