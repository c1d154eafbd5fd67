package chain

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

// TestOpenReadOnlyRefuses: what a writer would create, migrate or adopt, a
// read-only open refuses with an error that says what the file is, and
// leaves the file exactly as it was.
func TestOpenReadOnlyRefuses(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not sqlite "), 500), 0o600); err != nil {
		t.Fatal(err)
	}
	// A chain as version 2 wrote it: no cursors table, user_version 2.
	older := filepath.Join(dir, "older.db")
	s, err := Open(t.Context(), older, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.SQLite3(t, older, "DROP TABLE cursors; PRAGMA user_version = 2; PRAGMA journal_mode = DELETE;")
	newer := filepath.Join(dir, "newer.db")
	s, err = Open(t.Context(), newer, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.SQLite3(t, newer, "PRAGMA user_version = 9;")
	foreign := filepath.Join(dir, "foreign.db")
	testenv.SQLite3(t, foreign, "CREATE TABLE t (x INTEGER);")

	tests := []struct {
		name, path string
		err        error
		msg        string
	}{
		{"missing", filepath.Join(dir, "none.db"), ErrNoDatabase, "none.db"},
		{"empty", empty, ErrNotChain, "the file is empty (0 bytes)"},
		{"not sqlite", garbage, ErrNotChain, "not a ghostbridge chain database"},
		{"older schema", older, ErrSchemaVersion, "schema version 2 is older than this ghostbridge's (3)"},
		{"newer schema", newer, ErrSchemaVersion, "schema version 9 is newer than this ghostbridge supports (3)"},
		{"foreign", foreign, ErrNotChain, "tables of something else"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before testenv.SQLiteFiles
			if tt.err != ErrNoDatabase {
				before = testenv.SQLiteFilesOf(t, tt.path)
			}
			s, err := OpenReadOnly(t.Context(), tt.path, Options{})
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want %v with %q", err, tt.err, tt.msg)
			}
			if tt.err == ErrNoDatabase {
				if _, err := os.Stat(tt.path); !os.IsNotExist(err) {
					t.Errorf("created %s: %v", tt.path, err)
				}
				return
			}
			before.Unchanged(t)
		})
	}
}

// TestOpenReadOnlyReads: a chain nobody has open (no -wal file) and one a
// writer holds open with blocks still in its -wal file read in full,
// verify, refuse appends, and keep every file as it was.
func TestOpenReadOnlyReads(t *testing.T) {
	t.Run("closed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "chain.db")
		w, err := Open(t.Context(), path, Options{Create: true})
		if err != nil {
			t.Fatal(err)
		}
		fill(t, w, 20)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		readAll(t, path, 20)
	})
	t.Run("writer open", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "chain.db")
		w, err := Open(t.Context(), path, Options{Create: true})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		fill(t, w, 20)
		if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
			t.Fatalf("no WAL content to read: %v", err)
		}
		readAll(t, path, 20)
	})
}

func readAll(t *testing.T, path string, height uint64) {
	t.Helper()
	before := testenv.SQLiteFilesOf(t, path)
	r, err := OpenReadOnly(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	head, err := r.Head(t.Context())
	if err != nil || head.Height != height {
		t.Errorf("head = %d, %v; want %d", head.Height, err, height)
	}
	res, err := r.Verify(t.Context(), VerifyOptions{})
	if err != nil || !res.OK || res.To != height {
		t.Errorf("verify = %+v, %v", res, err)
	}
	if _, err := r.Append(t.Context(), Event{Time: time.Now(), Kind: KindTicksMissed, Payload: TicksMissedPayload{Count: 1}}); err == nil {
		t.Error("append through a read-only store succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	before.Unchanged(t)
}
