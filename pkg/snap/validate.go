package snap

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// Validate checks cfg against the machine without changing anything: every
// source is a BTRFS subvolume with a unique name, the snapshot directory
// exists (or its nearest existing parent is writable) on the same
// filesystem as every source and is not bound to another chain, the
// interval is between MinInterval and MaxInterval, keep is positive, and
// every tier has Every > 0 and For > Every. The first problem is returned
// as one line naming the bad value and what is allowed; it wraps
// ErrInvalidConfig.
func Validate(ctx context.Context, fs Snapshotter, cfg Config) error {
	if fs == nil {
		fs = btrfs.New()
	}
	if cfg.Interval < MinInterval {
		return invalid("interval %v: must be at least %v (and at most %v)", cfg.Interval, MinInterval, MaxInterval)
	}
	if cfg.Interval > MaxInterval {
		return invalid("interval %v: must be at most %v", cfg.Interval, MaxInterval)
	}
	if cfg.Policy.Keep <= 0 {
		return invalid("keep %v: must be greater than 0", cfg.Policy.Keep)
	}
	for i, t := range cfg.Policy.Tiers {
		if t.Every <= 0 || t.For <= t.Every {
			return invalid("retention tier %d (every %v for %v): every must be greater than 0 and for greater than every", i+1, t.Every, t.For)
		}
	}
	if len(cfg.Sources) == 0 {
		return invalid("sources: none given; at least one source subvolume is required")
	}
	seen := make(map[string]bool, len(cfg.Sources))
	for _, s := range cfg.Sources {
		if !validName(s.Name) {
			return invalid("source name %q: want letters, digits, @ . _ -", s.Name)
		}
		if seen[s.Name] {
			return invalid("source name %q: used twice; source names must be unique", s.Name)
		}
		seen[s.Name] = true
		if !filepath.IsAbs(s.Path) {
			return invalid("source %s: path %q is not absolute", s.Name, s.Path)
		}
		ok, err := fs.IsSubvolume(s.Path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return invalid("source %s: %s does not exist; want a BTRFS subvolume", s.Name, s.Path)
		case err != nil:
			return invalid("source %s: %v", s.Name, err)
		case !ok:
			return invalid("source %s: %s is not a BTRFS subvolume", s.Name, s.Path)
		}
	}

	if cfg.Dir == "" {
		return invalid("dir: empty; want the directory snapshots go in")
	}
	if !filepath.IsAbs(cfg.Dir) {
		return invalid("dir %q: not absolute", cfg.Dir)
	}
	existing := filepath.Clean(cfg.Dir)
	for {
		_, err := os.Lstat(existing)
		if err == nil {
			break
		}
		// ENOTDIR: a parent is a file, which the walk up reports.
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			return invalid("dir %s: %v", cfg.Dir, err)
		}
		existing = filepath.Dir(existing)
	}
	st, err := os.Stat(existing)
	if err != nil {
		return invalid("dir %s: %v", cfg.Dir, err)
	}
	if !st.IsDir() {
		return invalid("dir %s: %s is not a directory", cfg.Dir, existing)
	}
	if existing != filepath.Clean(cfg.Dir) {
		if err := unix.Access(existing, unix.W_OK); err != nil {
			return invalid("dir %s: cannot be created in %s: %v", cfg.Dir, existing, err)
		}
	}
	for _, s := range cfg.Sources {
		same, err := fs.SameFilesystem(existing, s.Path)
		if err != nil {
			return invalid("dir %s: %v", cfg.Dir, err)
		}
		if !same {
			return invalid("dir %s: not on the filesystem of source %s (%s); snapshots must be on the source's BTRFS filesystem", cfg.Dir, s.Name, s.Path)
		}
		sub := SourceDir(cfg.Dir, s.Name)
		if st, err := os.Stat(sub); err == nil && !st.IsDir() {
			return invalid("dir %s: %s exists and is not a directory", cfg.Dir, sub)
		}
	}
	return nil
}
