package diag

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// MountSpec is one entry of diag.mounts: a mount point and the options it
// must be mounted with.
type MountSpec struct {
	Path string `json:"path"`
	// Options are matched against the mount's per-mount and filesystem
	// options together, as /proc/self/mountinfo shows them: "noatime",
	// "nodatacow", "compress=zstd:9", "ssd", "subvol=@work". An option
	// "compress=zstd" without a level accepts any zstd level, since the
	// kernel always shows one. On BTRFS the filesystem options are the
	// first mount's for every subvolume, so "nodatacow" is also had
	// through the NOCOW attribute on the mount's root (chattr +C), and
	// "compress=ALG[:LEVEL]" through its compression property (the
	// algorithm only: the level is per filesystem).
	Options []string `json:"options"`
}

// StorageConfig are the storage group's inputs.
type StorageConfig struct {
	// Mounts are the configured mounts (diag.mounts).
	Mounts []MountSpec
	// FreeMinPercent is diag.free_min_percent: storage.free warns below
	// it and fails below half of it; 0 skips storage.free.
	FreeMinPercent float64
	// Paths are further paths whose filesystems hold ghostbridge's data:
	// the snapshot directory and sources (snap.dir, snap.sources). Their
	// filesystems, with those of Mounts, are the ones checked for device
	// errors and free space, each filesystem once.
	Paths []string
}

// StorageChecks returns the storage group: the configured mounts and
// their options, BTRFS device error counters, and free space.
func StorageChecks(cfg StorageConfig) []Check {
	var cs []Check
	if len(cfg.Mounts) == 0 {
		cs = append(cs, Skipped("storage.mounts", "diag.mounts is empty"))
	} else {
		cs = append(cs, Check{Name: "storage.mounts", Run: func(context.Context) Outcome { return checkMounts(cfg.Mounts) }})
	}
	var paths []string
	for _, m := range cfg.Mounts {
		paths = append(paths, m.Path)
	}
	paths = append(paths, cfg.Paths...)
	if len(paths) == 0 {
		why := "no diag.mounts, snap.dir or snap.sources configured"
		return append(cs, Skipped("storage.device_errors", why), Skipped("storage.free", why))
	}
	cs = append(cs, Check{Name: "storage.device_errors", Run: func(context.Context) Outcome { return checkDeviceErrors(paths) }})
	if cfg.FreeMinPercent <= 0 {
		cs = append(cs, Skipped("storage.free", "diag.free_min_percent is 0"))
	} else {
		cs = append(cs, Check{Name: "storage.free", Run: func(context.Context) Outcome { return checkFree(paths, cfg.FreeMinPercent) }})
	}
	return cs
}

// storageMountAt returns the mount visible at path: the last one listed there,
// since a later mount on the same point hides the earlier ones.
func storageMountAt(mounts []*mountinfo.Info, path string) *mountinfo.Info {
	var found *mountinfo.Info
	for _, m := range mounts {
		if m.Mountpoint == path {
			found = m
		}
	}
	return found
}

func checkMounts(specs []MountSpec) Outcome {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return Unknown("read /proc/self/mountinfo", "read the mount table: %v", err)
	}
	sv := btrfs.New()
	var p hostProblems
	var ok, notes []string
	for _, s := range specs {
		path := filepath.Clean(s.Path)
		m := storageMountAt(mounts, path)
		switch {
		case m == nil:
			p.add(fmt.Sprintf("mount %s (its fileSystems entry), or fix diag.mounts", path), "%s is not a mount point", path)
			continue
		case m.FSType != "btrfs":
			p.add(fmt.Sprintf("mount the BTRFS subvolume on %s, or fix diag.mounts", path), "%s is %s, want btrfs", path, m.FSType)
			continue
		}
		have := mountOptions(m.Options + "," + m.VFSOptions)
		var missing, hints []string
		for _, want := range s.Options {
			if hasMountOption(have, want) {
				// Say where the two a subvolume can also have on its
				// root came from.
				if k, _, _ := strings.Cut(want, "="); k == "nodatacow" || k == "compress" {
					notes = append(notes, fmt.Sprintf("%s on %s by the filesystem's mount options", want, path))
				}
				continue
			}
			note, hint, err := inodeSatisfies(sv, path, want, have)
			if err != nil {
				return Unknown("run diag as root on the host", "%s: %v", path, err)
			}
			if note != "" {
				notes = append(notes, note)
				continue
			}
			missing = append(missing, want)
			hints = append(hints, hint)
		}
		if len(missing) > 0 {
			p.add(strings.Join(slices.Compact(hints), "; ")+"; or fix diag.mounts",
				"%s lacks %s (has %s)", path, strings.Join(missing, ","), strings.Join(have, ","))
			continue
		}
		ok = append(ok, path)
	}
	if len(p.lines) > 0 {
		if len(notes) > 0 {
			p.lines = append(p.lines, "satisfied: "+strings.Join(notes, "; "))
		}
		return p.fail()
	}
	detail := "mounted as configured: " + strings.Join(ok, ", ")
	if len(notes) > 0 {
		detail += " (" + strings.Join(notes, "; ") + ")"
	}
	return Pass("%s", detail)
}

// btrfsMountOnly are BTRFS mount options that belong to the mount, not
// the filesystem: the VFS flags and the subvolume. Every other BTRFS
// option (compress, nodatacow, ssd, ...) is set once for the whole
// filesystem by its first mount, and every later mount of another
// subvolume shows the same (btrfs(5), "MOUNT OPTIONS").
var btrfsMountOnly = []string{"ro", "rw", "noatime", "relatime", "strictatime", "nodiratime", "lazytime",
	"nodev", "nosuid", "noexec", "subvol", "subvolid"}

func btrfsFilesystemWide(opt string) bool {
	k, _, _ := strings.Cut(opt, "=")
	return !slices.Contains(btrfsMountOnly, k)
}

// inodeSatisfies says whether an option the filesystem lacks is had on
// the mount's root directory instead, where BTRFS lets one subvolume
// differ from the filesystem: nodatacow by the NOCOW attribute, compress
// by the compression property (its algorithm; the level stays the
// filesystem's). note says how it was satisfied; otherwise hint says
// how to get it.
func inodeSatisfies(sv *btrfs.Subvolumes, path, want string, have []string) (note, hint string, err error) {
	k, v, _ := strings.Cut(want, "=")
	switch {
	case k == "nodatacow":
		nocow, err := sv.NoCOW(path)
		if err != nil || nocow {
			return fmt.Sprintf("nodatacow on %s by the NOCOW attribute (chattr +C) on its root, for files created since it was set", path), "", err
		}
		return "", fmt.Sprintf("chattr +C %s (files created afterwards are nodatacow; the nodatacow mount option is filesystem-wide, set by its first mount)", path), nil
	case k == "compress" && v != "":
		alg, level, _ := strings.Cut(v, ":")
		prop, err := sv.Compression(path)
		if err != nil {
			return "", "", err
		}
		fsLevel := "the filesystem's"
		for _, h := range have {
			if hv, ok := strings.CutPrefix(h, "compress="); ok {
				fsLevel = "the filesystem's (compress=" + hv + ")"
			}
		}
		if propAlg, _, _ := strings.Cut(prop, ":"); propAlg == alg {
			n := fmt.Sprintf("%s on %s by the compression property %s on its root", want, path, prop)
			if level != "" {
				n += fmt.Sprintf(", algorithm only: level %s is not applied, the level is %s, set per filesystem by its first mount", level, fsLevel)
			}
			return n, "", nil
		}
		return "", fmt.Sprintf("btrfs property set %s compression %s (new writes; the property sets only the algorithm: btrfs sets the compression level per filesystem, at its first mount)", path, alg), nil
	case btrfsFilesystemWide(want):
		return "", fmt.Sprintf("add %s to the options of the filesystem's first mount in fileSystems and reboot (btrfs applies it to every subvolume of the filesystem; a remount of another subvolume does not)", want), nil
	}
	return "", fmt.Sprintf("add %s to the options of %s in fileSystems and remount (mount -o remount,%s %s)", want, path, want, path), nil
}

func mountOptions(s string) []string {
	var out []string
	for _, o := range strings.Split(s, ",") {
		if o != "" && !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// hasMountOption reports whether a configured option is among the mount's.
func hasMountOption(have []string, want string) bool {
	k, v, hasValue := strings.Cut(want, "=")
	for _, h := range have {
		hk, hv, _ := strings.Cut(h, "=")
		if hk != k {
			continue
		}
		switch {
		case !hasValue || hv == v:
			return true
		case k == "subvol" && strings.TrimPrefix(hv, "/") == strings.TrimPrefix(v, "/"):
			// The kernel shows subvol=/@work for subvol=@work.
			return true
		case (k == "compress" || k == "compress-force") && !strings.Contains(v, ":") && strings.HasPrefix(hv, v+":"):
			// compress=zstd means the default level, shown as zstd:3.
			return true
		}
	}
	return false
}

// storageFS is one filesystem to check, named by the first path on it.
type storageFS struct {
	path string
	// btrfs is true for BTRFS; id then is its filesystem id, else the
	// device number.
	btrfs bool
	id    string
}

// storageFilesystems groups paths by filesystem. Paths that cannot be read are
// reported, not fatal: the others are still checked.
func storageFilesystems(paths []string) (fss []storageFS, bad []string) {
	seen := map[string]bool{}
	sv := btrfs.New()
	for _, p := range paths {
		var sfs unix.Statfs_t
		if err := unix.Statfs(p, &sfs); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				bad = append(bad, p+": does not exist")
			} else {
				bad = append(bad, fmt.Sprintf("%s: %v", p, err))
			}
			continue
		}
		f := storageFS{path: p}
		if uint32(sfs.Type) == unix.BTRFS_SUPER_MAGIC {
			id, err := sv.FSID(p)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: %v", p, err))
				continue
			}
			f.btrfs, f.id = true, id
		} else {
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				bad = append(bad, fmt.Sprintf("%s: %v", p, err))
				continue
			}
			f.id = fmt.Sprint(st.Dev)
		}
		if !seen[f.id] {
			seen[f.id] = true
			fss = append(fss, f)
		}
	}
	return fss, bad
}

const hintStoragePaths = "fix diag.mounts, snap.dir or snap.sources, or create the path"

func checkDeviceErrors(paths []string) Outcome {
	fss, bad := storageFilesystems(paths)
	sv := btrfs.New()
	var p hostProblems
	var ok, other []string
	for _, f := range fss {
		if !f.btrfs {
			other = append(other, f.path)
			continue
		}
		devs, err := sv.DeviceStats(f.path)
		if err != nil {
			return Unknown("run as root: the device stats ioctl needs CAP_SYS_ADMIN", "%v", err)
		}
		for _, d := range devs {
			if d.Total() == 0 {
				ok = append(ok, d.Path)
				continue
			}
			p.add(fmt.Sprintf("btrfs device stats %s shows them; scrub (btrfs scrub start %s), check the disk (smartctl -a %s), then reset with btrfs device stats -z %s", f.path, f.path, d.Path, f.path),
				"%s (%s): write %d, read %d, flush %d, corruption %d, generation %d errors",
				d.Path, f.path, d.WriteErrs, d.ReadErrs, d.FlushErrs, d.CorruptionErrs, d.GenerationErrs)
		}
	}
	if len(p.lines) > 0 {
		return p.fail()
	}
	if len(ok) == 0 {
		if len(bad) > 0 {
			return Unknown(hintStoragePaths, "no BTRFS filesystem to read: %s", strings.Join(append(bad, other...), "; "))
		}
		return Unknown(hintStoragePaths, "no BTRFS filesystem among %s", strings.Join(other, ", "))
	}
	detail := fmt.Sprintf("no device errors on %s", strings.Join(ok, ", "))
	if len(other) > 0 {
		detail += fmt.Sprintf(" (not BTRFS, no counters: %s)", strings.Join(other, ", "))
	}
	if len(bad) > 0 {
		return Warn(hintStoragePaths, "%s; unreadable: %s", detail, strings.Join(bad, "; "))
	}
	return Pass("%s", detail)
}

// storageFreeStatus judges free space: warn below min percent, fail below half.
func storageFreeStatus(freePct, minPct float64) Status {
	switch {
	case freePct < minPct/2:
		return StatusFail
	case freePct < minPct:
		return StatusWarn
	}
	return StatusPass
}

func checkFree(paths []string, minPct float64) Outcome {
	fss, bad := storageFilesystems(paths)
	worst := StatusPass
	var lines []string
	var hint string
	for _, f := range fss {
		var sfs unix.Statfs_t
		if err := unix.Statfs(f.path, &sfs); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", f.path, err))
			continue
		}
		if sfs.Blocks == 0 {
			continue
		}
		// f_bavail is what an unprivileged writer can still use; on
		// BTRFS it already counts unallocated space the data profile
		// can claim.
		pct := 100 * float64(sfs.Bavail) / float64(sfs.Blocks)
		st := storageFreeStatus(pct, minPct)
		lines = append(lines, fmt.Sprintf("%s %.1f%% free (%s of %s)", f.path, pct,
			storageBytes(sfs.Bavail*uint64(sfs.Bsize)), storageBytes(sfs.Blocks*uint64(sfs.Bsize))))
		if st.Worse(worst) {
			worst = st
			hint = fmt.Sprintf("free space on %s: remove data or old snapshots (ghostbridge snap prune), or lower diag.free_min_percent (%g)", f.path, minPct)
		}
	}
	detail := strings.Join(lines, ", ")
	switch {
	case worst == StatusFail:
		return Fail(hint, "below half of %g%%: %s", minPct, detail)
	case worst == StatusWarn:
		return Warn(hint, "below %g%%: %s", minPct, detail)
	case len(lines) == 0:
		return Unknown(hintStoragePaths, "no filesystem to read: %s", strings.Join(bad, "; "))
	case len(bad) > 0:
		return Warn(hintStoragePaths, "%s; unreadable: %s", detail, strings.Join(bad, "; "))
	}
	return Pass("%s", detail)
}

// storageBytes renders n bytes with a binary unit, e.g. "1.5 GiB".
func storageBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
