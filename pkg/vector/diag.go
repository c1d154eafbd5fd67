package vector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// CollectionState is what a read-only look at a collection finds: the
// parameters sync compares with the configuration.
type CollectionState struct {
	Name   string `json:"name"`
	Exists bool   `json:"exists"`
	// Size and Distance are the single unnamed dense vector's; Named is
	// true when the collection has named or sparse vectors instead.
	Size     uint64   `json:"size"`
	Distance Distance `json:"distance"`
	Named    bool     `json:"named_vectors"`
	// Points is Qdrant's approximate count.
	Points uint64 `json:"points"`
}

// InspectCollection reads a collection's parameters and changes nothing.
// A missing collection is Exists false and no error.
func InspectCollection(ctx context.Context, q *qdrant.Client, name string) (CollectionState, error) {
	st := CollectionState{Name: name}
	info, err := q.GetCollectionInfo(ctx, name)
	if status.Code(err) == codes.NotFound {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("qdrant collection %s: %w", name, err)
	}
	st.Exists = true
	st.Points = info.GetPointsCount()
	var ok bool
	st.Size, st.Distance, ok = collectionParams(info)
	st.Named = !ok
	return st, nil
}

// Check returns nil when the collection has one dense vector of size and
// distance d, as sync requires, else the *MismatchError sync would refuse
// it with. It says nothing about a collection that does not exist.
func (s CollectionState) Check(size uint64, d Distance) error {
	if d == "" {
		d = Cosine
	}
	switch {
	case s.Named:
		return &MismatchError{Collection: s.Name, NamedOrSparseVectors: true}
	case s.Size != size || s.Distance != d:
		return &MismatchError{Collection: s.Name, WantSize: size, GotSize: s.Size, WantDist: d, GotDist: s.Distance}
	}
	return nil
}

// Lag is how far a collection's sync cursor is behind the chain.
type Lag struct {
	Head     uint64    `json:"head"`
	HeadTime time.Time `json:"head_time"`
	// Cursor is the last height Qdrant acknowledged; nil before the first
	// sync.
	Cursor *uint64 `json:"cursor"`
	// Blocks not yet acknowledged, and the chain time between the first
	// of them and the head.
	Blocks uint64        `json:"lag_blocks"`
	Behind time.Duration `json:"lag_ns"`
	// Ahead: the cursor is past the head (the chain database was
	// restored from an older copy); sync re-checks it on start.
	Ahead bool `json:"ahead"`
}

// SyncLag reads the collection's cursor and the chain head from the chain
// database alone, so it answers while Qdrant is down. It changes nothing.
func SyncLag(ctx context.Context, st *chain.Store, collection string) (Lag, error) {
	var l Lag
	head, err := st.Head(ctx)
	if err != nil {
		return l, err
	}
	l.Head, l.HeadTime = head.Height, head.Time
	cur, ok, err := st.Cursor(ctx, CursorName(collection))
	if err != nil {
		return l, err
	}
	from := uint64(0)
	if ok {
		l.Cursor = &cur
		from = cur + 1
		l.Ahead = cur > head.Height
	}
	if from <= head.Height {
		l.Blocks = head.Height - from + 1
		first, err := st.Get(ctx, from)
		if err != nil && !errors.Is(err, chain.ErrNotFound) {
			return l, err
		}
		if err == nil {
			l.Behind = head.Time.Sub(first.Time)
		}
	}
	return l, nil
}
