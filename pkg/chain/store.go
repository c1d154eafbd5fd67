package chain

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"modernc.org/sqlite" // also registers the pure-Go "sqlite" driver
	sqlitelib "modernc.org/sqlite/lib"
)

// Errors callers tell apart.
var (
	// ErrNotFound: no block at the requested height.
	ErrNotFound = errors.New("no such block")
	// ErrNoDatabase: the database file does not exist and Create was not set.
	ErrNoDatabase = errors.New("chain database does not exist")
	// ErrNotChain: the file is not a ghostbridge chain database, or one
	// written by a newer version.
	ErrNotChain = errors.New("not a ghostbridge chain database")
	// ErrMismatch: verification found a block that does not check out.
	ErrMismatch = errors.New("chain mismatch")
)

// Format names the database format in the genesis payload and meta table.
const Format = "ghostbridge-chain"

// Options tune Open.
type Options struct {
	// Create makes the database (mode 0600, parent directory 0700) and its
	// genesis block when the file does not exist.
	Create bool
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// Store is an open chain database. Its methods are safe for concurrent use;
// appends are serialised by SQLite's write lock, so two processes appending
// to one file still produce one chain.
type Store struct {
	path string
	db   *sql.DB
	log  *slog.Logger
	// Statements a 1 Hz loop runs every tick, prepared once: parsing SQL
	// costs more CPU than running these statements.
	head, insertBlock, insertLive, deleteLive, live *sql.Stmt
	readTree, insertTree                            *sql.Stmt
	// readURI, set by OpenReadOnly, is the SQLite URI (mode=ro, and
	// immutable when no writer has the database open) that verification's
	// own connections open read-only; empty for a writer's store.
	readURI string
	// noTree makes Append skip the Merkle tree. Only benchmarks set it, to
	// measure what the tree adds to an append; a store written this way
	// does not verify.
	noTree bool
}

func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&s.head, `SELECT ` + blockColumns + ` FROM blocks ORDER BY height DESC LIMIT 1`},
		{&s.insertBlock, `INSERT INTO blocks (height, time_ns, kind, payload, prev, hash) VALUES (?, ?, ?, ?, ?, ?)`},
		{&s.insertLive, `INSERT OR REPLACE INTO live (snapshot, height, time_ns, source, payload) VALUES (?, ?, ?, ?, ?)`},
		{&s.deleteLive, `DELETE FROM live WHERE snapshot = ?`},
		{&s.live, `SELECT height, time_ns, payload FROM live ORDER BY time_ns, snapshot`},
		{&s.readTree, `SELECT hash FROM tree WHERE id = ?`},
		{&s.insertTree, `INSERT INTO tree (id, hash) VALUES (?, ?)`},
	} {
		stmt, err := s.db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("chain database %s: %w", s.path, err)
		}
		*p.stmt = stmt
	}
	return nil
}

// Open opens the chain database at path, creating it when opts.Create is
// set, and brings its schema up to date.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("chain database %s: %w", path, err)
	}
	created, err := ensureFile(abs, opts.Create)
	if err != nil {
		return nil, err
	}
	s, err := openStore(abs, dsn(abs), opts.Logger)
	if err != nil {
		return nil, err
	}
	err = s.migrate(ctx, created)
	if err == nil {
		err = s.prepare(ctx)
	}
	if err == nil {
		err = s.ensureGenesis(ctx)
	}
	if err != nil {
		err = errors.Join(err, s.db.Close())
		if created {
			removeDatabase(abs)
		}
		return nil, err
	}
	return s, nil
}

// openStore is the Store of the database file abs, opened through dsn;
// Open and OpenReadOnly differ only in what they check around it.
func openStore(abs, dsn string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("chain database %s: %w", abs, err)
	}
	// One connection: SQLite has one writer anyway, and a single
	// connection keeps BEGIN IMMEDIATE from contending with itself.
	db.SetMaxOpenConns(1)
	return &Store{path: abs, db: db, log: log}, nil
}

// ensureFile checks that the database exists, or creates it empty with mode
// 0600 so no later step (SQLite's own create included) can widen it.
func ensureFile(path string, create bool) (bool, error) {
	st, err := os.Stat(path)
	switch {
	case err == nil:
		if !st.Mode().IsRegular() {
			return false, fmt.Errorf("chain database %s: %w: not a regular file", path, ErrNotChain)
		}
		return false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("chain database %s: %w", path, err)
	case !create:
		return false, fmt.Errorf("%w: %s", ErrNoDatabase, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("chain database directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("chain database %s: %w", path, err)
	}
	return true, f.Close()
}

// removeDatabase undoes a create that failed half-way, so a bad start
// leaves nothing behind.
func removeDatabase(path string) {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		_ = os.Remove(path + suffix)
	}
}

func dsn(path string) string {
	q := url.Values{}
	q.Add("_busy_timeout", "10000")
	q.Add("_journal_mode", "WAL")
	// FULL: a block acknowledged to the caller survives power loss.
	q.Add("_synchronous", "FULL")
	q.Add("_txlock", "immediate")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Path returns the database's absolute path.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

const schemaVersion = 3

// A migration takes the schema from one version to the next: sql first,
// then fill, when set, derives the new tables' contents from the blocks in
// the same transaction, so a crash leaves the old version intact.
type migration struct {
	sql  string
	fill func(ctx context.Context, s *Store, tx *sql.Tx) error
}

// migrations[i] takes the schema from version i to i+1. Later versions add
// tables (sync cursors, ...); blocks never change.
var migrations = []migration{
	{sql: `CREATE TABLE meta (
		key   TEXT PRIMARY KEY,
		value TEXT NOT NULL
	) STRICT;
	CREATE TABLE blocks (
		height  INTEGER PRIMARY KEY CHECK (height >= 0),
		time_ns INTEGER NOT NULL,
		kind    TEXT NOT NULL,
		payload TEXT NOT NULL,
		prev    BLOB NOT NULL,
		hash    BLOB NOT NULL
	) STRICT;
	CREATE INDEX blocks_kind ON blocks (kind, height);
	CREATE TABLE live (
		snapshot TEXT PRIMARY KEY,
		height   INTEGER NOT NULL,
		time_ns  INTEGER NOT NULL,
		source   TEXT NOT NULL,
		payload  TEXT NOT NULL
	) STRICT;`},
	// Version 2: the RFC 6962 Merkle tree over the block records and the
	// signed checkpoints of it (see tree.go and checkpoint.go).
	{sql: `CREATE TABLE tree (
		id   INTEGER PRIMARY KEY CHECK (id >= 0),
		hash BLOB NOT NULL
	) STRICT;
	CREATE TABLE checkpoints (
		id       INTEGER PRIMARY KEY,
		time_ns  INTEGER NOT NULL,
		origin   TEXT NOT NULL,
		size     INTEGER NOT NULL CHECK (size >= 0),
		root     BLOB NOT NULL,
		key_name TEXT NOT NULL,
		key_id   TEXT NOT NULL,
		note     TEXT NOT NULL
	) STRICT;`, fill: buildTree},
	// Version 3: how far each consumer of the chain (the vector index, ...)
	// has got, so a restart resumes where the last acknowledged work ended
	// (see cursor.go). IF NOT EXISTS: a database rolled back to an older
	// version label by hand may still hold the table.
	{sql: `CREATE TABLE IF NOT EXISTS cursors (
		name   TEXT PRIMARY KEY,
		height INTEGER NOT NULL CHECK (height >= 0)
	) STRICT;`},
}

func (s *Store) migrate(ctx context.Context, created bool) error {
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return s.readError(err)
	}
	if err := s.checkVersion(ctx, version, created); err != nil {
		return err
	}
	if version == schemaVersion {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("chain database %s: migrate: %w", s.path, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	// Another process may have migrated while this one waited for the
	// write lock: decide again inside the transaction.
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return s.readError(err)
	}
	if version == schemaVersion {
		return nil
	}
	for v := version; v < schemaVersion; v++ {
		m := migrations[v]
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("chain database %s: migrate to version %d: %w", s.path, v+1, err)
		}
		if m.fill != nil {
			if err := m.fill(ctx, s, tx); err != nil {
				return fmt.Errorf("chain database %s: migrate to version %d: %w", s.path, v+1, err)
			}
		}
		s.log.Debug("chain schema migrated", "db", s.path, "version", v+1)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("chain database %s: %w", s.path, err)
	}
	if version == 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('format', ?), ('chain_id', ?)`, Format, uuid.NewString()); err != nil {
			return fmt.Errorf("chain database %s: %w", s.path, err)
		}
	}
	return tx.Commit()
}

// readError classifies a failure to read the schema: a file SQLite says
// is not a database (or is corrupt) is not a chain, which is the
// operator's to fix (exit 2); anything else, a full disk or an I/O error,
// is a runtime failure and must not be mistaken for a bad --db.
func (s *Store) readError(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlitelib.SQLITE_NOTADB, sqlitelib.SQLITE_CORRUPT:
			return fmt.Errorf("chain database %s: %w: %v", s.path, ErrNotChain, err)
		}
	}
	return fmt.Errorf("chain database %s: %w", s.path, err)
}

// checkVersion refuses files this version cannot own: newer schemas,
// foreign tables, and a meta table that names another format.
func (s *Store) checkVersion(ctx context.Context, version int, created bool) error {
	if version > schemaVersion {
		return fmt.Errorf("chain database %s: %w: schema version %d is newer than this ghostbridge supports (%d)", s.path, ErrNotChain, version, schemaVersion)
	}
	if version == 0 && !created {
		var n int
		if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
			return s.readError(err)
		}
		if n > 0 {
			return fmt.Errorf("chain database %s: %w: it holds tables of something else", s.path, ErrNotChain)
		}
	}
	if version > 0 {
		var format string
		err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'format'").Scan(&format)
		if err != nil || format != Format {
			return fmt.Errorf("chain database %s: %w: meta format is %q", s.path, ErrNotChain, format)
		}
	}
	return nil
}

// ensureGenesis writes block 0 into a chain that has none: a new database,
// or one whose creation stopped between schema and genesis.
func (s *Store) ensureGenesis(ctx context.Context) error {
	// Read first: readers (chain verify, snap list) must not need the
	// write lock or a writable file.
	if _, err := scanHead(s.head.QueryRowContext(ctx)); !errors.Is(err, ErrNotFound) {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("chain database %s: genesis: %w", s.path, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if _, err := scanHead(tx.StmtContext(ctx, s.head).QueryRowContext(ctx)); !errors.Is(err, ErrNotFound) {
		return err
	}
	var id string
	if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'chain_id'`).Scan(&id); err != nil {
		return fmt.Errorf("chain database %s: genesis: chain id: %w", s.path, err)
	}
	if _, err := s.appendTx(ctx, tx, nil, Event{
		Time:    time.Now(),
		Kind:    KindGenesis,
		Payload: GenesisPayload{Format: Format, Version: 1, ChainID: id},
	}); err != nil {
		return fmt.Errorf("chain database %s: genesis: %w", s.path, err)
	}
	return tx.Commit()
}

// Event is something to record; Append marshals Payload with encoding/json.
type Event struct {
	Time    time.Time
	Kind    Kind
	Payload any
}

// Append records events as consecutive blocks in one transaction and
// returns them. A block's time never goes before its predecessor's: a wall
// clock stepped back is clamped to the head's time, so the chain's timeline
// stays monotonic. The Merkle tree hashes of the new blocks are written in
// the same transaction, so the tree always covers exactly the blocks.
func (s *Store) Append(ctx context.Context, events ...Event) ([]Block, error) {
	if len(events) == 0 {
		return nil, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("chain %s: begin: %w", s.path, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	head, err := scanHead(tx.StmtContext(ctx, s.head).QueryRowContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("chain %s: %w", s.path, err)
	}
	blocks, err := s.appendTx(ctx, tx, &head, events...)
	if err != nil {
		return nil, fmt.Errorf("chain %s: %w", s.path, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("chain %s: commit: %w", s.path, err)
	}
	return blocks, nil
}

func (s *Store) appendTx(ctx context.Context, tx *sql.Tx, head *Block, events ...Event) ([]Block, error) {
	ins := tx.StmtContext(ctx, s.insertBlock)
	var tw *treeWriter
	if !s.noTree {
		tw = s.newTreeWriter(ctx, tx)
	}
	blocks := make([]Block, 0, len(events))
	var rec []byte
	for _, ev := range events {
		if !ev.Kind.Known() {
			return nil, fmt.Errorf("append: unknown kind %q", ev.Kind)
		}
		payload, err := json.Marshal(ev.Payload)
		if err != nil {
			return nil, fmt.Errorf("append %s: payload: %w", ev.Kind, err)
		}
		if len(payload) == 0 || payload[0] != '{' {
			return nil, fmt.Errorf("append %s: payload must be a JSON object", ev.Kind)
		}
		b := Block{Time: ev.Time.UTC(), Kind: ev.Kind, Payload: payload}
		if b.Time.IsZero() {
			b.Time = time.Now().UTC()
		}
		if head != nil {
			b.Height, b.Prev = head.Height+1, head.Hash
			if b.Time.Before(head.Time) {
				b.Time = head.Time
			}
		}
		rec = b.AppendRecord(rec[:0])
		b.Hash = sha256.Sum256(rec)
		if _, err := ins.ExecContext(ctx, int64(b.Height), b.Time.UnixNano(), string(b.Kind), string(b.Payload), b.Prev[:], b.Hash[:]); err != nil {
			return nil, fmt.Errorf("append block %d: %w", b.Height, err)
		}
		if tw != nil {
			if err := tw.add(b.Height, rec); err != nil {
				return nil, fmt.Errorf("append block %d: %w", b.Height, err)
			}
		}
		if err := s.updateLive(ctx, tx, &b); err != nil {
			return nil, err
		}
		blocks = append(blocks, b)
		head = &blocks[len(blocks)-1]
	}
	return blocks, nil
}

// updateLive keeps the live-snapshot index in step with snapshot.* blocks.
// It is derived state: the blocks are the record.
func (s *Store) updateLive(ctx context.Context, tx *sql.Tx, b *Block) error {
	var err error
	switch b.Kind {
	case KindSnapshotCreated, KindSnapshotAdopted:
		var p SnapshotPayload
		if p, err = b.Snapshot(); err != nil {
			return err
		}
		_, err = tx.StmtContext(ctx, s.insertLive).ExecContext(ctx, p.Snapshot, int64(b.Height), b.Time.UnixNano(), p.Source, string(b.Payload))
	case KindSnapshotDeleted, KindSnapshotVanished:
		var p SnapshotPayload
		if p, err = b.Snapshot(); err != nil {
			return err
		}
		_, err = tx.StmtContext(ctx, s.deleteLive).ExecContext(ctx, p.Snapshot)
	}
	if err != nil {
		return fmt.Errorf("block %d: live index: %w", b.Height, err)
	}
	return nil
}

const blockColumns = `height, time_ns, kind, payload, prev, hash`

func scanBlock(row interface{ Scan(...any) error }) (Block, error) {
	var (
		b              Block
		height, timeNS int64
		kind, payload  string
		prev, hash     []byte
	)
	if err := row.Scan(&height, &timeNS, &kind, &payload, &prev, &hash); err != nil {
		return b, err
	}
	if len(prev) != len(b.Prev) || len(hash) != len(b.Hash) {
		return b, fmt.Errorf("block %d: %w: stored hash is %d bytes, want 32", height, ErrBadRecord, max(len(prev), len(hash)))
	}
	b.Height, b.Time, b.Kind = uint64(height), time.Unix(0, timeNS).UTC(), Kind(kind)
	b.Payload = json.RawMessage(payload)
	copy(b.Prev[:], prev)
	copy(b.Hash[:], hash)
	return b, nil
}

func scanHead(row *sql.Row) (Block, error) {
	b, err := scanBlock(row)
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("%w: the chain has no blocks", ErrNotFound)
	}
	return b, err
}

// Head returns the newest block.
func (s *Store) Head(ctx context.Context) (Block, error) {
	b, err := scanHead(s.head.QueryRowContext(ctx))
	if err != nil {
		return b, fmt.Errorf("chain %s: head: %w", s.path, err)
	}
	return b, nil
}

// Get returns the block at height.
func (s *Store) Get(ctx context.Context, height uint64) (Block, error) {
	b, err := scanBlock(s.db.QueryRowContext(ctx, `SELECT `+blockColumns+` FROM blocks WHERE height = ?`, int64(height)))
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("block %d: %w", height, ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("chain %s: block %d: %w", s.path, height, err)
	}
	return b, nil
}

// Query selects blocks for Blocks.
type Query struct {
	From, To uint64 // inclusive; To 0 means up to the head
	Limit    int    // 0 means no limit
	Kinds    []Kind // empty means every kind
	Newest   bool   // with Limit: the last Limit matching blocks instead of the first
}

// Blocks returns the blocks q selects, in ascending height.
func (s *Store) Blocks(ctx context.Context, q Query) ([]Block, error) {
	where := []string{"height >= ?"}
	args := []any{int64(q.From)}
	if q.To > 0 {
		where = append(where, "height <= ?")
		args = append(args, int64(q.To))
	}
	if len(q.Kinds) > 0 {
		where = append(where, "kind IN (?"+strings.Repeat(", ?", len(q.Kinds)-1)+")")
		for _, k := range q.Kinds {
			args = append(args, string(k))
		}
	}
	order := "ASC"
	if q.Newest {
		order = "DESC"
	}
	query := `SELECT ` + blockColumns + ` FROM blocks WHERE ` + strings.Join(where, " AND ") + ` ORDER BY height ` + order
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("chain %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []Block
	for rows.Next() {
		b, err := scanBlock(rows)
		if err != nil {
			return nil, fmt.Errorf("chain %s: %w", s.path, err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("chain %s: %w", s.path, err)
	}
	if q.Newest {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, nil
}

// LiveSnapshot is a snapshot the chain recorded as created (or adopted)
// and not yet deleted.
type LiveSnapshot struct {
	Height uint64    `json:"height"`
	Time   time.Time `json:"time"`
	SnapshotPayload
}

// Live returns the live snapshots, oldest first.
func (s *Store) Live(ctx context.Context) ([]LiveSnapshot, error) {
	rows, err := s.live.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("chain %s: live snapshots: %w", s.path, err)
	}
	defer rows.Close()
	var out []LiveSnapshot
	for rows.Next() {
		var (
			l              LiveSnapshot
			height, timeNS int64
			payload        []byte
		)
		if err := rows.Scan(&height, &timeNS, &payload); err != nil {
			return nil, fmt.Errorf("chain %s: live snapshots: %w", s.path, err)
		}
		if err := json.Unmarshal(payload, &l.SnapshotPayload); err != nil {
			return nil, fmt.Errorf("chain %s: live snapshot at height %d: %w", s.path, height, err)
		}
		l.Height, l.Time = uint64(height), time.Unix(0, timeNS).UTC()
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("chain %s: live snapshots: %w", s.path, err)
	}
	return out, nil
}

// ChainID returns the random identifier chosen at genesis.
func (s *Store) ChainID(ctx context.Context) (string, error) {
	var id string
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'chain_id'`).Scan(&id); err != nil {
		return "", fmt.Errorf("chain %s: chain id: %w", s.path, err)
	}
	return id, nil
}
