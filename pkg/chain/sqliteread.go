package chain

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/url"

	"modernc.org/libc"
	sqlitelib "modernc.org/sqlite/lib"
)

// readConn is a read-only SQLite connection for one goroutine, opened
// through the SQLite library the driver is built on rather than through
// the driver. A full verification reads a million rows a second; through
// database/sql (or the driver's own rows) each column costs a type
// look-up and a value fetch, each under the connection's mutex, a Go
// allocation and an interface conversion, which together cost as much as
// SQLite's own work for the row. Opened without a mutex (the connection
// never leaves its goroutine) and read through views of SQLite's column
// buffers, a row costs SQLite's work alone.
//
// It sees the database as any other connection does: WAL mode, a busy
// timeout, and query_only so nothing it runs can write.
type readConn struct {
	path string
	tls  *libc.TLS
	db   uintptr // sqlite3*
}

// readBusyTimeout matches the driver connections' _busy_timeout.
const readBusyTimeout = 10000 // milliseconds

// openReadConn opens path for reading. With uri empty it opens the file
// read-write, as the driver's connections do: SQLite may need to create
// the -shm file of a WAL database nobody has open, and query_only keeps
// the connection from writing anything else. A read-only store passes its
// URI (mode=ro, see readOnlyURI), opened read-only: then nothing is
// created, not even for a moment, and a read-only directory is fine.
func openReadConn(path, uri string) (_ *readConn, err error) {
	c := &readConn{path: path, tls: libc.NewTLS()}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	flags := int32(sqlitelib.SQLITE_OPEN_READONLY)
	if uri == "" {
		uri = "file:" + (&url.URL{Path: path}).EscapedPath()
		flags = sqlitelib.SQLITE_OPEN_READWRITE
	}
	name, err := libc.CString(uri)
	if err != nil {
		return nil, fmt.Errorf("chain database %s: %w", path, err)
	}
	defer libc.Xfree(c.tls, name)
	out := c.tls.Alloc(ptrSize)
	defer c.tls.Free(ptrSize)
	rc := sqlitelib.Xsqlite3_open_v2(c.tls, name, out, flags|sqlitelib.SQLITE_OPEN_NOMUTEX|sqlitelib.SQLITE_OPEN_URI, 0)
	c.db = readPointer(out)
	if rc != sqlitelib.SQLITE_OK {
		return nil, c.errorf(rc, "open")
	}
	if rc := sqlitelib.Xsqlite3_busy_timeout(c.tls, c.db, readBusyTimeout); rc != sqlitelib.SQLITE_OK {
		return nil, c.errorf(rc, "busy timeout")
	}
	if err := c.exec("PRAGMA query_only = 1"); err != nil {
		return nil, err
	}
	// A scan reads each page once: a small page cache stays in the CPU's
	// caches, where SQLite's default of 2 MB per connection does not.
	if err := c.exec("PRAGMA cache_size = 64"); err != nil {
		return nil, err
	}
	return c, nil
}

const ptrSize = bits.UintSize / 8

// readPointer reads the pointer SQLite stored at p (an out parameter).
func readPointer(p uintptr) uintptr {
	b := libc.GoBytes(p, ptrSize)
	if ptrSize == 4 {
		return uintptr(binary.NativeEndian.Uint32(b))
	}
	return uintptr(binary.NativeEndian.Uint64(b))
}

// errorf describes SQLite's failure rc of what, with its message.
func (c *readConn) errorf(rc int32, what string) error {
	msg := libc.GoString(sqlitelib.Xsqlite3_errstr(c.tls, rc))
	if c.db != 0 {
		msg = libc.GoString(sqlitelib.Xsqlite3_errmsg(c.tls, c.db))
	}
	return fmt.Errorf("chain database %s: %s: %s (%d)", c.path, what, msg, rc)
}

func (c *readConn) exec(query string) error {
	rows, err := c.query(query)
	if err != nil {
		return err
	}
	for {
		ok, err := rows.next()
		if err != nil || !ok {
			return errors.Join(err, rows.Close())
		}
	}
}

// Close closes the connection; its statements must be closed first.
func (c *readConn) Close() error {
	var err error
	if c.db != 0 {
		if rc := sqlitelib.Xsqlite3_close_v2(c.tls, c.db); rc != sqlitelib.SQLITE_OK {
			err = c.errorf(rc, "close")
		}
		c.db = 0
	}
	c.tls.Close()
	return err
}

// readRows is a running query. The values a row's accessors return are
// valid until the next call to next or Close.
type readRows struct {
	c     *readConn
	query string
	stmt  uintptr // sqlite3_stmt*
}

// query prepares query and binds args, in order, to its parameters.
func (c *readConn) query(query string, args ...int64) (*readRows, error) {
	sql, err := libc.CString(query)
	if err != nil {
		return nil, fmt.Errorf("chain database %s: %w", c.path, err)
	}
	defer libc.Xfree(c.tls, sql)
	out := c.tls.Alloc(ptrSize)
	defer c.tls.Free(ptrSize)
	if rc := sqlitelib.Xsqlite3_prepare_v2(c.tls, c.db, sql, -1, out, 0); rc != sqlitelib.SQLITE_OK {
		return nil, c.errorf(rc, "prepare "+query)
	}
	r := &readRows{c: c, query: query, stmt: readPointer(out)}
	for i, a := range args {
		if rc := sqlitelib.Xsqlite3_bind_int64(c.tls, r.stmt, int32(i+1), a); rc != sqlitelib.SQLITE_OK {
			return nil, errors.Join(c.errorf(rc, "bind "+query), r.Close())
		}
	}
	return r, nil
}

// next steps to the next row, and reports false after the last.
func (r *readRows) next() (bool, error) {
	switch rc := sqlitelib.Xsqlite3_step(r.c.tls, r.stmt); rc {
	case sqlitelib.SQLITE_ROW:
		return true, nil
	case sqlitelib.SQLITE_DONE:
		return false, nil
	default:
		return false, r.c.errorf(rc, r.query)
	}
}

// int64 returns column i as an integer.
func (r *readRows) int64(i int) int64 {
	return sqlitelib.Xsqlite3_column_int64(r.c.tls, r.stmt, int32(i))
}

// bytes returns column i's bytes (text or blob) in SQLite's buffer: the
// caller copies what it keeps.
func (r *readRows) bytes(i int) []byte {
	p := sqlitelib.Xsqlite3_column_blob(r.c.tls, r.stmt, int32(i))
	n := sqlitelib.Xsqlite3_column_bytes(r.c.tls, r.stmt, int32(i))
	if p == 0 || n <= 0 {
		return nil
	}
	return libc.GoBytes(p, int(n))
}

// Close finalizes the statement.
func (r *readRows) Close() error {
	if r.stmt == 0 {
		return nil
	}
	rc := sqlitelib.Xsqlite3_finalize(r.c.tls, r.stmt)
	r.stmt = 0
	if rc != sqlitelib.SQLITE_OK {
		return r.c.errorf(rc, r.query)
	}
	return nil
}
