package netup

import "github.com/ghostbridge/ghostbridge/pkg/sys/regfile"

// Internals the external tests drive directly.
var (
	WriteFileAtomic = writeFileAtomic
	RemoveDurable   = regfile.RemoveDurable
)
