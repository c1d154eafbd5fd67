package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// genChain writes n snapshot blocks after genesis, in large transactions.
func genChain(tb testing.TB, path string, n int) {
	tb.Helper()
	ctx := context.Background()
	s, err := chain.Open(ctx, path, chain.Options{Create: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 20000
	evs := make([]chain.Event, 0, batch)
	for i := 1; i <= n; i++ {
		t := base.Add(time.Duration(i) * time.Second)
		evs = append(evs, chain.Event{Time: t, Kind: chain.KindSnapshotCreated, Payload: chain.SnapshotPayload{
			Source: "root", SourcePath: "/", Snapshot: "/.snapshots/ghostbridge/root/" + t.Format("20060102T150405.000Z"),
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
}

// BenchmarkChainVerify1M runs `ghostbridge chain verify --full` on a
// 1,000,000-block chain, and beside it the sqlite3 CLI merely reading the
// same columns of the same table (no hashing): the floor a C program sets
// for the scan. Each figure is the median over the iterations (-benchtime
// 3x: three), so one run disturbed by other work on a shared machine does
// not decide it; verify-cpu-ns/block (user and system CPU of the command)
// says what two idle cores would give: 2e9 / it blocks a second.
func BenchmarkChainVerify1M(b *testing.B) {
	const n = 1_000_000
	db := filepath.Join(b.TempDir(), "chain.db")
	genChain(b, db, n)
	bin := ghostbridge(b)
	if _, err := exec.LookPath("sqlite3"); err != nil {
		b.Fatal("the sqlite3 CLI is needed for the baseline: apt-get install sqlite3")
	}
	var ours, scan, ratio, cpu []float64
	for b.Loop() {
		start := time.Now()
		verify := exec.Command(bin, "--db", db, "chain", "verify", "--full")
		if out, err := verify.CombinedOutput(); err != nil {
			b.Fatalf("chain verify: %v\n%s", err, out)
		}
		took := time.Since(start)
		start = time.Now()
		sqlite := exec.Command("sqlite3", "-readonly", db, "SELECT height, time_ns, kind, payload, prev, hash FROM blocks ORDER BY height")
		if err := sqlite.Run(); err != nil {
			b.Fatalf("sqlite3 scan: %v", err)
		}
		cli := time.Since(start)
		ours = append(ours, float64(n+1)/took.Seconds())
		scan = append(scan, float64(n+1)/cli.Seconds())
		ratio = append(ratio, cli.Seconds()/took.Seconds())
		used := verify.ProcessState.UserTime() + verify.ProcessState.SystemTime()
		cpu = append(cpu, float64(used.Nanoseconds())/float64(n+1))
	}
	b.ReportMetric(median(ours), "verify-blocks/s")
	b.ReportMetric(median(scan), "sqlite3-scan-rows/s")
	b.ReportMetric(median(ratio), "x-sqlite3-scan-speed")
	b.ReportMetric(median(cpu), "verify-cpu-ns/block")
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}
