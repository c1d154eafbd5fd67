package vector

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// BenchmarkCatchUp100k measures a sync of a 100,000-block backlog into the
// stand-in over real gRPC on localhost, end to end: chain reads, vectors,
// payloads, upserts with wait=true, cursor commits (synchronous=FULL).
// The figure is points/s.
//
//	go test ./pkg/vector -run '^$' -bench CatchUp -benchtime 3x
func BenchmarkCatchUp100k(b *testing.B) {
	const n = 100_000
	e := newEnv(b, n-1, qdranttest.Options{})
	e.cfg.Batch = DefaultBatch
	e.cfg.Parallel = DefaultParallel
	b.ResetTimer()
	var points int
	for i := 0; b.Loop(); i++ {
		cfg := e.cfg
		cfg.Collection = fmt.Sprintf("bench-%d", i)
		res, err := Sync(b.Context(), e.deps, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if res.Points != n {
			b.Fatalf("synced %d points, want %d", res.Points, n)
		}
		points += res.Points
	}
	b.ReportMetric(float64(points)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkSteadyState is the 1 Hz case: each iteration appends one block
// and runs one drain (what each tick of `vector sync` does), so ns/op is
// the time from a block's append to its acknowledged, committed point; the
// lag an operator sees is at most the interval plus that. The heap metrics
// are the live heap before and after the run, with the stand-in's stored
// points dropped every 1,000 blocks so only the client side counts (run
// with -benchtime 10000x to check it stays flat over 10,000 blocks).
//
//	go test ./pkg/vector -run '^$' -bench SteadyState -benchtime 10000x
func BenchmarkSteadyState(b *testing.B) {
	e := newEnv(b, 10, qdranttest.Options{})
	s := newSyncer(e.deps, e.cfg)
	if _, err := s.ensure(b.Context()); err != nil {
		b.Fatal(err)
	}
	if _, err := s.drain(b.Context(), nil); err != nil {
		b.Fatal(err)
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	i := 10
	for b.Loop() {
		appendVaried(b, e.chain, i, 1)
		i++
		res, err := s.drain(b.Context(), nil)
		if err != nil || res.Points != 1 {
			b.Fatalf("drain %+v %v", res, err)
		}
		if i%1000 == 0 {
			e.srv.ClearPoints(e.cfg.Collection)
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(before.HeapInuse)/(1<<20), "heap-before-MiB")
	b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-after-MiB")
}
