// Package btrfs is the adapter between ghostbridge and BTRFS: it creates,
// inspects and deletes subvolumes and snapshots through the kernel's ioctls
// (github.com/dennwc/btrfs).
//
// It decides nothing (no naming, no retention) and must never run the btrfs
// command-line tool: every operation is a system call on a path.
package btrfs

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
	"unsafe"

	dbtrfs "github.com/dennwc/btrfs"
	"github.com/dennwc/ioctl"
	"golang.org/x/sys/unix"
)

// Sentinel errors, matched with errors.Is through *Error.
var (
	// ErrNotBtrfs means the path is not on a BTRFS filesystem.
	ErrNotBtrfs = errors.New("not on a BTRFS filesystem")
	// ErrNotSubvolume means the path is on BTRFS but is not a subvolume root.
	ErrNotSubvolume = errors.New("not a subvolume")
	// ErrExists means the destination of a snapshot or subvolume already exists.
	ErrExists = errors.New("already exists")
)

// Error is returned by every operation; it names the operation and the path
// (and, for a snapshot, the source).
type Error struct {
	Op     string // "snapshot", "delete", "info", ...
	Path   string // the path operated on (the destination for a snapshot)
	Source string // the source subvolume of a snapshot, else empty
	Err    error
}

// Error names the operation, the path and (for a snapshot) the source.
func (e *Error) Error() string {
	if e.Source != "" {
		return fmt.Sprintf("btrfs %s %s -> %s: %v", e.Op, e.Source, e.Path, e.Err)
	}
	return fmt.Sprintf("btrfs %s %s: %v", e.Op, e.Path, e.Err)
}

// Unwrap returns the underlying error (an errno or a sentinel).
func (e *Error) Unwrap() error { return e.Err }

// Info describes one subvolume.
type Info struct {
	UUID       string    `json:"uuid"`        // empty when the kernel recorded none
	ParentUUID string    `json:"parent_uuid"` // the source's UUID for a snapshot, else empty
	Generation uint64    `json:"generation"`  // transaction id in which the subvolume was created (otransid)
	OTime      time.Time `json:"otime"`       // creation time, UTC
	ReadOnly   bool      `json:"read_only"`
}

// Subvolumes performs subvolume operations on BTRFS paths. The zero value is
// ready to use; it holds no open files between calls.
type Subvolumes struct{}

// New returns a Subvolumes.
func New() *Subvolumes { return &Subvolumes{} }

// subvolRootIno is BTRFS_FIRST_FREE_OBJECTID: the inode number of every
// subvolume's root directory.
const subvolRootIno = 256

// IsSubvolume reports whether path is the root of a BTRFS subvolume. A path
// that does not exist is an error; a path on another filesystem is not.
func (*Subvolumes) IsSubvolume(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, &Error{Op: "stat", Path: path, Err: err}
	}
	if st.Ino != subvolRootIno || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false, nil
	}
	ok, err := isBtrfs(path)
	if err != nil {
		return false, &Error{Op: "statfs", Path: path, Err: err}
	}
	return ok, nil
}

func isBtrfs(path string) (bool, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return false, err
	}
	return uint32(sfs.Type) == dbtrfs.SuperMagic, nil
}

// fsInfoArgs is struct btrfs_ioctl_fs_info_args (1024 bytes); only the
// leading fields are read.
type fsInfoArgs struct {
	MaxID      uint64
	NumDevices uint64
	FSID       [16]byte
	_          [1024 - 32]byte
}

var iocFSInfo = ioctl.IOR(0x94, 31, unsafe.Sizeof(fsInfoArgs{}))

// FSID returns the BTRFS filesystem id of the filesystem holding path (any
// file or directory on it). Unlike st_dev, which differs per subvolume, and
// statfs f_fsid, which BTRFS mixes with the subvolume id, it is the same for
// every path of one filesystem.
func (*Subvolumes) FSID(path string) (string, error) {
	id, err := fsid(path)
	if err != nil {
		return "", &Error{Op: "fsinfo", Path: path, Err: err}
	}
	return hex.EncodeToString(id[:]), nil
}

func fsid(path string) ([16]byte, error) {
	ok, err := isBtrfs(path)
	if err != nil {
		return [16]byte{}, err
	}
	if !ok {
		return [16]byte{}, ErrNotBtrfs
	}
	return fsInfoID(path)
}

// fsInfoID asks the kernel for the filesystem id of path, known to be on
// BTRFS.
func fsInfoID(path string) ([16]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return [16]byte{}, err
	}
	defer f.Close()
	var args fsInfoArgs
	if err := ioctl.Do(f, iocFSInfo, &args); err != nil {
		return [16]byte{}, err
	}
	return args.FSID, nil
}

// SameFilesystem reports whether a and b are on the same filesystem. Two
// BTRFS paths are compared by filesystem id, so two subvolumes of one
// filesystem match although their st_dev differ; otherwise st_dev decides.
func (*Subvolumes) SameFilesystem(a, b string) (bool, error) {
	ba, err := isBtrfs(a)
	if err != nil {
		return false, &Error{Op: "statfs", Path: a, Err: err}
	}
	bb, err := isBtrfs(b)
	if err != nil {
		return false, &Error{Op: "statfs", Path: b, Err: err}
	}
	if ba != bb {
		return false, nil
	}
	if ba {
		ia, err := fsInfoID(a)
		if err != nil {
			return false, &Error{Op: "fsinfo", Path: a, Err: err}
		}
		ib, err := fsInfoID(b)
		if err != nil {
			return false, &Error{Op: "fsinfo", Path: b, Err: err}
		}
		return ia == ib, nil
	}
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, &Error{Op: "stat", Path: a, Err: err}
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, &Error{Op: "stat", Path: b, Err: err}
	}
	return sa.Dev == sb.Dev, nil
}

// requireSubvolume returns a typed error unless path is a subvolume root.
func (s *Subvolumes) requireSubvolume(op, path string) error {
	ok, err := s.IsSubvolume(path)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Op = op
		}
		return err
	}
	if ok {
		return nil
	}
	if bt, err := isBtrfs(path); err == nil && !bt {
		return &Error{Op: op, Path: path, Err: ErrNotBtrfs}
	}
	return &Error{Op: op, Path: path, Err: ErrNotSubvolume}
}

// Create creates an empty subvolume at path; its parent directory must exist
// on BTRFS and path must not exist.
func (*Subvolumes) Create(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return &Error{Op: "create", Path: path, Err: ErrExists}
	} else if !errors.Is(err, os.ErrNotExist) {
		return &Error{Op: "create", Path: path, Err: err}
	}
	if err := dbtrfs.CreateSubVolume(path); err != nil {
		return &Error{Op: "create", Path: path, Err: err}
	}
	return nil
}

// Snapshot creates a snapshot of the subvolume src at dst. dst must not exist
// (the ioctl would otherwise put the snapshot inside it); its parent must be a
// directory on the same filesystem. The kernel commits the transaction before
// returning, so a snapshot that was reported created survives a crash.
func (s *Subvolumes) Snapshot(src, dst string, readOnly bool) error {
	if err := s.requireSubvolume("snapshot", src); err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		return &Error{Op: "snapshot", Path: dst, Source: src, Err: ErrExists}
	} else if !errors.Is(err, os.ErrNotExist) {
		return &Error{Op: "snapshot", Path: dst, Source: src, Err: err}
	}
	if err := dbtrfs.SnapshotSubVolume(src, dst, readOnly); err != nil {
		return &Error{Op: "snapshot", Path: dst, Source: src, Err: err}
	}
	return nil
}

// Delete deletes the subvolume or snapshot at path (read-only ones too). The
// space comes back asynchronously, after later commits.
func (s *Subvolumes) Delete(path string) error {
	if err := s.requireSubvolume("delete", path); err != nil {
		return err
	}
	if err := dbtrfs.DeleteSubVolume(path); err != nil {
		return &Error{Op: "delete", Path: path, Err: err}
	}
	return nil
}

// Info returns the UUIDs, creation generation and time and the read-only flag
// of the subvolume at path. It searches the tree of tree roots, which needs
// CAP_SYS_ADMIN.
func (s *Subvolumes) Info(path string) (Info, error) {
	if err := s.requireSubvolume("info", path); err != nil {
		return Info{}, err
	}
	fs, err := dbtrfs.Open(path, true)
	if err != nil {
		return Info{}, &Error{Op: "info", Path: path, Err: err}
	}
	defer fs.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		return Info{}, &Error{Op: "info", Path: path, Err: err}
	}
	si, err := fs.SubvolumeByPath(abs)
	if err != nil {
		return Info{}, &Error{Op: "info", Path: path, Err: err}
	}
	flags, err := fs.GetFlags()
	if err != nil {
		return Info{}, &Error{Op: "info", Path: path, Err: err}
	}
	return Info{
		UUID:       uuidString(si.UUID),
		ParentUUID: uuidString(si.ParentUUID),
		Generation: si.OTransID,
		OTime:      si.OTime.UTC(),
		ReadOnly:   flags.ReadOnly(),
	}, nil
}

func uuidString(id dbtrfs.UUID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// ListDir returns the sorted names of the entries of dir that are subvolume
// roots. Other entries are ignored.
func (s *Subvolumes) ListDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, &Error{Op: "list", Path: dir, Err: err}
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		ok, err := s.IsSubvolume(filepath.Join(dir, e.Name()))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted while we looked
			}
			return nil, err
		}
		if ok {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}
