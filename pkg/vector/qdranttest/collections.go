package qdranttest

import (
	"context"
	"maps"
	"math"
	"slices"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type point struct {
	vector  []float32
	payload map[string]*qdrant.Value
}

type collection struct {
	size     uint64
	distance qdrant.Distance
	points   map[uint64]*point
	schema   map[string]*qdrant.PayloadSchemaInfo
}

func newCollection(size uint64, d qdrant.Distance) *collection {
	return &collection{size: size, distance: d, points: map[uint64]*point{}, schema: map[string]*qdrant.PayloadSchemaInfo{}}
}

func (c *collection) sortedIDs() []uint64 {
	ids := make([]uint64, 0, len(c.points))
	for id := range c.points {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (c *collection) info() *qdrant.CollectionInfo {
	n := uint64(len(c.points))
	schema := map[string]*qdrant.PayloadSchemaInfo{}
	for k, v := range c.schema {
		schema[k] = &qdrant.PayloadSchemaInfo{DataType: v.DataType, Points: &n}
	}
	return &qdrant.CollectionInfo{
		Status:          qdrant.CollectionStatus_Green,
		OptimizerStatus: &qdrant.OptimizerStatus{Ok: true},
		SegmentsCount:   1,
		PointsCount:     &n,
		PayloadSchema:   schema,
		Config: &qdrant.CollectionConfig{
			Params: &qdrant.CollectionParams{
				ShardNumber:   1,
				VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: c.size, Distance: c.distance}),
			},
		},
	}
}

type collectionsService struct {
	qdrant.UnimplementedCollectionsServer
	s *Server
}

func (cs *collectionsService) Get(_ context.Context, req *qdrant.GetCollectionInfoRequest) (*qdrant.GetCollectionInfoResponse, error) {
	return inCollection(cs.s, req.GetCollectionName(), func(c *collection) (*qdrant.GetCollectionInfoResponse, error) {
		return &qdrant.GetCollectionInfoResponse{Result: c.info()}, nil
	})
}

func (cs *collectionsService) List(context.Context, *qdrant.ListCollectionsRequest) (*qdrant.ListCollectionsResponse, error) {
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.collections))
	for n := range s.collections {
		names = append(names, n)
	}
	slices.Sort(names)
	resp := &qdrant.ListCollectionsResponse{}
	for _, n := range names {
		resp.Collections = append(resp.Collections, &qdrant.CollectionDescription{Name: n})
	}
	return resp, nil
}

func (cs *collectionsService) CollectionExists(_ context.Context, req *qdrant.CollectionExistsRequest) (*qdrant.CollectionExistsResponse, error) {
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.lookup(req.GetCollectionName())
	return &qdrant.CollectionExistsResponse{Result: &qdrant.CollectionExists{Exists: ok}}, nil
}

func (cs *collectionsService) Create(_ context.Context, req *qdrant.CreateCollection) (*qdrant.CollectionOperationResponse, error) {
	s := cs.s
	name := req.GetCollectionName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "Validation error in body: [collection_name: length is 0]")
	}
	p := req.GetVectorsConfig().GetParams()
	if p == nil {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: this stand-in supports one unnamed dense vector per point")
	}
	if p.GetSize() == 0 || p.GetSize() > 65536 {
		return nil, status.Errorf(codes.InvalidArgument, "Validation error in body: [vectors_config.size: value %d invalid, must be from 1 to 65536]", p.GetSize())
	}
	if p.GetDistance() == qdrant.Distance_UnknownDistance {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: unknown distance")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.collections[name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "Wrong input: Collection `%s` already exists!", name)
	}
	if _, ok := s.aliases[name]; ok {
		// Qdrant's words; a bad-input error, so InvalidArgument over gRPC.
		return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Can't create collection with name %s. Alias with the same name already exists", name)
	}
	s.collections[name] = newCollection(p.GetSize(), p.GetDistance())
	return &qdrant.CollectionOperationResponse{Result: true}, nil
}

func (cs *collectionsService) Delete(_ context.Context, req *qdrant.DeleteCollection) (*qdrant.CollectionOperationResponse, error) {
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.deleteCollection(req.GetCollectionName())
	// Qdrant answers false, not an error, for a collection it did not have.
	return &qdrant.CollectionOperationResponse{Result: ok}, nil
}

// deleteCollection drops a collection and, as Qdrant does, its aliases.
func (s *Server) deleteCollection(name string) bool {
	_, ok := s.collections[name]
	delete(s.collections, name)
	for a, target := range s.aliases {
		if target == name {
			delete(s.aliases, a)
		}
	}
	return ok
}

// UpdateAliases applies the actions in order, as Qdrant's
// TableOfContent::update_aliases does: under one lock over collections
// and aliases, so no reader sees the state between two actions of a
// request, but not all or none: actions before a failing one stay
// applied. CreateAlias overwrites an alias of the same name; DeleteAlias
// of an alias that does not exist does nothing.
func (cs *collectionsService) UpdateAliases(_ context.Context, req *qdrant.ChangeAliases) (*qdrant.CollectionOperationResponse, error) {
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range req.GetActions() {
		switch {
		case op.GetCreateAlias() != nil:
			a := op.GetCreateAlias()
			if _, ok := s.collections[a.GetCollectionName()]; !ok {
				return nil, collectionNotFound(a.GetCollectionName())
			}
			if _, ok := s.collections[a.GetAliasName()]; ok {
				return nil, status.Errorf(codes.AlreadyExists, "Wrong input: Collection `%s` already exists!", a.GetAliasName())
			}
			s.aliases[a.GetAliasName()] = a.GetCollectionName()
		case op.GetDeleteAlias() != nil:
			delete(s.aliases, op.GetDeleteAlias().GetAliasName())
		case op.GetRenameAlias() != nil:
			r := op.GetRenameAlias()
			target, ok := s.aliases[r.GetOldAliasName()]
			if !ok {
				return nil, status.Errorf(codes.NotFound, "Not found: Alias %s not found", r.GetOldAliasName())
			}
			delete(s.aliases, r.GetOldAliasName())
			s.aliases[r.GetNewAliasName()] = target
		default:
			return nil, status.Error(codes.InvalidArgument, "Wrong input: empty alias action")
		}
	}
	return &qdrant.CollectionOperationResponse{Result: true}, nil
}

func (cs *collectionsService) ListAliases(context.Context, *qdrant.ListAliasesRequest) (*qdrant.ListAliasesResponse, error) {
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return &qdrant.ListAliasesResponse{Aliases: s.aliasList("")}, nil
}

func (cs *collectionsService) ListCollectionAliases(_ context.Context, req *qdrant.ListCollectionAliasesRequest) (*qdrant.ListAliasesResponse, error) {
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.collections[req.GetCollectionName()]; !ok {
		return nil, collectionNotFound(req.GetCollectionName())
	}
	return &qdrant.ListAliasesResponse{Aliases: s.aliasList(req.GetCollectionName())}, nil
}

// aliasList lists aliases (of one collection, or all for ""), by name.
func (s *Server) aliasList(collection string) []*qdrant.AliasDescription {
	names := slices.Sorted(maps.Keys(s.aliases))
	var out []*qdrant.AliasDescription
	for _, a := range names {
		if collection == "" || s.aliases[a] == collection {
			out = append(out, &qdrant.AliasDescription{AliasName: a, CollectionName: s.aliases[a]})
		}
	}
	return out
}

// lookup finds a collection by name or alias, as every Qdrant operation
// on points and collection info does.
func (s *Server) lookup(name string) (*collection, bool) {
	if c, ok := s.collections[name]; ok {
		return c, true
	}
	if target, ok := s.aliases[name]; ok {
		c, ok := s.collections[target]
		return c, ok
	}
	return nil, false
}

// normalize scales v to unit length, as Qdrant does for cosine
// collections on upsert and query, so the score is the dot product.
func normalize(v []float32) []float32 {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	out := slices.Clone(v)
	if sum == 0 {
		return out
	}
	n := math.Sqrt(sum)
	for i := range out {
		out[i] = float32(float64(out[i]) / n)
	}
	return out
}

// score is Qdrant's similarity: higher is better for cosine and dot,
// and for Euclid and Manhattan the distance itself, ordered ascending.
func score(d qdrant.Distance, a, b []float32) float64 {
	var s float64
	switch d {
	case qdrant.Distance_Euclid:
		for i := range a {
			x := float64(a[i] - b[i])
			s += x * x
		}
		return math.Sqrt(s)
	case qdrant.Distance_Manhattan:
		for i := range a {
			s += math.Abs(float64(a[i] - b[i]))
		}
		return s
	default:
		for i := range a {
			s += float64(a[i]) * float64(b[i])
		}
		return s
	}
}

func higherIsBetter(d qdrant.Distance) bool {
	return d == qdrant.Distance_Cosine || d == qdrant.Distance_Dot
}

// inCollection runs f on the named collection (or alias target) under
// the server lock, or answers Qdrant's NotFound when there is none.
func inCollection[R any](s *Server, name string, f func(*collection) (R, error)) (R, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.lookup(name)
	if !ok {
		var zero R
		return zero, collectionNotFound(name)
	}
	return f(c)
}
