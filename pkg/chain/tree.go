package chain

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// The Merkle tree is RFC 6962's, computed by golang.org/x/mod/sumdb/tlog:
// leaf i is tlog.RecordHash of block i's record (SHA-256 of 0x00 and the
// record), an interior node SHA-256 of 0x01 and its children. Its size is
// the number of blocks, head height + 1. Table tree holds every hash tlog
// says to store, keyed by tlog's stored-hash index; Append writes them in
// the block's transaction.

// TreeHead is the size and root hash of the Merkle tree over the blocks.
type TreeHead struct {
	Size uint64 `json:"size"`
	Root Hash   `json:"root"`
}

// errTreeHash marks a stored tree hash that is missing or malformed.
var errTreeHash = errors.New("stored tree hash")

// treeHashError is a stored tree hash that is missing or malformed.
type treeHashError struct {
	id      int64
	problem string
}

func (e *treeHashError) Error() string {
	return fmt.Sprintf("stored tree hash %d (%s): %s", e.id, describeIndex(e.id), e.problem)
}

func (e *treeHashError) Is(target error) bool { return target == errTreeHash }

// treeFailure turns a missing or malformed stored hash into a failure at
// the block whose append stores it; other errors stay errors.
func treeFailure(err error) (*Failure, error) {
	var te *treeHashError
	if errors.As(err, &te) {
		return &Failure{Height: writerOf(te.id), Reason: ReasonTreeMismatch, Detail: te.Error()}, nil
	}
	return nil, err
}

// treeReader reads stored hashes through stmt (on the database or inside a
// transaction). It implements tlog.HashReader.
type treeReader struct {
	ctx  context.Context
	stmt *sql.Stmt
}

func (r treeReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var b []byte
	for i, id := range indexes {
		err := r.stmt.QueryRowContext(r.ctx, id).Scan(&b)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, &treeHashError{id, "missing"}
		}
		if err != nil {
			return nil, err
		}
		if len(b) != tlog.HashSize {
			return nil, &treeHashError{id, fmt.Sprintf("%d bytes, want %d", len(b), tlog.HashSize)}
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// describeIndex names the tree node a stored-hash index holds.
func describeIndex(id int64) string {
	level, n := tlog.SplitStoredHashIndex(id)
	if level == 0 {
		return fmt.Sprintf("leaf %d", n)
	}
	return fmt.Sprintf("level %d node %d, over blocks %d..%d", level, n, n<<level, (n+1)<<level-1)
}

// writerOf returns the height of the block whose append stores hash id:
// the last leaf under that node.
func writerOf(id int64) uint64 {
	level, n := tlog.SplitStoredHashIndex(id)
	return uint64((n+1)<<level - 1)
}

// frontier holds, for each level, the newest complete node: exactly the
// hashes tlog.StoredHashes reads when it appends the next record. Asking
// it first lets a batch of appends (or a migration, or a verifier walking
// the blocks in order) run without reading the table back.
type frontier struct {
	nodes [64]struct {
		n  int64
		h  tlog.Hash
		ok bool
	}
	next tlog.HashReader // asked for what the frontier lacks; nil means fail
	buf  []tlog.Hash
}

func (f *frontier) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	f.buf = f.buf[:0]
	var miss []int64
	for _, id := range indexes {
		level, n := tlog.SplitStoredHashIndex(id)
		if e := &f.nodes[level]; e.ok && e.n == n {
			f.buf = append(f.buf, e.h)
			continue
		}
		miss = append(miss, id)
		f.buf = append(f.buf, tlog.Hash{})
	}
	if len(miss) == 0 {
		return f.buf, nil
	}
	if f.next == nil {
		return nil, &treeHashError{miss[0], "missing"}
	}
	got, err := f.next.ReadHashes(miss)
	if err != nil {
		return nil, err
	}
	for i, j := 0, 0; i < len(indexes); i++ {
		if j < len(miss) && indexes[i] == miss[j] {
			f.buf[i] = got[j]
			j++
		}
	}
	return f.buf, nil
}

// record notes the hashes stored for record n (as tlog.StoredHashes
// returned them: the leaf, then one node per level it completes).
func (f *frontier) record(n int64, hashes []tlog.Hash) {
	for level, h := range hashes {
		e := &f.nodes[level]
		e.n, e.h, e.ok = n>>level, h, true
	}
}

// treeWriter appends the stored hashes of new blocks inside a transaction.
type treeWriter struct {
	ctx context.Context
	ins *sql.Stmt
	f   frontier
}

func (s *Store) newTreeWriter(ctx context.Context, tx *sql.Tx) *treeWriter {
	tw := &treeWriter{ctx: ctx, ins: tx.StmtContext(ctx, s.insertTree)}
	tw.f.next = treeReader{ctx: ctx, stmt: tx.StmtContext(ctx, s.readTree)}
	return tw
}

// add stores the tree hashes for block height n with record rec. Blocks
// must come in height order with no gap.
func (tw *treeWriter) add(n uint64, rec []byte) error {
	hashes, err := tlog.StoredHashes(int64(n), rec, &tw.f)
	if err != nil {
		return fmt.Errorf("merkle tree: %w", err)
	}
	id := tlog.StoredHashIndex(0, int64(n))
	for i := range hashes {
		if _, err := tw.ins.ExecContext(tw.ctx, id+int64(i), hashes[i][:]); err != nil {
			return fmt.Errorf("merkle tree: store hash %d: %w", id+int64(i), err)
		}
	}
	tw.f.record(int64(n), hashes)
	return nil
}

// buildTree is the migration to schema version 2: it computes the tree
// hashes of the blocks a version 1 chain already holds. A chain with a
// missing height fails the migration (ErrNotChain, naming the height): a
// tree that stopped at the gap would make every later append fail.
func buildTree(ctx context.Context, s *Store, tx *sql.Tx) error {
	tw := &treeWriter{ctx: ctx}
	var err error
	if tw.ins, err = tx.PrepareContext(ctx, `INSERT INTO tree (id, hash) VALUES (?, ?)`); err != nil {
		return err
	}
	defer tw.ins.Close()
	const chunk = 8192
	var (
		next uint64
		recs [][]byte
	)
	for {
		// Read a chunk, then write its hashes: the driver's rows are not
		// interleaved with writes on the one connection.
		rows, err := tx.QueryContext(ctx, `SELECT `+blockColumns+` FROM blocks WHERE height >= ? ORDER BY height LIMIT ?`, int64(next), chunk)
		if err != nil {
			return err
		}
		recs = recs[:0]
		gap := false
		for rows.Next() {
			b, err := scanBlock(rows)
			if err != nil {
				return errors.Join(err, rows.Close())
			}
			if b.Height != next+uint64(len(recs)) {
				gap = true
				break
			}
			recs = append(recs, b.Record())
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, rec := range recs {
			if err := tw.add(next, rec); err != nil {
				return err
			}
			next++
		}
		if gap {
			return fmt.Errorf("%w: no block at height %d: a version 1 chain with a missing block cannot get its Merkle tree; "+
				"the file is left at version 1, unchanged (inspect it with sqlite3, or verify it with the ghostbridge that wrote it)", ErrNotChain, next)
		}
		if len(recs) < chunk {
			return nil
		}
	}
}

// TreeHead returns the size and root of the Merkle tree over the blocks.
func (s *Store) TreeHead(ctx context.Context) (TreeHead, error) {
	var th TreeHead
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		th, err = s.treeHeadTx(ctx, tx)
		return err
	})
	if err != nil {
		return th, fmt.Errorf("chain %s: tree head: %w", s.path, err)
	}
	return th, nil
}

func (s *Store) treeHeadTx(ctx context.Context, tx *sql.Tx) (TreeHead, error) {
	head, err := scanHead(tx.StmtContext(ctx, s.head).QueryRowContext(ctx))
	if err != nil {
		return TreeHead{}, err
	}
	size := head.Height + 1
	root, err := tlog.TreeHash(int64(size), s.txReader(ctx, tx))
	if err != nil {
		return TreeHead{}, fmt.Errorf("merkle tree of size %d: %w", size, err)
	}
	return TreeHead{Size: size, Root: Hash(root)}, nil
}

func (s *Store) txReader(ctx context.Context, tx *sql.Tx) treeReader {
	return treeReader{ctx: ctx, stmt: tx.StmtContext(ctx, s.readTree)}
}

// readTx runs fn in a read transaction: one consistent view of the file
// that takes no write lock, so readers work beside a running snap loop.
func (s *Store) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep
	return fn(tx)
}
