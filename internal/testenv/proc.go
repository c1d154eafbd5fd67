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
