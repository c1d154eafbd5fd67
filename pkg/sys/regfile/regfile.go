// Package regfile reads files named by configuration (keys, CA bundles,
// checkpoints) without ever blocking on something that is not a regular
// file: opening a FIFO for reading waits for a writer for ever, and a
// device or socket is never what an operator meant.
//
// It only reads; what a file must hold is for its caller to judge.
package regfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
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
