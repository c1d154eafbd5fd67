package metrics

import (
	"io"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
)

// BenchmarkObserveTick is what metrics add to each tick of the snapshot
// loop (two sources, one retention deletion).
//
//	go test ./pkg/metrics -run '^$' -bench ObserveTick
func BenchmarkObserveTick(b *testing.B) {
	m := NewSnap(NewRegistry("bench"), SnapOptions{Interval: time.Second})
	t0 := time.Now()
	tick := snap.TickResult{
		Created:     []chain.Block{{Height: 10, Time: t0}, {Height: 11, Time: t0}},
		Deleted:     []chain.Block{{Height: 12, Time: t0}},
		Duration:    3 * time.Millisecond,
		CreateTimes: []time.Duration{time.Millisecond, time.Millisecond},
		DeleteTimes: []time.Duration{time.Millisecond},
	}
	for b.Loop() {
		m.ObserveTick(tick)
	}
}

// BenchmarkScrape gathers and encodes the snap run registry as /metrics
// serves it (Go runtime and process collectors included).
//
//	go test ./pkg/metrics -run '^$' -bench Scrape
func BenchmarkScrape(b *testing.B) {
	reg := NewRegistry("bench")
	NewSnap(reg, SnapOptions{Interval: time.Second, Checkpoints: true})
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				b.Fatal(err)
			}
		}
	}
}
