package vector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// StatusResult is the JSON contract of `vector status`.
type StatusResult struct {
	Collection string    `json:"collection"`
	Head       uint64    `json:"head"`
	HeadTime   time.Time `json:"head_time"`
	// Cursor is the last height Qdrant acknowledged; nil before the first sync.
	Cursor     *uint64  `json:"cursor"`
	LagBlocks  uint64   `json:"lag_blocks"`
	LagSeconds float64  `json:"lag_seconds"`
	Exists     bool     `json:"exists"`
	Points     uint64   `json:"points"`
	Size       uint64   `json:"size"`
	Distance   Distance `json:"distance"`
	Indexes    []string `json:"indexes"`
	// ParamsMatch: the collection's size and distance are the configured
	// ones (false when it does not exist).
	ParamsMatch bool     `json:"params_match"`
	WantSize    uint64   `json:"want_size"`
	WantDist    Distance `json:"want_distance"`
	// Skipped are the heights of blocks Qdrant rejected and a sync with
	// SkipPoison moved past, ascending.
	Skipped []uint64 `json:"skipped"`
}

// Status reports how far the collection is behind the chain and whether it
// matches the configuration. It changes nothing.
func Status(ctx context.Context, d Deps, cfg Config) (StatusResult, error) {
	cfg = cfg.withDefaults()
	res := StatusResult{Collection: cfg.Collection, WantSize: uint64(d.Embedder.Dim()), WantDist: cfg.Distance, Indexes: []string{}, Skipped: []uint64{}}
	head, err := d.Chain.Head(ctx)
	if err != nil {
		return res, err
	}
	res.Head, res.HeadTime = head.Height, head.Time
	cur, ok, err := d.Chain.Cursor(ctx, CursorName(cfg.Collection))
	if err != nil {
		return res, err
	}
	skipped, err := d.Chain.Cursors(ctx, skippedPrefix(cfg.Collection))
	if err != nil {
		return res, err
	}
	for _, c := range skipped {
		res.Skipped = append(res.Skipped, c.Height)
	}
	slices.Sort(res.Skipped)
	lagFrom := uint64(0)
	if ok {
		res.Cursor = &cur
		lagFrom = cur + 1
	}
	if lagFrom <= head.Height {
		res.LagBlocks = head.Height - lagFrom + 1
		first, err := d.Chain.Get(ctx, lagFrom)
		if err != nil {
			return res, err
		}
		res.LagSeconds = head.Time.Sub(first.Time).Seconds()
	}
	c, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	info, err := d.Qdrant.GetCollectionInfo(c, cfg.Collection)
	if status.Code(err) == codes.NotFound {
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("qdrant collection %s: %w", cfg.Collection, err)
	}
	res.Exists = true
	// The info's count is approximate; an operator comparing it with the
	// chain head needs the exact one.
	n, err := d.Qdrant.Count(c, &qdrant.CountPoints{CollectionName: cfg.Collection, Exact: qdrant.PtrOf(true)})
	if err != nil {
		return res, fmt.Errorf("qdrant collection %s: count: %w", cfg.Collection, err)
	}
	res.Points = n
	res.Size, res.Distance, _ = collectionParams(info)
	for _, ix := range indexes {
		if _, ok := info.GetPayloadSchema()[ix.field]; ok {
			res.Indexes = append(res.Indexes, ix.field)
		}
	}
	res.ParamsMatch = checkParams(cfg.Collection, info, res.WantSize, cfg.Distance) == nil
	return res, nil
}

// Query says what to search for: exactly one of Like (a block height) or
// Text, and optional filters.
type Query struct {
	Like    *uint64   `json:"like,omitempty"`
	Text    string    `json:"text,omitempty"`
	Kinds   []string  `json:"kinds,omitempty"`
	Sources []string  `json:"sources,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	Until   time.Time `json:"until,omitzero"`
	Limit   int       `json:"limit"`
}

// Hit is one search result.
type Hit struct {
	Height   uint64    `json:"height"`
	Score    float32   `json:"score"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Source   string    `json:"source,omitempty"`
	Snapshot string    `json:"snapshot,omitempty"`
}

// SearchResult is the JSON contract of `vector search`.
type SearchResult struct {
	Collection string `json:"collection"`
	Query      Query  `json:"query"`
	Hits       []Hit  `json:"hits"`
}

// ErrNoQuery: neither or both of Like and Text were given.
var ErrNoQuery = errors.New("give exactly one of --like HEIGHT or --text TEXT")

// Search returns the points nearest to a block (never the block itself)
// or to a text, best first, filtered by kind, source and time.
func Search(ctx context.Context, d Deps, cfg Config, q Query) (SearchResult, error) {
	cfg = cfg.withDefaults()
	if q.Limit <= 0 {
		q.Limit = 10
	}
	res := SearchResult{Collection: cfg.Collection, Query: q, Hits: []Hit{}}
	if (q.Like == nil) == (q.Text == "") {
		return res, fmt.Errorf("%w: %w", ErrInvalidConfig, ErrNoQuery)
	}
	var vec []float32
	filter := &qdrant.Filter{}
	if q.Like != nil {
		b, err := d.Chain.Get(ctx, *q.Like)
		if err != nil {
			return res, err
		}
		// Recomputed rather than read from Qdrant: the vector depends on
		// the block alone, and the block may not be synced yet.
		if vec, err = d.Embedder.Block(b); err != nil {
			return res, err
		}
		filter.MustNot = append(filter.MustNot, qdrant.NewHasID(qdrant.NewIDNum(b.Height)))
	} else {
		var err error
		if vec, err = d.Embedder.Text(q.Text); err != nil {
			return res, err
		}
	}
	if len(q.Kinds) > 0 {
		filter.Must = append(filter.Must, qdrant.NewMatchKeywords("kind", q.Kinds...))
	}
	if len(q.Sources) > 0 {
		filter.Must = append(filter.Must, qdrant.NewMatchKeywords("source", q.Sources...))
	}
	if !q.Since.IsZero() || !q.Until.IsZero() {
		r := &qdrant.DatetimeRange{}
		if !q.Since.IsZero() {
			r.Gte = timestamppb.New(q.Since)
		}
		if !q.Until.IsZero() {
			r.Lte = timestamppb.New(q.Until)
		}
		filter.Must = append(filter.Must, qdrant.NewDatetimeRange("time", r))
	}
	c, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	points, err := d.Qdrant.Query(c, &qdrant.QueryPoints{
		CollectionName: cfg.Collection,
		Query:          qdrant.NewQueryDense(vec),
		Filter:         filter,
		Limit:          qdrant.PtrOf(uint64(q.Limit)),
		WithPayload:    qdrant.NewWithPayload(true),
	})
	if err != nil {
		return res, fmt.Errorf("qdrant collection %s: search: %w", cfg.Collection, err)
	}
	for _, p := range points {
		pl := p.GetPayload()
		t, _ := time.Parse(time.RFC3339Nano, pl["time"].GetStringValue())
		res.Hits = append(res.Hits, Hit{
			Height:   p.GetId().GetNum(),
			Score:    p.GetScore(),
			Time:     t,
			Kind:     pl["kind"].GetStringValue(),
			Source:   pl["source"].GetStringValue(),
			Snapshot: pl["snapshot"].GetStringValue(),
		})
	}
	return res, nil
}
