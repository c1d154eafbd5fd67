package netup

// Internals the external tests drive directly.
var (
	WriteFileAtomic = writeFileAtomic
	RemoveDurable   = removeDurable
)
