package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/sys/systemd"
	"github.com/ghostbridge/ghostbridge/pkg/vector"
)

type vectorSyncOptions struct {
	Once       bool
	SkipPoison bool
}

func newVectorSyncCmd(a *App) *cobra.Command {
	opts := &vectorSyncOptions{}
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Upsert chain events not yet in Qdrant, every interval",
		Long: `Upsert every block after the sync cursor into the collection, in batches
of vector.batch points with wait=true, then advance the cursor (kept in the
chain database) to the last height Qdrant acknowledged. Point IDs are block
heights, so a sync killed at any moment and restarted never loses a block
and never makes two points for one.

The collection is created when missing, with vector.dimension and
vector.distance and payload indexes on height, kind, source and time, and
then filled from height 0. An existing collection with another size or
distance is refused (exit 2), never recreated. At start, and whenever the
collection turns out missing, the point at the cursor is checked against
the chain (same block hash); when Qdrant holds less than the cursor says
(restored from an older copy, collection lost), the sync goes back to the
last block it does hold.

While Qdrant is unavailable, overloaded or failing inside, calls are
retried with exponential backoff and jitter (at least the retry-after
Qdrant asks for); the outage is logged once when it starts and once when
it ends. A wrong API key, a read-only key or a collection that cannot take
writes stops the sync (exit 1). A block Qdrant rejects as invalid, while
the collection still matches the config, stops the sync with an error
naming its height (exit 1); --skip-poison logs it, records it in the chain
database (vector status lists it) and moves on.

Only one of vector sync and vector reindex runs at a time on a chain
database: a lock file next to it (<db>.vector.lock) is held throughout, and
the second fails naming the holder's pid (exit 1).

This is the command a systemd unit runs (Type=notify; STOPPING=1,
READY=1 as soon as the loop runs, even while Qdrant is down, and
WATCHDOG=1 every half WatchdogSec while the loop is alive, when
NOTIFY_SOCKET is set). SIGINT and SIGTERM finish the batch in hand and
exit 0. With --format json every sync that moved the cursor is one line
{"schema":1,"type":"sync",...}.

With --metrics-listen ADDR (vector.metrics_listen) Prometheus metrics are
served at http://ADDR/metrics: the sync cursor, the lag behind the chain
in blocks, points upserted, Qdrant errors by gRPC code, drain duration,
and Go runtime and process metrics. ADDR needs an explicit host:
127.0.0.1:9732 for this host, 0.0.0.0:9732 for every interface.`,
		Example: `  ghostbridge vector sync
  ghostbridge vector sync --once
  ghostbridge vector sync --once --format json
  ghostbridge vector sync --skip-poison
  ghostbridge vector sync --metrics-listen 127.0.0.1:9732`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVectorSync(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Once, "once", false, "drain what is pending and exit")
	cmd.Flags().BoolVar(&opts.SkipPoison, "skip-poison", false, "record a block Qdrant rejects for good and move on instead of stopping")
	cmd.Flags().String(metricsListenFlag, "", fmt.Sprintf(metricsListenUsage, "vector.metrics_listen"))
	return cmd
}

func runVectorSync(ctx context.Context, a *App, opts *vectorSyncOptions) (err error) {
	s, err := a.openVector(ctx, true)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.close()) }()
	n, err := systemd.New()
	if err != nil {
		return err
	}
	s.deps.Notifier = n
	s.deps.WatchdogInterval = n.WatchdogInterval()
	s.cfg.SkipPoison = opts.SkipPoison
	syncMetrics, stopMetrics, err := a.startVectorMetrics(ctx, s)
	if err != nil {
		return err
	}
	defer stopMetrics()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var werr error
	// With --once there is one drain, so at most one result to report.
	var last vector.SyncResult
	onSync := func(r vector.SyncResult) {
		last = r
		a.log.Debug("vector sync", "collection", s.cfg.Collection, "points", r.Points, "height", r.To)
		if a.format == FormatJSON && werr == nil {
			r.Skipped = nonNil(r.Skipped)
			if err := writeJSONLine(a.IO.Out, "sync", r); err != nil {
				// Nobody reads the results any more: stop as on SIGTERM.
				werr = fmt.Errorf("stdout: %w", err)
				cancel()
			}
		}
	}
	err = vector.Run(ctx, s.deps, s.cfg, syncMetrics.runOptions(vector.RunOptions{Once: opts.Once, OnSync: onSync}))
	if err == nil && werr == nil && opts.Once && a.format == FormatText {
		err = writeSyncText(a.IO.Out, s.cfg.Collection, last)
	}
	return errors.Join(err, werr)
}

func writeSyncText(w io.Writer, collection string, r vector.SyncResult) error {
	var err error
	if r.Points == 0 && len(r.Skipped) == 0 {
		_, err = fmt.Fprintf(w, "collection %s is up to date\n", collection)
		return err
	}
	_, err = fmt.Fprintf(w, "synced %d %s (heights %d..%d) into %s; cursor %d\n",
		r.Points, plural(min(r.Points, 2), "point", "points"), r.From, r.To, collection, r.Cursor)
	for _, h := range r.Skipped {
		if err == nil {
			_, err = fmt.Fprintf(w, "skipped block %d (rejected by qdrant)\n", h)
		}
	}
	return err
}
