package diag_test

import "github.com/ghostbridge/ghostbridge/pkg/diag"

// The black-box tests call the shared result helpers of expect_test.go
// under their short names.
var (
	expectResult = diag.ExpectResult
	expectCheck  = diag.ExpectCheck
	hostResult   = diag.HostResult
	hostDump     = diag.HostDump
	runGroup     = diag.RunGroup
)
