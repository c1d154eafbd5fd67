package vector

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// t0 is in the future: the chain clamps a block's time to its
// predecessor's, and genesis is stamped with the wall clock.
var t0 = time.Now().UTC().Truncate(24 * time.Hour).Add(48*time.Hour + 9*time.Hour + 26*time.Minute + 53*time.Second)

// snapEvent is a snapshot.* event of source src at t.
func snapEvent(kind chain.Kind, src string, at time.Time, gen uint64) chain.Event {
	path := "/"
	if src != "root" {
		path = "/" + src
	}
	name := at.UTC().Format("20060102T150405.000Z")
	return chain.Event{Time: at, Kind: kind, Payload: chain.SnapshotPayload{
		Source: src, SourcePath: path, Snapshot: "/.snapshots/ghostbridge/" + src + "/" + name,
		UUID: "uuid-" + src + "-" + name, ParentUUID: "parent-" + src, Generation: gen, OTime: at,
	}}
}

// newChain makes a chain database holding genesis plus n varied blocks.
func newChain(t testing.TB, n int) *chain.Store {
	t.Helper()
	s, err := chain.Open(t.Context(), filepath.Join(t.TempDir(), "chain.db"), chain.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	appendVaried(t, s, 0, n)
	return s
}

// appendVaried appends n blocks numbered from i0: mostly snapshot.created
// of "root" and "home", deletions, and an occasional ticks.missed.
func appendVaried(t testing.TB, s *chain.Store, i0, n int) {
	t.Helper()
	const chunk = 5000
	for start := 0; start < n; start += chunk {
		evs := make([]chain.Event, 0, chunk)
		for i := start; i < min(n, start+chunk); i++ {
			k := i0 + i
			at := t0.Add(time.Duration(k) * time.Second)
			src := []string{"root", "home"}[k%2]
			switch {
			case k%97 == 96:
				evs = append(evs, chain.Event{Time: at, Kind: chain.KindTicksMissed, Payload: chain.TicksMissedPayload{Count: uint64(k%7 + 1), From: at.Add(-5 * time.Second), To: at.Add(-time.Second)}})
			case k%5 == 4:
				evs = append(evs, snapEvent(chain.KindSnapshotDeleted, src, at, uint64(1000+k)))
			default:
				evs = append(evs, snapEvent(chain.KindSnapshotCreated, src, at, uint64(1000+k)))
			}
		}
		if _, err := s.Append(t.Context(), evs...); err != nil {
			t.Fatal(err)
		}
	}
}

// env is a chain, a stand-in and a client connected to it.
type env struct {
	chain  *chain.Store
	srv    *qdranttest.Server
	client *qdrant.Client
	deps   Deps
	cfg    Config
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newEnv(t testing.TB, blocks int, opts qdranttest.Options) *env {
	t.Helper()
	srv := qdranttest.Start(t, opts)
	cl, err := Connect(Conn{Host: srv.Host(), Port: srv.Port(), APIKey: opts.APIKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	emb, err := NewMetaEmbedder(DefaultDim)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	e := &env{
		chain:  newChain(t, blocks),
		srv:    srv,
		client: cl,
		logs:   logs,
		cfg: Config{
			Collection: "events",
			Batch:      50,
			Parallel:   3,
			Backoff:    Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond},
		},
	}
	e.deps = Deps{Chain: e.chain, Qdrant: cl, Embedder: emb, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	return e
}

// checkExactlyOnce fails unless the collection holds exactly one point per
// chain block, heights 0..head, and the cursor is at the head.
func (e *env) checkExactlyOnce(t testing.TB) {
	t.Helper()
	head, err := e.chain.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ids, ok := e.srv.IDs(e.cfg.Collection)
	if !ok {
		t.Fatalf("collection %s missing", e.cfg.Collection)
	}
	if uint64(len(ids)) != head.Height+1 {
		t.Fatalf("%d points for %d blocks", len(ids), head.Height+1)
	}
	for i, id := range ids {
		if id != uint64(i) {
			t.Fatalf("point %d has id %d: gap or stray point", i, id)
		}
	}
	cur, ok, err := e.chain.Cursor(t.Context(), CursorName(e.cfg.Collection))
	if err != nil || !ok || cur != head.Height {
		t.Fatalf("cursor %d (set %v, %v), want head %d", cur, ok, err, head.Height)
	}
	n, err := e.client.Count(t.Context(), &qdrant.CountPoints{CollectionName: e.cfg.Collection, Exact: qdrant.PtrOf(true)})
	if err != nil || n != head.Height+1 {
		t.Fatalf("count over gRPC %d, %v; want %d", n, err, head.Height+1)
	}
}

func fmtIDs(ids []uint64) string { return fmt.Sprint(ids) }
