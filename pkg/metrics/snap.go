package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
)

// SnapOptions configure the snapshot loop's metrics.
type SnapOptions struct {
	// Interval is the configured tick interval, exported as
	// ghostbridge_snap_interval_seconds so dashboards can compare the
	// tick rate with it.
	Interval time.Duration
	// Checkpoints registers the last-checkpoint gauges; leave it false
	// when no signing key is configured, so no checkpoint is not
	// mistaken for an ancient one.
	Checkpoints bool
	// Now is the clock head age is computed with; nil means time.Now.
	Now func() time.Time
}

// Snap holds the metrics of `snap run`. Its methods are safe for
// concurrent use; scrapes read them from the HTTP server's goroutines.
type Snap struct {
	now func() time.Time

	ticks         prometheus.Counter
	tickErrors    prometheus.Counter
	missed        prometheus.Counter
	tickDuration  prometheus.Histogram
	createSeconds prometheus.Histogram
	deleteSeconds prometheus.Histogram
	created       prometheus.Counter
	deleted       prometheus.Counter
	vanished      prometheus.Counter
	live          prometheus.Gauge
	height        prometheus.Gauge
	headTime      prometheus.Gauge
	cpHeight      prometheus.Gauge
	cpTime        prometheus.Gauge

	mu      sync.Mutex
	head    chain.Block // newest block seen; zero until SetHead
	hasHead bool
	nLive   int
}

func metricOpts(subsystem, name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help}
}

func counter(subsystem, name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts(metricOpts(subsystem, name, help)))
}

func gauge(subsystem, name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts(metricOpts(subsystem, name, help)))
}

func histogram(subsystem, name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets,
	})
}

// NewSnap creates the snapshot loop's metrics and registers them on reg.
// Register once per registry: a second NewSnap on the same registry
// panics, as any duplicate registration does.
func NewSnap(reg prometheus.Registerer, opts SnapOptions) *Snap {
	m := &Snap{
		now:           opts.Now,
		ticks:         counter("snap", "ticks_total", "Ticks the snapshot loop ran."),
		tickErrors:    counter("snap", "tick_errors_total", "Ticks that ended with a non-fatal error (a source not snapshotted, a deletion refused, the chain not written); the log says which."),
		missed:        counter("snap", "ticks_missed_total", "Tick boundaries skipped because a tick overran or the chain could not be written."),
		tickDuration:  histogram("snap", "tick_duration_seconds", "Time one tick took: snapshots, retention and the chain transaction.", tickBuckets),
		createSeconds: histogram("snap", "snapshot_create_duration_seconds", "Time the filesystem took to create one read-only snapshot.", fsBuckets),
		deleteSeconds: histogram("snap", "snapshot_delete_duration_seconds", "Time the filesystem took to delete one snapshot retention removed.", fsBuckets),
		created:       counter("snap", "snapshots_created_total", "Snapshots created and recorded in the chain."),
		deleted:       counter("snap", "snapshots_deleted_total", "Snapshots deleted by retention and recorded in the chain."),
		vanished:      counter("snap", "snapshots_vanished_total", "Recorded snapshots found gone from disk and recorded as vanished."),
		live:          gauge("snap", "snapshots_live", "Snapshots the chain records as live (what 'snap list' lists)."),
		height:        gauge("chain", "height", "Height of the chain's newest block."),
		headTime:      gauge("chain", "head_timestamp_seconds", "Time of the chain's newest block, in Unix seconds."),
		cpHeight:      gauge("chain", "checkpoint_height", "Height of the newest block covered by the last signed checkpoint (its size minus one)."),
		cpTime:        gauge("chain", "checkpoint_timestamp_seconds", "When the last checkpoint was signed, in Unix seconds."),
	}
	if m.now == nil {
		m.now = time.Now
	}
	interval := gauge("snap", "interval_seconds", "The configured time between ticks.")
	interval.Set(opts.Interval.Seconds())
	age := headAgeCollector{m: m, desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "chain", "head_age_seconds"),
		"Seconds since the chain's newest block, computed when scraped; absent until the head is known.", nil, nil)}
	reg.MustRegister(m.ticks, m.tickErrors, m.missed, m.tickDuration, m.createSeconds, m.deleteSeconds,
		m.created, m.deleted, m.vanished, m.live, m.height, m.headTime, age, interval)
	if opts.Checkpoints {
		reg.MustRegister(m.cpHeight, m.cpTime)
	}
	return m
}

// headAge is now minus the head block's time; ok is false before any
// head is known.
func (m *Snap) headAge() (age float64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.hasHead {
		return 0, false
	}
	return m.now().Sub(m.head.Time).Seconds(), true
}

// headAgeCollector exposes the head age computed at each scrape, and no
// series at all before the head is known: an age of 0 would read as "a
// block was just written", and an alert on a large age must not fire
// on a process still starting up either (absent() covers that case).
type headAgeCollector struct {
	m    *Snap
	desc *prometheus.Desc
}

func (c headAgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c headAgeCollector) Collect(ch chan<- prometheus.Metric) {
	if age, ok := c.m.headAge(); ok {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, age)
	}
}

// SetHead records the chain's newest block. An older block than the one
// already recorded is ignored, so the callbacks can report in any order.
func (m *Snap) SetHead(b chain.Block) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hasHead && b.Height < m.head.Height {
		return
	}
	m.head, m.hasHead = b, true
	m.height.Set(float64(b.Height))
	m.headTime.Set(unixSeconds(b.Time))
}

// SetLive sets the number of live snapshots (read from the chain at
// start; ObserveTick keeps it in step after that).
func (m *Snap) SetLive(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nLive = n
	m.live.Set(float64(n))
}

// SetCheckpoint records the last signed checkpoint: the height of the
// newest block it covers and when it was signed.
func (m *Snap) SetCheckpoint(height uint64, signed time.Time) {
	m.cpHeight.Set(float64(height))
	m.cpTime.Set(unixSeconds(signed))
}

// ObserveTick counts one tick. The live count moves by the blocks the
// tick recorded (created adds one, deleted and vanished remove one), as
// the chain's live index does, and the head moves to the newest of them.
func (m *Snap) ObserveTick(t snap.TickResult) {
	m.ticks.Inc()
	if t.Err != nil {
		m.tickErrors.Inc()
	}
	m.missed.Add(float64(t.Missed))
	m.tickDuration.Observe(t.Duration.Seconds())
	for _, d := range t.CreateTimes {
		m.createSeconds.Observe(d.Seconds())
	}
	for _, d := range t.DeleteTimes {
		m.deleteSeconds.Observe(d.Seconds())
	}
	m.created.Add(float64(len(t.Created)))
	m.deleted.Add(float64(len(t.Deleted)))
	m.vanished.Add(float64(len(t.Vanished)))

	var newest *chain.Block
	for _, set := range [][]chain.Block{t.Created, t.Deleted, t.Vanished} {
		for i := range set {
			if newest == nil || set[i].Height > newest.Height {
				newest = &set[i]
			}
		}
	}
	m.mu.Lock()
	m.nLive += len(t.Created) - len(t.Deleted) - len(t.Vanished)
	m.live.Set(float64(m.nLive))
	m.mu.Unlock()
	if newest != nil {
		m.SetHead(*newest)
	}
}

// unixSeconds is t as fractional Unix seconds, the unit Prometheus's
// time() uses.
func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
