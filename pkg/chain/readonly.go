package chain

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
)

// ErrSchemaVersion: a read-only open found a database whose schema is
// older or newer than this version of ghostbridge reads. A writer (Open)
// migrates an older one; a read-only open must not.
var ErrSchemaVersion = errors.New("chain database schema version differs")

// OpenReadOnly opens an existing chain database for reading only, for
// callers that must leave the host as they found it (diag): the file is
// opened with SQLite's mode=ro and query_only, its schema is never
// migrated, no genesis block is written and the journal mode is left
// alone. It returns ErrNoDatabase when path does not exist, an error
// wrapping ErrNotChain for an empty file, a file that is not an SQLite
// database or one that holds something else, and one wrapping
// ErrSchemaVersion (naming both versions) for a schema older or newer than
// this version's. Appending to the returned Store fails.
func OpenReadOnly(ctx context.Context, path string, opts Options) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("chain database %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s", ErrNoDatabase, abs)
	case err != nil:
		return nil, fmt.Errorf("chain database %s: %w", abs, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("chain database %s: %w: not a regular file", abs, ErrNotChain)
	case fi.Size() == 0:
		// SQLite reads an empty file as an empty database; a writer
		// would make it a chain, a reader must say what it is.
		return nil, fmt.Errorf("chain database %s: %w: the file is empty (0 bytes)", abs, ErrNotChain)
	}
	uri := readOnlyURI(abs)
	s, err := openStore(abs, uri+"&_busy_timeout=10000&_query_only=1", opts.Logger)
	if err != nil {
		return nil, err
	}
	s.readURI = uri
	if err := s.checkReadable(ctx); err != nil {
		return nil, errors.Join(err, s.db.Close())
	}
	return s, nil
}

// readOnlyURI names path with mode=ro, so SQLite itself refuses every
// write; the driver's connections add query_only on top. A database
// without a -wal file is not open in WAL mode anywhere (the last
// connection to close removes it), so it is read as immutable: a
// read-only connection to a WAL-mode database would otherwise create -wal
// and -shm files it cannot remove again. Should a writer start meanwhile,
// it appends to a new -wal file and leaves the main file alone until its
// first checkpoint, long after diag has read. With a -wal file present the
// connection takes part in WAL locking as usual and sees what the writer
// committed. The store's own connections and verification's read
// connections use the same URI, so they agree on what they see.
func readOnlyURI(path string) string {
	q := url.Values{}
	q.Add("mode", "ro")
	if _, err := os.Lstat(path + "-wal"); errors.Is(err, fs.ErrNotExist) {
		q.Add("immutable", "1")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// checkReadable refuses what a reader cannot use as it is: not a chain,
// another schema version, or no genesis block.
func (s *Store) checkReadable(ctx context.Context) error {
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return s.readError(err)
	}
	if version == 0 {
		var n int
		if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
			return s.readError(err)
		}
		if n > 0 {
			return fmt.Errorf("chain database %s: %w: it holds tables of something else", s.path, ErrNotChain)
		}
		return fmt.Errorf("chain database %s: %w: an SQLite database without a chain schema", s.path, ErrNotChain)
	}
	var format string
	err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'format'").Scan(&format)
	if err != nil || format != Format {
		return fmt.Errorf("chain database %s: %w: meta format is %q", s.path, ErrNotChain, format)
	}
	switch {
	case version < schemaVersion:
		return fmt.Errorf("chain database %s: %w: schema version %d is older than this ghostbridge's (%d); a writer (ghostbridge snap run) migrates it, a read-only open does not",
			s.path, ErrSchemaVersion, version, schemaVersion)
	case version > schemaVersion:
		return fmt.Errorf("chain database %s: %w: schema version %d is newer than this ghostbridge supports (%d)",
			s.path, ErrSchemaVersion, version, schemaVersion)
	}
	if err := s.prepare(ctx); err != nil {
		return err
	}
	if _, err := scanHead(s.head.QueryRowContext(ctx)); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("chain database %s: %w: no genesis block (its creation did not finish)", s.path, ErrNotChain)
		}
		return s.readError(err)
	}
	return nil
}
