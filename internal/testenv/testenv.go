// Package testenv gates tests that need real components (root, loop devices,
// BTRFS) and builds scratch BTRFS filesystems for them.
//
// A test that cannot run here is skipped with the reason, or fails instead
// when GHOSTBRIDGE_TEST_STRICT=1, so CI never counts a skip as a pass. This
// package is for tests only: production code must not import it.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// StrictEnv is the environment variable that turns skips into failures.
const StrictEnv = "GHOSTBRIDGE_TEST_STRICT"

// Strict reports whether GHOSTBRIDGE_TEST_STRICT=1, in which case a test that
// cannot run on this machine fails instead of skipping.
func Strict() bool {
	return os.Getenv(StrictEnv) == "1"
}

// Skip skips the test with the reason, or fails it when Strict.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("cannot run (%s=1 makes this a failure): %s", StrictEnv, reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails when Strict) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, fmt.Sprintf("needs root (euid %d)", os.Geteuid()))
	}
}

// MinBTRFSSize is the smallest image BTRFS accepts here with default
// mkfs.btrfs options.
const MinBTRFSSize = 128 << 20

// BTRFS creates a sparse image of size bytes in t.TempDir(), formats it as
// BTRFS, attaches it to a loop device and mounts it. It returns the mount
// point; the filesystem is unmounted and the loop device detached when the
// test ends. It skips (or fails when Strict) when the machine cannot do it.
func BTRFS(t testing.TB, size int64) string {
	t.Helper()
	RequireRoot(t)
	if size < MinBTRFSSize {
		size = MinBTRFSSize
	}
	mkfs, err := exec.LookPath("mkfs.btrfs")
	if err != nil {
		Skip(t, "mkfs.btrfs not found (install btrfs-progs)")
	}
	losetup, err := exec.LookPath("losetup")
	if err != nil {
		Skip(t, "losetup not found (install util-linux)")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		Skip(t, fmt.Sprintf("no loop devices: %v", err))
	}

	root := t.TempDir()
	img := filepath.Join(root, "btrfs.img")
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(f.Truncate(size), f.Close()); err != nil {
		t.Fatalf("sparse image %s: %v", img, err)
	}
	if _, err := run(mkfs, "-q", img); err != nil {
		t.Fatal(err)
	}
	out, err := run(losetup, "--find", "--show", img)
	if err != nil {
		Skip(t, fmt.Sprintf("no loop device available: %v", err))
	}
	dev := strings.TrimSpace(out)
	if _, err := run("mount", "-t", "btrfs", dev, mnt); err != nil {
		_, derr := run(losetup, "-d", dev)
		if derr != nil {
			t.Logf("detach %s: %v", dev, derr)
		}
		Skip(t, fmt.Sprintf("cannot mount BTRFS from a loop device: %v", err))
	}
	t.Cleanup(func() {
		if err := unmount(t, mnt); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
		// After a lazy unmount the device may still be busy; losetup -d
		// then marks it autoclear and the kernel detaches it when the
		// last user goes away.
		if _, err := run(losetup, "-d", dev); err != nil {
			t.Errorf("detach %s: %v", dev, err)
		}
	})
	return mnt
}

// unmount retries while the filesystem is busy (a process closing its last
// file a moment late) and detaches lazily as a last resort, so one stuck file
// never leaks a mount into the next test.
func unmount(t testing.TB, mnt string) error {
	const tries = 5
	var err error
	for i := range tries {
		err = unix.Unmount(mnt, 0)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(time.Duration(i+1) * 20 * time.Millisecond)
	}
	t.Logf("unmount %s: still busy after %d tries, detaching lazily", mnt, tries)
	return unix.Unmount(mnt, unix.MNT_DETACH)
}

// MkSubvol creates a subvolume at path through pkg/sys/btrfs and returns path.
func MkSubvol(t testing.TB, path string) string {
	t.Helper()
	if err := btrfs.New().Create(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// run executes an argument vector and returns its stdout; the error carries
// the argv and stderr.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
