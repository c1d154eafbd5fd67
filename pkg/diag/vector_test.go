package diag_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/diag"
	"github.com/ghostbridge/ghostbridge/pkg/vector"
	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// vectorChain makes a chain database with genesis plus n blocks and, when
// cursor >= 0, the collection's sync cursor at that height.
func vectorChain(t *testing.T, n int, collection string, cursor int64) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "chain.db")
	st, err := chain.Open(t.Context(), db, chain.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := time.Now().UTC()
	evs := make([]chain.Event, n)
	for i := range evs {
		at = at.Add(time.Second)
		evs[i] = chain.Event{Time: at, Kind: chain.KindTicksMissed, Payload: chain.TicksMissedPayload{Count: 1, From: at, To: at}}
	}
	if _, err := st.Append(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	if cursor >= 0 {
		if err := st.SetCursor(t.Context(), vector.CursorName(collection), uint64(cursor)); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func vectorInputs(srv *qdranttest.Server, db string) diag.VectorInputs {
	return diag.VectorInputs{
		Conn:       vector.Conn{Host: srv.Host(), Port: srv.Port()},
		Collection: "events", Dim: 64, Distance: vector.Cosine, DB: db, LagMax: 60,
	}
}

func runVector(t *testing.T, in diag.VectorInputs, timeout time.Duration) map[string]diag.Result {
	t.Helper()
	return runGroup(t, diag.VectorChecks(in), timeout, 3)
}

func TestVectorChecks(t *testing.T) {
	srv := qdranttest.Start(t, qdranttest.Options{})
	srv.CreateCollection("events", 64, qdrant.Distance_Cosine)
	srv.CreateCollection("small", 32, qdrant.Distance_Cosine)
	srv.CreateCollection("dotty", 64, qdrant.Distance_Dot)
	synced := vectorChain(t, 100, "events", 100)

	t.Run("healthy", func(t *testing.T) {
		rs := runVector(t, vectorInputs(srv, synced), 5*time.Second)
		expectResult(t, rs["vector.reachable"], diag.StatusPass, []string{"Qdrant " + qdranttest.Version, srv.Host()}, nil)
		expectResult(t, rs["vector.collection"], diag.StatusPass, []string{`"events"`, "size 64", "distance Cosine"}, nil)
		expectResult(t, rs["vector.lag"], diag.StatusPass, []string{"0 blocks behind head 100", "cursor 100"}, nil)
	})
	t.Run("missing collection", func(t *testing.T) {
		in := vectorInputs(srv, synced)
		in.Collection = "nosuch"
		rs := runVector(t, in, 5*time.Second)
		expectResult(t, rs["vector.reachable"], diag.StatusPass, nil, nil)
		expectResult(t, rs["vector.collection"], diag.StatusFail, []string{`"nosuch" does not exist`}, []string{"ghostbridge-vector.service", "vector.collection"})
	})
	t.Run("wrong dimension", func(t *testing.T) {
		in := vectorInputs(srv, synced)
		in.Collection = "small"
		rs := runVector(t, in, 5*time.Second)
		expectResult(t, rs["vector.collection"], diag.StatusFail, []string{"size 32", "wants size 64"}, []string{"vector.dimension"})
	})
	t.Run("wrong distance", func(t *testing.T) {
		in := vectorInputs(srv, synced)
		in.Collection = "dotty"
		rs := runVector(t, in, 5*time.Second)
		expectResult(t, rs["vector.collection"], diag.StatusFail, []string{"distance Dot", "distance Cosine"}, []string{"vector.distance"})
	})
	t.Run("lag above threshold", func(t *testing.T) {
		rs := runVector(t, vectorInputs(srv, vectorChain(t, 100, "events", 30)), 5*time.Second)
		expectResult(t, rs["vector.lag"], diag.StatusWarn, []string{"70 blocks", "behind head 100", "cursor 30", "diag.sync_lag_max is 60"},
			[]string{"ghostbridge-vector.service"})
	})
	t.Run("lag at threshold", func(t *testing.T) {
		rs := runVector(t, vectorInputs(srv, vectorChain(t, 100, "events", 40)), 5*time.Second)
		expectResult(t, rs["vector.lag"], diag.StatusPass, []string{"60 blocks behind"}, nil)
	})
	t.Run("never synced", func(t *testing.T) {
		rs := runVector(t, vectorInputs(srv, vectorChain(t, 100, "events", -1)), 5*time.Second)
		expectResult(t, rs["vector.lag"], diag.StatusWarn, []string{"101 blocks", "never synced"}, []string{"ghostbridge vector status"})
	})
	t.Run("cursor past head", func(t *testing.T) {
		rs := runVector(t, vectorInputs(srv, vectorChain(t, 10, "events", 50)), 5*time.Second)
		expectResult(t, rs["vector.lag"], diag.StatusWarn, []string{"cursor 50 is past the chain head 10"}, []string{"systemctl restart ghostbridge-vector.service"})
	})
	t.Run("no chain database", func(t *testing.T) {
		rs := runVector(t, vectorInputs(srv, filepath.Join(t.TempDir(), "none.db")), 5*time.Second)
		expectResult(t, rs["vector.lag"], diag.StatusFail, []string{"does not exist"}, []string{"db"})
	})
}

func TestVectorQdrantStopped(t *testing.T) {
	srv := qdranttest.Start(t, qdranttest.Options{})
	srv.CreateCollection("events", 64, qdrant.Distance_Cosine)
	in := vectorInputs(srv, vectorChain(t, 10, "events", 10))
	srv.Stop()
	rs := runVector(t, in, 5*time.Second)
	expectResult(t, rs["vector.reachable"], diag.StatusFail, []string{"not reachable"}, []string{"systemctl status qdrant.service"})
	expectResult(t, rs["vector.collection"], diag.StatusUnknown, []string{"not reachable"}, []string{"vector.reachable"})
	// The lag is read from the chain database alone.
	expectResult(t, rs["vector.lag"], diag.StatusPass, []string{"0 blocks behind head 10"}, nil)
}

func TestVectorAPIKeyRefused(t *testing.T) {
	srv := qdranttest.Start(t, qdranttest.Options{APIKey: "right"})
	srv.CreateCollection("events", 64, qdrant.Distance_Cosine)
	in := vectorInputs(srv, vectorChain(t, 1, "events", 1))
	in.Conn.APIKey = "wrong"
	rs := runVector(t, in, 5*time.Second)
	expectResult(t, rs["vector.reachable"], diag.StatusFail, []string{"refuses the API key"}, []string{"vector.api_key_file"})
	if got := rs["vector.reachable"].Detail + rs["vector.reachable"].Hint; strings.Contains(got, "wrong") || strings.Contains(got, "right") {
		t.Errorf("the key leaked into the result: %q", got)
	}
	in.Conn.APIKey = "right"
	rs = runVector(t, in, 5*time.Second)
	expectResult(t, rs["vector.reachable"], diag.StatusPass, nil, nil)
	expectResult(t, rs["vector.collection"], diag.StatusPass, nil, nil)
}

// A Qdrant that accepts connections and never answers makes the Qdrant
// checks unknown once the timeout passes.
func TestVectorQdrantHung(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { <-ctx.Done(); c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close() })
	addr := l.Addr().(*net.TCPAddr)
	in := diag.VectorInputs{Conn: vector.Conn{Host: "127.0.0.1", Port: addr.Port}, Collection: "events", Dim: 64,
		DB: vectorChain(t, 1, "events", 1), LagMax: 60}
	rs := runVector(t, in, 300*time.Millisecond)
	expectResult(t, rs["vector.reachable"], diag.StatusUnknown, nil, []string{"diag.timeout"})
	expectResult(t, rs["vector.collection"], diag.StatusUnknown, nil, []string{"diag.timeout"})
	expectResult(t, rs["vector.lag"], diag.StatusPass, nil, nil)
}
