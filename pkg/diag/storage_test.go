package diag_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/diag"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

func runStorage(cfg diag.StorageConfig) diag.Report {
	return diag.Run(context.Background(), diag.StorageChecks(cfg), diag.Options{Timeout: time.Minute})
}

func runArgv(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// TestStorageMounts mounts real BTRFS loop filesystems with and without
// the configured options and a non-BTRFS filesystem, and expects
// storage.mounts to name exactly what is wrong.
func TestStorageMounts(t *testing.T) {
	work := testenv.BTRFS(t, 0)
	timing := testenv.BTRFS(t, 0)
	tmpfs := t.TempDir()
	runArgv(t, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", tmpfs)
	t.Cleanup(func() { _ = unix.Unmount(tmpfs, 0) })
	notMounted := t.TempDir()

	workSpec := diag.MountSpec{Path: work, Options: []string{"nodatacow", "noatime"}}
	timingSpec := diag.MountSpec{Path: timing, Options: []string{"compress=zstd:9", "noatime"}}

	// Mounted with defaults: both lack their options.
	r := runStorage(diag.StorageConfig{Mounts: []diag.MountSpec{workSpec, timingSpec}})
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "chattr +C "+work+" (files created afterwards are nodatacow", work+" lacks nodatacow,noatime")
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "mount -o remount,noatime "+work, "")
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "", timing+" lacks compress=zstd:9,noatime")

	// One fixed: only the other is reported.
	runArgv(t, "mount", "-o", "remount,nodatacow,noatime", work)
	r = runStorage(diag.StorageConfig{Mounts: []diag.MountSpec{workSpec, timingSpec}})
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "btrfs property set "+timing+" compression zstd (new writes; the property sets only the algorithm: btrfs sets the compression level per filesystem", timing+" lacks compress=zstd:9,noatime")
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "mount -o remount,noatime "+timing, "")
	if d := hostResult(t, r, "storage.mounts").Detail; strings.Contains(d, work+" lacks") {
		t.Errorf("fixed mount still reported: %s", d)
	}

	// Both as configured; a level-less compress and subvol as written in
	// fstab match the kernel's rendering.
	runArgv(t, "mount", "-o", "remount,compress=zstd:9,noatime", timing)
	timingSpec.Options = append(timingSpec.Options, "compress=zstd", "subvol=/")
	r = runStorage(diag.StorageConfig{Mounts: []diag.MountSpec{workSpec, timingSpec}})
	expectCheck(t, r, "storage.mounts", diag.StatusPass, "", "mounted as configured: "+work+", "+timing+" (nodatacow on "+work+" by the filesystem's mount options")

	// A wrong compression level is not the configured one.
	r = runStorage(diag.StorageConfig{Mounts: []diag.MountSpec{{Path: timing, Options: []string{"compress=zstd:3"}}}})
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "", timing+" lacks compress=zstd:3")

	// Not BTRFS, and not mounted at all.
	r = runStorage(diag.StorageConfig{Mounts: []diag.MountSpec{{Path: tmpfs}, {Path: notMounted + "/"}}})
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "mount the BTRFS subvolume on "+tmpfs, tmpfs+" is tmpfs, want btrfs")
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "", notMounted+" is not a mount point")
}

// mountBTRFSSubvolumes makes one subvolume per entry of opts on one BTRFS
// loop filesystem and mounts them in that order, each with its options,
// with nothing of the filesystem mounted before: the first is the
// filesystem's first mount. It returns the mount points.
func mountBTRFSSubvolumes(t *testing.T, opts ...string) []string {
	t.Helper()
	top := testenv.BTRFS(t, 0)
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(top))
	if err != nil || len(mounts) != 1 {
		t.Fatalf("mount of %s: %v %v", top, mounts, err)
	}
	dev := mounts[0].Source
	dir := t.TempDir()
	var paths []string
	for i := range opts {
		testenv.MkSubvol(t, filepath.Join(top, fmt.Sprintf("@%d", i)))
		paths = append(paths, filepath.Join(dir, fmt.Sprint(i)))
		if err := os.Mkdir(paths[i], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Unmount(top, 0); err != nil {
		t.Fatal(err)
	}
	// Back to how testenv left it, for its clean-up.
	t.Cleanup(func() {
		if out, err := exec.Command("mount", "-t", "btrfs", dev, top).CombinedOutput(); err != nil {
			t.Errorf("mount %s again: %v: %s", top, err, out)
		}
	})
	for i, o := range opts {
		runArgv(t, "mount", "-t", "btrfs", "-o", fmt.Sprintf("subvol=@%d,%s", i, o), dev, paths[i])
		t.Cleanup(func() {
			if err := unix.Unmount(paths[i], 0); err != nil {
				t.Errorf("unmount %s: %v", paths[i], err)
			}
		})
	}
	return paths
}

// TestStorageMountsBTRFSSubvolumes mounts three subvolumes of one BTRFS
// filesystem with different options: the later ones show the first's, as
// btrfs(5) says, so nodatacow and a compression algorithm that only one
// subvolume should have come from the NOCOW attribute (chattr +C) and the
// compression property on its root. (The kernel refuses the property on
// a NOCOW directory: the two never go on one subvolume.)
func TestStorageMountsBTRFSSubvolumes(t *testing.T) {
	ps := mountBTRFSSubvolumes(t, "compress=lzo,noatime", "nodatacow,noatime", "compress=zstd:9,noatime")
	first, work, timing := ps[0], ps[1], ps[2]
	for _, p := range []string{work, timing} {
		m, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(p))
		if err != nil || len(m) != 1 {
			t.Fatalf("mount of %s: %v %v", p, m, err)
		}
		if opts := m[0].VFSOptions; !strings.Contains(opts, "compress=lzo") || strings.Contains(opts, "nodatacow") || strings.Contains(opts, "zstd") {
			t.Fatalf("later subvolume's filesystem options %q: want the first mount's (compress=lzo)", opts)
		}
	}

	firstSpec := diag.MountSpec{Path: first, Options: []string{"compress=lzo", "noatime"}}
	workSpec := diag.MountSpec{Path: work, Options: []string{"nodatacow", "noatime"}}
	timingSpec := diag.MountSpec{Path: timing, Options: []string{"compress=zstd:9", "noatime"}}
	all := diag.StorageConfig{Mounts: []diag.MountSpec{firstSpec, workSpec, timingSpec}}
	r := runStorage(all)
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "chattr +C "+work, work+" lacks nodatacow (has")
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "", timing+" lacks compress=zstd:9 (has")
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "", "satisfied: compress=lzo on "+first+" by the filesystem's mount options")
	r = runStorage(diag.StorageConfig{Mounts: []diag.MountSpec{timingSpec}})
	expectCheck(t, r, "storage.mounts", diag.StatusFail,
		"btrfs property set "+timing+" compression zstd (new writes; the property sets only the algorithm: btrfs sets the compression level per filesystem, at its first mount)", "")

	// The NOCOW attribute satisfies nodatacow; the compression property
	// the algorithm, not the level.
	runArgv(t, "chattr", "+C", work)
	runArgv(t, "btrfs", "property", "set", timing, "compression", "zstd")
	r = runStorage(all)
	expectCheck(t, r, "storage.mounts", diag.StatusPass, "", "mounted as configured: "+first+", "+work+", "+timing)
	expectCheck(t, r, "storage.mounts", diag.StatusPass, "", "nodatacow on "+work+" by the NOCOW attribute (chattr +C) on its root")
	expectCheck(t, r, "storage.mounts", diag.StatusPass, "",
		"compress=zstd:9 on "+timing+" by the compression property zstd on its root, algorithm only: level 9 is not applied, the level is the filesystem's (compress=lzo)")
	// Level-less compress is the algorithm alone.
	r = runStorage(diag.StorageConfig{Mounts: []diag.MountSpec{{Path: timing, Options: []string{"compress=zstd"}}}})
	expectCheck(t, r, "storage.mounts", diag.StatusPass, "", "compress=zstd on "+timing+" by the compression property zstd on its root)")
	// One subvolume's attribute or property is not another's.
	r = runStorage(diag.StorageConfig{Mounts: []diag.MountSpec{{Path: first, Options: []string{"nodatacow", "compress=zstd"}}}})
	expectCheck(t, r, "storage.mounts", diag.StatusFail, "chattr +C "+first, first+" lacks nodatacow,compress=zstd")
}

// TestStorageFree fills a real BTRFS filesystem and expects storage.free
// to go from pass to fail; a threshold between the two warns.
func TestStorageFree(t *testing.T) {
	mnt := testenv.BTRFS(t, 256<<20)
	cfg := diag.StorageConfig{FreeMinPercent: 10, Paths: []string{mnt, mnt + "/."}}
	r := runStorage(cfg)
	expectCheck(t, r, "storage.free", diag.StatusPass, "", mnt+" ")
	if d := hostResult(t, r, "storage.free").Detail; strings.Count(d, "free") != 1 {
		t.Errorf("one filesystem reported more than once: %s", d)
	}
	// A threshold above the free share but below twice it warns.
	empty := freePercent(t, mnt)
	warnAt := diag.StorageConfig{FreeMinPercent: empty + 5, Paths: []string{mnt}}
	expectCheck(t, runStorage(warnAt), "storage.free", diag.StatusWarn, "ghostbridge snap prune", fmt.Sprintf("below %g%%: %s %.1f%% free", warnAt.FreeMinPercent, mnt, empty))

	// Fill it: write until ENOSPC, then commit so statfs sees it.
	f, err := os.Create(filepath.Join(mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{0xa5}, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil && !errors.Is(err, unix.ENOSPC) {
		t.Fatal(err)
	}
	unix.Sync()
	pct := freePercent(t, mnt)
	if pct >= 5 {
		t.Fatalf("filesystem not nearly full after filling: %.1f%% free", pct)
	}
	r = runStorage(cfg)
	expectCheck(t, r, "storage.free", diag.StatusFail, "lower diag.free_min_percent", fmt.Sprintf("below half of 10%%: %s %.1f%% free", mnt, pct))
}

func freePercent(t *testing.T, path string) float64 {
	t.Helper()
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		t.Fatal(err)
	}
	return 100 * float64(sfs.Bavail) / float64(sfs.Blocks)
}

// TestStoragePathsNotBTRFS: device counters exist only on BTRFS; a
// non-BTRFS path is named, a missing one is unreadable.
func TestStoragePathsNotBTRFS(t *testing.T) {
	r := runStorage(diag.StorageConfig{FreeMinPercent: 0.001, Paths: []string{t.TempDir()}})
	expectCheck(t, r, "storage.device_errors", diag.StatusUnknown, "snap.dir", "no BTRFS filesystem among")
	expectCheck(t, r, "storage.free", diag.StatusPass, "", "free")
	r = runStorage(diag.StorageConfig{FreeMinPercent: 10, Paths: []string{"/nonexistent/ghostbridge"}})
	expectCheck(t, r, "storage.device_errors", diag.StatusUnknown, "create the path", "/nonexistent/ghostbridge: does not exist")
	expectCheck(t, r, "storage.free", diag.StatusUnknown, "snap.dir", "/nonexistent/ghostbridge: does not exist")

	cs := diag.StorageChecks(diag.StorageConfig{})
	for _, c := range cs {
		if c.SkipReason == "" {
			t.Errorf("%s: not skipped with nothing configured", c.Name)
		}
	}
}

// TestStorageDeviceErrors corrupts a file's data on a real BTRFS image
// behind the filesystem's back; reading it makes the kernel count a
// corruption error on the device, which storage.device_errors reports.
func TestStorageDeviceErrors(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	other := t.TempDir()
	cfg := diag.StorageConfig{Paths: []string{mnt, other}}
	r := runStorage(cfg)
	expectCheck(t, r, "storage.device_errors", diag.StatusPass, "", "no device errors on /dev/loop")
	expectCheck(t, r, "storage.device_errors", diag.StatusPass, "", "(not BTRFS, no counters: "+other+")")

	corrupt(t, mnt)
	stats, err := btrfs.New().DeviceStats(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].CorruptionErrs == 0 {
		t.Fatalf("after reading corrupted data: %+v, want corruption errors", stats)
	}
	r = runStorage(cfg)
	expectCheck(t, r, "storage.device_errors", diag.StatusFail, "btrfs scrub start "+mnt,
		fmt.Sprintf("%s (%s): write 0, read 0, flush 0, corruption %d", stats[0].Path, mnt, stats[0].CorruptionErrs))
}

// corrupt writes a file, unmounts, overwrites the file's data in the
// image, mounts again and reads the file (which fails its checksum).
func corrupt(t *testing.T, mnt string) {
	t.Helper()
	marker := []byte("ghostbridge-diag-corrupt-me-")
	data := bytes.Repeat(append(marker, make([]byte, 100)...), 2000)
	victim := filepath.Join(mnt, "victim")
	if err := os.WriteFile(victim, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mnt))
	if err != nil || len(ms) != 1 {
		t.Fatalf("mount of %s: %v %v", mnt, ms, err)
	}
	dev := ms[0].Source
	backing, err := os.ReadFile("/sys/block/" + filepath.Base(dev) + "/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	path := strings.TrimSpace(string(backing))
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := bytes.Index(img, marker); off >= 0; n++ {
		if _, err := f.WriteAt(bytes.Repeat([]byte("X"), len(marker)), int64(off)); err != nil {
			t.Fatal(err)
		}
		next := bytes.Index(img[off+1:], marker)
		if next < 0 {
			break
		}
		off += 1 + next
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("the file's data not found in the image %s", path)
	}
	if err := unix.Mount(dev, mnt, "btrfs", 0, ""); err != nil {
		t.Fatalf("mount %s again: %v", dev, err)
	}
	if _, err := os.ReadFile(victim); !errors.Is(err, unix.EIO) {
		t.Fatalf("read corrupted file: %v, want EIO", err)
	}
}
