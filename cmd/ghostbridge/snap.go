package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
	"github.com/ghostbridge/ghostbridge/pkg/sys/systemd"
)

func newSnapCmd(a *App) *cobra.Command {
	cmd := newGroupCmd("snap", "Take, list and prune snapshots", `Take read-only BTRFS snapshots of the configured sources, list the
snapshots the chain records as live, and apply retention.

Snapshots are named <dir>/<source name>/<UTC time, 20060102T150405.000Z>.`)
	cmd.AddCommand(newSnapRunCmd(a), newSnapListCmd(a), newSnapPruneCmd(a))
	return cmd
}

// addSnapConfigFlags adds the flags that override [snap] config keys; their
// values reach the config through config.go, not through these variables.
func addSnapConfigFlags(cmd *cobra.Command, withInterval bool) {
	f := cmd.Flags()
	f.StringArray("source", nil, "source subvolume `PATH` or NAME=PATH (repeatable; replaces snap.sources)")
	f.String("dir", "", "snapshot `DIR`ectory on the sources' filesystem (overrides snap.dir)")
	if withInterval {
		f.Duration("interval", 0, "time between snapshots, "+intervalRange+" (overrides snap.interval)")
	}
	f.Duration("keep", 0, "keep every snapshot younger than this (overrides snap.keep)")
	_ = cmd.MarkFlagDirname("dir")
	_ = cmd.MarkFlagDirname("source")
}

func newSnapRunCmd(a *App) *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Snapshot every source each interval and record each snapshot in the chain",
		Long: `Snapshot every source at each wall-clock multiple of the interval, record
each snapshot and each retention deletion as a block in the chain, and keep
going until SIGINT or SIGTERM, which finish the tick in hand and exit 0.
A tick that overruns skips the missed ticks and records how many.

This is the command a systemd unit runs (Type=notify; READY=1, WATCHDOG=1
and STOPPING=1 are sent when NOTIFY_SOCKET is set). One "snap run" per
database: a second one exits 1 naming the holder's pid. With --format json
every tick is one line {"schema":1,"type":"tick",...}; in text mode ticks
are logged at debug level.

With chain.signing_key set, the key is loaded before the first snapshot
(a bad key file exits 2) and a checkpoint is signed after a tick when
chain.checkpoint_every blocks were added since the last one, or
chain.checkpoint_interval passed and blocks were added. A checkpoint that
cannot be signed is logged at error level and the loop goes on.

With --metrics-listen ADDR (snap.metrics_listen) Prometheus metrics are
served at http://ADDR/metrics: ticks, tick duration, missed ticks, live
snapshots, snapshot create and delete latency, chain height and head age,
the last checkpoint, and Go runtime and process metrics. ADDR needs an
explicit host: 127.0.0.1:9731 for this host, 0.0.0.0:9731 for every
interface.`,
		Example: `  ghostbridge snap run
  ghostbridge snap run --source /home --dir /home/.snapshots --interval 1s --keep 1m
  ghostbridge snap run --once --format json
  ghostbridge snap run --metrics-listen 127.0.0.1:9731`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSnapRun(cmd.Context(), a, once)
		},
	}
	addSnapConfigFlags(cmd, true)
	cmd.Flags().BoolVar(&once, "once", false, "take one tick (reconcile, snapshot, retention) and exit")
	cmd.Flags().String(metricsListenFlag, "", fmt.Sprintf(metricsListenUsage, "snap.metrics_listen"))
	return cmd
}

// snapConfig turns the validated configuration into what pkg/snap takes.
func snapConfig(c Config) (snap.Config, error) {
	sc := snap.Config{
		Dir:      c.Snap.Dir,
		Interval: time.Duration(c.Snap.Interval),
		Policy:   snap.Policy{Keep: time.Duration(c.Snap.Keep)},
	}
	for _, spec := range c.Snap.Sources {
		s, err := parseSource(spec)
		if err != nil {
			return sc, err
		}
		sc.Sources = append(sc.Sources, s)
	}
	for _, t := range c.Snap.Tiers {
		sc.Policy.Tiers = append(sc.Policy.Tiers, snap.Tier{Every: time.Duration(t.Every), For: time.Duration(t.For)})
	}
	return sc, nil
}

// sourceWant is what a source spec may be, for config errors.
const sourceWant = `want "PATH" or "NAME=PATH"; NAME (by default the path's last element, "root" for "/") of letters, digits, @ . _ -`

// parseSource is snap.ParseSource, refusing a name part that holds "=":
// ParseSource splits at the first "=", so "a=b=/x" would become source
// "a" with the relative path "b=/x".
func parseSource(spec string) (snap.Source, error) {
	if prefix, _, _ := strings.Cut(spec, "/"); strings.Count(prefix, "=") > 1 {
		name := prefix[:strings.LastIndexByte(prefix, '=')]
		return snap.Source{}, &sourceNameError{spec: spec, name: name}
	}
	return snap.ParseSource(spec)
}

// sourceNameError is a source spec whose name part holds "=".
type sourceNameError struct{ spec, name string }

func (e *sourceNameError) Error() string {
	return fmt.Sprintf("%s: source %q: %s", snap.ErrInvalidConfig, e.spec, e.detail())
}

func (e *sourceNameError) detail() string {
	return fmt.Sprintf("name %q contains \"=\"; %s", e.name, sourceWant)
}

func (e *sourceNameError) Unwrap() error { return snap.ErrInvalidConfig }

// sourceName is the name a source spec gets, for config validation. Its
// error is what is wrong with the spec, without repeating the spec, which
// the problem shows as its value.
func sourceName(spec string) (string, error) {
	s, err := parseSource(spec)
	var ne *sourceNameError
	switch {
	case err == nil:
		return s.Name, nil
	case errors.As(err, &ne):
		return "", errors.New(ne.detail())
	case errors.Is(err, snap.ErrInvalidConfig):
		return "", errors.New(sourceWant)
	default:
		return "", err
	}
}

func runSnapRun(ctx context.Context, a *App, once bool) (err error) {
	cfg, err := snapConfig(a.conf.Config)
	if err != nil {
		return err
	}
	// A bad key file is found before any snapshot is taken.
	var signer note.Signer
	if a.conf.Config.Chain.SigningKey != "" {
		if signer, err = a.loadSigner(); err != nil {
			return err
		}
	}
	// Check the database and the machine before the database is created,
	// so a bad source, directory, path or an unwritable database leaves
	// nothing behind.
	if err := a.checkDB(dbCreate); err != nil {
		return err
	}
	fs := btrfs.New()
	if err := snap.Validate(ctx, fs, cfg); err != nil {
		return err
	}
	notifier, err := systemd.New()
	if err != nil {
		return err
	}
	st, err := a.openChain(ctx, true)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	d := a.runDeps(st, fs, notifier)
	var cp *checkpointer
	if signer != nil {
		if cp, err = a.newCheckpointer(ctx, st, signer); err != nil {
			return err
		}
		d.AfterAppend = cp.afterAppend
	}
	sm, stopMetrics, err := a.startSnapMetrics(ctx, st, cfg, cp)
	if err != nil {
		return err
	}
	defer stopMetrics()
	d.AfterAppend = sm.afterAppend(d.AfterAppend)

	// Results on stdout are the point of a pipeline; once stdout is gone
	// (the reader died) there is no one to report to, so the loop stops as
	// it does on SIGTERM: the tick in hand finishes and the chain stays
	// sound. The write error is the command's error (exit 1).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var werr error
	write := func(f func() error) {
		if werr != nil {
			return
		}
		if err := f(); err != nil {
			werr = fmt.Errorf("stdout: %w", err)
			cancel()
		}
	}
	opts := snap.RunOptions{
		Once: once,
		// pkg/snap logs ticks and reconciliation itself; these only print
		// results.
		OnReconcile: func(r snap.ReconcileResult) {
			sm.reconciled(ctx)
			if a.format == FormatJSON {
				write(func() error { return writeJSONLine(a.IO.Out, "reconcile", reconcileView(r)) })
			}
		},
		OnTick: func(t snap.TickResult) {
			sm.tick(t)
			switch {
			case a.format == FormatJSON:
				write(func() error { return writeJSONLine(a.IO.Out, "tick", newTickView(t)) })
			case once:
				write(func() error { return writeTickText(a.IO.Out, t) })
			}
		},
	}
	err = snap.Run(ctx, d, cfg, opts)
	return errors.Join(err, werr)
}

// runDeps wires the loop to the real systems. The watchdog timeout systemd
// set goes to pkg/snap, which keeps pinging while it sleeps between ticks
// longer than the timeout.
func (a *App) runDeps(st *chain.Store, fs snap.Snapshotter, n *systemd.Notifier) snap.Deps {
	return snap.Deps{Chain: st, FS: fs, Notifier: n, Logger: a.log, Now: a.Now, WatchdogInterval: n.WatchdogInterval()}
}

// tickView is a tick as printed in JSON: the result plus its non-fatal
// errors, which TickResult keeps out of its own encoding. Every list is
// present, empty rather than null, so scripts can iterate without checks.
type tickView struct {
	snap.TickResult
	Vanished []chain.Block `json:"vanished"`
	Errors   []string      `json:"errors"`
}

func newTickView(t snap.TickResult) tickView {
	t.Created = nonNil(t.Created)
	t.Deleted = nonNil(t.Deleted)
	return tickView{TickResult: t, Vanished: nonNil(t.Vanished), Errors: errorLines(t.Err)}
}

// reconcileView is snap.ReconcileResult with every list present.
func reconcileView(r snap.ReconcileResult) snap.ReconcileResult {
	r.Adopted = nonNil(r.Adopted)
	r.Vanished = nonNil(r.Vanished)
	r.Foreign = nonNil(r.Foreign)
	return r
}

// nonNil returns s, or an empty slice for nil: JSON lists we print are
// [] when empty, never null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func errorLines(err error) []string {
	if err == nil {
		return []string{}
	}
	return strings.Split(err.Error(), "\n")
}

func writeTickText(w io.Writer, t snap.TickResult) error {
	var b strings.Builder
	for _, set := range []struct {
		verb   string
		blocks []chain.Block
	}{{"created", t.Created}, {"deleted", t.Deleted}, {"vanished", t.Vanished}} {
		for _, blk := range set.blocks {
			fmt.Fprintf(&b, "%-8s height %d  %s\n", set.verb, blk.Height, blockSummary(blk))
		}
	}
	if t.Missed > 0 {
		fmt.Fprintf(&b, "missed   %d %s\n", t.Missed, plural(t.Missed, "tick", "ticks"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
