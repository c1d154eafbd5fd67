package snap

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTick measures one steady-state tick on real BTRFS with a real
// chain: one read-only snapshot and its info, one retention delete, one
// transaction of two blocks (synchronous=FULL). cpu-ns/tick is this
// process's user+system CPU (the snapshot's transaction commit runs in the
// calling thread and is included); the kernel's cleaner thread, which
// reclaims deleted snapshots later, is not.
func BenchmarkTick(b *testing.B) {
	e := newFSEnv(b)
	e.cfg.Policy.Keep = 10 * time.Second
	clk := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	d := e.deps()
	d.Now = func() time.Time { return clk }
	d, err := d.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	r, err := newRunner(d, e.cfg, true)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	// Fill the keep window so every measured tick also deletes one.
	for range 10 {
		if res := r.tick(ctx, clk, nil); res.Err != nil {
			b.Fatal(res.Err)
		}
		clk = clk.Add(time.Second)
	}
	cpu0 := cpuTime(b)
	for b.Loop() {
		res := r.tick(ctx, clk, nil)
		if res.Err != nil || len(res.Created) != 1 || len(res.Deleted) != 1 {
			b.Fatalf("tick: %+v", res)
		}
		clk = clk.Add(time.Second)
	}
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/tick")
}
