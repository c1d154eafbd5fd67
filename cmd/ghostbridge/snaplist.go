package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

func newSnapListCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the snapshots the chain records as live",
		Long: `List the snapshots the chain records as live (created or adopted and not
yet deleted), oldest first, with the block that recorded each and its age.
This reads the database only; it does not look at the disk.`,
		Example: `  ghostbridge snap list
  ghostbridge snap list --format json | jq -r '.snapshots[].snapshot'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return a.withChain(ctx, func(st *chain.Store) error {
				res, err := snap.List(ctx, snap.Deps{Chain: st, Logger: a.log, Now: a.Now})
				if err != nil {
					return err
				}
				if a.format == FormatJSON {
					return writeJSON(a.IO.Out, res)
				}
				rows := make([][]string, 0, len(res.Snapshots))
				for _, e := range res.Snapshots {
					rows = append(rows, []string{strconv.FormatUint(e.Height, 10), formatTime(e.Time), formatAge(e.Age), e.Source, e.Snapshot})
				}
				return renderTable(a.IO.Out, newStyles(a.IO.Renderer()), []string{"HEIGHT", "TIME", "AGE", "SOURCE", "SNAPSHOT"}, rows)
			})
		},
	}
}

func newSnapPruneCmd(a *App) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Apply the retention policy once",
		Long: `Reconcile the chain with the disk, then delete the snapshots the retention
policy (snap.keep and snap.tiers) no longer keeps, recording each deletion
in the chain. Only snapshots the chain recorded are ever deleted; anything
else in the snapshot directory is reported and left alone. Fails (exit 1)
while "snap run" holds the database. With --dry-run nothing is changed.`,
		Example: `  ghostbridge snap prune --dry-run
  ghostbridge snap prune --keep 10m
  ghostbridge snap prune --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSnapPrune(cmd.Context(), a, dryRun)
		},
	}
	addSnapConfigFlags(cmd, false)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would be deleted without changing anything")
	return cmd
}

func runSnapPrune(ctx context.Context, a *App, dryRun bool) (err error) {
	cfg, err := snapConfig(a.conf.Config)
	if err != nil {
		return err
	}
	// A real prune writes: an unwritable database must stop it before it
	// deletes any snapshot it then could not record.
	access := dbWrite
	if dryRun {
		access = dbRead
	}
	if err := a.checkDB(access); err != nil {
		return err
	}
	fs := btrfs.New()
	if err := snap.Validate(ctx, fs, cfg); err != nil {
		return err
	}
	st, err := a.openChain(ctx, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	res, err := snap.Prune(ctx, snap.Deps{Chain: st, FS: fs, Logger: a.log, Now: a.Now}, cfg, dryRun)
	if err != nil {
		// A partial result next to an error would read as a verdict;
		// what was deleted before the failure is in the chain and the log.
		return err
	}
	return a.printPrune(res)
}

func (a *App) printPrune(res snap.PruneResult) error {
	if a.format == FormatJSON {
		res.Deleted = nonNil(res.Deleted)
		res.Adopted = nonNil(res.Adopted)
		res.Vanished = nonNil(res.Vanished)
		res.Foreign = nonNil(res.Foreign)
		return writeJSON(a.IO.Out, res)
	}
	var b strings.Builder
	verb := "deleted"
	if res.DryRun {
		verb = "would delete"
	}
	for _, l := range res.Deleted {
		fmt.Fprintf(&b, "%s %s (height %d, %s)\n", verb, l.Snapshot, l.Height, formatTime(l.Time))
	}
	for _, p := range res.Adopted {
		fmt.Fprintf(&b, "adopted %s\n", p)
	}
	for _, p := range res.Vanished {
		fmt.Fprintf(&b, "vanished %s\n", p)
	}
	for _, p := range res.Foreign {
		fmt.Fprintf(&b, "left alone (not ours) %s\n", p)
	}
	fmt.Fprintf(&b, "%s %d, kept %d\n", verb, len(res.Deleted), res.Kept)
	_, err := io.WriteString(a.IO.Out, b.String())
	return err
}
