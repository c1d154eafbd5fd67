package main

import (
	"errors"
	"fmt"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/vector"
)

func newVectorReindexCmd(a *App) *cobra.Command {
	var keepOld bool
	cmd := &cobra.Command{
		Use:   "reindex",
		Short: "Rebuild the index from height 0 into a new collection and switch the alias to it",
		Long: `Rebuild the index from height 0 into a new collection named
"<vector.collection>-<UTC time to the nanosecond>-<random>", with the
configured dimension and distance, then make vector.collection an alias of
it in one alias update (delete and create, which Qdrant applies under one
lock, so no search sees the alias missing), so searches keep working
during the rebuild. The collection the alias pointed at before is deleted
unless --keep-old.

It cannot run beside "vector sync" on the same chain database: both hold
<db>.vector.lock, and the second fails naming the holder's pid (exit 1);
stop the sync service for the reindex.

Use it after changing vector.dimension or vector.distance (which "vector
sync" refuses to apply to an existing collection) or after upgrading to a
version with another vector layout. The first reindex of a plain
collection must delete it before the alias can take its name: searches
fail for that moment. A progress bar is drawn on a terminal.`,
		Example: `  ghostbridge vector reindex
  ghostbridge vector reindex --keep-old --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			s, err := a.openVector(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, s.close()) }()
			opts := vector.ReindexOptions{KeepOld: keepOld}
			var bar *progressbar.ProgressBar
			if a.IO.IsStderrTTY() {
				bar = newProgressBar(a.IO.ErrOut, "reindexing")
				opts.Progress = func(done, total uint64) {
					bar.ChangeMax64(int64(total))
					_ = bar.Set64(int64(done))
				}
			}
			res, err := vector.Reindex(cmd.Context(), s.deps, s.cfg, opts)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			if a.format == FormatJSON {
				return writeJSON(a.IO.Out, res)
			}
			prev := "none"
			if res.Previous != "" {
				prev = res.Previous
				if res.PreviousDeleted {
					prev += " (deleted)"
				} else {
					prev += " (kept)"
				}
			}
			_, err = fmt.Fprintf(a.IO.Out, "%s now points at %s: %d points, cursor %d; previous %s\n",
				res.Alias, res.Target, res.Points, res.Cursor, prev)
			return err
		},
	}
	cmd.Flags().BoolVar(&keepOld, "keep-old", false, "keep the collection the alias pointed at before")
	return cmd
}
