package vector

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
// "<collection>-<UTC time to the nanosecond>-<random>", then points the
// alias <collection> at it, so searches through the alias keep working
// during the rebuild, and deletes the collection the alias pointed at
// before (unless KeepOld, and never the one the alias points at now).
//
// The swap is one UpdateAliases request: delete the alias, create it
// again on the new collection. Qdrant applies a request's actions in
// order while holding its collections and aliases write-locked, so no
// search sees the alias missing between them; the actions are not
// all-or-none, so when the create fails after the delete the alias is
// left missing and the error says so (run reindex again). The first
// reindex of a plain collection named <collection> must delete it before
// the alias can take its name, so searches fail for that moment; later
// reindexes do not.
//
// It holds the vector lock of the chain database throughout: a running
// `vector sync` could write to the alias's old collection after the
// rebuild read the chain, so the two never run at the same time
// (*LockedError).
func Reindex(ctx context.Context, d Deps, cfg Config, opts ReindexOptions) (res ReindexResult, err error) {
	start := time.Now()
	if err := cfg.Validate(); err != nil {
		return ReindexResult{}, err
	}
	l, err := acquireLock(LockPath(d.Chain.Path()))
	if err != nil {
		return ReindexResult{}, err
	}
	defer func() { err = errors.Join(err, l.Release()) }()
	cfg = cfg.withDefaults()
	alias := cfg.Collection
	res = ReindexResult{Alias: alias, Target: targetName(alias, d.now(), rand.Uint32())}
	q := d.Qdrant
	// Every call goes through the syncer: its own deadline, retried
	// while Qdrant is unavailable.
	as := newSyncer(d, cfg)
	aliasTarget := func() (string, bool, error) {
		var aliases []*qdrant.AliasDescription
		err := as.call(ctx, "list aliases", func(c context.Context) (err error) {
			aliases, err = q.ListAliases(c)
			return err
		})
		if err != nil {
			return "", false, fmt.Errorf("qdrant aliases: %w", err)
		}
		for _, a := range aliases {
			if a.GetAliasName() == alias {
				return a.GetCollectionName(), true, nil
			}
		}
		return "", false, nil
	}
	prev, isAlias, err := aliasTarget()
	if err != nil {
		return res, err
	}
	res.Previous = prev
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
	// Created here, not by ensure, so an existing collection of that name
	// is refused rather than adopted.
	err = ts.call(ctx, "create collection", func(c context.Context) error {
		return q.CreateCollection(c, &qdrant.CreateCollection{
			CollectionName: res.Target,
			VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{
				Size: uint64(d.Embedder.Dim()), Distance: cfg.Distance.proto(),
			}),
		})
	})
	if err != nil {
		return res, fmt.Errorf("qdrant collection %s: create the new index: %w", res.Target, err)
	}
	d.log().Info("qdrant collection created", "collection", res.Target, "size", d.Embedder.Dim(), "distance", cfg.Distance)
	if err := d.Chain.DeleteCursor(ctx, ts.name); err != nil {
		return res, err
	}
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
		return res, fmt.Errorf("qdrant alias %s -> %s: %w (the alias may be missing now: run vector reindex again; %s holds the rebuilt index)", alias, res.Target, err, res.Target)
	}
	d.log().Info("vector alias switched", "collection", alias, "target", res.Target, "previous", res.Previous)
	if err := moveCursors(ctx, d, res.Target, alias, fill.Cursor); err != nil {
		return res, err
	}
	// Blocks appended during the rebuild.
	tail, err := as.drain(ctx, nil)
	if err != nil {
		return res, err
	}
	res.Points += tail.Points
	res.Cursor = tail.Cursor
	if res.Previous != "" && res.Previous != alias && res.Previous != res.Target && !opts.KeepOld {
		// Never the collection the alias serves now, whoever moved it.
		now, _, err := aliasTarget()
		if err != nil {
			return res, err
		}
		if now != res.Previous {
			if err := as.call(ctx, "delete collection", func(c context.Context) error { return q.DeleteCollection(c, res.Previous) }); err != nil {
				return res, fmt.Errorf("qdrant collection %s: delete the previous index: %w", res.Previous, err)
			}
			res.PreviousDeleted = true
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

// targetTimeLayout stamps a reindex's new collection; its length is part
// of ReindexSuffixLen (years after 9999 would lengthen it).
const targetTimeLayout = "20060102T150405.000000000Z"

// targetName names a reindex's new collection: the alias, the UTC time to
// the nanosecond and a random suffix, so two reindexes never pick one name.
func targetName(alias string, now time.Time, r uint32) string {
	return fmt.Sprintf("%s-%s-%04x", alias, now.UTC().Format(targetTimeLayout), r&0xffff)
}

// moveCursors hands the rebuilt collection's bookkeeping to the alias: its
// cursor becomes the alias's, its skipped blocks replace the alias's, and
// the target's own cursors are removed.
func moveCursors(ctx context.Context, d Deps, target, alias string, cursor uint64) error {
	ctx = context.WithoutCancel(ctx)
	st := d.Chain
	if err := st.SetCursor(ctx, CursorName(alias), cursor); err != nil {
		return err
	}
	old, err := st.Cursors(ctx, skippedPrefix(alias))
	if err != nil {
		return err
	}
	for _, c := range old {
		if err := st.DeleteCursor(ctx, c.Name); err != nil {
			return err
		}
	}
	moved, err := st.Cursors(ctx, skippedPrefix(target))
	if err != nil {
		return err
	}
	for _, c := range moved {
		if err := st.SetCursor(ctx, skippedCursorName(alias, c.Height), c.Height); err != nil {
			return err
		}
		if err := st.DeleteCursor(ctx, c.Name); err != nil {
			return err
		}
	}
	return st.DeleteCursor(ctx, CursorName(target))
}
