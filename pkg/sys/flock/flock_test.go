package flock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestAcquireRefusesSecondHolderAndNamesPID(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "chain.db")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if Path(link, ".lock") != Path(target, ".lock") {
		t.Fatalf("a symlink and its target lock different files: %s, %s", Path(link, ".lock"), Path(target, ".lock"))
	}
	first, err := Acquire(Path(target, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(Path(target, ".lock"))
	if err != nil || strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q (%v), want this pid", data, err)
	}
	// flock belongs to the open file description: a second open in the
	// same process conflicts, as a second process would.
	_, err = Acquire(Path(link, ".lock"))
	var held *HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Acquire = %v, want *HeldError naming pid %d", err, os.Getpid())
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := Acquire(Path(target, ".lock"))
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if err := again.Release(); err != nil {
		t.Fatal(err)
	}
	if err := (*Lock)(nil).Release(); err != nil {
		t.Fatalf("Release of nil lock: %v", err)
	}
}
