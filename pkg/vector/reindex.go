package vector

import (
	"context"
	"fmt"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ReindexOptions tune Reindex.
type ReindexOptions struct {
	// KeepOld keeps the collection the alias pointed at before.
	KeepOld bool
	// Progress, when set, is called as the new collection fills.
	Progress func(done, total uint64)
}

// ReindexResult is the JSON contract of `vector reindex`.
type ReindexResult struct {
	Alias           string        `json:"alias"`    // the configured collection name, now an alias
	Target          string        `json:"target"`   // the collection it points at now
	Previous        string        `json:"previous"` // what it pointed at before ("" none)
	PreviousDeleted bool          `json:"previous_deleted"`
	Points          int           `json:"points"`
	Cursor          uint64        `json:"cursor"`
	Duration        time.Duration `json:"duration_ns"`
}

// Reindex rebuilds the index from height 0 into a new collection named
// "<collection>-<UTC time>", then points the alias <collection> at it, so
// searches through the alias keep working during the rebuild, and deletes
// the collection the alias pointed at before (unless KeepOld).
//
// An alias swap is atomic. The first reindex of a plain collection named
// <collection> must delete it before the alias can take its name, so
// searches fail for that moment; later reindexes do not.
//
// A running `vector sync` may go on during a reindex: after the swap the
// alias's cursor is set to what the new collection holds and the rest is
// caught up; upserts are idempotent, so the overlap does no harm.
func Reindex(ctx context.Context, d Deps, cfg Config, opts ReindexOptions) (ReindexResult, error) {
	start := time.Now()
	if err := cfg.Validate(); err != nil {
		return ReindexResult{}, err
	}
	cfg = cfg.withDefaults()
	alias := cfg.Collection
	res := ReindexResult{Alias: alias, Target: fmt.Sprintf("%s-%s", alias, d.now().UTC().Format("20060102T150405Z"))}
	q := d.Qdrant
	// Every call goes through the syncer: its own deadline, retried
	// while Qdrant is unavailable.
	as := newSyncer(d, cfg)
	var aliases []*qdrant.AliasDescription
	err := as.call(ctx, "list aliases", func(c context.Context) (err error) {
		aliases, err = q.ListAliases(c)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("qdrant aliases: %w", err)
	}
	isAlias := false
	for _, a := range aliases {
		if a.GetAliasName() == alias {
			res.Previous, isAlias = a.GetCollectionName(), true
		}
	}
	if !isAlias {
		err := as.call(ctx, "get collection", func(c context.Context) error {
			_, err := q.GetCollectionInfo(c, alias)
			return err
		})
		switch {
		case err == nil:
			res.Previous = alias
		case status.Code(err) != codes.NotFound:
			return res, fmt.Errorf("qdrant collection %s: %w", alias, err)
		}
	}

	tcfg := cfg
	tcfg.Collection = res.Target
	ts := newSyncer(d, tcfg)
	if _, err := ts.ensure(ctx); err != nil {
		return res, err
	}
	head, err := d.Chain.Head(ctx)
	if err != nil {
		return res, err
	}
	var progress func(cursor, head uint64)
	if opts.Progress != nil {
		progress = func(cur, _ uint64) { opts.Progress(cur+1, head.Height+1) }
	}
	fill, err := ts.drain(ctx, progress)
	if err != nil {
		return res, fmt.Errorf("reindex into %s: %w", res.Target, err)
	}
	res.Points = fill.Points

	// Swap.
	actions := []*qdrant.AliasOperations{qdrant.NewAliasCreate(alias, res.Target)}
	if isAlias {
		actions = append([]*qdrant.AliasOperations{qdrant.NewAliasDelete(alias)}, actions...)
	} else if res.Previous != "" {
		if err := as.call(ctx, "delete collection", func(c context.Context) error { return q.DeleteCollection(c, alias) }); err != nil {
			return res, fmt.Errorf("qdrant collection %s: delete to make room for the alias: %w", alias, err)
		}
		res.PreviousDeleted = true
	}
	if err := as.call(ctx, "update aliases", func(c context.Context) error { return q.UpdateAliases(c, actions) }); err != nil {
		return res, fmt.Errorf("qdrant alias %s -> %s: %w", alias, res.Target, err)
	}
	d.log().Info("vector alias switched", "collection", alias, "target", res.Target, "previous", res.Previous)
	if err := d.Chain.SetCursor(context.WithoutCancel(ctx), CursorName(alias), fill.Cursor); err != nil {
		return res, err
	}
	// Blocks appended during the rebuild.
	tail, err := as.drain(ctx, nil)
	if err != nil {
		return res, err
	}
	res.Points += tail.Points
	res.Cursor = tail.Cursor
	if res.Previous != "" && res.Previous != alias && !opts.KeepOld {
		if err := as.call(ctx, "delete collection", func(c context.Context) error { return q.DeleteCollection(c, res.Previous) }); err != nil {
			return res, fmt.Errorf("qdrant collection %s: delete the previous index: %w", res.Previous, err)
		}
		res.PreviousDeleted = true
	}
	res.Duration = time.Since(start)
	return res, nil
}
