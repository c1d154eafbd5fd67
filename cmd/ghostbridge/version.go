package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set by the Makefile: -ldflags "-X main.version=... -X main.commit=...".
var (
	version = ""
	commit  = ""
)

// VersionInfo is the result of `ghostbridge version`.
type VersionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

// buildVersion reports the linked-in version, falling back to what the Go
// toolchain recorded (a module version for `go install`, a VCS revision when
// built from a checkout) and finally to "dev".
func buildVersion() VersionInfo {
	vi := VersionInfo{Version: version, Commit: commit, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if vi.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			vi.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && vi.Commit == "" {
				vi.Commit = s.Value
			}
		}
	}
	if vi.Version == "" {
		vi.Version = "dev"
	}
	if vi.Commit == "" {
		vi.Commit = "dev"
	}
	return vi
}

func newVersionCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Example: `  ghostbridge version
  ghostbridge version --format json`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotSkipConfig: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			vi := a.Version
			if a.format == FormatJSON {
				return writeJSON(a.IO.Out, vi)
			}
			_, err := fmt.Fprintf(a.IO.Out, "ghostbridge %s (commit %s, %s)\n", vi.Version, vi.Commit, vi.Go)
			return err
		},
	}
}
