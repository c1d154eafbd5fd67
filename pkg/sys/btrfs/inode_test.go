package btrfs_test

import (
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

func mustRun(t *testing.T, argv ...string) {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		testenv.Skip(t, argv[0]+" not found")
	}
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// TestInodeAttributes sets the NOCOW attribute and the compression
// property with the operator's tools (chattr, btrfs property) and reads
// them back through the ioctl and the xattr.
func TestInodeAttributes(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	sv := btrfs.New()
	dir := filepath.Join(mnt, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if nocow, err := sv.NoCOW(dir); err != nil || nocow {
		t.Fatalf("NoCOW(new dir) = %v, %v; want false", nocow, err)
	}
	if c, err := sv.Compression(dir); err != nil || c != "" {
		t.Fatalf("Compression(new dir) = %q, %v; want none", c, err)
	}
	mustRun(t, "chattr", "+C", dir)
	if nocow, err := sv.NoCOW(dir); err != nil || !nocow {
		t.Errorf("NoCOW after chattr +C = %v, %v; want true", nocow, err)
	}
	mustRun(t, "btrfs", "property", "set", mnt, "compression", "zstd")
	if c, err := sv.Compression(mnt); err != nil || c != "zstd" {
		t.Errorf("Compression after btrfs property set = %q, %v; want zstd", c, err)
	}
	if nocow, err := sv.NoCOW(mnt); err != nil || nocow {
		t.Errorf("NoCOW(mount root) = %v, %v; want false", nocow, err)
	}
	missing := filepath.Join(mnt, "missing")
	if _, err := sv.NoCOW(missing); !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), missing) {
		t.Errorf("NoCOW(missing) = %v; want ENOENT naming the path", err)
	}
	if _, err := sv.Compression(missing); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Compression(missing) = %v; want ENOENT", err)
	}
}
