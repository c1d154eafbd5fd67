package vector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
}

// syncer holds what lives across drains: the outage state, so an outage
// is logged once when it starts and once when it ends.
type syncer struct {
	d    Deps
	cfg  Config
	log  *slog.Logger
	name string

	mu          sync.Mutex
	outage      bool
	outageSince time.Time
	failing     int // calls currently retrying
	retries     int
	lastPing    time.Time
}

func newSyncer(d Deps, cfg Config) *syncer {
	cfg = cfg.withDefaults()
	return &syncer{d: d, cfg: cfg, log: d.log(), name: CursorName(cfg.Collection)}
}

// Run keeps the collection in step with the chain: it ensures the
// collection, then drains pending blocks every Interval. It returns nil
// when ctx is cancelled, after committing the batches in hand.
func Run(ctx context.Context, d Deps, cfg Config, opts RunOptions) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	s := newSyncer(d, cfg)
	defer d.notify(NotifyStopping)
	if _, err := s.ensure(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// Ready once Qdrant answered and the collection checks out: a long
	// catch-up must not look like a start-up that hangs.
	d.notify(NotifyReady)
	for {
		res, err := s.drain(ctx, opts.OnBatch)
		if res.Points > 0 || len(res.Skipped) > 0 {
			if opts.OnSync != nil {
				opts.OnSync(res)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.ping(true)
		if opts.Once {
			return nil
		}
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
func Sync(ctx context.Context, d Deps, cfg Config) (SyncResult, error) {
	if err := cfg.Validate(); err != nil {
		return SyncResult{}, err
	}
	s := newSyncer(d, cfg)
	if _, err := s.ensure(ctx); err != nil {
		return SyncResult{}, err
	}
	return s.drain(ctx, nil)
}

// ping sends WATCHDOG=1 when half the watchdog interval has passed.
// Waiting out a Qdrant outage counts as healthy: restarting this process
// would not bring Qdrant back.
func (s *syncer) ping(force bool) {
	wd := s.d.WatchdogInterval
	if wd <= 0 && !force {
		return
	}
	s.mu.Lock()
	due := force || time.Since(s.lastPing) >= wd/2
	if due {
		s.lastPing = time.Now()
	}
	s.mu.Unlock()
	if due && wd > 0 {
		s.d.notify(NotifyWatchdog)
	}
}

// retryable reports whether Qdrant may accept the same call later.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	// The client turns ResourceExhausted with a retry-after into its own type.
	var re *qdrant.QdrantResourceExhaustedError
	return errors.As(err, &re)
}

// call runs f until it succeeds, fails for good, or ctx ends. Each attempt
// gets its own deadline and is not cut short by ctx: a batch in hand when
// SIGTERM arrives is finished, so its acknowledgement can be committed.
func (s *syncer) call(ctx context.Context, what string, f func(context.Context) error) error {
	failing := false
	defer func() {
		if failing {
			s.recovered()
		}
	}()
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
		err := f(actx)
		cancel()
		if err == nil || !retryable(err) {
			return err
		}
		s.failed(what, err, !failing)
		failing = true
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w := s.cfg.Backoff.Initial << min(attempt, 30)
		if w > s.cfg.Backoff.Max || w <= 0 {
			w = s.cfg.Backoff.Max
		}
		w = w/2 + rand.N(w/2+1)
		t := time.NewTimer(w)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		s.ping(false)
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

// ensure makes sure the collection exists with the configured size and
// distance and has the payload indexes; a collection with other
// parameters is refused, never recreated.
func (s *syncer) ensure(ctx context.Context) (*qdrant.CollectionInfo, error) {
	q, name := s.d.Qdrant, s.cfg.Collection
	var info *qdrant.CollectionInfo
	err := s.call(ctx, "get collection", func(c context.Context) error {
		var err error
		info, err = q.GetCollectionInfo(c, name)
		return err
	})
	if status.Code(err) == codes.NotFound {
		err = s.call(ctx, "create collection", func(c context.Context) error {
			return q.CreateCollection(c, &qdrant.CreateCollection{
				CollectionName: name,
				VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{
					Size: uint64(s.d.Embedder.Dim()), Distance: s.cfg.Distance.proto(),
				}),
			})
		})
		// Another syncer may have created it between get and create.
		if err != nil && status.Code(err) != codes.AlreadyExists {
			return nil, fmt.Errorf("qdrant collection %s: %w", name, err)
		}
		s.log.Info("qdrant collection created", "collection", name, "size", s.d.Embedder.Dim(), "distance", s.cfg.Distance)
		err = s.call(ctx, "get collection", func(c context.Context) error {
			var err error
			info, err = q.GetCollectionInfo(c, name)
			return err
		})
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

// drain sends every block after the cursor, a window of Parallel batches
// at a time, and advances the cursor over the acknowledged prefix.
func (s *syncer) drain(ctx context.Context, onBatch func(cursor, head uint64)) (SyncResult, error) {
	start := time.Now()
	res := SyncResult{}
	defer func() { res.Duration = time.Since(start) }()
	store := s.d.Chain
	cur, ok, err := store.Cursor(ctx, s.name)
	if err != nil {
		return res, err
	}
	next := uint64(0)
	if ok {
		next = cur + 1
	}
	res.Cursor = cur
	head, err := store.Head(ctx)
	if err != nil {
		return res, err
	}
	res.Head = head.Height
	res.From = next
	window := s.cfg.Batch * s.cfg.Parallel
	for next <= head.Height {
		blocks, err := store.Blocks(ctx, chain.Query{From: next, To: head.Height, Limit: window})
		if err != nil {
			return res, err
		}
		if len(blocks) == 0 {
			break
		}
		for i, b := range blocks {
			if b.Height != next+uint64(i) {
				return res, fmt.Errorf("chain: height %d missing (found %d): run chain verify", next+uint64(i), b.Height)
			}
		}
		done, err := s.sendWindow(ctx, blocks, &res)
		if done > 0 {
			last := blocks[done-1].Height
			// Committed even when ctx was cancelled: Qdrant has these.
			if cerr := store.SetCursor(context.WithoutCancel(ctx), s.name, last); cerr != nil {
				return res, errors.Join(err, cerr)
			}
			res.Cursor, res.To = last, last
			res.Points += done
			next = last + 1
			if onBatch != nil {
				onBatch(last, head.Height)
			}
			s.ping(false)
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// sendWindow upserts blocks in batches, Parallel at a time, and returns
// how many leading blocks are acknowledged. A batch refused for good is
// retried point by point to name the poison block.
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
		if retryable(err) || ctx.Err() != nil {
			return done, err
		}
		// Refused for good: find the block, one point at a time.
		for _, p := range batches[i] {
			err := s.upsert(ctx, []*qdrant.PointStruct{p})
			if err == nil {
				done++
				continue
			}
			if retryable(err) || ctx.Err() != nil {
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
