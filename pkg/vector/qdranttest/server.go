// Package qdranttest is an in-process stand-in for a Qdrant server, for
// tests and benchmarks on machines where no Qdrant can run. It serves the
// gRPC services github.com/qdrant/go-client exports (Collections, Points,
// Qdrant health) on a real TCP listener, so the unchanged production client
// talks to it over a real connection.
//
// It follows Qdrant's documented behaviour for what ghostbridge uses:
// upsert overwrites by ID, vector size checked (InvalidArgument), unknown
// collection NotFound, wrong or missing "api-key" Unauthenticated, cosine
// vectors normalised on upsert, payload filters (keyword/integer match,
// numeric and datetime ranges, has_id), scroll, count and nearest query.
// It adds fault injection (Unavailable/ResourceExhausted answers, dropped
// connections, applied-but-lost answers, rejected points).
//
// It must not be used by production code: it keeps everything in memory
// and implements only the subset above.
package qdranttest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Version is what the health check reports.
const Version = "1.17.0"

// Server is a running stand-in. Its methods are safe for concurrent use.
type Server struct {
	addr   *net.TCPAddr
	lis    *trackingListener
	grpc   *grpc.Server
	apiKey string

	mu          sync.Mutex
	collections map[string]*collection
	aliases     map[string]string // alias -> collection
	faults      faults
	upserts     int // Upsert calls answered or failed, faults included
	// AfterUpsert, when set, runs after an upsert was applied and before
	// it is answered: tests kill a client process there.
	afterUpsert func(collection string, ids []uint64)
}

type faults struct {
	// codes to answer the next upserts with, in order, without applying.
	fail []codes.Code
	// applied then answered Unavailable, as if the answer was lost.
	loseAnswers int
	// connections closed in the middle of the next upserts, before applying.
	drops int
	// point IDs answered with InvalidArgument whenever they are upserted.
	reject map[uint64]bool
}

// Options configure a Server.
type Options struct {
	// APIKey, when set, is required in the "api-key" metadata of every call.
	APIKey string
	// Addr is the address to listen on; "" means 127.0.0.1:0.
	Addr string
}

// Start starts a stand-in on a fresh localhost port and stops it when the
// test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Listen(opts)
	if err != nil {
		t.Fatalf("qdrant stand-in: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Listen starts a stand-in; Stop ends it.
func Listen(opts Options) (*Server, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	s := &Server{
		addr:        l.Addr().(*net.TCPAddr),
		lis:         &trackingListener{Listener: l, conns: map[net.Conn]bool{}},
		apiKey:      opts.APIKey,
		collections: map[string]*collection{},
		aliases:     map[string]string{},
	}
	s.grpc = grpc.NewServer(grpc.UnaryInterceptor(s.auth), grpc.MaxRecvMsgSize(64<<20))
	qdrant.RegisterCollectionsServer(s.grpc, &collectionsService{s: s})
	qdrant.RegisterPointsServer(s.grpc, &pointsService{s: s})
	qdrant.RegisterQdrantServer(s.grpc, &healthService{})
	go s.grpc.Serve(s.lis) //nolint:errcheck // ends with Stop
	return s, nil
}

// Host is the address the server listens on.
func (s *Server) Host() string { return s.addr.IP.String() }

// Port is the TCP port the server listens on.
func (s *Server) Port() int { return s.addr.Port }

// Stop closes the listener and every connection.
func (s *Server) Stop() { s.grpc.Stop() }

// FailUpserts makes the next len(cs) upserts fail with the given codes, in
// order, without applying them (Qdrant down or overloaded).
func (s *Server) FailUpserts(cs ...codes.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.fail = append(s.faults.fail, cs...)
}

// LoseAnswers makes the next n upserts apply their points and then answer
// Unavailable, as when the connection dies after the write.
func (s *Server) LoseAnswers(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.loseAnswers += n
}

// DropConnections makes the next n upserts close every client connection
// in the middle of the call, before anything is applied.
func (s *Server) DropConnections(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.drops += n
}

// RejectPoint makes every upsert holding point id fail with
// InvalidArgument, as Qdrant answers a point it will never accept.
func (s *Server) RejectPoint(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.reject == nil {
		s.faults.reject = map[uint64]bool{}
	}
	s.faults.reject[id] = true
}

// AfterUpsert sets a hook run after each applied upsert, before it is
// answered (nil removes it).
func (s *Server) AfterUpsert(f func(collection string, ids []uint64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.afterUpsert = f
}

// UpsertCalls counts upsert calls received, failed ones included.
func (s *Server) UpsertCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upserts
}

// IDs returns the numeric point IDs of a collection (or an alias), in
// ascending order, and false when it does not exist.
func (s *Server) IDs(name string) ([]uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.lookup(name)
	if !ok {
		return nil, false
	}
	return c.sortedIDs(), true
}

// Payload returns a stored point's payload.
func (s *Server) Payload(name string, id uint64) (map[string]*qdrant.Value, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.lookup(name)
	if !ok {
		return nil, false
	}
	p, ok := c.points[id]
	if !ok {
		return nil, false
	}
	return p.payload, true
}

// ClearPoints forgets a collection's points behind the client's back, so
// a long benchmark measures the client's memory, not the stand-in's store.
func (s *Server) ClearPoints(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.lookup(name); ok {
		clear(c.points)
	}
}

// CreateCollection makes a collection directly, as another tool or an
// older configuration would have.
func (s *Server) CreateCollection(name string, size uint64, d qdrant.Distance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.collections[name] = newCollection(size, d)
}

// auth checks the api-key metadata the way Qdrant does when started with
// an API key: a missing or different key is Unauthenticated. The health
// check is open, as in Qdrant.
func (s *Server) auth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if s.apiKey == "" || info.FullMethod == qdrant.Qdrant_HealthCheck_FullMethodName {
		return h(ctx, req)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	keys := md.Get("api-key")
	if len(keys) == 0 {
		return nil, status.Error(codes.Unauthenticated, "Must provide an API key or an Authorization bearer token")
	}
	if keys[0] != s.apiKey {
		return nil, status.Error(codes.Unauthenticated, "Invalid api-key")
	}
	return h(ctx, req)
}

// collectionNotFound is Qdrant's answer for a name it does not know.
func collectionNotFound(name string) error {
	return status.Errorf(codes.NotFound, "Not found: Collection `%s` doesn't exist!", name)
}

// trackingListener remembers accepted connections so a fault can cut them.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns[c] = true
	l.mu.Unlock()
	return &trackedConn{Conn: c, l: l}, nil
}

func (l *trackingListener) dropAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
		delete(l.conns, c)
	}
}

type trackedConn struct {
	net.Conn
	l *trackingListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c.Conn)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

type healthService struct {
	qdrant.UnimplementedQdrantServer
}

func (healthService) HealthCheck(context.Context, *qdrant.HealthCheckRequest) (*qdrant.HealthCheckReply, error) {
	return &qdrant.HealthCheckReply{Title: "qdrant - vector search engine", Version: Version}, nil
}
