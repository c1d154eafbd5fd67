package btrfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

func TestSnapshotInfoDelete(t *testing.T) {
	mnt := testenv.BTRFS(t, 256<<20)
	fs := btrfs.New()
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	srcInfo, err := fs.Info(src)
	if err != nil {
		t.Fatal(err)
	}
	if srcInfo.UUID == "" || srcInfo.ParentUUID != "" || srcInfo.ReadOnly {
		t.Fatalf("source info = %+v, want a UUID, no parent, writable", srcInfo)
	}

	before := time.Now().Add(-time.Second)
	dst := filepath.Join(mnt, "snap")
	if err := fs.Snapshot(src, dst, true); err != nil {
		t.Fatal(err)
	}
	info, err := fs.Info(dst)
	if err != nil {
		t.Fatal(err)
	}
	if info.UUID == "" || info.UUID == srcInfo.UUID {
		t.Errorf("snapshot UUID = %q, want a new one (source %q)", info.UUID, srcInfo.UUID)
	}
	if info.ParentUUID != srcInfo.UUID {
		t.Errorf("snapshot parent UUID = %q, want source UUID %q", info.ParentUUID, srcInfo.UUID)
	}
	if !info.ReadOnly {
		t.Error("snapshot is not read-only")
	}
	if info.Generation < srcInfo.Generation || info.Generation == 0 {
		t.Errorf("snapshot generation %d, source created at %d", info.Generation, srcInfo.Generation)
	}
	if info.OTime.Before(before) || info.OTime.Location() != time.UTC {
		t.Errorf("snapshot otime %v, want UTC and not before %v", info.OTime, before)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "f")); err != nil || string(b) != "hello" {
		t.Errorf("snapshot content = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(dst, "g"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into read-only snapshot: %v, want EROFS", err)
	}
	if ok, err := fs.IsSubvolume(dst); err != nil || !ok {
		t.Errorf("IsSubvolume(snapshot) = %v, %v", ok, err)
	}

	rw := filepath.Join(mnt, "rw")
	if err := fs.Snapshot(src, rw, false); err != nil {
		t.Fatal(err)
	}
	if info, err := fs.Info(rw); err != nil || info.ReadOnly {
		t.Errorf("writable snapshot info = %+v, %v", info, err)
	}

	if err := fs.Delete(dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after delete, lstat = %v", err)
	}
	_, err = fs.Info(dst)
	var e *btrfs.Error
	if !errors.Is(err, os.ErrNotExist) || !errors.As(err, &e) || e.Path != dst {
		t.Errorf("Info(deleted) = %v, want a *btrfs.Error naming %s wrapping ErrNotExist", err, dst)
	}
}

func TestErrorsNamePaths(t *testing.T) {
	mnt := testenv.BTRFS(t, 256<<20)
	fs := btrfs.New()
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	plain := filepath.Join(mnt, "plain")
	if err := os.Mkdir(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if ok, _ := fs.IsSubvolume(other); ok {
		t.Fatalf("%s is a subvolume; test needs a non-BTRFS temp dir", other)
	}

	tests := []struct {
		name     string
		err      error
		want     error
		wantPath string
	}{
		{"snapshot of a plain dir", fs.Snapshot(plain, filepath.Join(mnt, "x"), true), btrfs.ErrNotSubvolume, plain},
		{"snapshot onto existing", fs.Snapshot(src, plain, true), btrfs.ErrExists, plain},
		{"snapshot of missing", fs.Snapshot(filepath.Join(mnt, "nope"), filepath.Join(mnt, "y"), true), os.ErrNotExist, filepath.Join(mnt, "nope")},
		{"delete a plain dir", fs.Delete(plain), btrfs.ErrNotSubvolume, plain},
		{"info off BTRFS", func() error { _, err := fs.Info(other); return err }(), btrfs.ErrNotBtrfs, other},
		{"create existing", fs.Create(src), btrfs.ErrExists, src},
		{"fsid off BTRFS", func() error { _, err := fs.FSID(other); return err }(), btrfs.ErrNotBtrfs, other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e *btrfs.Error
			if !errors.Is(tt.err, tt.want) || !errors.As(tt.err, &e) {
				t.Fatalf("err = %v, want *btrfs.Error wrapping %v", tt.err, tt.want)
			}
			if e.Path != tt.wantPath || !strings.Contains(tt.err.Error(), tt.wantPath) {
				t.Errorf("err = %q, want it to name %s", tt.err, tt.wantPath)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(mnt, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed snapshot left %s behind: %v", filepath.Join(mnt, "x"), err)
	}
	if entries, _ := os.ReadDir(plain); len(entries) != 0 {
		t.Errorf("snapshot onto an existing dir put %d entries inside it", len(entries))
	}
}

func TestSameFilesystem(t *testing.T) {
	a := testenv.BTRFS(t, 256<<20)
	b := testenv.BTRFS(t, 256<<20)
	fs := btrfs.New()
	a1 := testenv.MkSubvol(t, filepath.Join(a, "one"))
	a2 := testenv.MkSubvol(t, filepath.Join(a, "two"))
	aDir := filepath.Join(a, "dir", "deeper")
	if err := os.MkdirAll(aDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b1 := testenv.MkSubvol(t, filepath.Join(b, "one"))

	// Subvolumes have their own st_dev, and BTRFS mixes the subvolume id
	// into statfs f_fsid: neither identifies the filesystem.
	var s1, s2 unix.Stat_t
	if err := errors.Join(unix.Stat(a1, &s1), unix.Stat(a2, &s2)); err != nil {
		t.Fatal(err)
	}
	if s1.Dev == s2.Dev {
		t.Logf("note: subvolumes %s and %s share st_dev %d", a1, a2, s1.Dev)
	}

	tests := []struct {
		a, b string
		want bool
	}{
		{a1, a2, true},
		{a1, aDir, true},
		{a, a2, true},
		{a1, b1, false},
		{aDir, b, false},
		{a1, t.TempDir(), false},
		{t.TempDir(), t.TempDir(), true},
	}
	for _, tt := range tests {
		got, err := fs.SameFilesystem(tt.a, tt.b)
		if err != nil {
			t.Fatalf("SameFilesystem(%s, %s): %v", tt.a, tt.b, err)
		}
		if got != tt.want {
			t.Errorf("SameFilesystem(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	ida, err := fs.FSID(aDir)
	if err != nil {
		t.Fatal(err)
	}
	idb, err := fs.FSID(b1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ida) != 32 || ida == idb {
		t.Errorf("FSIDs %q and %q: want two different 16-byte ids", ida, idb)
	}
	if _, err := fs.SameFilesystem(filepath.Join(a, "missing"), a1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SameFilesystem(missing) err = %v, want ErrNotExist", err)
	}
}

func TestListDir(t *testing.T) {
	mnt := testenv.BTRFS(t, 256<<20)
	fs := btrfs.New()
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	dir := filepath.Join(mnt, "snaps")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"b", "a"} {
		if err := fs.Snapshot(src, filepath.Join(dir, n), true); err != nil {
			t.Fatal(err)
		}
	}
	testenv.MkSubvol(t, filepath.Join(dir, "c"))
	if err := os.Mkdir(filepath.Join(dir, "plain"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := fs.ListDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("ListDir = %q, want %q", got, want)
	}
	if _, err := fs.ListDir(filepath.Join(mnt, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ListDir(missing) err = %v", err)
	}
}

// BenchmarkSnapshotDelete measures one read-only snapshot and its deletion,
// reported separately as snapshot-ns and delete-ns.
func BenchmarkSnapshotDelete(b *testing.B) {
	mnt := testenv.BTRFS(b, 512<<20)
	fs := btrfs.New()
	src := testenv.MkSubvol(b, filepath.Join(mnt, "src"))
	for i := range 100 {
		if err := os.WriteFile(filepath.Join(src, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))), make([]byte, 4096), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	dst := filepath.Join(mnt, "snap")
	var snapNS, delNS time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := fs.Snapshot(src, dst, true); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := fs.Delete(dst); err != nil {
			b.Fatal(err)
		}
		snapNS += t1.Sub(t0)
		delNS += time.Since(t1)
	}
	b.ReportMetric(float64(snapNS.Nanoseconds())/float64(b.N), "snapshot-ns/op")
	b.ReportMetric(float64(delNS.Nanoseconds())/float64(b.N), "delete-ns/op")
}

// BenchmarkInfo measures reading a snapshot's UUIDs, generation and flags.
func BenchmarkInfo(b *testing.B) {
	mnt := testenv.BTRFS(b, 256<<20)
	fs := btrfs.New()
	src := testenv.MkSubvol(b, filepath.Join(mnt, "src"))
	dst := filepath.Join(mnt, "snap")
	if err := fs.Snapshot(src, dst, true); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := fs.Info(dst); err != nil {
			b.Fatal(err)
		}
	}
}
