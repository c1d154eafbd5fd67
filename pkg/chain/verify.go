package chain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrOutOfRange: the heights asked for are not in the chain.
var ErrOutOfRange = errors.New("height out of range")

// Reason says why a block failed verification. The values are part of the
// JSON contract of `chain verify`.
type Reason string

// Reasons, in the order they are checked within one block.
const (
	ReasonBadRecord     Reason = "bad_record"     // stored columns cannot form a block
	ReasonHashMismatch  Reason = "hash_mismatch"  // SHA-256 of the record differs from the stored hash
	ReasonBrokenLink    Reason = "broken_link"    // prev differs from the previous block's hash
	ReasonUnknownKind   Reason = "unknown_kind"   // kind is not one this version knows
	ReasonTimeBackwards Reason = "time_backwards" // time is before the previous block's
	ReasonMissingHeight Reason = "missing_height" // no block at this height
)

// Failure is the first block that did not check out.
type Failure struct {
	Height uint64 `json:"height"`
	Reason Reason `json:"reason"`
	Detail string `json:"detail"`
}

// VerifyOptions selects what Verify checks.
type VerifyOptions struct {
	From, To uint64 // inclusive; To 0 means the head
	// Progress, when set, is called from one goroutine with the blocks
	// checked so far, a few times a second and once at the end.
	Progress func(done, total uint64)
	// Workers reading and hashing in parallel; 0 means GOMAXPROCS.
	Workers int
}

// VerifyResult is the outcome of Verify and the JSON contract of
// `chain verify`.
type VerifyResult struct {
	OK       bool     `json:"ok"`
	From     uint64   `json:"from"`
	To       uint64   `json:"to"`
	Checked  uint64   `json:"checked"`
	HeadHash Hash     `json:"head_hash"`
	Failure  *Failure `json:"failure,omitempty"`
}

// segmentSize is how many blocks one worker reads per query: large enough
// that a query's set-up is noise, small enough that work spreads evenly and
// an early failure stops the rest quickly.
var segmentSize uint64 = 1 << 15

// Verify recomputes the hash of every block in the range and checks each
// link, height, kind and time. It returns the first failure; its error
// wraps ErrMismatch when a block fails. Reading and hashing run on several
// connections at once: SQLite in WAL mode lets readers proceed in parallel.
func (s *Store) Verify(ctx context.Context, opts VerifyOptions) (VerifyResult, error) {
	res := VerifyResult{From: opts.From}
	head, err := s.Head(ctx)
	if err != nil {
		return res, err
	}
	to := opts.To
	if to == 0 {
		to = head.Height
	}
	if to > head.Height || opts.From > to {
		return res, fmt.Errorf("%w: asked for heights %d..%d, the chain holds 0..%d", ErrOutOfRange, opts.From, to, head.Height)
	}
	res.To = to
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	total := to - opts.From + 1
	nseg := (total + segmentSize - 1) / segmentSize
	workers = int(min(uint64(workers), nseg))

	rdb, err := sql.Open("sqlite", dsn(s.path, true))
	if err != nil {
		return res, fmt.Errorf("chain %s: %w", s.path, err)
	}
	defer rdb.Close()
	rdb.SetMaxOpenConns(workers)

	v := &verifier{db: rdb, failAt: math.MaxUint64}
	segs := make(chan uint64)
	results := make([]*Failure, nseg)
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			var buf []byte
			for i := range segs {
				start := opts.From + i*segmentSize
				end := min(start+segmentSize-1, to)
				f, err := v.segment(ctx, start, end, &buf)
				if err != nil {
					errc <- err
					return
				}
				results[i] = f
			}
		})
	}
	stopProgress := v.reportProgress(opts.Progress, total)
dispatch:
	for i := range nseg {
		select {
		case segs <- i:
		case err = <-errc:
			break dispatch
		case <-ctx.Done():
			err = ctx.Err()
			break dispatch
		}
	}
	close(segs)
	wg.Wait()
	stopProgress()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	if err != nil {
		return res, fmt.Errorf("chain %s: verify: %w", s.path, err)
	}
	for _, f := range results {
		if f != nil {
			res.Failure = f
			res.Checked = f.Height - opts.From
			return res, fmt.Errorf("%w at height %d: %s: %s", ErrMismatch, f.Height, f.Reason, f.Detail)
		}
	}
	last, err := s.Get(ctx, to)
	if err != nil {
		return res, err
	}
	res.OK, res.Checked, res.HeadHash = true, total, last.Hash
	return res, nil
}

type verifier struct {
	db     *sql.DB
	done   atomic.Uint64
	failAt uint64 // lowest failing height found so far; read and written atomically
}

func (v *verifier) fail(f *Failure) *Failure {
	for {
		cur := atomic.LoadUint64(&v.failAt)
		if f.Height >= cur || atomic.CompareAndSwapUint64(&v.failAt, cur, f.Height) {
			return f
		}
	}
}

func (v *verifier) reportProgress(fn func(done, total uint64), total uint64) (stop func()) {
	if fn == nil {
		return func() {}
	}
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(v.done.Load(), total)
			case <-quit:
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-exited
		fn(min(v.done.Load(), total), total)
	}
}

// segment checks blocks start..end. It also reads block start-1, when
// there is one, as the predecessor of start, so every check is local to
// the segment and segments need no stitching afterwards.
func (v *verifier) segment(ctx context.Context, start, end uint64, buf *[]byte) (*Failure, error) {
	if start > atomic.LoadUint64(&v.failAt) {
		return nil, nil
	}
	from := start
	if start > 0 {
		from = start - 1
	}
	conn, err := v.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var (
		prevHash Hash
		prevTime int64
		havePrev bool
		next     = start // height expected next among the checked blocks
		counted  uint64
		failure  *Failure
	)
	defer func() { v.done.Add(counted) }()
	// The driver's own rows, not database/sql's: a million rows a second
	// leave no room for a conversion and a lock per column.
	err = conn.Raw(func(dc any) error {
		q, ok := dc.(driver.QueryerContext)
		if !ok {
			return fmt.Errorf("sqlite driver cannot query directly")
		}
		rows, err := q.QueryContext(ctx, `SELECT `+blockColumns+` FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height`,
			[]driver.NamedValue{{Ordinal: 1, Value: int64(from)}, {Ordinal: 2, Value: int64(end)}})
		if err != nil {
			return err
		}
		dest := make([]driver.Value, 6)
		for {
			if err := rows.Next(dest); err != nil {
				if err == io.EOF {
					return rows.Close()
				}
				return errors.Join(err, rows.Close())
			}
			height, _ := dest[0].(int64)
			timeNS, _ := dest[1].(int64)
			kind, _ := dest[2].(string)
			payload, _ := dest[3].(string)
			prev, _ := dest[4].([]byte)
			hash, _ := dest[5].([]byte)
			h := uint64(height)
			if h < start { // the predecessor
				if len(hash) == len(prevHash) {
					copy(prevHash[:], hash)
					prevTime, havePrev = timeNS, true
				}
				continue
			}
			if h != next {
				failure = &Failure{Height: next, Reason: ReasonMissingHeight, Detail: fmt.Sprintf("no block at height %d (next stored is %d)", next, h)}
				break
			}
			if start > 0 && h == start && !havePrev {
				failure = &Failure{Height: start - 1, Reason: ReasonMissingHeight, Detail: fmt.Sprintf("no block at height %d, the predecessor of %d", start-1, start)}
				break
			}
			if h&1023 == 0 && h > atomic.LoadUint64(&v.failAt) {
				break // a lower segment already failed; nothing here can come first
			}
			if failure = checkBlock(h, timeNS, kind, payload, prev, hash, &prevHash, prevTime, buf); failure != nil {
				break
			}
			prevTime = timeNS
			next++
			counted++
		}
		return rows.Close()
	})
	if err != nil {
		return nil, err
	}
	if failure == nil && next <= end && next <= atomic.LoadUint64(&v.failAt) {
		failure = &Failure{Height: next, Reason: ReasonMissingHeight, Detail: fmt.Sprintf("no block at height %d", next)}
	}
	if failure != nil {
		return v.fail(failure), nil
	}
	return nil, nil
}

// checkBlock checks one stored block against its predecessor's hash and
// time, and on success leaves the block's hash in prevHash.
func checkBlock(h uint64, timeNS int64, kind, payload string, prev, hash []byte, prevHash *Hash, prevTime int64, buf *[]byte) *Failure {
	if len(prev) != len(prevHash) || len(hash) != len(prevHash) {
		return &Failure{Height: h, Reason: ReasonBadRecord, Detail: fmt.Sprintf("stored hashes are %d and %d bytes, want 32", len(prev), len(hash))}
	}
	*buf = appendRecord((*buf)[:0], h, timeNS, kind, prev, payload)
	sum := sha256.Sum256(*buf)
	if !bytes.Equal(sum[:], hash) {
		return &Failure{Height: h, Reason: ReasonHashMismatch, Detail: fmt.Sprintf("stored hash %x, computed %x", hash, sum)}
	}
	if h == 0 {
		if Kind(kind) != KindGenesis || !bytes.Equal(prev, make([]byte, 32)) {
			return &Failure{Height: 0, Reason: ReasonBrokenLink, Detail: fmt.Sprintf("height 0 must be %s linking to the zero hash, is %s linking to %x", KindGenesis, kind, prev)}
		}
	} else if !bytes.Equal(prev, prevHash[:]) {
		return &Failure{Height: h, Reason: ReasonBrokenLink, Detail: fmt.Sprintf("prev %x, but block %d has hash %x", prev, h-1, prevHash[:])}
	}
	if k := Kind(kind); !k.Known() || (k == KindGenesis) != (h == 0) {
		return &Failure{Height: h, Reason: ReasonUnknownKind, Detail: fmt.Sprintf("kind %q is not valid at height %d", kind, h)}
	}
	if h > 0 && timeNS < prevTime {
		return &Failure{Height: h, Reason: ReasonTimeBackwards, Detail: fmt.Sprintf("time %s is before block %d's %s", fmtNS(timeNS), h-1, fmtNS(prevTime))}
	}
	copy(prevHash[:], hash)
	return nil
}

func fmtNS(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }
