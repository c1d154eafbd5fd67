package qdranttest

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type pointsService struct {
	qdrant.UnimplementedPointsServer
	s *Server
}

func pointNum(id *qdrant.PointId) (uint64, error) {
	if _, ok := id.GetPointIdOptions().(*qdrant.PointId_Num); !ok {
		return 0, status.Error(codes.InvalidArgument, "Wrong input: this stand-in supports numeric point IDs only")
	}
	return id.GetNum(), nil
}

func denseData(v *qdrant.Vectors) ([]float32, bool) {
	vec := v.GetVector()
	if vec == nil {
		return nil, false
	}
	if d := vec.GetDense(); d != nil {
		return d.GetData(), true
	}
	// Qdrant still accepts vectors in the deprecated data field, so
	// its stand-in must too.
	//lint:ignore SA1019 mirrors Qdrant's acceptance of the old field
	data := vec.GetData()
	return data, data != nil
}

// pendingUpsert is an acknowledged wait=false upsert, not applied yet.
type pendingUpsert struct {
	c       *collection
	ids     []uint64
	vecs    [][]float32
	payload []map[string]*qdrant.Value
}

func (u pendingUpsert) apply() {
	for i, id := range u.ids {
		u.c.points[id] = &point{vector: u.vecs[i], payload: u.payload[i]}
	}
}

// applyPending applies every queued wait=false upsert, in order.
func (s *Server) applyPending() {
	for _, u := range s.pending {
		u.apply()
	}
	s.pending = nil
}

func (ps *pointsService) Upsert(ctx context.Context, req *qdrant.UpsertPoints) (*qdrant.PointsOperationResponse, error) {
	s := ps.s
	s.mu.Lock()
	s.upserts++
	if len(s.faults.fail) > 0 {
		c := s.faults.fail[0]
		s.faults.fail = s.faults.fail[1:]
		if c == codes.ResourceExhausted {
			retryAfterTrailer(ctx, s.faults.retryAfter)
		}
		s.mu.Unlock()
		return nil, status.Errorf(c, "injected fault: %s", c)
	}
	defer s.mu.Unlock()
	name := req.GetCollectionName()
	c, ok := s.lookup(name)
	if !ok {
		return nil, collectionNotFound(name)
	}
	// Validate the whole batch first: Qdrant applies a batch or refuses it.
	u := pendingUpsert{c: c}
	for _, p := range req.GetPoints() {
		id, err := pointNum(p.GetId())
		if err != nil {
			return nil, err
		}
		if s.faults.reject[id] {
			return nil, status.Errorf(codes.InvalidArgument, "Wrong input: point %d rejected (injected)", id)
		}
		v, ok := denseData(p.GetVectors())
		if !ok {
			return nil, status.Error(codes.InvalidArgument, "Wrong input: Not existing vector name error: ")
		}
		if uint64(len(v)) != c.size {
			return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Vector dimension error: expected dim: %d, got %d", c.size, len(v))
		}
		if c.distance == qdrant.Distance_Cosine {
			v = normalize(v)
		} else {
			v = slices.Clone(v)
		}
		u.ids = append(u.ids, id)
		u.vecs = append(u.vecs, v)
		u.payload = append(u.payload, p.GetPayload())
	}
	// Updates are applied in the order they arrived: a waited one after
	// every queued one.
	s.applyPending()
	if s.faults.drops > 0 {
		s.faults.drops--
		half := len(u.ids) / 2
		pendingUpsert{c: c, ids: u.ids[:half], vecs: u.vecs[:half], payload: u.payload[:half]}.apply()
		s.mu.Unlock()
		s.lis.dropAll()
		s.mu.Lock()
		return nil, status.Error(codes.Unavailable, "injected fault: connection dropped mid-batch")
	}
	st := qdrant.UpdateStatus_Completed
	if req.GetWait() {
		u.apply()
	} else {
		// Acknowledged now, applied later; lost if the server stops first.
		st = qdrant.UpdateStatus_Acknowledged
		s.pending = append(s.pending, u)
		if len(s.pending) == 1 && !s.stopped {
			s.applier = time.AfterFunc(s.asyncDelay, func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.applyPending()
			})
		}
	}
	if f := s.afterUpsert; f != nil {
		// Unlocked: the hook may block (kill a process) while other calls run.
		s.mu.Unlock()
		f(name, u.ids)
		s.mu.Lock()
	}
	if s.faults.loseAnswers > 0 {
		s.faults.loseAnswers--
		return nil, status.Error(codes.Unavailable, "injected fault: answer lost after apply")
	}
	op := uint64(s.upserts)
	return &qdrant.PointsOperationResponse{Result: &qdrant.UpdateResult{OperationId: &op, Status: st}}, nil
}

func (ps *pointsService) CreateFieldIndex(_ context.Context, req *qdrant.CreateFieldIndexCollection) (*qdrant.PointsOperationResponse, error) {
	return inCollection(ps.s, req.GetCollectionName(), func(c *collection) (*qdrant.PointsOperationResponse, error) {
		if req.FieldType == nil {
			return nil, status.Error(codes.InvalidArgument, "Wrong input: field_type is required")
		}
		// PayloadSchemaType numbers are FieldType's plus one (0 is unknown).
		c.schema[req.GetFieldName()] = &qdrant.PayloadSchemaInfo{DataType: qdrant.PayloadSchemaType(req.GetFieldType() + 1)}
		return &qdrant.PointsOperationResponse{Result: &qdrant.UpdateResult{Status: qdrant.UpdateStatus_Completed}}, nil
	})
}

func (ps *pointsService) Count(_ context.Context, req *qdrant.CountPoints) (*qdrant.CountResponse, error) {
	return inCollection(ps.s, req.GetCollectionName(), func(c *collection) (*qdrant.CountResponse, error) {
		var n uint64
		for id, p := range c.points {
			if matchFilter(req.GetFilter(), id, p.payload) {
				n++
			}
		}
		return &qdrant.CountResponse{Result: &qdrant.CountResult{Count: n}}, nil
	})
}

func withPayload(sel *qdrant.WithPayloadSelector, p map[string]*qdrant.Value) map[string]*qdrant.Value {
	if sel == nil || !sel.GetEnable() {
		return nil
	}
	return p
}

func withVectors(sel *qdrant.WithVectorsSelector, v []float32) *qdrant.VectorsOutput {
	if sel == nil || !sel.GetEnable() {
		return nil
	}
	return &qdrant.VectorsOutput{VectorsOptions: &qdrant.VectorsOutput_Vector{Vector: &qdrant.VectorOutput{
		Vector: &qdrant.VectorOutput_Dense{Dense: &qdrant.DenseVector{Data: v}},
	}}}
}

func (ps *pointsService) Scroll(_ context.Context, req *qdrant.ScrollPoints) (*qdrant.ScrollResponse, error) {
	return inCollection(ps.s, req.GetCollectionName(), func(c *collection) (*qdrant.ScrollResponse, error) {
		limit := uint64(10) // Qdrant's default page
		if req.Limit != nil {
			limit = uint64(req.GetLimit())
		}
		var from uint64
		if req.Offset != nil {
			o, err := pointNum(req.GetOffset())
			if err != nil {
				return nil, err
			}
			from = o
		}
		resp := &qdrant.ScrollResponse{}
		for _, id := range c.sortedIDs() {
			if id < from {
				continue
			}
			p := c.points[id]
			if !matchFilter(req.GetFilter(), id, p.payload) {
				continue
			}
			if uint64(len(resp.Result)) == limit {
				resp.NextPageOffset = qdrant.NewIDNum(id)
				break
			}
			resp.Result = append(resp.Result, &qdrant.RetrievedPoint{
				Id:      qdrant.NewIDNum(id),
				Payload: withPayload(req.GetWithPayload(), p.payload),
				Vectors: withVectors(req.GetWithVectors(), p.vector),
			})
		}
		return resp, nil
	})
}

func (ps *pointsService) Get(_ context.Context, req *qdrant.GetPoints) (*qdrant.GetResponse, error) {
	return inCollection(ps.s, req.GetCollectionName(), func(c *collection) (*qdrant.GetResponse, error) {
		resp := &qdrant.GetResponse{}
		for _, pid := range req.GetIds() {
			id, err := pointNum(pid)
			if err != nil {
				return nil, err
			}
			if p, ok := c.points[id]; ok {
				resp.Result = append(resp.Result, &qdrant.RetrievedPoint{
					Id:      qdrant.NewIDNum(id),
					Payload: withPayload(req.GetWithPayload(), p.payload),
					Vectors: withVectors(req.GetWithVectors(), p.vector),
				})
			}
		}
		return resp, nil
	})
}

// Query implements the nearest-neighbour form of the universal query,
// with a dense vector or a stored point's ID as input. As in Qdrant, a
// point given by ID is left out of its own results.
func (ps *pointsService) Query(_ context.Context, req *qdrant.QueryPoints) (*qdrant.QueryResponse, error) {
	return inCollection(ps.s, req.GetCollectionName(), func(c *collection) (*qdrant.QueryResponse, error) {
		in := req.GetQuery().GetNearest()
		if in == nil {
			return nil, status.Error(codes.InvalidArgument, "Wrong input: this stand-in supports nearest queries only")
		}
		var q []float32
		exclude, hasExclude := uint64(0), false
		switch {
		case in.GetDense() != nil:
			q = in.GetDense().GetData()
		case in.GetId() != nil:
			id, err := pointNum(in.GetId())
			if err != nil {
				return nil, err
			}
			p, ok := c.points[id]
			if !ok {
				return nil, status.Errorf(codes.NotFound, "Not found: No point with id %d found", id)
			}
			q, exclude, hasExclude = p.vector, id, true
		default:
			return nil, status.Error(codes.InvalidArgument, "Wrong input: this stand-in supports dense or ID query input only")
		}
		if uint64(len(q)) != c.size {
			return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Vector dimension error: expected dim: %d, got %d", c.size, len(q))
		}
		if c.distance == qdrant.Distance_Cosine {
			q = normalize(q)
		}
		limit := uint64(10)
		if req.Limit != nil {
			limit = req.GetLimit()
		}
		type hit struct {
			id    uint64
			score float64
		}
		var hits []hit
		for id, p := range c.points {
			if hasExclude && id == exclude {
				continue
			}
			if !matchFilter(req.GetFilter(), id, p.payload) {
				continue
			}
			hits = append(hits, hit{id, score(c.distance, q, p.vector)})
		}
		better := higherIsBetter(c.distance)
		sort.Slice(hits, func(i, j int) bool {
			if hits[i].score != hits[j].score {
				return (hits[i].score > hits[j].score) == better
			}
			return hits[i].id < hits[j].id
		})
		if uint64(len(hits)) > limit {
			hits = hits[:limit]
		}
		resp := &qdrant.QueryResponse{}
		for _, h := range hits {
			p := c.points[h.id]
			resp.Result = append(resp.Result, &qdrant.ScoredPoint{
				Id:      qdrant.NewIDNum(h.id),
				Score:   float32(h.score),
				Payload: withPayload(req.GetWithPayload(), p.payload),
				Vectors: withVectors(req.GetWithVectors(), p.vector),
			})
		}
		return resp, nil
	})
}

// matchFilter evaluates a Qdrant filter: every must, at least one should
// (when any), no must_not.
func matchFilter(f *qdrant.Filter, id uint64, p map[string]*qdrant.Value) bool {
	if f == nil {
		return true
	}
	for _, c := range f.GetMust() {
		if !matchCondition(c, id, p) {
			return false
		}
	}
	for _, c := range f.GetMustNot() {
		if matchCondition(c, id, p) {
			return false
		}
	}
	if len(f.GetShould()) > 0 {
		for _, c := range f.GetShould() {
			if matchCondition(c, id, p) {
				return true
			}
		}
		return false
	}
	return true
}

func matchCondition(c *qdrant.Condition, id uint64, p map[string]*qdrant.Value) bool {
	switch {
	case c.GetFilter() != nil:
		return matchFilter(c.GetFilter(), id, p)
	case c.GetHasId() != nil:
		for _, h := range c.GetHasId().GetHasId() {
			if n, err := pointNum(h); err == nil && n == id {
				return true
			}
		}
		return false
	case c.GetField() != nil:
		return matchField(c.GetField(), p[c.GetField().GetKey()])
	}
	return false
}

func matchField(f *qdrant.FieldCondition, v *qdrant.Value) bool {
	if v == nil {
		return false
	}
	// A list value matches when any element does, as in Qdrant.
	if l := v.GetListValue(); l != nil {
		for _, e := range l.GetValues() {
			if matchField(f, e) {
				return true
			}
		}
		return false
	}
	if m := f.GetMatch(); m != nil {
		switch mv := m.GetMatchValue().(type) {
		case *qdrant.Match_Keyword:
			_, isStr := v.GetKind().(*qdrant.Value_StringValue)
			return isStr && v.GetStringValue() == mv.Keyword
		case *qdrant.Match_Integer:
			_, isInt := v.GetKind().(*qdrant.Value_IntegerValue)
			return isInt && v.GetIntegerValue() == mv.Integer
		case *qdrant.Match_Boolean:
			_, isBool := v.GetKind().(*qdrant.Value_BoolValue)
			return isBool && v.GetBoolValue() == mv.Boolean
		case *qdrant.Match_Keywords:
			return slices.Contains(mv.Keywords.GetStrings(), v.GetStringValue())
		case *qdrant.Match_Integers:
			return slices.Contains(mv.Integers.GetIntegers(), v.GetIntegerValue())
		}
		return false
	}
	if r := f.GetRange(); r != nil {
		var x float64
		switch k := v.GetKind().(type) {
		case *qdrant.Value_IntegerValue:
			x = float64(k.IntegerValue)
		case *qdrant.Value_DoubleValue:
			x = k.DoubleValue
		default:
			return false
		}
		return (r.Lt == nil || x < r.GetLt()) && (r.Lte == nil || x <= r.GetLte()) &&
			(r.Gt == nil || x > r.GetGt()) && (r.Gte == nil || x >= r.GetGte())
	}
	if r := f.GetDatetimeRange(); r != nil {
		t, err := time.Parse(time.RFC3339Nano, v.GetStringValue())
		if err != nil {
			return false
		}
		return (r.Lt == nil || t.Before(r.GetLt().AsTime())) &&
			(r.Lte == nil || !t.After(r.GetLte().AsTime())) &&
			(r.Gt == nil || t.After(r.GetGt().AsTime())) &&
			(r.Gte == nil || !t.Before(r.GetGte().AsTime()))
	}
	return false
}
