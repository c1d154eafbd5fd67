package chain

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Benchmarks (go test -run '^$' -bench . ./pkg/chain). The 10,000,000-block
// cases take several minutes to generate and ~5 GB of disk, so they run
// only with GHOSTBRIDGE_BENCH_BIG=1; the chains are generated once per
// process, in a temporary directory removed when the process ends.

const bigEnv = "GHOSTBRIDGE_BENCH_BIG"

func TestMain(m *testing.M) {
	code := m.Run()
	fixtures.Lock()
	if fixtures.dir != "" {
		for _, f := range fixtures.m {
			f.store.Close()
		}
		os.RemoveAll(fixtures.dir)
	}
	fixtures.Unlock()
	os.Exit(code)
}

// genChain writes n blocks (after genesis) into a new database at path, in
// large transactions, as `snap run` would over n/2 seconds with one source
// and a one-minute retention: a snapshot created every second and, after
// the first minute, the one from a minute before deleted.
func genChain(tb testing.TB, path string, n int) *Store {
	tb.Helper()
	ctx := context.Background()
	s, err := Open(ctx, path, Options{Create: true})
	if err != nil {
		tb.Fatal(err)
	}
	appendSnapshots(tb, s, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), n)
	return s
}

func appendSnapshots(tb testing.TB, s *Store, base time.Time, n int) {
	tb.Helper()
	const batch = 10000
	evs := make([]Event, 0, batch)
	snap := func(tick int) SnapshotPayload {
		t := base.Add(time.Duration(tick) * time.Second)
		return SnapshotPayload{
			Source: "root", SourcePath: "/", Snapshot: "/.snapshots/ghostbridge/root/" + t.Format("20060102T150405.000Z"),
			UUID: fmt.Sprintf("5f0c8a36-2a8e-4a4e-9d5c-%012d", tick), ParentUUID: "0e2a4b6c-8d0e-4f1a-9b3c-5d7e9f1a3b5c",
			Generation: uint64(1000 + tick), OTime: t,
		}
	}
	for i, tick := 0, 1; i < n; tick++ {
		t := base.Add(time.Duration(tick) * time.Second)
		evs = append(evs, Event{Time: t, Kind: KindSnapshotCreated, Payload: snap(tick)})
		i++
		if tick > 60 && i < n {
			p := snap(tick - 60)
			p.Reason = "retention"
			evs = append(evs, Event{Time: t.Add(time.Millisecond), Kind: KindSnapshotDeleted, Payload: p})
			i++
		}
		if len(evs) >= batch-1 || i == n {
			if _, err := s.Append(context.Background(), evs...); err != nil {
				tb.Fatal(err)
			}
			evs = evs[:0]
		}
	}
}

// fixture is a benchmark chain: n blocks after genesis, a checkpoint signed
// over them (written to the checkpoint file), then 60 more blocks.
type fixture struct {
	store *Store
	trust *Trust
	n     int
}

var fixtures struct {
	sync.Mutex
	dir string
	m   map[int]*fixture
}

func getFixture(b *testing.B, n int) *fixture {
	b.Helper()
	if n > 1_000_000 && os.Getenv(bigEnv) != "1" {
		b.Skipf("set %s=1 to run the %d-block case (minutes to generate, ~5 GB in %s)", bigEnv, n, os.TempDir())
	}
	fixtures.Lock()
	defer fixtures.Unlock()
	if f := fixtures.m[n]; f != nil {
		return f
	}
	if fixtures.dir == "" {
		dir, err := os.MkdirTemp("", "ghostbridge-bench-")
		if err != nil {
			b.Fatal(err)
		}
		fixtures.dir, fixtures.m = dir, map[int]*fixture{}
	}
	start := time.Now()
	s := genChain(b, filepath.Join(fixtures.dir, fmt.Sprintf("chain-%d.db", n)), n)
	gen := time.Since(start)
	skey, vkey, err := GenerateKey("bench")
	if err != nil {
		b.Fatal(err)
	}
	signer, err := NewSigner(skey)
	if err != nil {
		b.Fatal(err)
	}
	verifier, err := NewVerifier(vkey)
	if err != nil {
		b.Fatal(err)
	}
	cpFile := filepath.Join(fixtures.dir, fmt.Sprintf("checkpoint-%d", n))
	ctx := context.Background()
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: signer, File: cpFile}); err != nil {
		b.Fatal(err)
	}
	head, err := s.Head(ctx)
	if err != nil {
		b.Fatal(err)
	}
	appendSnapshots(b, s, head.Time.Add(time.Second), 60)
	msg, err := os.ReadFile(cpFile)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d blocks in %v", n, gen.Round(time.Second))
	f := &fixture{store: s, trust: &Trust{Checkpoint: msg, Verifier: verifier}, n: n}
	fixtures.m[n] = f
	return f
}

func BenchmarkVerify1M(b *testing.B) {
	f := getFixture(b, 1_000_000)
	total := float64(f.n + 61)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts VerifyOptions
	}{
		{"workers=1", VerifyOptions{Workers: 1}},
		{"workers=2", VerifyOptions{Workers: 2}},
		{"workers=4", VerifyOptions{Workers: 4}},
		{"workers=2/trust", VerifyOptions{Workers: 2, Trust: f.trust}},
		// The chain checks alone, without the tree's: what the tree check costs.
		{"workers=2/no-tree", VerifyOptions{Workers: 2, skipTree: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cpu := cpuTime()
			for b.Loop() {
				res, err := f.store.Verify(ctx, tc.opts)
				if err != nil || !res.OK {
					b.Fatal(res, err)
				}
			}
			b.ReportMetric(total*float64(b.N)/b.Elapsed().Seconds(), "blocks/s")
			b.ReportMetric(float64(cpuTime()-cpu)/(total*float64(b.N)), "cpu-ns/block")
		})
	}
}

// cpuTime is the CPU time the process has used: on a machine shared with
// other work, CPU per block says more than blocks per second (2 cores give
// at most 2e9/cpu-ns-per-block blocks/s).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerifyIncremental verifies from a checkpoint 60 blocks behind
// the head, on chains of 1M and 10M blocks: the cost must not grow.
func BenchmarkVerifyIncremental(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("blocks=%dM", n/1_000_000), func(b *testing.B) {
			f := getFixture(b, n)
			for b.Loop() {
				res, err := f.store.Verify(ctx, VerifyOptions{Trust: f.trust, Incremental: true})
				if err != nil || !res.OK || res.Checked != 61 {
					b.Fatal(res, err)
				}
			}
		})
	}
}

func BenchmarkProve(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("blocks=%dM", n/1_000_000), func(b *testing.B) {
			f := getFixture(b, n)
			rng := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				if _, err := f.store.Prove(ctx, rng.Uint64N(uint64(f.n))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppend appends one block per transaction (synchronous=FULL, as
// snap run does) with and without the Merkle tree, on two chains of
// 100,000 blocks. The sub-benchmarks run one after the other; "alternating"
// interleaves the two appends so both see the same disk and load, and
// reports each one's time and their ratio.
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	stores := map[bool]*Store{}
	for _, tree := range []bool{true, false} {
		s := genChain(b, filepath.Join(dir, fmt.Sprintf("tree-%v.db", tree)), 100_000)
		s.noTree = !tree
		b.Cleanup(func() { s.Close() })
		stores[tree] = s
	}
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	appendOne := func(b *testing.B, s *Store) time.Duration {
		at = at.Add(time.Second)
		start := time.Now()
		if _, err := s.Append(ctx, snapEvent(KindSnapshotCreated, at, at.Format("20060102T150405.000Z"))); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for _, tree := range []bool{true, false} {
		b.Run(fmt.Sprintf("tree=%v", tree), func(b *testing.B) {
			for b.Loop() {
				appendOne(b, stores[tree])
			}
		})
	}
	b.Run("alternating", func(b *testing.B) {
		var with, without time.Duration
		for b.Loop() {
			with += appendOne(b, stores[true])
			without += appendOne(b, stores[false])
		}
		b.ReportMetric(float64(with.Nanoseconds())/float64(b.N), "ns/append-with-tree")
		b.ReportMetric(float64(without.Nanoseconds())/float64(b.N), "ns/append-without")
		b.ReportMetric(float64(with)/float64(without), "ratio")
	})
}
