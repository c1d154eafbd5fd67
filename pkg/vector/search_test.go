package vector

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// craftedChain: heights 1-4 "home" created at night, 5-8 "root" deleted
// at noon, 9 ticks.missed, 10 "home" created at night a week later.
func craftedChain(t *testing.T, e *env) {
	t.Helper()
	s, err := chain.Open(t.Context(), filepath.Join(t.TempDir(), "crafted.db"), chain.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	night := time.Now().UTC().Truncate(24 * time.Hour).Add(26 * time.Hour)
	noon := night.Add(10 * time.Hour)
	var evs []chain.Event
	for i := range 4 {
		evs = append(evs, snapEvent(chain.KindSnapshotCreated, "home", night.Add(time.Duration(i)*time.Second), 500+uint64(i)))
	}
	for i := range 4 {
		evs = append(evs, snapEvent(chain.KindSnapshotDeleted, "root", noon.Add(time.Duration(i)*time.Second), 900+uint64(i)))
	}
	evs = append(evs, chain.Event{Time: noon.Add(time.Minute), Kind: chain.KindTicksMissed, Payload: chain.TicksMissedPayload{Count: 3, From: noon, To: noon.Add(2 * time.Second)}})
	evs = append(evs, snapEvent(chain.KindSnapshotCreated, "home", night.Add(7*24*time.Hour), 600))
	if _, err := s.Append(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	e.chain, e.deps.Chain = s, s
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
}

func heights(hs []Hit) []uint64 {
	out := make([]uint64, len(hs))
	for i, h := range hs {
		out[i] = h.Height
	}
	return out
}

func TestSearchNeighbours(t *testing.T) {
	e := newEnv(t, 0, qdranttest.Options{})
	craftedChain(t, e)
	ctx := t.Context()
	like := func(h uint64) *uint64 { return &h }

	// Like a night-time home snapshot: the other home snapshots first,
	// itself never.
	res, err := Search(ctx, e.deps, e.cfg, Query{Like: like(2), Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	got := heights(res.Hits)
	if len(got) != 4 {
		t.Fatalf("hits %v", got)
	}
	seen := map[uint64]bool{}
	for _, h := range got {
		seen[h] = true
	}
	for _, want := range []uint64{1, 3, 4, 10} {
		if !seen[want] {
			t.Fatalf("like 2: hits %v, want {1,3,4,10}", got)
		}
	}
	for i := 1; i < len(res.Hits); i++ {
		if res.Hits[i].Score > res.Hits[i-1].Score {
			t.Fatalf("hits not best first: %+v", res.Hits)
		}
	}
	if res.Hits[0].Kind != "snapshot.created" || res.Hits[0].Source != "home" || res.Hits[0].Time.IsZero() {
		t.Fatalf("hit fields %+v", res.Hits[0])
	}

	// Text: "deleted root" finds the root deletions.
	res, err = Search(ctx, e.deps, e.cfg, Query{Text: "snapshot.deleted root", Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range res.Hits {
		if h.Height < 5 || h.Height > 8 {
			t.Fatalf("text search hits %v, want 5..8", heights(res.Hits))
		}
	}

	// Filters: kind, source, time.
	res, err = Search(ctx, e.deps, e.cfg, Query{Like: like(2), Kinds: []string{"ticks.missed"}, Limit: 10})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].Height != 9 {
		t.Fatalf("kind filter: %v %v", heights(res.Hits), err)
	}
	res, err = Search(ctx, e.deps, e.cfg, Query{Like: like(2), Sources: []string{"root"}, Limit: 10})
	if err != nil || len(res.Hits) != 4 || res.Hits[0].Source != "root" {
		t.Fatalf("source filter: %v %v", heights(res.Hits), err)
	}
	since := time.Now().UTC().Truncate(24 * time.Hour).Add(50 * time.Hour)
	res, err = Search(ctx, e.deps, e.cfg, Query{Like: like(2), Since: since, Limit: 10})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].Height != 10 {
		t.Fatalf("since filter: %v %v", heights(res.Hits), err)
	}
	res, err = Search(ctx, e.deps, e.cfg, Query{Like: like(2), Until: since, Kinds: []string{"snapshot.created"}, Limit: 10})
	if err != nil || len(res.Hits) != 3 {
		t.Fatalf("until filter: %v %v", heights(res.Hits), err)
	}

	if _, err := Search(ctx, e.deps, e.cfg, Query{}); !errors.Is(err, ErrNoQuery) {
		t.Fatalf("no query: %v", err)
	}
	if _, err := Search(ctx, e.deps, e.cfg, Query{Like: like(99)}); !errors.Is(err, chain.ErrNotFound) {
		t.Fatalf("like missing block: %v", err)
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t, 40, qdranttest.Options{})
	st, err := Status(t.Context(), e.deps, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	genesis, err := e.chain.Get(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Exists || st.Cursor != nil || st.LagBlocks != 41 || st.LagSeconds != st.HeadTime.Sub(genesis.Time).Seconds() || st.ParamsMatch {
		t.Fatalf("before sync %+v", st)
	}
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	appendVaried(t, e.chain, 40, 5)
	st, err = Status(t.Context(), e.deps, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Exists || st.Cursor == nil || *st.Cursor != 40 || st.Head != 45 || st.LagBlocks != 5 || st.LagSeconds != 4 ||
		!st.ParamsMatch || st.Points != 41 || st.Size != 64 || st.Distance != Cosine || len(st.Indexes) != 4 {
		t.Fatalf("after sync %+v", st)
	}
	e.srv.CreateCollection("other", 8, 3)
	cfg := e.cfg
	cfg.Collection = "other"
	st, err = Status(t.Context(), e.deps, cfg)
	if err != nil || st.ParamsMatch || st.Size != 8 || st.Distance != Dot {
		t.Fatalf("mismatched %+v %v", st, err)
	}
}
