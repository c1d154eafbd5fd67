package btrfs

import (
	"errors"

	"golang.org/x/sys/unix"
)

// fsNoCOWFlag is FS_NOCOW_FL, the inode flag `chattr +C` sets: data
// written to files created afterwards in a directory carrying it is
// neither copied on write nor checksummed nor compressed.
const fsNoCOWFlag = 0x00800000

// compressionXattr is where BTRFS keeps the per-inode compression
// property (`btrfs property set PATH compression ALG`).
const compressionXattr = "btrfs.compression"

// NoCOW reports whether path carries the NOCOW attribute (FS_NOCOW_FL,
// read with FS_IOC_GETFLAGS; `lsattr -d` shows it as C). New files in a
// directory with it inherit it, which is how one subvolume gets nodatacow
// while the filesystem is mounted with datacow.
func (*Subvolumes) NoCOW(path string) (bool, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return false, &Error{Op: "read attributes", Path: path, Err: err}
	}
	defer unix.Close(fd)
	// The kernel reads and writes an int here, whatever the ioctl
	// number's declared size says.
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return false, &Error{Op: "read attributes", Path: path, Err: err}
	}
	return flags&fsNoCOWFlag != 0, nil
}

// Compression returns path's compression property as BTRFS stores it
// ("zstd", "lzo", "zlib", possibly with a ":LEVEL" the kernel does not
// use), or "" when none is set. New files under a directory inherit it.
func (*Subvolumes) Compression(path string) (string, error) {
	buf := make([]byte, 64)
	for {
		n, err := unix.Getxattr(path, compressionXattr, buf)
		switch {
		case errors.Is(err, unix.ENODATA):
			return "", nil
		case errors.Is(err, unix.ERANGE) && len(buf) < 4096:
			buf = make([]byte, 2*len(buf))
			continue
		case err != nil:
			return "", &Error{Op: "read compression property", Path: path, Err: err}
		}
		return string(buf[:n]), nil
	}
}
