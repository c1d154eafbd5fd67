package snap

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLockTwoOpensInOneProcess(t *testing.T) {
	path := LockPath(filepath.Join(t.TempDir(), "chain.db"))
	l, err := AcquireLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, %v; want our pid %d", b, err, os.Getpid())
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}

	// flock belongs to the open file description: a second open conflicts
	// even in the same process.
	_, err = AcquireLock(path)
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Fatalf("second AcquireLock = %v, want *LockedError", err)
	}
	if le.PID != os.Getpid() || le.Path != path {
		t.Errorf("LockedError = %+v, want pid %d path %s", le, os.Getpid(), path)
	}
	if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(msg, path) {
		t.Errorf("message %q does not name the pid and the lock", msg)
	}

	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := AcquireLock(path)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if err := l2.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestLockChildProcess holds the lock in a child process (this test binary
// run again) and checks that the parent sees the child's pid, and that the
// lock is free again once the child is killed.
func TestLockChildProcess(t *testing.T) {
	if path := os.Getenv("SNAP_LOCK_HELPER"); path != "" {
		if _, err := AcquireLock(path); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // hold until the parent says
		os.Exit(0)
	}

	path := LockPath(filepath.Join(t.TempDir(), "chain.db"))
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockChildProcess$")
	cmd.Env = append(os.Environ(), "SNAP_LOCK_HELPER="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child said %q, %v", line, err)
	}

	_, err = AcquireLock(path)
	var le *LockedError
	if !errors.As(err, &le) || le.PID != cmd.Process.Pid {
		t.Fatalf("AcquireLock while the child holds it = %v, want *LockedError with pid %d", err, cmd.Process.Pid)
	}

	// kill -9: the kernel drops the lock with the process.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	_ = stdin.Close()
	l, err := AcquireLock(path)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}
