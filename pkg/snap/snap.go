// Package snap takes periodic read-only BTRFS snapshots of source
// subvolumes, records each one (and each deletion) as a block in the hash
// chain, applies retention, and reconciles the chain with the disk after a
// crash.
//
// It decides what to snapshot, when, under which name, and what to delete.
// It never prints, never reads flags, environment or configuration files,
// and never exits the process: it takes a Config, returns Result structs and
// errors, and logs through the injected *slog.Logger. Retention only ever
// deletes snapshots the chain recorded, after checking the record against
// its block and the subvolume on disk, and never a source's newest one;
// start-up reconciliation adopts at most the one unrecorded snapshot per
// source a crash can leave; anything else is left alone and reported. A
// snapshot directory belongs to one chain (MarkerName).
package snap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

// Snapshotter is what snap needs from the filesystem. *btrfs.Subvolumes
// implements it with ioctls.
type Snapshotter interface {
	IsSubvolume(path string) (bool, error)
	SameFilesystem(a, b string) (bool, error)
	Snapshot(src, dst string, readOnly bool) error
	Delete(path string) error
	Info(path string) (btrfs.Info, error)
}

// Notifier tells a service manager about the loop's state ("READY=1",
// "WATCHDOG=1", "STOPPING=1"). *systemd.Notifier implements it.
type Notifier interface {
	Notify(state string) error
}

// States sent to the Notifier (the sd_notify protocol).
const (
	NotifyReady    = "READY=1"
	NotifyWatchdog = "WATCHDOG=1"
	NotifyStopping = "STOPPING=1"
)

// Deps are the real systems snap works with.
type Deps struct {
	Chain    *chain.Store
	FS       Snapshotter      // nil: btrfs.New()
	Notifier Notifier         // nil: none
	Logger   *slog.Logger     // nil: discard
	Now      func() time.Time // nil: time.Now
	// AfterAppend, when set, is called after each tick that recorded
	// blocks, with the newest of them, once they are committed; the tick
	// waits for it. The caller signs checkpoints here, so this package
	// never handles keys. It must not panic; its failures are its own to
	// report.
	AfterAppend func(ctx context.Context, head chain.Block)
	// WatchdogInterval is the service manager's watchdog timeout (0: none).
	// While the last tick was healthy, Run sends WATCHDOG=1 at least every
	// half of it, also while it sleeps between ticks.
	WatchdogInterval time.Duration
}

func (d Deps) withDefaults() (Deps, error) {
	if d.Chain == nil {
		return d, errors.New("snap: no chain store")
	}
	if d.FS == nil {
		d.FS = btrfs.New()
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return d, nil
}

func (d Deps) notify(state string) {
	if d.Notifier == nil {
		return
	}
	if err := d.Notifier.Notify(state); err != nil {
		d.Logger.Warn("service manager notification failed", "state", state, "err", err)
	}
}

// Source is one subvolume to snapshot. Name is the directory its snapshots
// go in under Config.Dir and the "source" of its chain blocks.
type Source struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// Tier keeps one snapshot per Every for snapshots younger than For.
type Tier struct {
	Every time.Duration `json:"every"`
	For   time.Duration `json:"for"`
}

// Policy is the retention policy: keep everything younger than Keep, plus
// what the tiers keep; delete the rest.
type Policy struct {
	Keep  time.Duration `json:"keep"`
	Tiers []Tier        `json:"tiers,omitempty"`
}

// Config is what Run and Prune work on.
type Config struct {
	Sources  []Source      `json:"sources"`
	Dir      string        `json:"dir"`      // snapshots go in Dir/<source name>/
	Interval time.Duration `json:"interval"` // time between ticks, aligned to wall-clock multiples
	Policy   Policy        `json:"policy"`
}

// MinInterval and MaxInterval bound the interval Validate accepts.
const (
	MinInterval = 10 * time.Millisecond
	MaxInterval = time.Hour
)

// ErrInvalidConfig is wrapped by every error Validate and ParseSource return.
var ErrInvalidConfig = errors.New("invalid config")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

var sourceName = regexp.MustCompile(`^[a-zA-Z0-9@._-]+$`)

func validName(name string) bool {
	return sourceName.MatchString(name) && name != "." && name != ".."
}

// ParseSource parses "PATH" or "NAME=PATH". A spec is NAME=PATH when the
// part before its first "=" has no "/" (write ./a=b for a relative path
// with "="). The name defaults to the path's base name ("root" for "/");
// names are [a-zA-Z0-9@._-]+. The path is made absolute and clean.
func ParseSource(spec string) (Source, error) {
	name, path := "", spec
	if i := strings.IndexByte(spec, '='); i >= 0 && !strings.ContainsRune(spec[:i], '/') {
		name, path = spec[:i], spec[i+1:]
		if !validName(name) {
			return Source{}, invalid("source %q: name %q is not allowed; want NAME=PATH with NAME of letters, digits, @ . _ -", spec, name)
		}
	}
	if path == "" {
		return Source{}, invalid("source %q: empty path; want PATH or NAME=PATH", spec)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Source{}, invalid("source %q: %v", spec, err)
	}
	if name == "" {
		name = filepath.Base(abs)
		if abs == "/" {
			name = "root"
		}
	}
	if !validName(name) {
		return Source{}, invalid("source %q: name %q is not allowed; want NAME=PATH with NAME of letters, digits, @ . _ -", spec, name)
	}
	return Source{Name: name, Path: abs}, nil
}
