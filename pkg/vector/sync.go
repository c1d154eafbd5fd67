package vector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// States sent to the Notifier (the sd_notify protocol).
const (
	NotifyReady    = "READY=1"
	NotifyWatchdog = "WATCHDOG=1"
	NotifyStopping = "STOPPING=1"
)

// Payload fields that get an index, and their types: the filters search
// uses.
var indexes = []struct {
	field string
	typ   qdrant.FieldType
}{
	{"height", qdrant.FieldType_FieldTypeInteger},
	{"kind", qdrant.FieldType_FieldTypeKeyword},
	{"source", qdrant.FieldType_FieldTypeKeyword},
	{"time", qdrant.FieldType_FieldTypeDatetime},
}

// SyncResult reports one drain of pending blocks.
type SyncResult struct {
	From     uint64        `json:"from"`    // first height sent
	To       uint64        `json:"to"`      // last height acknowledged
	Points   int           `json:"points"`  // points upserted
	Batches  int           `json:"batches"` // upsert calls that succeeded
	Retries  int           `json:"retries"` // calls retried after Unavailable & co
	Skipped  []uint64      `json:"skipped"` // poison blocks moved past (SkipPoison)
	Cursor   uint64        `json:"cursor"`  // cursor after the drain
	Head     uint64        `json:"head"`    // chain head seen
	Duration time.Duration `json:"duration_ns"`
}

// RunOptions tune Run.
type RunOptions struct {
	// Once drains what is pending and returns.
	Once bool
	// OnSync, when set, is called after every drain that moved the cursor.
	OnSync func(SyncResult)
	// OnBatch, when set, is called after each acknowledged window with the
	// cursor and head (progress for long catch-ups).
	OnBatch func(cursor, head uint64)
	// OnDrain, when set, is called after every drain, also one that found
	// nothing to send or failed, so a watcher sees the cursor and head
	// while the loop is idle (metrics).
	OnDrain func(SyncResult)
	// OnQdrantError, when set, is called for every Qdrant call that
	// failed, retried or not, with the operation and the gRPC code
	// (ResourceExhausted for the client's retry-after error). It is
	// called from the goroutine that made the call and must not block.
	OnQdrantError func(op string, code codes.Code)
}

// syncer holds what lives across drains: the outage state, so an outage
// is logged once when it starts and once when it ends, and the loop's
// liveness for the watchdog.
type syncer struct {
	d       Deps
	cfg     Config
	log     *slog.Logger
	name    string
	onError func(op string, code codes.Code) // RunOptions.OnQdrantError

	mu          sync.Mutex
	outage      bool
	outageSince time.Time
	failing     int // calls currently retrying
	retries     int
	// aliveUntil is when the loop, if it has not marked itself again,
	// counts as wedged: each step marks how long it may take.
	aliveUntil time.Time
}

// Bounds on steps that have no deadline of their own, for liveness: chain
// database work between Qdrant calls, and slack for scheduling.
const (
	chainSlack = 10 * time.Second
	liveGrace  = time.Second
)

func newSyncer(d Deps, cfg Config) *syncer {
	cfg = cfg.withDefaults()
	return &syncer{d: d, cfg: cfg, log: d.log(), name: CursorName(cfg.Collection)}
}

// Run keeps the collection in step with the chain: it ensures the
// collection, checks that it holds what the cursor says, then drains
// pending blocks every Interval. It holds the vector lock of the chain
// database throughout (*LockedError when a sync or reindex holds it). It
// returns nil when ctx is cancelled, after committing the batches in hand.
//
// READY=1 is sent as soon as the loop runs, before Qdrant answered: a
// Qdrant outage at boot is waited out, not a start-up failure. WATCHDOG=1
// is sent every half watchdog interval while the loop is alive, that is
// while every step (a Qdrant call, a backoff sleep, the wait between
// drains) is within its bound.
func Run(ctx context.Context, d Deps, cfg Config, opts RunOptions) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	l, err := acquireLock(LockPath(d.Chain.Path()))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, l.Release()) }()
	s := newSyncer(d, cfg)
	s.onError = opts.OnQdrantError
	s.alive(chainSlack)
	d.notify(NotifyReady)
	defer d.notify(NotifyStopping)
	stop := s.watchdog()
	defer stop()
	if err := s.start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for {
		s.alive(chainSlack)
		res, err := s.drain(ctx, opts.OnBatch)
		if res.Points > 0 || len(res.Skipped) > 0 {
			if opts.OnSync != nil {
				opts.OnSync(res)
			}
		}
		if opts.OnDrain != nil {
			opts.OnDrain(res)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if opts.Once {
			return nil
		}
		s.alive(s.cfg.Interval)
		t := time.NewTimer(s.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Sync drains what is pending once: Run with Once, returning the result.
func Sync(ctx context.Context, d Deps, cfg Config) (res SyncResult, err error) {
	if err := cfg.Validate(); err != nil {
		return SyncResult{}, err
	}
	l, err := acquireLock(LockPath(d.Chain.Path()))
	if err != nil {
		return SyncResult{}, err
	}
	defer func() { err = errors.Join(err, l.Release()) }()
	s := newSyncer(d, cfg)
	if err := s.start(ctx); err != nil {
		return SyncResult{}, err
	}
	return s.drain(ctx, nil)
}

// alive marks the loop alive for the next d (plus grace); overlapping
// marks of parallel calls keep the latest bound.
func (s *syncer) alive(d time.Duration) {
	until := time.Now().Add(d + liveGrace)
	s.mu.Lock()
	if until.After(s.aliveUntil) {
		s.aliveUntil = until
	}
	s.mu.Unlock()
}

// watchdog sends WATCHDOG=1 every half watchdog interval while the loop
// is alive, on its own ticker, so long calls and backoff sleeps do not
// starve it; a wedged loop stops the pings and the service manager
// restarts it. Waiting out a Qdrant outage counts as alive: restarting
// would not bring Qdrant back. The returned func stops it.
func (s *syncer) watchdog() func() {
	wd := s.d.WatchdogInterval
	if wd <= 0 || s.d.Notifier == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(wd / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				s.mu.Lock()
				ok := now.Before(s.aliveUntil)
				s.mu.Unlock()
				if ok {
					s.d.notify(NotifyWatchdog)
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// RefusedError: Qdrant refused a call for a reason no retry and no other
// block can fix: a wrong API key (Unauthenticated), a key that may not
// write (PermissionDenied), or a collection in no state to take writes
// (FailedPrecondition). The loop stops on it; it is never poison.
type RefusedError struct {
	Op         string
	Collection string
	Err        error
}

func (e *RefusedError) Error() string {
	hint := ""
	switch status.Code(e.Err) {
	case codes.Unauthenticated:
		hint = ": check the API key (vector.api_key_file or GHOSTBRIDGE_QDRANT_API_KEY)"
	case codes.PermissionDenied:
		hint = ": the API key may not do this (a read-only key?); use a key with write access"
	case codes.FailedPrecondition:
		hint = ": the collection cannot take this now; check it in Qdrant"
	case codes.Unavailable:
		if untrusted(e.Err) {
			hint = ": the server's certificate is not trusted; set vector.tls_ca_file to the CA bundle that signed it"
		}
	}
	return fmt.Sprintf("qdrant refused %s on collection %s: %v%s", e.Op, e.Collection, e.Err, hint)
}

// Unwrap returns Qdrant's error.
func (e *RefusedError) Unwrap() error { return e.Err }

// retryable reports whether Qdrant may accept the same call later:
// unavailable, overloaded, slow, or failing inside (Internal, Unknown).
func retryable(err error) bool {
	// The client turns ResourceExhausted with a retry-after into its own
	// type, which carries no status code.
	var re *qdrant.QdrantResourceExhaustedError
	if errors.As(err, &re) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted,
		codes.Internal, codes.Unknown:
		return true
	}
	return false
}

// errorCode is the gRPC code of a failed Qdrant call. The client's
// retry-after error carries none; it is ResourceExhausted.
func errorCode(err error) codes.Code {
	var re *qdrant.QdrantResourceExhaustedError
	if errors.As(err, &re) {
		return codes.ResourceExhausted
	}
	return status.Code(err)
}

// refused reports whether err is one no retry and no other block fixes.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition:
		return true
	}
	return untrusted(err)
}

// untrusted reports whether the TLS handshake failed because the server's
// certificate did not verify (unknown CA, wrong name, expired). gRPC
// reports it as Unavailable with the text of crypto/tls's
// CertificateVerificationError; retrying would fail the same way until
// the operator fixes the CA bundle or the certificate.
func untrusted(err error) bool {
	return status.Code(err) == codes.Unavailable &&
		strings.Contains(status.Convert(err).Message(), "tls: failed to verify certificate")
}

// wait is the backoff before retry number attempt (0-based): uniform in
// [w/2, w] with w = min(Max, Initial·2^attempt); rnd(n) is uniform in
// [0, n).
func (b Backoff) wait(attempt int, rnd func(int64) int64) time.Duration {
	w := b.Initial << min(attempt, 30)
	if w > b.Max || w <= 0 {
		w = b.Max
	}
	return w/2 + time.Duration(rnd(int64(w/2)+1))
}

// call runs f until it succeeds, fails for good, or ctx ends. Each attempt
// gets its own deadline and is not cut short by ctx: a batch in hand when
// SIGTERM arrives is finished, so its acknowledgement can be committed.
// A retry-after Qdrant sends with ResourceExhausted is waited at least.
func (s *syncer) call(ctx context.Context, what string, f func(context.Context) error) error {
	failing := false
	defer func() {
		if failing {
			s.recovered()
		}
	}()
	for attempt := 0; ; attempt++ {
		s.alive(s.cfg.Timeout)
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if s.onError != nil {
			s.onError(what, errorCode(err))
		}
		if refused(err) {
			return &RefusedError{Op: what, Collection: s.cfg.Collection, Err: err}
		}
		if !retryable(err) {
			return err
		}
		s.failed(what, err, !failing)
		failing = true
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w := s.cfg.Backoff.wait(attempt, rand.Int64N)
		var re *qdrant.QdrantResourceExhaustedError
		if errors.As(err, &re) && re.RetryAfterS > 0 {
			w = max(w, time.Duration(re.RetryAfterS)*time.Second)
		}
		s.alive(w)
		t := time.NewTimer(w)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// failed counts a retryable failure; first says this call just started
// failing. The outage starts with the first call that fails while none
// was failing, and is logged then.
func (s *syncer) failed(what string, err error, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retries++
	if first {
		s.failing++
	}
	if !s.outage {
		s.outage = true
		s.outageSince = s.d.now()
		s.log.Warn("qdrant unavailable, retrying with backoff", "op", what, "collection", s.cfg.Collection, "err", err)
	}
}

// recovered ends one call's failing streak (it succeeded, failed for
// good, or was cancelled). The outage ends, and is logged, when no call
// is failing any more, so parallel batches do not log it twice.
func (s *syncer) recovered() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing--
	if s.outage && s.failing == 0 {
		s.outage = false
		s.log.Info("qdrant available again", "collection", s.cfg.Collection,
			"outage", s.d.now().Sub(s.outageSince).Round(time.Millisecond), "retries", s.retries)
	}
}

// start readies the collection and the cursor: ensure, then make the
// cursor no higher than what the collection provably holds.
func (s *syncer) start(ctx context.Context) error {
	if _, err := s.ensure(ctx); err != nil {
		return err
	}
	return s.verifyCursor(ctx)
}

// getInfo reads the collection's info, retrying while Qdrant is down.
func (s *syncer) getInfo(ctx context.Context) (*qdrant.CollectionInfo, error) {
	var info *qdrant.CollectionInfo
	err := s.call(ctx, "get collection", func(c context.Context) error {
		var err error
		info, err = s.d.Qdrant.GetCollectionInfo(c, s.cfg.Collection)
		return err
	})
	return info, err
}

// ensure makes sure the collection exists with the configured size and
// distance and has the payload indexes; a collection with other
// parameters is refused, never recreated. When it creates the collection
// it resets the cursor to "nothing synced": a lost collection is refilled
// from height 0, not from where the old one ended.
func (s *syncer) ensure(ctx context.Context) (*qdrant.CollectionInfo, error) {
	q, name := s.d.Qdrant, s.cfg.Collection
	info, err := s.getInfo(ctx)
	if status.Code(err) == codes.NotFound {
		err = s.call(ctx, "create collection", func(c context.Context) error {
			return q.CreateCollection(c, &qdrant.CreateCollection{
				CollectionName: name,
				VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{
					Size: uint64(s.d.Embedder.Dim()), Distance: s.cfg.Distance.proto(),
				}),
			})
		})
		switch {
		case err == nil:
			s.log.Info("qdrant collection created", "collection", name, "size", s.d.Embedder.Dim(), "distance", s.cfg.Distance)
			s.alive(chainSlack)
			if err := s.d.Chain.DeleteCursor(context.WithoutCancel(ctx), s.name); err != nil {
				return nil, err
			}
		case status.Code(err) == codes.AlreadyExists:
			// Another syncer created it between get and create; verifyCursor
			// checks what it holds.
		default:
			// InvalidArgument "Alias with the same name already exists"
			// among others: not a collection we may use.
			return nil, fmt.Errorf("qdrant collection %s: create: %w", name, err)
		}
		info, err = s.getInfo(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("qdrant collection %s: %w", name, err)
	}
	if err := checkParams(name, info, uint64(s.d.Embedder.Dim()), s.cfg.Distance); err != nil {
		return nil, err
	}
	for _, ix := range indexes {
		if _, ok := info.GetPayloadSchema()[ix.field]; ok {
			continue
		}
		err := s.call(ctx, "create payload index", func(c context.Context) error {
			_, err := q.CreateFieldIndex(c, &qdrant.CreateFieldIndexCollection{
				CollectionName: name, FieldName: ix.field, FieldType: &ix.typ, Wait: qdrant.PtrOf(true),
			})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("qdrant collection %s: payload index %s: %w", name, ix.field, err)
		}
	}
	return info, nil
}

// skipped returns the heights recorded as poison for the collection.
func (s *syncer) skipped(ctx context.Context) (map[uint64]bool, error) {
	cs, err := s.d.Chain.Cursors(ctx, skippedPrefix(s.cfg.Collection))
	if err != nil {
		return nil, err
	}
	m := make(map[uint64]bool, len(cs))
	for _, c := range cs {
		m[c.Height] = true
	}
	return m, nil
}

// verifyCursor checks that the point at the cursor's height exists and
// carries the chain block's hash. When it does not (the collection was
// lost and recreated, or Qdrant was restored from an older copy), it finds
// the last height that does by binary search over point IDs (= heights;
// the collection is filled in height order, so what it holds is a prefix)
// and moves the cursor back there, so the next drain refills the rest.
func (s *syncer) verifyCursor(ctx context.Context) error {
	store := s.d.Chain
	s.alive(chainSlack)
	cur, ok, err := store.Cursor(ctx, s.name)
	if err != nil || !ok {
		return err
	}
	skipped, err := s.skipped(ctx)
	if err != nil {
		return err
	}
	// good(h): the collection holds heights up to h. A height skipped as
	// poison has no point; the highest height at or below h that is not
	// skipped stands for it.
	good := func(h uint64) (bool, error) {
		for skipped[h] {
			if h == 0 {
				return true, nil
			}
			h--
		}
		s.alive(chainSlack)
		b, err := store.Get(ctx, h)
		if errors.Is(err, chain.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		var pts []*qdrant.RetrievedPoint
		err = s.call(ctx, "get point", func(c context.Context) error {
			var err error
			pts, err = s.d.Qdrant.Get(c, &qdrant.GetPoints{
				CollectionName: s.cfg.Collection,
				Ids:            []*qdrant.PointId{qdrant.NewIDNum(h)},
				WithPayload:    qdrant.NewWithPayload(true),
			})
			return err
		})
		if err != nil {
			return false, fmt.Errorf("qdrant collection %s: point %d: %w", s.cfg.Collection, h, err)
		}
		hash, _ := b.Hash.MarshalText()
		return len(pts) == 1 && pts[0].GetPayload()["hash"].GetStringValue() == string(hash), nil
	}
	if ok, err := good(cur); ok || err != nil {
		return err
	}
	// The first height not held is in [0, cur].
	lo, hi := uint64(0), cur
	for lo < hi {
		mid := lo + (hi-lo)/2
		ok, err := good(mid)
		if err != nil {
			return err
		}
		if ok {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	wctx := context.WithoutCancel(ctx)
	if lo == 0 {
		s.log.Warn("qdrant collection holds none of the synced blocks, syncing from height 0", "collection", s.cfg.Collection, "cursor", cur)
		return store.DeleteCursor(wctx, s.name)
	}
	s.log.Warn("qdrant collection is behind the cursor, syncing again from the last block it holds",
		"collection", s.cfg.Collection, "cursor", cur, "height", lo-1)
	return store.SetCursor(wctx, s.name, lo-1)
}

// recheck reads the collection's parameters afresh before a refusal is
// blamed on a block: a collection replaced by one of another size would
// refuse every block.
func (s *syncer) recheck(ctx context.Context) error {
	info, err := s.getInfo(ctx)
	if err != nil {
		return fmt.Errorf("qdrant collection %s: %w", s.cfg.Collection, err)
	}
	return checkParams(s.cfg.Collection, info, uint64(s.d.Embedder.Dim()), s.cfg.Distance)
}

// collectionParams extracts the single dense vector's size and distance.
func collectionParams(info *qdrant.CollectionInfo) (uint64, Distance, bool) {
	p := info.GetConfig().GetParams().GetVectorsConfig().GetParams()
	if p == nil {
		return 0, "", false
	}
	return p.GetSize(), Distance(p.GetDistance().String()), true
}

func checkParams(name string, info *qdrant.CollectionInfo, size uint64, d Distance) error {
	gotSize, gotDist, ok := collectionParams(info)
	if !ok {
		return &MismatchError{Collection: name, NamedOrSparseVectors: true}
	}
	if gotSize != size || gotDist != d {
		return &MismatchError{Collection: name, WantSize: size, GotSize: gotSize, WantDist: d, GotDist: gotDist}
	}
	return nil
}

// maxLost bounds how often one drain recreates a collection that
// vanished under it before giving up.
const maxLost = 3

// drain sends every block after the cursor, a window of Parallel batches
// at a time, and advances the cursor over the acknowledged prefix. When
// the collection vanishes (NotFound), it is ensured again, the cursor
// checked against what it holds, and the drain goes on from there.
func (s *syncer) drain(ctx context.Context, onBatch func(cursor, head uint64)) (SyncResult, error) {
	start := time.Now()
	res := SyncResult{}
	defer func() { res.Duration = time.Since(start) }()
	for lost := 0; ; lost++ {
		err := s.drainOnce(ctx, &res, onBatch, lost == 0)
		if status.Code(err) != codes.NotFound || lost == maxLost || ctx.Err() != nil {
			return res, err
		}
		s.log.Warn("qdrant collection missing, creating it and checking what it holds", "collection", s.cfg.Collection, "err", err)
		if err := s.start(ctx); err != nil {
			return res, err
		}
	}
}

func (s *syncer) drainOnce(ctx context.Context, res *SyncResult, onBatch func(cursor, head uint64), first bool) error {
	store := s.d.Chain
	cur, ok, err := store.Cursor(ctx, s.name)
	if err != nil {
		return err
	}
	next := uint64(0)
	if ok {
		next = cur + 1
	}
	res.Cursor = cur
	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	res.Head = head.Height
	if first {
		res.From = next
	}
	window := s.cfg.Batch * s.cfg.Parallel
	for next <= head.Height {
		s.alive(chainSlack)
		blocks, err := store.Blocks(ctx, chain.Query{From: next, To: head.Height, Limit: window})
		if err != nil {
			return err
		}
		if len(blocks) == 0 {
			break
		}
		for i, b := range blocks {
			if b.Height != next+uint64(i) {
				return fmt.Errorf("chain: height %d missing (found %d): run chain verify", next+uint64(i), b.Height)
			}
		}
		done, err := s.sendWindow(ctx, blocks, res)
		if done > 0 {
			last := blocks[done-1].Height
			s.alive(chainSlack)
			// Committed even when ctx was cancelled: Qdrant has these.
			if cerr := store.SetCursor(context.WithoutCancel(ctx), s.name, last); cerr != nil {
				return errors.Join(err, cerr)
			}
			res.Cursor, res.To = last, last
			res.Points += done
			next = last + 1
			if onBatch != nil {
				onBatch(last, head.Height)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sendWindow upserts blocks in batches, Parallel at a time, and returns
// how many leading blocks are acknowledged. A batch refused with
// InvalidArgument, while the collection still has the configured
// parameters, is retried point by point to name the poison block; any
// other refusal is returned as it is (NotFound to drain, the rest to the
// caller).
func (s *syncer) sendWindow(ctx context.Context, blocks []chain.Block, res *SyncResult) (int, error) {
	points := make([]*qdrant.PointStruct, len(blocks))
	for i, b := range blocks {
		p, err := s.point(b)
		if err != nil {
			return 0, err
		}
		points[i] = p
	}
	var batches [][]*qdrant.PointStruct
	for i := 0; i < len(points); i += s.cfg.Batch {
		batches = append(batches, points[i:min(i+s.cfg.Batch, len(points))])
	}
	errs := make([]error, len(batches))
	var wg sync.WaitGroup
	for i, b := range batches {
		wg.Go(func() { errs[i] = s.upsert(ctx, b) })
	}
	wg.Wait()
	s.mu.Lock()
	res.Retries = s.retries
	s.mu.Unlock()
	done := 0
	for i, err := range errs {
		if err == nil {
			done += len(batches[i])
			res.Batches++
			continue
		}
		if ctx.Err() != nil || status.Code(err) != codes.InvalidArgument {
			return done, err
		}
		if err := s.recheck(ctx); err != nil {
			return done, err
		}
		// Refused for good: find the block, one point at a time.
		for _, p := range batches[i] {
			err := s.upsert(ctx, []*qdrant.PointStruct{p})
			if err == nil {
				done++
				continue
			}
			if ctx.Err() != nil || status.Code(err) != codes.InvalidArgument {
				return done, err
			}
			if err := s.recheck(ctx); err != nil {
				return done, err
			}
			h := p.GetId().GetNum()
			if !s.cfg.SkipPoison {
				return done, &PoisonError{Height: h, Err: err}
			}
			if err := s.d.Chain.SetCursor(context.WithoutCancel(ctx), skippedCursorName(s.cfg.Collection, h), h); err != nil {
				return done, err
			}
			s.log.Warn("block rejected by qdrant, skipped", "height", h, "collection", s.cfg.Collection, "err", err)
			res.Skipped = append(res.Skipped, h)
			done++
		}
		// The rest of the window is re-sent by the next round.
		return done, nil
	}
	return done, nil
}

func (s *syncer) upsert(ctx context.Context, points []*qdrant.PointStruct) error {
	return s.call(ctx, "upsert", func(c context.Context) error {
		_, err := s.d.Qdrant.Upsert(c, &qdrant.UpsertPoints{
			CollectionName: s.cfg.Collection,
			Wait:           qdrant.PtrOf(true),
			Points:         points,
		})
		return err
	})
}

// point builds a block's point: ID = height, vector from the Embedder,
// payload = every block field.
func (s *syncer) point(b chain.Block) (*qdrant.PointStruct, error) {
	v, err := s.d.Embedder.Block(b)
	if err != nil {
		return nil, err
	}
	pl, err := Payload(b)
	if err != nil {
		return nil, err
	}
	return &qdrant.PointStruct{Id: qdrant.NewIDNum(b.Height), Vectors: qdrant.NewVectorsDense(v), Payload: pl}, nil
}
