package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/vector"
)

func newVectorStatusCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show how far the collection is behind the chain and whether it matches the config",
		Long: `Show the chain head, the sync cursor, the lag in blocks and seconds, the
collection's size, distance, exact point count and payload indexes,
whether its parameters match vector.dimension and vector.distance, and the
blocks "vector sync --skip-poison" moved past. It changes nothing.`,
		Example: `  ghostbridge vector status
  ghostbridge vector status --format json | jq .lag_blocks`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			s, err := a.openVector(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, s.close()) }()
			res, err := vector.Status(cmd.Context(), s.deps, s.cfg)
			if err != nil {
				return err
			}
			if a.format == FormatJSON {
				res.Indexes = nonNil(res.Indexes)
				res.Skipped = nonNil(res.Skipped)
				return writeJSON(a.IO.Out, res)
			}
			return writeStatusText(a.IO.Out, res)
		},
	}
}

func writeStatusText(w io.Writer, r vector.StatusResult) error {
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "%-12s %s\n", k, v) }
	row("chain head", fmt.Sprintf("%d (%s)", r.Head, formatTime(r.HeadTime)))
	if r.Cursor == nil {
		row("cursor", "none (never synced)")
	} else {
		row("cursor", strconv.FormatUint(*r.Cursor, 10))
	}
	row("lag", fmt.Sprintf("%d %s, %.3f s", r.LagBlocks, plural(int(min(r.LagBlocks, 2)), "block", "blocks"), r.LagSeconds))
	if !r.Exists {
		row("collection", r.Collection+" (missing; vector sync creates it)")
		row("wanted", fmt.Sprintf("size %d, distance %s", r.WantSize, r.WantDist))
		_, err := io.WriteString(w, b.String())
		return err
	}
	row("collection", fmt.Sprintf("%s (%d %s)", r.Collection, r.Points, plural(int(min(r.Points, 2)), "point", "points")))
	match := "matches the config"
	if !r.ParamsMatch {
		match = fmt.Sprintf("DIFFERS from the config (size %d, distance %s): vector sync refuses it", r.WantSize, r.WantDist)
	}
	row("parameters", fmt.Sprintf("size %d, distance %s; %s", r.Size, r.Distance, match))
	idx := strings.Join(r.Indexes, ", ")
	if idx == "" {
		idx = "none"
	}
	row("indexes", idx)
	if len(r.Skipped) > 0 {
		hs := make([]string, len(r.Skipped))
		for i, h := range r.Skipped {
			hs[i] = strconv.FormatUint(h, 10)
		}
		row("skipped", strings.Join(hs, ", ")+" (rejected by qdrant, moved past with --skip-poison)")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

type vectorSearchOptions struct {
	Like         int64
	Text         string
	Kinds        []string
	Sources      []string
	Since, Until string
	Limit        int
}

func newVectorSearchCmd(a *App) *cobra.Command {
	opts := &vectorSearchOptions{Like: -1}
	cmd := &cobra.Command{
		Use:   "search",
		Short: "Find events like a block or like a few words",
		Long: `Find the events nearest to block HEIGHT (--like; the block itself is left
out) or to a few words (--text, matched against kinds, sources, path
segments and reasons), best first, with their similarity scores.

--since and --until take an RFC 3339 time or a Go duration meaning that
long before now ("24h").`,
		Example: `  ghostbridge vector search --like 1234
  ghostbridge vector search --like 1234 --kind snapshot.deleted --since 24h
  ghostbridge vector search --text "home vanished" --limit 5 --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVectorSearch(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&opts.Like, "like", -1, "find events like the block at `HEIGHT`")
	f.StringVar(&opts.Text, "text", "", "find events like these `WORDS`")
	f.StringSliceVar(&opts.Kinds, "kind", nil, "only events of this `KIND` (repeatable)")
	f.StringSliceVar(&opts.Sources, "source", nil, "only events of this source `NAME` (repeatable)")
	f.StringVar(&opts.Since, "since", "", "only events at or after `TIME` (RFC 3339, or a duration ago)")
	f.StringVar(&opts.Until, "until", "", "only events at or before `TIME` (RFC 3339, or a duration ago)")
	f.IntVar(&opts.Limit, "limit", 10, "at most `N` results")
	return cmd
}

func runVectorSearch(ctx context.Context, a *App, opts *vectorSearchOptions) (err error) {
	q := vector.Query{Text: opts.Text, Kinds: opts.Kinds, Sources: opts.Sources, Limit: opts.Limit}
	switch {
	case opts.Like < -1:
		return usageErrorf(fmt.Errorf("--like %d: want a block height >= 0", opts.Like))
	case (opts.Like >= 0) == (opts.Text != ""):
		return usageErrorf(vector.ErrNoQuery)
	}
	if opts.Like >= 0 {
		h := uint64(opts.Like)
		q.Like = &h
	}
	if opts.Limit < 1 || opts.Limit > 10000 {
		return usageErrorf(fmt.Errorf("--limit %d: want 1..10000", opts.Limit))
	}
	for _, t := range []struct {
		flag, val string
		dst       *time.Time
	}{{"since", opts.Since, &q.Since}, {"until", opts.Until, &q.Until}} {
		if t.val == "" {
			continue
		}
		v, err := parseWhen(t.val, a.Now())
		if err != nil {
			return usageErrorf(fmt.Errorf("--%s %q: want an RFC 3339 time or a Go duration ago", t.flag, t.val))
		}
		*t.dst = v
	}
	s, err := a.openVector(ctx, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.close()) }()
	res, err := vector.Search(ctx, s.deps, s.cfg, q)
	if err != nil {
		return err
	}
	if a.format == FormatJSON {
		return writeJSON(a.IO.Out, res)
	}
	if len(res.Hits) == 0 {
		_, err := fmt.Fprintln(a.IO.Out, "no matching events")
		return err
	}
	rows := make([][]string, len(res.Hits))
	for i, h := range res.Hits {
		rows[i] = []string{strconv.FormatUint(h.Height, 10), fmt.Sprintf("%.4f", h.Score), formatTime(h.Time), h.Kind, h.Source, h.Snapshot}
	}
	return renderTable(a.IO.Out, newStyles(a.IO.Renderer()), []string{"HEIGHT", "SCORE", "TIME", "KIND", "SOURCE", "SNAPSHOT"}, rows)
}

// parseWhen reads an RFC 3339 time, or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, errors.New("bad time")
	}
	return now.Add(-d), nil
}
