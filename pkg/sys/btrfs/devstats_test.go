package btrfs_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// TestDeviceStats reads a fresh filesystem's counters through the ioctl:
// one device, its loop node named, every counter zero. Corrupted data
// making a counter non-zero is exercised by pkg/diag's storage tests.
func TestDeviceStats(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	stats, err := btrfs.New().DeviceStats(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].DevID != 1 || !strings.HasPrefix(stats[0].Path, "/dev/loop") || stats[0].Total() != 0 {
		t.Fatalf("stats = %+v, want one /dev/loop device with zero counters", stats)
	}
	if _, err := btrfs.New().DeviceStats("/proc"); !errors.Is(err, btrfs.ErrNotBtrfs) {
		t.Errorf("DeviceStats(/proc) = %v, want btrfs.ErrNotBtrfs", err)
	}
}
