package btrfs

import (
	"errors"
	"os"
	"unsafe"

	"github.com/dennwc/ioctl"
	"golang.org/x/sys/unix"
)

// DevStats are one device's persistent error counters, as `btrfs device
// stats` shows them. The kernel keeps them across mounts until they are
// reset; any non-zero counter means the device lost or damaged data at
// some point.
type DevStats struct {
	DevID uint64 `json:"devid"`
	// Path is the device node the kernel has for it, e.g. /dev/sda2.
	Path           string `json:"path"`
	WriteErrs      uint64 `json:"write_io_errs"`
	ReadErrs       uint64 `json:"read_io_errs"`
	FlushErrs      uint64 `json:"flush_io_errs"`
	CorruptionErrs uint64 `json:"corruption_errs"`
	GenerationErrs uint64 `json:"generation_errs"`
}

// Total is the sum of all counters.
func (s DevStats) Total() uint64 {
	return s.WriteErrs + s.ReadErrs + s.FlushErrs + s.CorruptionErrs + s.GenerationErrs
}

// devStatValues is BTRFS_DEV_STAT_VALUES_MAX.
const devStatValues = 5

// getDevStatsArgs is struct btrfs_ioctl_get_dev_stats (1032 bytes).
type getDevStatsArgs struct {
	DevID   uint64
	NrItems uint64
	Flags   uint64 // 0: read only; BTRFS_DEV_STATS_RESET is never sent
	Values  [devStatValues]uint64
	_       [128 - 2 - devStatValues]uint64
}

// devInfoArgs is struct btrfs_ioctl_dev_info_args (4096 bytes).
type devInfoArgs struct {
	DevID      uint64
	UUID       [16]byte
	BytesUsed  uint64
	TotalBytes uint64
	_          [379 * 8]byte // fsid on newer kernels, then padding
	Path       [1024]byte
}

// The kernel's sizes are fixed: a wrong size makes a wrong ioctl number
// the kernel refuses, so these fail the build instead.
var (
	_ [1032]byte        = [unsafe.Sizeof(getDevStatsArgs{})]byte{}
	_ [4096]byte        = [unsafe.Sizeof(devInfoArgs{})]byte{}
	_ [4096 - 1024]byte = [unsafe.Offsetof(devInfoArgs{}.Path)]byte{}
)

var (
	iocDevInfo     = ioctl.IOWR(0x94, 30, unsafe.Sizeof(devInfoArgs{}))
	iocGetDevStats = ioctl.IOWR(0x94, 52, unsafe.Sizeof(getDevStatsArgs{}))
)

// DeviceStats reads the error counters of every device of the BTRFS
// filesystem holding path (any file or directory on it). It only reads:
// the counters are never reset. github.com/dennwc/btrfs has the same
// ioctl but opens only subvolume roots and does not name the device.
func (*Subvolumes) DeviceStats(path string) ([]DevStats, error) {
	ok, err := isBtrfs(path)
	if err != nil {
		return nil, &Error{Op: "statfs", Path: path, Err: err}
	}
	if !ok {
		return nil, &Error{Op: "device stats", Path: path, Err: ErrNotBtrfs}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{Op: "device stats", Path: path, Err: err}
	}
	defer f.Close()
	var info fsInfoArgs
	if err := ioctlPtr(f, iocFSInfo, unsafe.Pointer(&info)); err != nil {
		return nil, &Error{Op: "fsinfo", Path: path, Err: err}
	}
	var out []DevStats
	// Device ids run from 1 to max_id with gaps where devices were
	// removed; the kernel answers ENODEV for a gap.
	for id := uint64(1); id <= info.MaxID; id++ {
		di := devInfoArgs{DevID: id}
		if err := ioctlPtr(f, iocDevInfo, unsafe.Pointer(&di)); errors.Is(err, unix.ENODEV) {
			continue
		} else if err != nil {
			return nil, &Error{Op: "device info", Path: path, Err: err}
		}
		ds := getDevStatsArgs{DevID: id, NrItems: devStatValues}
		if err := ioctlPtr(f, iocGetDevStats, unsafe.Pointer(&ds)); err != nil {
			return nil, &Error{Op: "device stats", Path: path, Err: err}
		}
		s := DevStats{DevID: id, Path: unix.ByteSliceToString(di.Path[:])}
		// An older kernel may fill fewer counters than asked for.
		vals := ds.Values[:min(ds.NrItems, devStatValues)]
		for i, p := range []*uint64{&s.WriteErrs, &s.ReadErrs, &s.FlushErrs, &s.CorruptionErrs, &s.GenerationErrs} {
			if i < len(vals) {
				*p = vals[i]
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// ioctlPtr issues an ioctl whose argument is a pointer to a struct, on
// the file's descriptor without taking it out of the runtime poller.
func ioctlPtr(f *os.File, req uintptr, arg unsafe.Pointer) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if cerr := conn.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
	}); cerr != nil {
		return cerr
	}
	if errno != 0 {
		return errno
	}
	return nil
}
