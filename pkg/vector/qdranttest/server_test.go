package qdranttest

import (
	"strings"
	"testing"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func client(t *testing.T, s *Server, key string) *qdrant.Client {
	t.Helper()
	c, err := qdrant.NewClient(&qdrant.Config{Host: s.Host(), Port: s.Port(), APIKey: key, SkipCompatibilityCheck: true, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func pt(id uint64, v []float32, kind string, h int64) *qdrant.PointStruct {
	return &qdrant.PointStruct{Id: qdrant.NewIDNum(id), Vectors: qdrant.NewVectorsDense(v),
		Payload: map[string]*qdrant.Value{"kind": qdrant.NewValueString(kind), "height": qdrant.NewValueInt(h)}}
}

// TestDocumentedBehaviour pins the Qdrant behaviour the stand-in promises,
// through the unchanged client over a real connection.
func TestDocumentedBehaviour(t *testing.T) {
	s := Start(t, Options{})
	c := client(t, s, "")
	ctx := t.Context()

	// Unknown collection: NotFound with Qdrant's message.
	_, err := c.GetCollectionInfo(ctx, "nope")
	if status.Code(err) != codes.NotFound || !strings.HasSuffix(err.Error(), "desc = Not found: Collection `nope` doesn't exist!") {
		t.Fatalf("unknown collection: %v", err)
	}
	_, err = c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "nope", Points: []*qdrant.PointStruct{pt(1, []float32{1, 0}, "a", 1)}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("upsert into unknown collection: %v", err)
	}

	create := &qdrant.CreateCollection{CollectionName: "c", VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Cosine})}
	if err := c.CreateCollection(ctx, create); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateCollection(ctx, create); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second create: %v", err)
	}
	if ok, err := c.CollectionExists(ctx, "c"); !ok || err != nil {
		t.Fatalf("exists: %v %v", ok, err)
	}

	// Vector size mismatch: InvalidArgument, nothing applied.
	_, err = c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Points: []*qdrant.PointStruct{pt(1, []float32{1, 0}, "a", 1), pt(2, []float32{1, 0, 0}, "a", 2)}})
	if status.Code(err) != codes.InvalidArgument || !strings.HasSuffix(err.Error(), "desc = Wrong input: Vector dimension error: expected dim: 2, got 3") {
		t.Fatalf("dimension mismatch: %v", err)
	}
	if n, _ := c.Count(ctx, &qdrant.CountPoints{CollectionName: "c"}); n != 0 {
		t.Fatalf("a refused batch was partly applied: %d points", n)
	}

	// Upsert overwrites by ID; cosine vectors are normalised.
	for _, p := range [][]*qdrant.PointStruct{
		{pt(1, []float32{3, 4}, "a", 1), pt(2, []float32{0, 1}, "b", 2), pt(3, []float32{1, 0}, "a", 3)},
		{pt(1, []float32{1, 0}, "b", 10)},
	} {
		res, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Wait: qdrant.PtrOf(true), Points: p})
		if err != nil || res.GetStatus() != qdrant.UpdateStatus_Completed {
			t.Fatalf("upsert: %v %v", res, err)
		}
	}
	if n, _ := c.Count(ctx, &qdrant.CountPoints{CollectionName: "c"}); n != 3 {
		t.Fatalf("count after overwrite %d, want 3", n)
	}
	got, err := c.Get(ctx, &qdrant.GetPoints{CollectionName: "c", Ids: []*qdrant.PointId{qdrant.NewIDNum(1)}, WithPayload: qdrant.NewWithPayload(true)})
	if err != nil || len(got) != 1 || got[0].GetPayload()["height"].GetIntegerValue() != 10 {
		t.Fatalf("overwritten point: %v %v", got, err)
	}

	// Filters: keyword match, integer range, has_id, must_not.
	for _, tc := range []struct {
		f    *qdrant.Filter
		want uint64
	}{
		{&qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("kind", "a")}}, 1},
		{&qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeywords("kind", "a", "b")}}, 3},
		{&qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewRange("height", &qdrant.Range{Gte: qdrant.PtrOf(2.0), Lt: qdrant.PtrOf(10.0)})}}, 2},
		{&qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchInt("height", 10)}}, 1},
		{&qdrant.Filter{MustNot: []*qdrant.Condition{qdrant.NewHasID(qdrant.NewIDNum(1))}}, 2},
		{&qdrant.Filter{Should: []*qdrant.Condition{qdrant.NewMatchKeyword("kind", "zzz")}}, 0},
	} {
		if n, err := c.Count(ctx, &qdrant.CountPoints{CollectionName: "c", Filter: tc.f}); err != nil || n != tc.want {
			t.Errorf("count %v = %d, %v; want %d", tc.f, n, err, tc.want)
		}
	}

	// Scroll pages in ID order with next_page_offset.
	page, next, err := c.ScrollAndOffset(ctx, &qdrant.ScrollPoints{CollectionName: "c", Limit: qdrant.PtrOf(uint32(2))})
	if err != nil || len(page) != 2 || page[0].GetId().GetNum() != 1 || next.GetNum() != 3 {
		t.Fatalf("scroll page 1: %v next %v %v", page, next, err)
	}

	// Query: cosine nearest, best first; by ID leaves the point out.
	hits, err := c.Query(ctx, &qdrant.QueryPoints{CollectionName: "c", Query: qdrant.NewQueryDense([]float32{2, 0.1})})
	if err != nil || len(hits) != 3 || hits[0].GetId().GetNum() != 1 || hits[0].GetScore() < 0.99 || hits[2].GetId().GetNum() != 2 {
		t.Fatalf("query: %v %v", hits, err)
	}
	hits, err = c.Query(ctx, &qdrant.QueryPoints{CollectionName: "c", Query: qdrant.NewQueryID(qdrant.NewIDNum(1)), Limit: qdrant.PtrOf(uint64(1))})
	if err != nil || len(hits) != 1 || hits[0].GetId().GetNum() != 3 {
		t.Fatalf("query by id: %v %v", hits, err)
	}

	// Payload index shows in collection info.
	if _, err := c.CreateFieldIndex(ctx, &qdrant.CreateFieldIndexCollection{CollectionName: "c", FieldName: "kind", FieldType: qdrant.FieldType_FieldTypeKeyword.Enum()}); err != nil {
		t.Fatal(err)
	}
	info, err := c.GetCollectionInfo(ctx, "c")
	if err != nil || info.GetPayloadSchema()["kind"].GetDataType() != qdrant.PayloadSchemaType_Keyword || info.GetPointsCount() != 3 ||
		info.GetConfig().GetParams().GetVectorsConfig().GetParams().GetSize() != 2 {
		t.Fatalf("info %v %v", info, err)
	}
}

func TestAPIKeyChecked(t *testing.T) {
	s := Start(t, Options{APIKey: "k1"})
	ctx := t.Context()
	for key, want := range map[string]codes.Code{"": codes.Unauthenticated, "k2": codes.Unauthenticated, "k1": codes.OK} {
		_, err := client(t, s, key).ListCollections(ctx)
		if status.Code(err) != want {
			t.Errorf("key %q: %v, want %s", key, err, want)
		}
	}
	// Health is open, as in Qdrant.
	if r, err := client(t, s, "").HealthCheck(ctx); err != nil || r.GetVersion() != Version {
		t.Errorf("health: %v %v", r, err)
	}
}

func TestFaults(t *testing.T) {
	s := Start(t, Options{})
	c := client(t, s, "")
	ctx := t.Context()
	s.CreateCollection("c", 2, qdrant.Distance_Dot)
	up := func(id uint64) error {
		_, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Points: []*qdrant.PointStruct{pt(id, []float32{1, 1}, "a", 1)}})
		return err
	}
	s.FailUpserts(codes.Unavailable, codes.ResourceExhausted)
	if err := up(1); status.Code(err) != codes.Unavailable {
		t.Fatalf("first: %v", err)
	}
	if err := up(1); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second: %v", err)
	}
	if ids, _ := s.IDs("c"); len(ids) != 0 {
		t.Fatalf("failed upserts applied: %v", ids)
	}
	s.LoseAnswers(1)
	if err := up(2); status.Code(err) != codes.Unavailable {
		t.Fatalf("lost answer: %v", err)
	}
	if ids, _ := s.IDs("c"); len(ids) != 1 || ids[0] != 2 {
		t.Fatalf("lost answer not applied: %v", ids)
	}
	s.DropConnections(1)
	if err := up(3); status.Code(err) != codes.Unavailable {
		t.Fatalf("dropped connection: %v", err)
	}
	if err := up(3); err != nil {
		t.Fatalf("after reconnect: %v", err)
	}
	s.RejectPoint(9)
	if err := up(9); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("rejected point: %v", err)
	}
	if s.UpsertCalls() != 6 {
		t.Fatalf("upsert calls %d, want 6", s.UpsertCalls())
	}
}
