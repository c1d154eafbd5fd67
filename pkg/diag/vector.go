package diag

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/vector"
)

// Hints of the vector group.
const (
	hintQdrantDown = "systemctl status qdrant.service; check vector.host, vector.port and vector.tls"
	hintQdrantSlow = "systemctl status qdrant.service (is it overloaded or wedged?), or raise diag.timeout"
	hintQdrantKey  = "check the API key: the file vector.api_key_file names, else GHOSTBRIDGE_QDRANT_API_KEY"
	hintSyncLoop   = "systemctl status ghostbridge-vector.service; journalctl -u ghostbridge-vector.service; ghostbridge vector status"
)

// VectorInputs are what the vector group reads.
type VectorInputs struct {
	// Conn reaches Qdrant's gRPC API; details name it without the key.
	Conn vector.Conn
	// Collection, Dim and Distance are the configured collection and its
	// vector parameters (vector.collection, vector.dimension,
	// vector.distance; "" distance is Cosine).
	Collection string
	Dim        int
	Distance   vector.Distance
	// DB is the chain database holding the sync cursor; it is opened only
	// if it exists.
	DB string
	// LagMax is diag.sync_lag_max: vector.lag warns when more blocks than
	// this are not yet in Qdrant.
	LagMax uint64
}

// VectorChecks returns the vector group: vector.reachable (Qdrant answers
// its health check and accepts the API key), vector.collection (the
// collection exists with the configured size and distance, as sync
// requires) and vector.lag (the sync cursor in the chain database is
// within LagMax blocks of the head). Each Qdrant check makes its own
// client for the run; vector.lag reads the chain database alone, so it
// answers while Qdrant is down.
func VectorChecks(in VectorInputs) []Check {
	return []Check{
		{Name: "vector.reachable", Run: func(ctx context.Context) Outcome { return withQdrant(ctx, in, qdrantReachable) }},
		{Name: "vector.collection", Run: func(ctx context.Context) Outcome { return withQdrant(ctx, in, qdrantCollection) }},
		{Name: "vector.lag", Run: func(ctx context.Context) Outcome { return syncLag(ctx, in) }},
	}
}

func withQdrant(ctx context.Context, in VectorInputs, fn func(context.Context, VectorInputs, *qdrant.Client) Outcome) Outcome {
	cl, err := vector.Connect(in.Conn)
	if err != nil {
		return Fail("fix vector.host and vector.port", "cannot make a Qdrant client: %v", err)
	}
	defer cl.Close()
	return fn(ctx, in, cl)
}

// qdrantTrouble turns a failed Qdrant call into an outcome: a call that
// ran out of time cannot tell (unknown); a refused key or an endpoint
// that is not there is a failure of the check named by what.
func qdrantTrouble(ctx context.Context, in VectorInputs, err error, failing bool) Outcome {
	code := status.Code(err)
	mk := Unknown
	if failing {
		mk = Fail
	}
	switch {
	case ctx.Err() != nil || code == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
		return Unknown(hintQdrantSlow, "Qdrant at %s did not answer in time: %s", in.Conn, grpcMessage(err))
	case code == codes.Unauthenticated || code == codes.PermissionDenied:
		return mk(hintQdrantKey, "Qdrant at %s refuses the API key: %s", in.Conn, grpcMessage(err))
	case code == codes.Unavailable:
		return mk(hintQdrantDown, "Qdrant at %s is not reachable: %s", in.Conn, grpcMessage(err))
	}
	return mk(hintQdrantDown, "Qdrant at %s: %s", in.Conn, grpcMessage(err))
}

// grpcMessage is the innermost gRPC status, without the client's and
// gRPC's wrapping ("HealthCheck() failed: rpc error: code = ... desc =").
func grpcMessage(err error) string {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		st := se.GRPCStatus()
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return err.Error()
}

func qdrantReachable(ctx context.Context, in VectorInputs, cl *qdrant.Client) Outcome {
	h, err := cl.HealthCheck(ctx)
	if err != nil {
		return qdrantTrouble(ctx, in, err, true)
	}
	// The health check needs no key; a read does, so a wrong key fails
	// here rather than in every sync.
	if _, err := cl.CollectionExists(ctx, in.Collection); err != nil {
		return qdrantTrouble(ctx, in, err, true)
	}
	return Pass("Qdrant %s at %s answers", h.GetVersion(), in.Conn)
}

func qdrantCollection(ctx context.Context, in VectorInputs, cl *qdrant.Client) Outcome {
	st, err := vector.InspectCollection(ctx, cl, in.Collection)
	if err != nil {
		o := qdrantTrouble(ctx, in, err, false)
		if o.Status == StatusUnknown && o.Hint != hintQdrantSlow {
			o.Hint = "see vector.reachable; " + o.Hint
		}
		return o
	}
	if !st.Exists {
		return Fail("start the sync, which creates it: systemctl start ghostbridge-vector.service (or ghostbridge vector sync); or fix vector.collection",
			"collection %q does not exist in Qdrant at %s", in.Collection, in.Conn)
	}
	want := uint64(max(in.Dim, 0))
	if err := st.Check(want, in.Distance); err != nil {
		var mm *vector.MismatchError
		if errors.As(err, &mm) && mm.NamedOrSparseVectors {
			return Fail("point vector.collection at a collection sync made, or ghostbridge vector reindex into a new one",
				"collection %q has named or sparse vectors, not one dense vector", in.Collection)
		}
		return Fail("set vector.dimension and vector.distance to the collection's, or ghostbridge vector reindex into a new collection with the configured ones",
			"collection %q has size %d and distance %s; the configuration wants size %d and distance %s (sync refuses it)",
			in.Collection, st.Size, st.Distance, mm.WantSize, mm.WantDist)
	}
	return Pass("collection %q: size %d, distance %s, about %d points", in.Collection, st.Size, st.Distance, st.Points)
}

func syncLag(ctx context.Context, in VectorInputs) Outcome {
	return withChain(ctx, in.DB, func(st *chain.Store) Outcome {
		l, err := vector.SyncLag(ctx, st, in.Collection)
		if err != nil {
			if ctx.Err() != nil {
				return Unknown("raise diag.timeout", "reading the sync cursor did not finish: %v", err)
			}
			return Unknown("ghostbridge vector status shows the same numbers", "cannot read the sync cursor: %v", err)
		}
		if l.Ahead {
			return Warn("restart the sync, which re-checks its cursor against Qdrant: systemctl restart ghostbridge-vector.service",
				"sync cursor %d is past the chain head %d (chain database restored from an older copy?)", *l.Cursor, l.Head)
		}
		where := "never synced"
		if l.Cursor != nil {
			where = fmt.Sprintf("cursor %d", *l.Cursor)
		}
		if l.Blocks > in.LagMax {
			return Warn(hintSyncLoop, "collection %q is %d blocks (%s of chain time) behind head %d (%s); diag.sync_lag_max is %d",
				in.Collection, l.Blocks, l.Behind.Round(time.Millisecond), l.Head, where, in.LagMax)
		}
		return Pass("collection %q is %d blocks behind head %d (%s; at most %d)", in.Collection, l.Blocks, l.Head, where, in.LagMax)
	})
}
