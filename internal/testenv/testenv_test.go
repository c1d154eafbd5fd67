package testenv_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// mountSource returns the device mounted at dir per /proc/self/mountinfo,
// or "" when nothing is mounted there.
func mountSource(t *testing.T, dir string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// mount ID, parent ID, major:minor, root, mount point, options, optional..., "-", type, source, super options
		if len(fields) < 10 || fields[4] != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				return fields[i+2]
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ""
}

// backingFile is the file behind loop device dev, "" when none is
// attached; the kernel marks a removed file with " (deleted)", which is
// dropped.
func backingFile(t *testing.T, dev string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
}

func TestBTRFSMountsAndCleansUp(t *testing.T) {
	var mnt, dev, img string
	t.Run("inner", func(t *testing.T) {
		mnt = testenv.BTRFS(t, 200<<20)
		var sfs unix.Statfs_t
		if err := unix.Statfs(mnt, &sfs); err != nil {
			t.Fatal(err)
		}
		if uint32(sfs.Type) != 0x9123683E {
			t.Fatalf("%s: filesystem magic %#x, want BTRFS", mnt, sfs.Type)
		}
		dev = mountSource(t, mnt)
		if !strings.HasPrefix(dev, "/dev/loop") {
			t.Fatalf("%s mounted from %q, want a loop device", mnt, dev)
		}
		// This test's own image: another package may reuse the device for
		// its own btrfs.img once this one is detached.
		img = backingFile(t, dev)
		if filepath.Base(img) != "btrfs.img" {
			t.Fatalf("%s backed by %q, want this test's btrfs.img", dev, img)
		}
		sub := testenv.MkSubvol(t, filepath.Join(mnt, "sub"))
		if ok, err := btrfs.New().IsSubvolume(sub); err != nil || !ok {
			t.Fatalf("MkSubvol(%s): IsSubvolume = %v, %v", sub, ok, err)
		}
	})
	if t.Failed() || mnt == "" {
		t.FailNow()
	}
	if src := mountSource(t, mnt); src != "" {
		t.Errorf("%s still mounted from %s after the test ended", mnt, src)
	}
	if b := backingFile(t, dev); b == img {
		t.Errorf("%s still attached to %s", dev, b)
	}
}

// A file left open in the mount when the test ends must not leak the mount.
func TestBTRFSBusyCleanup(t *testing.T) {
	var mnt string
	var f *os.File
	t.Run("inner", func(t *testing.T) {
		mnt = testenv.BTRFS(t, 200<<20)
		var err error
		f, err = os.Create(filepath.Join(mnt, "held"))
		if err != nil {
			t.Fatal(err)
		}
	})
	if f == nil {
		t.FailNow()
	}
	defer f.Close()
	if src := mountSource(t, mnt); src != "" {
		t.Errorf("%s still mounted from %s although a file was held open", mnt, src)
	}
}

// TestSkipStrict runs this test binary again to observe Skip from outside:
// a skip without GHOSTBRIDGE_TEST_STRICT, a failure naming the reason with it.
func TestSkipStrict(t *testing.T) {
	if os.Getenv("TESTENV_HELPER") == "1" {
		testenv.Skip(t, "helper reason 42")
		t.Fatal("Skip returned")
	}
	for _, strict := range []bool{false, true} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkipStrict$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_HELPER=1", testenv.StrictEnv+"=")
		if strict {
			cmd.Env = append(cmd.Env, testenv.StrictEnv+"=1")
		}
		out, err := cmd.CombinedOutput()
		s := string(out)
		if !strings.Contains(s, "helper reason 42") {
			t.Errorf("strict=%v: output does not name the reason:\n%s", strict, s)
		}
		if strict {
			if err == nil || !strings.Contains(s, "--- FAIL") {
				t.Errorf("strict: want a failure, got err=%v:\n%s", err, s)
			}
		} else if err != nil || !strings.Contains(s, "--- SKIP") {
			t.Errorf("not strict: want a skip, got err=%v:\n%s", err, s)
		}
	}
}

func TestStrict(t *testing.T) {
	t.Setenv(testenv.StrictEnv, "1")
	if !testenv.Strict() {
		t.Error("Strict() = false with 1")
	}
	for _, v := range []string{"", "0", "true", "yes"} {
		t.Setenv(testenv.StrictEnv, v)
		if testenv.Strict() {
			t.Errorf("Strict() = true with %q", v)
		}
	}
}
