package snap

import (
	"testing"
	"time"
)

// TestTickTimings: a tick reports one create time per snapshot it took and
// one delete time per snapshot retention deleted, on a real BTRFS.
func TestTickTimings(t *testing.T) {
	e := newFSEnv(t)
	e.cfg.Policy = Policy{Keep: time.Second}
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	_, first := e.once(t, t0)
	if len(first.Created) != 1 || len(first.CreateTimes) != 1 || len(first.DeleteTimes) != 0 {
		t.Fatalf("first tick: %d created, create times %v, delete times %v; want 1, 1, 0",
			len(first.Created), first.CreateTimes, first.DeleteTimes)
	}
	_, second := e.once(t, t0.Add(time.Minute))
	if len(second.Created) != 1 || len(second.Deleted) != 1 {
		t.Fatalf("second tick: %d created, %d deleted; want 1, 1", len(second.Created), len(second.Deleted))
	}
	if len(second.CreateTimes) != 1 || len(second.DeleteTimes) != 1 {
		t.Fatalf("second tick: create times %v, delete times %v; want one each", second.CreateTimes, second.DeleteTimes)
	}
	for _, d := range append(second.CreateTimes, second.DeleteTimes...) {
		if d <= 0 {
			t.Errorf("filesystem time %v, want > 0", d)
		}
	}
}
