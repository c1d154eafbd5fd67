package main

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/metrics"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
	"github.com/ghostbridge/ghostbridge/pkg/vector"
)

// metricsListenFlag is the flag of `snap run` and `vector sync` that
// overrides snap.metrics_listen and vector.metrics_listen.
const metricsListenFlag = "metrics-listen"

const metricsListenUsage = "serve Prometheus metrics at http://`ADDR`/metrics (HOST:PORT with an explicit host, e.g. 127.0.0.1:9731; overrides %s)"

// listenProblem reports a bad metrics listen address as a config
// problem: named key, value, origin and what to write instead.
func listenProblem(key, addr string) []Problem {
	if addr == "" {
		return nil
	}
	err := metrics.CheckAddr(addr)
	var ae *metrics.AddrError
	if !errors.As(err, &ae) {
		return nil
	}
	return []Problem{{Key: key, Value: showValue(addr), Want: ae.Reason}}
}

// startMetrics opens the metrics listener on addr before the loop starts
// (a port in use fails the command before any work) and serves reg until
// stop is called. Serving errors are logged: losing metrics must not stop
// snapshots or the sync.
func (a *App) startMetrics(ctx context.Context, addr string, reg *prometheus.Registry) (stop func(), err error) {
	srv, err := metrics.Listen(addr, reg, a.log)
	if err != nil {
		return nil, err
	}
	a.log.Info("serving metrics", "addr", srv.Addr(), "url", "http://"+srv.Addr()+"/metrics")
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(sctx); err != nil {
			a.log.Error("metrics server stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// snapMetrics feeds `snap run`'s metrics from its callbacks. A nil
// *snapMetrics (no --metrics-listen) does nothing.
type snapMetrics struct {
	m   *metrics.Snap
	st  *chain.Store
	cp  *checkpointer // nil without a signing key
	app *App
}

// startSnapMetrics starts the metrics server when snap.metrics_listen is
// set; otherwise it returns nil and a no-op stop.
func (a *App) startSnapMetrics(ctx context.Context, st *chain.Store, cfg snap.Config, cp *checkpointer) (*snapMetrics, func(), error) {
	addr := a.conf.Config.Snap.MetricsListen
	if addr == "" {
		return nil, func() {}, nil
	}
	reg := metrics.NewRegistry(buildVersion().Version)
	sm := &snapMetrics{
		m:  metrics.NewSnap(reg, metrics.SnapOptions{Interval: cfg.Interval, Checkpoints: cp != nil, Now: a.Now}),
		st: st, cp: cp, app: a,
	}
	sm.checkpoint()
	stop, err := a.startMetrics(ctx, addr, reg)
	if err != nil {
		return nil, nil, err
	}
	return sm, stop, nil
}

// reconciled reads the head and the live snapshots once, after start-up
// reconciliation; ticks keep them in step from then on.
func (s *snapMetrics) reconciled(ctx context.Context) {
	if s == nil {
		return
	}
	head, err := s.st.Head(ctx)
	if err != nil {
		s.app.log.Warn("metrics: cannot read the chain head", "err", err)
	} else {
		s.m.SetHead(head)
	}
	live, err := s.st.Live(ctx)
	if err != nil {
		s.app.log.Warn("metrics: cannot read the live snapshots", "err", err)
		return
	}
	s.m.SetLive(len(live))
}

func (s *snapMetrics) tick(t snap.TickResult) {
	if s != nil {
		s.m.ObserveTick(t)
	}
}

// afterAppend wraps snap.Deps.AfterAppend: it runs next (the checkpoint
// signer) and then records the new head and the checkpoint it may have
// signed.
func (s *snapMetrics) afterAppend(next func(context.Context, chain.Block)) func(context.Context, chain.Block) {
	if s == nil {
		return next
	}
	return func(ctx context.Context, head chain.Block) {
		if next != nil {
			next(ctx, head)
		}
		s.m.SetHead(head)
		s.checkpoint()
	}
}

// checkpoint records the checkpointer's last checkpoint. A failed attempt
// is remembered there with no root hash and is not a checkpoint.
func (s *snapMetrics) checkpoint() {
	if s.cp == nil || s.cp.last.Root.IsZero() || s.cp.last.Size == 0 {
		return
	}
	s.m.SetCheckpoint(s.cp.last.Size-1, s.cp.last.Time)
}

// vectorMetrics feeds `vector sync`'s metrics from its callbacks. A nil
// *vectorMetrics (no --metrics-listen) does nothing.
type vectorMetrics struct {
	m      *metrics.Vector
	s      *vectorSession
	cursor string // the collection's cursor name in the chain database
	app    *App
	ctx    context.Context
}

// chainReadTimeout bounds the chain reads a scrape makes.
const chainReadTimeout = 2 * time.Second

// startVectorMetrics starts the metrics server when vector.metrics_listen
// is set; otherwise it returns nil and a no-op stop.
func (a *App) startVectorMetrics(ctx context.Context, s *vectorSession) (*vectorMetrics, func(), error) {
	addr := a.conf.Config.Vector.MetricsListen
	if addr == "" {
		return nil, func() {}, nil
	}
	reg := metrics.NewRegistry(buildVersion().Version)
	vecm := &vectorMetrics{s: s, cursor: vector.CursorName(s.cfg.Collection), app: a, ctx: context.WithoutCancel(ctx)}
	vecm.m = metrics.NewVector(reg, metrics.VectorOptions{
		Collection: s.cfg.Collection,
		// The lag keeps growing while a Qdrant outage holds the loop in
		// a call: the head is read from the chain once per scrape.
		ChainHead: func() (uint64, error) {
			rctx, cancel := context.WithTimeout(vecm.ctx, chainReadTimeout)
			defer cancel()
			b, err := s.st.Head(rctx)
			return b.Height, err
		},
	})
	vecm.readCursor()
	stop, err := a.startMetrics(ctx, addr, reg)
	if err != nil {
		return nil, nil, err
	}
	return vecm, stop, nil
}

// readCursor sets the cursor gauge from the chain database, where the
// sync keeps it (it can move back when Qdrant holds less than it said).
func (v *vectorMetrics) readCursor() {
	cur, ok, err := v.s.st.Cursor(v.ctx, v.cursor)
	if err != nil {
		v.app.log.Warn("metrics: cannot read the sync cursor", "err", err)
		return
	}
	v.m.SetCursor(cur, ok)
}

// runOptions adds the metrics callbacks to opts.
func (v *vectorMetrics) runOptions(opts vector.RunOptions) vector.RunOptions {
	if v == nil {
		return opts
	}
	onBatch, onDrain := opts.OnBatch, opts.OnDrain
	opts.OnBatch = func(cursor, head uint64) {
		v.m.ObserveBatch(cursor, head)
		if onBatch != nil {
			onBatch(cursor, head)
		}
	}
	opts.OnDrain = func(r vector.SyncResult) {
		v.m.ObserveDrain(r)
		v.readCursor()
		if onDrain != nil {
			onDrain(r)
		}
	}
	opts.OnQdrantError = v.m.ObserveQdrantError
	return opts
}

// metricsListenWant is what snap.metrics_listen and vector.metrics_listen
// allow.
const metricsListenWant = `HOST:PORT with an explicit host, e.g. "127.0.0.1:9731" (this host only) or "0.0.0.0:9731" (every interface), or "" for no metrics server`
