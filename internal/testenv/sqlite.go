package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SQLite3 runs the sqlite3 command-line shell on db with the given SQL
// statements (each one argument), as someone editing the file by hand
// would, and returns its trimmed output. It skips (or fails when Strict)
// when the shell is not installed, and fails the test when sqlite3 fails.
func SQLite3(t testing.TB, db string, statements ...string) string {
	t.Helper()
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		Skip(t, "the sqlite3 CLI is not installed (apt-get install sqlite3)")
	}
	cmd := exec.Command(bin, append([]string{"-batch", "-bail", db}, statements...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// SQLiteFiles is what a reader must leave as it found: the bytes of a
// database and of its -wal file, which of -wal, -shm and -journal exist,
// and the directory's modification time, which a file created and removed
// again (a -wal or -shm of a connection opened read-write) changes even
// though the same files are left.
type SQLiteFiles struct {
	path    string
	db, wal []byte
	exist   map[string]bool
	dirTime time.Time
}

// SQLiteFilesOf records the state of the database at path.
func SQLiteFilesOf(t testing.TB, path string) SQLiteFiles {
	t.Helper()
	f := SQLiteFiles{path: path, exist: map[string]bool{}}
	var err error
	if f.db, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	f.wal, _ = os.ReadFile(path + "-wal")
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		_, err := os.Stat(path + suffix)
		f.exist[suffix] = err == nil
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	f.dirTime = fi.ModTime()
	return f
}

// Unchanged fails the test for every way the database at the recorded
// path now differs from f.
func (f SQLiteFiles) Unchanged(t testing.TB) {
	t.Helper()
	after := SQLiteFilesOf(t, f.path)
	if !bytes.Equal(f.db, after.db) {
		t.Errorf("%s changed: %d bytes before, %d after", f.path, len(f.db), len(after.db))
	}
	if !bytes.Equal(f.wal, after.wal) {
		t.Errorf("%s-wal changed: %d bytes before, %d after", f.path, len(f.wal), len(after.wal))
	}
	for suffix, was := range f.exist {
		if after.exist[suffix] != was {
			t.Errorf("%s%s existed before: %v, after: %v", f.path, suffix, was, after.exist[suffix])
		}
	}
	if !after.dirTime.Equal(f.dirTime) {
		t.Errorf("the directory of %s was modified (mtime %v, was %v): a file was created or removed", f.path, after.dirTime, f.dirTime)
	}
}
