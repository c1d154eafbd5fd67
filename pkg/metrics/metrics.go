// Package metrics exposes the state of ghostbridge's long-running loops
// (snap run, vector sync) to Prometheus: a private registry with the Go
// runtime and process collectors, the loops' metrics, and an HTTP server
// for /metrics.
//
// The command layer feeds the metrics from the loops' callbacks
// (snap.RunOptions.OnTick, vector.RunOptions.OnDrain, ...): this package
// never drives a loop, never reads flags, environment or configuration,
// never prints and never exits. The logic packages do not import it, so a
// loop works the same with or without metrics. It never uses the global
// Prometheus registry: two registries in one process (tests) do not
// collide.
package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric this package defines.
const Namespace = "ghostbridge"

// NewRegistry returns a registry holding the Go runtime collector
// (go_*), the process collector (process_*: CPU, RSS, open files) and
// ghostbridge_build_info{version,goversion} = 1.
func NewRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "build_info",
		Help:        "Always 1; the labels say which ghostbridge build is running.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info,
	)
	return reg
}

// Buckets of the tick duration histogram: a tick snapshots a few
// subvolumes and writes one SQLite transaction, normally a few
// milliseconds; the upper buckets catch the overruns of a 1 s interval.
var tickBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5}

// Buckets of the per-snapshot create and delete latencies: one ioctl
// each, sub-millisecond when idle, longer while btrfs commits.
var fsBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// Buckets of a vector drain: from an idle check (one SQLite read) to a
// catch-up of many batches.
var drainBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300}
