package vector

import (
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// TestReindex rebuilds a plain collection into an aliased one, then again
// with other parameters, checking each time that the alias serves every
// block exactly once and the old collection is gone.
func TestReindex(t *testing.T) {
	e := newEnv(t, 250, qdranttest.Options{})
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	e.deps.Now = func() time.Time { return clock }
	var last [2]uint64
	res, err := Reindex(t.Context(), e.deps, e.cfg, ReindexOptions{Progress: func(done, total uint64) { last = [2]uint64{done, total} }})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Target, "events-20310102T030405.000000000Z-") || res.Previous != "events" || !res.PreviousDeleted || res.Points != 251 || last != [2]uint64{251, 251} {
		t.Fatalf("first reindex %+v, progress %v", res, last)
	}
	e.checkExactlyOnce(t) // through the alias
	if ids, ok := e.srv.IDs(res.Target); !ok || len(ids) != 251 {
		t.Fatalf("target holds %d points", len(ids))
	}

	// Change the distance: sync refuses, reindex moves to a new collection.
	appendVaried(t, e.chain, 250, 20)
	cfg := e.cfg
	cfg.Distance = Dot
	if _, err := Sync(t.Context(), e.deps, cfg); err == nil {
		t.Fatal("sync into a collection of another distance succeeded")
	}
	clock = clock.Add(time.Hour)
	res2, err := Reindex(t.Context(), e.deps, cfg, ReindexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Previous != res.Target || !res2.PreviousDeleted || res2.Cursor != 270 {
		t.Fatalf("second reindex %+v", res2)
	}
	if _, ok := e.srv.IDs(res.Target); ok {
		t.Fatal("previous collection kept")
	}
	e.checkExactlyOnce(t)
	info, err := e.client.GetCollectionInfo(t.Context(), "events")
	if err != nil {
		t.Fatal(err)
	}
	if _, dist, _ := collectionParams(info); dist != Dot {
		t.Fatalf("alias serves distance %s", dist)
	}
	aliases, err := e.client.ListAliases(t.Context())
	if err != nil || len(aliases) != 1 || aliases[0].GetCollectionName() != res2.Target {
		t.Fatalf("aliases %v %v", aliases, err)
	}
	// Search works through the alias.
	h := uint64(3)
	if r, err := Search(t.Context(), e.deps, cfg, Query{Like: &h, Limit: 3}); err != nil || len(r.Hits) != 3 {
		t.Fatalf("search through alias: %+v %v", r, err)
	}

	// KeepOld keeps the previous collection.
	clock = clock.Add(time.Hour)
	res3, err := Reindex(t.Context(), e.deps, cfg, ReindexOptions{KeepOld: true})
	if err != nil || res3.PreviousDeleted {
		t.Fatalf("keep-old reindex %+v %v", res3, err)
	}
	if ids, ok := e.srv.IDs(res2.Target); !ok || len(ids) != 271 {
		t.Fatal("previous collection not kept")
	}
}
