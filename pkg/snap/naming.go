package snap

import (
	"fmt"
	"path/filepath"
	"time"
)

// TimeLayout is the name of a snapshot: its tick time in UTC with
// millisecond precision, so names sort in time order.
const TimeLayout = "20060102T150405.000Z"

// SourceDir is the directory holding the snapshots of source under dir.
func SourceDir(dir, source string) string {
	return filepath.Join(dir, source)
}

// SnapshotPath is where the snapshot of source taken at t goes.
func SnapshotPath(dir, source string, t time.Time) string {
	return filepath.Join(dir, source, t.UTC().Format(TimeLayout))
}

// ParseName returns the time a snapshot name encodes. Only the exact form
// SnapshotPath writes parses.
func ParseName(name string) (time.Time, error) {
	t, err := time.Parse(TimeLayout, name)
	if err != nil || t.Format(TimeLayout) != name {
		return time.Time{}, fmt.Errorf("snapshot name %q: want UTC time as %s", name, TimeLayout)
	}
	return t, nil
}
