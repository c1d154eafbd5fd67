package netup_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

// envDurable makes the test binary write and remove a try record in
// the directory it names, then exit (see TestMain).
const envDurable = "GHOSTBRIDGE_DURABLE_HELPER"

func durableHelper(dir string) error {
	path := filepath.Join(dir, "try.json")
	if err := netup.WriteFileAtomic(path, map[string]int{"version": 1}); err != nil {
		return err
	}
	return netup.RemoveDurable(path)
}

// TestTryRecordsDurable: a try record is synced with its directory after
// it is renamed into place and after it is removed; without the
// directory sync a crash can bring back a try that was confirmed, and
// the next boot rolls it back. The system calls are watched with strace
// on a child process.
func TestTryRecordsDurable(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		testenv.Skip(t, "strace not installed")
	}
	dir := t.TempDir()
	log := filepath.Join(t.TempDir(), "strace.log")
	cmd := exec.Command(strace, "-f", "-o", log, "-e", "trace=openat,rename,renameat,renameat2,unlink,unlinkat,fsync,fdatasync", os.Args[0])
	cmd.Env = append(os.Environ(), envDurable+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	path := regexp.QuoteMeta(filepath.Join(dir, "try.json"))
	// After the step, and before the next change of the record, the
	// directory must be opened and that descriptor synced.
	next := regexp.MustCompile(`(rename|unlink)\w*\(.*"` + path + `"`)
	open := regexp.MustCompile(`openat\(AT_FDCWD, "` + regexp.QuoteMeta(dir) + `", [^)]*\) += (\d+)`)
	synced := func(step *regexp.Regexp) bool {
		i := slices.IndexFunc(lines, step.MatchString)
		if i < 0 {
			t.Fatalf("no %s in the trace:\n%s", step, b)
		}
		window := lines[i+1:]
		if j := slices.IndexFunc(window, next.MatchString); j >= 0 {
			window = window[:j]
		}
		for j, l := range window {
			if m := open.FindStringSubmatch(l); m != nil {
				fsync := regexp.MustCompile(`f(data)?sync\(` + m[1] + `\) += 0`)
				if slices.ContainsFunc(window[j+1:], fsync.MatchString) {
					return true
				}
			}
		}
		return false
	}
	if !synced(regexp.MustCompile(`rename\w*\(.*"` + path + `".*\) = 0`)) {
		t.Errorf("the directory is not synced after the record is renamed into place:\n%s", b)
	}
	if !synced(regexp.MustCompile(`unlink\w*\(.*"` + path + `".*\) = 0`)) {
		t.Errorf("the directory is not synced after the record is removed:\n%s", b)
	}
}
