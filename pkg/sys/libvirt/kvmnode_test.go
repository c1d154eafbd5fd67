package libvirt_test

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

// TestLibvirtdKVMNodeOnNodevTmp checks the test daemon's /dev/kvm opens
// even when the temp directory is mounted nodev (as hardened hosts mount
// /tmp): the qemu tests rely on the daemon's kvm group reaching /dev/kvm,
// or libvirtd re-probes qemu, for about a minute, on every define. It looks
// at the node through /proc/PID/root, in the daemon's own mount namespace.
func TestLibvirtdKVMNodeOnNodevTmp(t *testing.T) {
	testenv.RequireRoot(t)
	var st unix.Stat_t
	if unix.Stat("/dev/kvm", &st) != nil || st.Mode&0o060 == 0o060 {
		t.Skip("/dev/kvm is missing or already usable by its group: the daemon gets the host's node unchanged")
	}
	g, err := user.LookupGroup("kvm")
	if err != nil {
		t.Skip("no kvm group: the daemon gets the host's node unchanged")
	}
	tmp := t.TempDir()
	if err := unix.Mount("gbnodev", tmp, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID, "mode=0755"); err != nil {
		testenv.Skip(t, "mount a nodev tmpfs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := unix.Unmount(tmp, 0); err != nil {
			t.Errorf("unmount %s: %v", tmp, err)
		}
	})
	t.Setenv("TMPDIR", tmp)

	d := testenv.StartLibvirtd(t)
	if !strings.HasPrefix(d.Dir, tmp) {
		t.Fatalf("daemon directory %s is not under the nodev TMPDIR %s", d.Dir, tmp)
	}
	b, err := os.ReadFile(filepath.Join(d.Dir, "libvirtd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	node := "/proc/" + strings.TrimSpace(string(b)) + "/root/dev/kvm"
	f, err := os.OpenFile(node, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open the daemon's /dev/kvm: %v", err)
	}
	_ = f.Close()
	var dst unix.Stat_t
	if err := unix.Stat(node, &dst); err != nil {
		t.Fatal(err)
	}
	if dst.Mode&0o777 != 0o660 || strconv.Itoa(int(dst.Gid)) != g.Gid || dst.Rdev != st.Rdev {
		t.Errorf("the daemon's /dev/kvm: mode %o gid %d rdev %d; want 660, group kvm (%s), rdev %d", dst.Mode&0o777, dst.Gid, dst.Rdev, g.Gid, st.Rdev)
	}
}
