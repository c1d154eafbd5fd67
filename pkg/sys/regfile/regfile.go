// Package regfile reads and writes the small regular files ghostbridge
// keeps beside its database (keys, CA bundles, checkpoints, net try
// state). Reads never block on something that is not a regular file:
// opening a FIFO for reading waits for a writer for ever, and a device or
// socket is never what an operator meant. Writes and removals are durable:
// a crash leaves the old file or the whole new one, and never undoes a
// rename or removal that returned.
//
// What a file must hold is for its caller to judge.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// NotRegularError is a path that names something other than a regular
// file: a FIFO, a socket, a device or a directory.
type NotRegularError struct{ Type fs.FileMode }

func (e *NotRegularError) Error() string {
	what := "not a regular file"
	switch {
	case e.Type&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case e.Type&fs.ModeSocket != 0:
		what = "a socket"
	case e.Type&fs.ModeDevice != 0:
		what = "a device"
	case e.Type.IsDir():
		what = "a directory"
	}
	return "it is " + what + ", not a regular file"
}

// Open opens path for reading without blocking (O_NONBLOCK keeps a FIFO
// from waiting for a writer) and returns it with the status of the file
// it actually opened, or a *fs.PathError wrapping *NotRegularError when
// that is not a regular file.
func Open(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, &fs.PathError{Op: "read", Path: path, Err: &NotRegularError{Type: st.Mode().Type()}}
	}
	return f, st, nil
}

// Read returns the contents of the regular file at path, refusing one
// longer than limit bytes (limit <= 0: no limit).
func Read(path string, limit int64) ([]byte, error) {
	f, _, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if limit <= 0 {
		return io.ReadAll(f)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		clear(data)
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("longer than %d bytes", limit)}
	}
	return data, nil
}

// WriteAtomic replaces path with data, mode 0600: written to a temporary
// file in the same directory, synced, renamed over path, and the
// directory synced.
func WriteAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return errors.Join(err, f.Close())
	}
	if _, err := f.Write(data); err != nil {
		return errors.Join(err, f.Close())
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// RemoveDurable removes path and syncs its directory; a file already gone
// is not an error.
func RemoveDurable(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir makes the creations, renames and removals in dir durable: until
// the directory itself is synced, a crash may undo them.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	if err := errors.Join(d.Sync(), d.Close()); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
