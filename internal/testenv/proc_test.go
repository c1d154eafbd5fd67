package testenv

import (
	"os"
	"testing"
)

func TestProcStatusMBReadsOwnRSS(t *testing.T) {
	if mb := ProcStatusMB(t, os.Getpid(), "VmRSS"); mb <= 0 || mb > 4096 {
		t.Fatalf("VmRSS of the test process = %.1f MB, want a plausible positive size", mb)
	}
}
