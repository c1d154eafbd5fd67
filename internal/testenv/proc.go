package testenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// ProcStatusMB reads a "kB" field of /proc/PID/status (VmRSS, VmHWM ...)
// in MB, for benchmarks that watch a real process's memory.
func ProcStatusMB(tb testing.TB, pid int, field string) float64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb / 1024
		}
	}
	tb.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// ProcState is the state letter of process pid in /proc/PID/stat: R
// running, S sleeping, T stopped, Z zombie ...
func ProcState(tb testing.TB, pid int) string {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The command name in parentheses may hold spaces: the state is the
	// first field after the last ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) == 0 {
		tb.Fatalf("/proc/%d/stat: no state in %q", pid, s)
	}
	return fields[0]
}
