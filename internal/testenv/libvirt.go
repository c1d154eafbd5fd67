package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
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

// LibvirtdOptions adjusts the daemon StartLibvirtdWith starts.
type LibvirtdOptions struct {
	// NetNS runs the daemon in that named network namespace (an OVSHost's
	// NS). The tap devices of guests it starts are made there, where the
	// test's userspace switch, which opens ports by name in its own
	// namespace, can reach them.
	NetNS string
	// Env is added to the daemon's environment. libvirt runs ovs-vsctl for
	// <virtualport type='openvswitch'/> with the daemon's environment and
	// no --db, so OVS_RUNDIR=DIR points it at the database DIR/db.sock.
	Env []string
}

// virtlogdSock is where the qemu driver hands guests' console output
// (qemu.conf stdio_handler = "logd", the default); a guest does not start
// without a virtlogd there.
const virtlogdSock = "/run/libvirt/virtlogd-sock"

// StartLibvirtd starts libvirtd with a private configuration and stops it
// when the test ends. It skips (or fails when Strict) when libvirtd is not
// installed or cannot start.
func StartLibvirtd(t testing.TB) *Libvirtd {
	t.Helper()
	return StartLibvirtdWith(t, LibvirtdOptions{})
}

// StartLibvirtdWith is StartLibvirtd with options. It also starts virtlogd
// when none is running, so qemu-driver guests can boot, and stops it with
// the daemon.
func StartLibvirtdWith(t testing.TB, opts LibvirtdOptions) *Libvirtd {
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
	if c, err := net.Dial("unix", virtlogdSock); err == nil {
		_ = c.Close()
	} else if logd, err := exec.LookPath("virtlogd"); err == nil {
		logdPid := filepath.Join(dir, "virtlogd.pid")
		if _, err := run(logd, "-d", "-p", logdPid); err != nil {
			Skip(t, fmt.Sprintf("start virtlogd: %v", err))
		}
		// Registered after the daemon's clean-up, so it runs just before
		// it; the test's own clean-ups, registered later still, have
		// stopped its guests by then.
		t.Cleanup(func() { h.stop(t, logdPid) })
	}
	argv := []string{bin, "-f", conf, "-p", pidfile, "-d"}
	if opts.NetNS != "" {
		argv = append([]string{"ip", "netns", "exec", opts.NetNS}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), opts.Env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := startWithKVMNode(dir, cmd); err != nil {
		Skip(t, fmt.Sprintf("start libvirtd: %s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String())))
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

// stop ends the daemon whose pid is in pidfile (libvirtd or virtlogd) and
// waits until it is gone.
func (h *Libvirtd) stop(t testing.TB, pidfile string) {
	pid := readPid(pidfile)
	if pid == 0 {
		return
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("stop %s (pid %d): %v", filepath.Base(pidfile), pid, err)
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
	t.Logf("%s: %d still running after SIGTERM; sending SIGKILL", filepath.Base(pidfile), pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// Virsh runs virsh against uri and returns stdout, for tests that check
// the daemon's view independently of the code under test.
func (h *Libvirtd) Virsh(uri string, args ...string) (string, error) {
	out, err := run("virsh", append([]string{"-c", uri}, args...)...)
	return strings.TrimSpace(out), err
}

// startWithKVMNode runs cmd (which starts libvirtd as a daemon). When
// /dev/kvm exists but only root may use it (no udev here to give it the
// root:kvm 0660 a normal host has), it runs cmd in a private mount
// namespace where a node with that mode is bound over /dev/kvm; the host's
// node is not changed.
//
// Without it the qemu driver never trusts its capabilities cache: qemu,
// probed as root, reports KVM, while the libvirt-qemu user cannot open
// /dev/kvm, so libvirtd discards the cache and probes qemu again (about a
// minute under TCG) on every define.
//
// The node is made on a tmpfs mounted in that namespace under dir, not in
// dir itself: a bind mount keeps its source's nodev, and on a host whose
// temp directory is mounted nodev the bound node would not open, silently
// bringing the re-probing back.
func startWithKVMNode(dir string, cmd *exec.Cmd) error {
	var st unix.Stat_t
	if unix.Stat("/dev/kvm", &st) != nil || st.Mode&0o060 == 0o060 {
		return cmd.Run()
	}
	g, err := user.LookupGroup("kvm")
	if err != nil {
		return cmd.Run()
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return cmd.Run()
	}
	devDir := filepath.Join(dir, "dev")
	if err := os.Mkdir(devDir, 0o700); err != nil {
		return err
	}
	node := filepath.Join(devDir, "kvm")
	return onSpareThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("unshare mount namespace: %w", err)
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make mounts private: %w", err)
		}
		if err := unix.Mount("gbkvm", devDir, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", devDir, err)
		}
		if err := unix.Mknod(node, unix.S_IFCHR|0o660, int(st.Rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", node, err)
		}
		if err := errors.Join(os.Chown(node, 0, gid), os.Chmod(node, 0o660)); err != nil {
			return err
		}
		if err := unix.Mount(node, "/dev/kvm", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s over /dev/kvm: %w", node, err)
		}
		return cmd.Run()
	})
}

// onSpareThread runs f on an OS thread of its own that ends with it, so f
// may change the thread's namespaces for good. Never the main thread:
// /proc/self follows it, and a main thread left in another mount
// namespace would hide every later mount from /proc/self/mountinfo (and
// put mounts made on it out of everyone's sight).
func onSpareThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Holding the main thread locked while waiting keeps the
			// goroutine below off it.
			errc <- onSpareThread(f)
			runtime.UnlockOSThread()
			return
		}
		// Never unlocked: the runtime ends the thread with the goroutine
		// instead of reusing it.
		errc <- f()
	}()
	return <-errc
}
