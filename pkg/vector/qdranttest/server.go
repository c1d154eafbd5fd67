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
// Upserts with wait=false are acknowledged at once and applied later, in
// order, as Qdrant's update queue does (lost if the server stops first);
// an upsert with wait=true is applied after every queued one. Alias
// actions are applied one by one under one lock, as Qdrant does. A
// read-only API key gets PermissionDenied on every write. It adds fault
// injection (Unavailable/ResourceExhausted answers, with Qdrant's
// retry-after trailer, dropped connections, applied-but-lost answers,
// rejected points, and any code on any method). It validates collection
// names as Qdrant does (1..255 characters; no < > : " / \ | ? * on
// create) and can serve over TLS with a certificate from a CA made for
// the test (NewCA).
//
// It must not be used by production code: it keeps everything in memory
// and implements only the subset above.
package qdranttest

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Version is what the health check reports.
const Version = "1.17.0"

// Server is a running stand-in. Its methods are safe for concurrent use.
type Server struct {
	addr       *net.TCPAddr
	lis        *trackingListener
	grpc       *grpc.Server
	apiKey     string
	roKey      string
	asyncDelay time.Duration

	mu          sync.Mutex
	collections map[string]*collection
	aliases     map[string]string // alias -> collection
	faults      faults
	upserts     int // Upsert calls answered or failed, faults included
	// pending holds acknowledged wait=false upserts not applied yet.
	pending []pendingUpsert
	applier *time.Timer
	stopped bool
	// AfterUpsert, when set, runs after an upsert was applied and before
	// it is answered: tests kill a client process there.
	afterUpsert func(collection string, ids []uint64)
}

type faults struct {
	// codes to answer the next upserts with, in order, without applying.
	fail []codes.Code
	// retry-after seconds sent with injected ResourceExhausted answers
	// (0: none).
	retryAfter int
	// applied then answered Unavailable, as if the answer was lost.
	loseAnswers int
	// connections closed in the middle of the next upserts, after the
	// first half of the batch was applied.
	drops int
	// errors to answer the next calls of a method with, by method name
	// ("Get", "Create", "Upsert", ...).
	calls map[string][]error
	// point IDs answered with InvalidArgument whenever they are upserted.
	reject map[uint64]bool
}

// Options configure a Server.
type Options struct {
	// APIKey, when set, is required in the "api-key" metadata of every call.
	APIKey string
	// ReadOnlyAPIKey, when set, is also accepted, for reads only: writes
	// answer PermissionDenied, as Qdrant's read_only_api_key does.
	ReadOnlyAPIKey string
	// AsyncDelay is how long a wait=false upsert stays queued before it is
	// applied; 0 means 50ms.
	AsyncDelay time.Duration
	// Addr is the address to listen on; "" means 127.0.0.1:0.
	Addr string
	// TLS, when set, serves gRPC over TLS with this configuration (its
	// certificate), as Qdrant does with service.enable_tls; CA.ServerTLS
	// makes one.
	TLS *tls.Config
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
		roKey:       opts.ReadOnlyAPIKey,
		asyncDelay:  cmp.Or(opts.AsyncDelay, 50*time.Millisecond),
		collections: map[string]*collection{},
		aliases:     map[string]string{},
	}
	sopts := []grpc.ServerOption{grpc.UnaryInterceptor(s.auth), grpc.MaxRecvMsgSize(64 << 20)}
	if opts.TLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	s.grpc = grpc.NewServer(sopts...)
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

// Stop closes the listener and every connection. Queued wait=false
// upserts are lost, as when Qdrant is killed before applying them.
func (s *Server) Stop() {
	s.grpc.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	s.pending = nil
	if s.applier != nil {
		s.applier.Stop()
	}
}

// Pending counts acknowledged wait=false upserts not applied yet.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Throttle makes the next n upserts answer ResourceExhausted with a
// retry-after trailer of secs seconds, as Qdrant's rate limiter does.
func (s *Server) Throttle(n, secs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults.fail = append(s.faults.fail, codes.ResourceExhausted)
	}
	s.faults.retryAfter = secs
}

// FailCalls makes the next len(errs) calls of a method answer with errs,
// in order, before anything is done. method is the gRPC method name
// without its service ("Get", "Create", "Upsert", "UpdateAliases" ...);
// errs are status errors (status.Error).
func (s *Server) FailCalls(method string, errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.calls == nil {
		s.faults.calls = map[string][]error{}
	}
	s.faults.calls[method] = append(s.faults.calls[method], errs...)
}

// DeleteCollection drops a collection behind the client's back, as an
// operator or a lost volume would.
func (s *Server) DeleteCollection(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteCollection(name)
}

// DeletePoints drops points behind the client's back, as restoring
// Qdrant from an older copy does.
func (s *Server) DeletePoints(name string, ids ...uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.lookup(name); ok {
		for _, id := range ids {
			delete(c.points, id)
		}
	}
}

// Aliases returns alias -> collection.
func (s *Server) Aliases() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.aliases)
}

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

// DropConnections makes the next n upserts apply the first half of their
// points and then close every client connection, unanswered.
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

// writes are the methods a read-only key may not call.
var writes = map[string]bool{
	"Create": true, "Update": true, "Delete": true, "UpdateAliases": true,
	"Upsert": true, "UpdateVectors": true, "DeleteVectors": true, "SetPayload": true,
	"OverwritePayload": true, "DeletePayload": true, "ClearPayload": true,
	"CreateFieldIndex": true, "DeleteFieldIndex": true, "UpdateBatch": true,
}

// auth checks the api-key metadata the way Qdrant does when started with
// an API key: a missing or unknown key is Unauthenticated ("Invalid API
// key or JWT"), the read-only key may read but not write
// (PermissionDenied). The health check is open, as in Qdrant. It then
// answers injected per-method faults.
func (s *Server) auth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	if s.apiKey != "" && info.FullMethod != qdrant.Qdrant_HealthCheck_FullMethodName {
		md, _ := metadata.FromIncomingContext(ctx)
		keys := md.Get("api-key")
		switch {
		case len(keys) == 0:
			return nil, status.Error(codes.Unauthenticated, "Must provide an API key or an Authorization bearer token")
		case keys[0] == s.apiKey:
		case s.roKey != "" && keys[0] == s.roKey:
			if writes[method] {
				return nil, status.Errorf(codes.PermissionDenied, "Forbidden: Write access to %s is required", method)
			}
		default:
			return nil, status.Error(codes.Unauthenticated, "Invalid API key or JWT")
		}
	}
	if err := checkCollectionName(req, method); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if errs := s.faults.calls[method]; len(errs) > 0 {
		s.faults.calls[method] = errs[1:]
		s.mu.Unlock()
		return nil, errs[0]
	}
	s.mu.Unlock()
	return h(ctx, req)
}

// Qdrant's collection name rules (lib/api/build.rs and
// lib/common/common/src/validation.rs in Qdrant's source): every request
// naming a collection is validated to 1..255 characters, and creating one
// also refuses the characters in nameForbidden. A request failing them is
// InvalidArgument before anything is looked up.
const (
	maxNameChars  = 255
	nameForbidden = "<>:\"/\\|?*\x00\x1f"
)

// checkCollectionName applies Qdrant's request validation of the
// collection_name field, when req has one.
func checkCollectionName(req any, method string) error {
	r, ok := req.(interface{ GetCollectionName() string })
	if !ok {
		return nil
	}
	name := r.GetCollectionName()
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return status.Error(codes.InvalidArgument, "Validation error in body: [collection_name: length is 0]")
	case n > maxNameChars:
		return status.Errorf(codes.InvalidArgument, "Validation error in body: [collection_name: length is %d, must be at most %d]", n, maxNameChars)
	}
	if method == "Create" {
		if i := strings.IndexAny(name, nameForbidden); i >= 0 {
			return status.Errorf(codes.InvalidArgument, "Validation error in body: [collection_name: collection name cannot contain %q char]", name[i])
		}
	}
	return nil
}

// retryAfterTrailer sends Qdrant's retry-after trailer with a
// ResourceExhausted answer.
func retryAfterTrailer(ctx context.Context, secs int) {
	if secs > 0 {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", strconv.Itoa(secs)))
	}
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
