package regfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := Read(file, 0); err != nil || string(b) != "secret\n" {
		t.Errorf("Read = %q, %v", b, err)
	}
	if _, err := Read(file, 3); err == nil {
		t.Error("a file over the limit was read")
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Without O_NONBLOCK this open would wait for a writer for ever.
	var nr *NotRegularError
	if _, err := Read(fifo, 0); !errors.As(err, &nr) || nr.Type&fs.ModeNamedPipe == 0 {
		t.Errorf("FIFO: err = %v, want NotRegularError for a named pipe", err)
	} else if want := "it is a named pipe (FIFO), not a regular file"; nr.Error() != want {
		t.Errorf("message %q, want %q", nr.Error(), want)
	}
	if _, err := Read(dir, 0); !errors.As(err, &nr) || !nr.Type.IsDir() {
		t.Errorf("directory: err = %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing"), 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: err = %v", err)
	}
}
