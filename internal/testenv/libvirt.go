package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// libvirtdLock serialises libvirtd instances across test binaries: as root,
// every libvirtd shares /run/libvirt for its drivers' state, so a second
// daemon refuses to start while another runs.
const libvirtdLock = "/tmp/ghostbridge-libvirtd.lock"

// Libvirtd is a private libvirtd for one test: its sockets live in Dir and
// need no authentication.
type Libvirtd struct {
	Dir    string
	Socket string
	// TestURI reaches the daemon's test driver (domains and volumes live
	// in the daemon's memory); QEMUURI its qemu driver.
	TestURI string
	QEMUURI string
}

// StartLibvirtd starts libvirtd with a private configuration and stops it
// when the test ends. It skips (or fails when Strict) when libvirtd is not
// installed or cannot start.
func StartLibvirtd(t testing.TB) *Libvirtd {
	t.Helper()
	RequireRoot(t)
	bin, err := exec.LookPath("libvirtd")
	if err != nil {
		Skip(t, "libvirtd not found (install libvirt-daemon-system)")
	}
	lock, err := os.OpenFile(libvirtdLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		_ = lock.Close()
		t.Fatalf("lock %s: %v", libvirtdLock, err)
	}
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "gblv")
	if err != nil {
		t.Fatal(err)
	}
	h := &Libvirtd{Dir: dir, Socket: filepath.Join(dir, "libvirt-sock")}
	h.TestURI = "test+unix:///default?socket=" + h.Socket
	h.QEMUURI = "qemu+unix:///system?socket=" + h.Socket
	pidfile := filepath.Join(dir, "libvirtd.pid")
	t.Cleanup(func() {
		h.stop(t, pidfile)
		if err := errors.Join(os.RemoveAll(dir), unix.Flock(int(lock.Fd()), unix.LOCK_UN), lock.Close()); err != nil {
			t.Errorf("clean up libvirtd: %v", err)
		}
	})
	conf := filepath.Join(dir, "libvirtd.conf")
	text := fmt.Sprintf("unix_sock_dir = %q\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\nlisten_tls = 0\nlisten_tcp = 0\n", dir)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(bin, "-f", conf, "-p", pidfile, "-d"); err != nil {
		Skip(t, fmt.Sprintf("start libvirtd: %v", err))
	}
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(h.Socket); err == nil {
			return h
		}
		time.Sleep(25 * time.Millisecond)
	}
	Skip(t, fmt.Sprintf("libvirtd did not create %s", h.Socket))
	return nil
}

func (h *Libvirtd) stop(t testing.TB, pidfile string) {
	pid := readPid(pidfile)
	if pid == 0 {
		return
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("stop libvirtd %d: %v", pid, err)
		return
	}
	// The lock is released only once the daemon is gone, so the next test's
	// daemon finds /run/libvirt free.
	for i := 0; i < 400; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Logf("libvirtd %d still running after SIGTERM; sending SIGKILL", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// Virsh runs virsh against uri and returns stdout, for tests that check
// the daemon's view independently of the code under test.
func (h *Libvirtd) Virsh(uri string, args ...string) (string, error) {
	out, err := run("virsh", append([]string{"-c", uri}, args...)...)
	return strings.TrimSpace(out), err
}
