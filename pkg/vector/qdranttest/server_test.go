package qdranttest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

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
	// Qdrant's words for a wrong key.
	if _, err := client(t, s, "k2").ListCollections(ctx); !strings.HasSuffix(err.Error(), "desc = Invalid API key or JWT") {
		t.Errorf("wrong key: %v", err)
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
		_, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Wait: qdrant.PtrOf(true), Points: []*qdrant.PointStruct{pt(id, []float32{1, 1}, "a", 1)}})
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
	// A dropped batch is half applied.
	s.DropConnections(1)
	var four []*qdrant.PointStruct
	for id := uint64(10); id < 14; id++ {
		four = append(four, pt(id, []float32{1, 1}, "a", 1))
	}
	if _, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Wait: qdrant.PtrOf(true), Points: four}); status.Code(err) != codes.Unavailable {
		t.Fatalf("dropped batch: %v", err)
	}
	if ids, _ := s.IDs("c"); fmt.Sprint(ids) != "[2 3 10 11]" {
		t.Fatalf("dropped batch applied %v, want its first half", ids)
	}
	s.RejectPoint(9)
	if err := up(9); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("rejected point: %v", err)
	}
	if s.UpsertCalls() != 7 {
		t.Fatalf("upsert calls %d, want 7", s.UpsertCalls())
	}
}

// TestThrottleRetryAfter: ResourceExhausted carries Qdrant's retry-after
// trailer, which the client turns into QdrantResourceExhaustedError.
func TestThrottleRetryAfter(t *testing.T) {
	s := Start(t, Options{})
	c := client(t, s, "")
	s.CreateCollection("c", 2, qdrant.Distance_Dot)
	s.Throttle(1, 7)
	_, err := c.Upsert(t.Context(), &qdrant.UpsertPoints{CollectionName: "c", Wait: qdrant.PtrOf(true), Points: []*qdrant.PointStruct{pt(1, []float32{1, 1}, "a", 1)}})
	var re *qdrant.QdrantResourceExhaustedError
	if !errors.As(err, &re) || re.RetryAfterS != 7 {
		t.Fatalf("throttled upsert: %v, want retry after 7 s", err)
	}
}

// TestWaitFalseIsAsync: a wait=false upsert is acknowledged before it is
// applied, applied in order before a later waited one, and lost when the
// server stops first.
func TestWaitFalseIsAsync(t *testing.T) {
	s := Start(t, Options{AsyncDelay: time.Hour})
	c := client(t, s, "")
	ctx := t.Context()
	s.CreateCollection("c", 2, qdrant.Distance_Dot)
	r, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Wait: qdrant.PtrOf(false), Points: []*qdrant.PointStruct{pt(1, []float32{1, 1}, "a", 1)}})
	if err != nil || r.GetStatus() != qdrant.UpdateStatus_Acknowledged {
		t.Fatalf("async upsert: %v %v", r, err)
	}
	if ids, _ := s.IDs("c"); len(ids) != 0 || s.Pending() != 1 {
		t.Fatalf("async upsert applied at once: %v", ids)
	}
	if _, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Wait: qdrant.PtrOf(true), Points: []*qdrant.PointStruct{pt(2, []float32{1, 1}, "a", 1)}}); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.IDs("c"); fmt.Sprint(ids) != "[1 2]" {
		t.Fatalf("after a waited upsert: %v", ids)
	}
	if _, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Points: []*qdrant.PointStruct{pt(3, []float32{1, 1}, "a", 1)}}); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if ids, _ := s.IDs("c"); fmt.Sprint(ids) != "[1 2]" || s.Pending() != 0 {
		t.Fatalf("queued upsert survived the stop: %v", ids)
	}

	// With the default delay it is applied without another call.
	s2 := Start(t, Options{})
	c2 := client(t, s2, "")
	s2.CreateCollection("c", 2, qdrant.Distance_Dot)
	if _, err := c2.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Points: []*qdrant.PointStruct{pt(5, []float32{1, 1}, "a", 1)}}); err != nil {
		t.Fatal(err)
	}
	for s2.Pending() > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if ids, _ := s2.IDs("c"); fmt.Sprint(ids) != "[5]" {
		t.Fatalf("queued upsert never applied: %v", ids)
	}
}

// TestAliases pins Qdrant's alias semantics: actions applied one by one
// (an earlier one stays when a later fails), create overwrites, delete of
// a missing alias is a no-op, a collection cannot take an alias's name.
func TestAliases(t *testing.T) {
	s := Start(t, Options{})
	c := client(t, s, "")
	ctx := t.Context()
	s.CreateCollection("c1", 2, qdrant.Distance_Dot)
	s.CreateCollection("c2", 2, qdrant.Distance_Dot)
	err := c.UpdateAliases(ctx, []*qdrant.AliasOperations{qdrant.NewAliasCreate("a", "c1"), qdrant.NewAliasCreate("b", "missing")})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("create on a missing collection: %v", err)
	}
	if got := s.Aliases(); fmt.Sprint(got) != "map[a:c1]" {
		t.Fatalf("after a failed request: %v, want the first action applied", got)
	}
	if err := c.CreateAlias(ctx, "a", "c2"); err != nil {
		t.Fatalf("create over an existing alias: %v", err)
	}
	if got := s.Aliases(); fmt.Sprint(got) != "map[a:c2]" {
		t.Fatalf("create did not overwrite: %v", got)
	}
	if err := c.DeleteAlias(ctx, "nope"); err != nil {
		t.Fatalf("delete of a missing alias: %v", err)
	}
	err = c.CreateCollection(ctx, &qdrant.CreateCollection{CollectionName: "a", VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Dot})})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "Can't create collection with name a. Alias with the same name already exists") {
		t.Fatalf("create collection named like an alias: %v", err)
	}
	if err := c.CreateAlias(ctx, "c1", "c2"); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("alias named like a collection: %v", err)
	}
	if err := c.DeleteCollection(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	if got := s.Aliases(); len(got) != 0 {
		t.Fatalf("aliases of a deleted collection kept: %v", got)
	}
}

// TestReadOnlyKeyAndFailCalls: the read-only key reads but may not write
// (PermissionDenied); FailCalls answers any method with any error.
func TestReadOnlyKeyAndFailCalls(t *testing.T) {
	s := Start(t, Options{APIKey: "rw", ReadOnlyAPIKey: "ro"})
	s.CreateCollection("c", 2, qdrant.Distance_Dot)
	ro := client(t, s, "ro")
	ctx := t.Context()
	if _, err := ro.GetCollectionInfo(ctx, "c"); err != nil {
		t.Fatalf("read with the read-only key: %v", err)
	}
	_, err := ro.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Wait: qdrant.PtrOf(true), Points: []*qdrant.PointStruct{pt(1, []float32{1, 1}, "a", 1)}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("write with the read-only key: %v", err)
	}
	s.FailCalls("Get", status.Error(codes.Internal, "boom"))
	rw := client(t, s, "rw")
	if _, err := rw.GetCollectionInfo(ctx, "c"); status.Code(err) != codes.Internal {
		t.Fatalf("injected: %v", err)
	}
	if _, err := rw.GetCollectionInfo(ctx, "c"); err != nil {
		t.Fatalf("after the injected one: %v", err)
	}
}

// TestCollectionNameRules: names are 1..255 characters on every call (as
// Qdrant validates each request's collection_name), counted in
// characters, and creating one refuses Qdrant's forbidden characters.
func TestCollectionNameRules(t *testing.T) {
	s := Start(t, Options{})
	c := client(t, s, "")
	create := func(name string) error {
		return c.CreateCollection(t.Context(), &qdrant.CreateCollection{
			CollectionName: name,
			VectorsConfig:  qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 4, Distance: qdrant.Distance_Cosine}),
		})
	}
	for _, name := range []string{strings.Repeat("a", 255), strings.Repeat("é", 255), "with space.and-dots_"} {
		if err := create(name); err != nil {
			t.Errorf("create %d characters: %v", len([]rune(name)), err)
		}
	}
	long := strings.Repeat("a", 256)
	if err := create(long); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "must be at most 255") {
		t.Errorf("create 256 characters: %v", err)
	}
	if _, err := c.GetCollectionInfo(t.Context(), long); status.Code(err) != codes.InvalidArgument {
		t.Errorf("get 256 characters: %v", err)
	}
	if _, err := c.GetCollectionInfo(t.Context(), strings.Repeat("a", 254)); status.Code(err) != codes.NotFound {
		t.Errorf("get an unknown 254-character name: %v", err)
	}
	for _, ch := range []string{"<", ">", ":", `"`, "/", `\`, "|", "?", "*", "\x00", "\x1f"} {
		if err := create("a" + ch + "b"); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "cannot contain") {
			t.Errorf("create with %q: %v", ch, err)
		}
	}
}
