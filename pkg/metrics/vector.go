package metrics

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/ghostbridge/ghostbridge/pkg/vector"
)

// VectorOptions configure the vector sync's metrics.
type VectorOptions struct {
	// Collection labels every vector metric (collection="...").
	Collection string
	// ChainHead, when set, reads the chain's head height when the lag is
	// scraped, so the lag keeps growing while a Qdrant outage holds the
	// loop inside a call. On error, or when nil, the head the loop last
	// saw is used.
	ChainHead func() (uint64, error)
}

// Vector holds the metrics of `vector sync`. Its methods are safe for
// concurrent use.
type Vector struct {
	chainHead func() (uint64, error)

	points  prometheus.Counter
	skipped prometheus.Counter
	drains  prometheus.Histogram
	qdrant  *prometheus.CounterVec

	mu       sync.Mutex
	cur      uint64
	synced   bool // the cursor exists (some block is in Qdrant)
	lastHead uint64
}

// NewVector creates the vector sync's metrics and registers them on reg.
func NewVector(reg prometheus.Registerer, opts VectorOptions) *Vector {
	labels := prometheus.Labels{"collection": opts.Collection}
	o := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: Namespace, Subsystem: "vector", Name: name, Help: help, ConstLabels: labels}
	}
	m := &Vector{
		chainHead: opts.ChainHead,
		points:    prometheus.NewCounter(prometheus.CounterOpts(o("points_upserted_total", "Points Qdrant acknowledged."))),
		skipped:   prometheus.NewCounter(prometheus.CounterOpts(o("blocks_skipped_total", "Blocks Qdrant rejected for good and the sync moved past (--skip-poison)."))),
		drains: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "vector", Name: "drain_duration_seconds", ConstLabels: labels,
			Help:    "Time one drain of pending blocks took (including retries while Qdrant was down).",
			Buckets: drainBuckets,
		}),
		qdrant: prometheus.NewCounterVec(prometheus.CounterOpts(o("qdrant_errors_total",
			"Qdrant calls that failed, by operation and gRPC code, retried or not.")), []string{"op", "code"}),
	}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "vector", name), help, nil, labels)
	}
	sc := syncCollector{m: m,
		cursor: desc("sync_cursor", "Height of the last block Qdrant acknowledged (the sync cursor); -1 before the first."),
		head:   desc("chain_height", "Height of the chain's newest block: read from the chain at each scrape, or as the sync last read it."),
		lag:    desc("sync_lag_blocks", "Blocks in the chain not yet in Qdrant, computed when scraped."),
	}
	reg.MustRegister(m.points, m.skipped, m.drains, m.qdrant, sc)
	return m
}

// syncState is one consistent reading of the cursor, the head and the
// lag, for one scrape: the head is read from the chain once, and all
// three series come from that one reading.
func (m *Vector) syncState() (cursor, head, lag float64) {
	m.mu.Lock()
	h, cur, synced := m.lastHead, m.cur, m.synced
	m.mu.Unlock()
	if m.chainHead != nil {
		if ch, err := m.chainHead(); err == nil {
			h = max(h, ch)
		}
	}
	head = float64(h)
	switch {
	case !synced:
		return -1, head, head + 1
	case h <= cur:
		return float64(cur), head, 0
	default:
		return float64(cur), head, float64(h - cur)
	}
}

// syncCollector exposes sync_cursor, chain_height and sync_lag_blocks
// from one syncState per scrape, so a scrape never shows a lag computed
// from another head than the chain_height beside it. Nothing is stored
// during a scrape: concurrent scrapes cannot race each other.
type syncCollector struct {
	m                 *Vector
	cursor, head, lag *prometheus.Desc
}

func (c syncCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.cursor
	ch <- c.head
	ch <- c.lag
}

func (c syncCollector) Collect(ch chan<- prometheus.Metric) {
	cursor, head, lag := c.m.syncState()
	ch <- prometheus.MustNewConstMetric(c.cursor, prometheus.GaugeValue, cursor)
	ch <- prometheus.MustNewConstMetric(c.head, prometheus.GaugeValue, head)
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lag)
}

// SetCursor records the sync cursor: the last height in Qdrant, ok false
// when nothing is synced yet.
func (m *Vector) SetCursor(height uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cur, m.synced = height, ok
}

// SetHead records the chain head the sync saw.
func (m *Vector) SetHead(height uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastHead = height
}

// ObserveBatch takes vector.RunOptions.OnBatch's progress: the cursor
// after an acknowledged window and the head.
func (m *Vector) ObserveBatch(cursor, head uint64) {
	m.SetCursor(cursor, true)
	m.SetHead(head)
}

// ObserveDrain takes vector.RunOptions.OnDrain's result: it counts the
// points and skipped blocks and records the cursor and head. A drain that
// sent nothing leaves the cursor as it was (the result's cursor is only
// meaningful when something moved or the cursor was read).
func (m *Vector) ObserveDrain(r vector.SyncResult) {
	m.drains.Observe(r.Duration.Seconds())
	m.points.Add(float64(r.Points - len(r.Skipped)))
	m.skipped.Add(float64(len(r.Skipped)))
	if r.Points > 0 {
		m.SetCursor(r.Cursor, true)
	}
	m.mu.Lock()
	m.lastHead = max(m.lastHead, r.Head)
	m.mu.Unlock()
}

// ObserveQdrantError counts a failed Qdrant call: vector.RunOptions'
// OnQdrantError. The operation becomes a label value with "_" for
// spaces ("get collection" -> get_collection).
func (m *Vector) ObserveQdrantError(op string, code codes.Code) {
	m.qdrant.WithLabelValues(strings.ReplaceAll(op, " ", "_"), code.String()).Inc()
}
