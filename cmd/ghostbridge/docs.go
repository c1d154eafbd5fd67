package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// docsDate is the date printed in every man page. It is fixed so that
// regenerating the pages changes them only when the commands change.
var docsDate = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newGenDocsCmd(a *App) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "gen-docs",
		Short:  "Write man pages and shell completions",
		Hidden: true,
		Long: `Write man pages (DIR/man, one per command) and shell completions
(DIR/completions: bash, zsh, fish) generated from the command tree.`,
		Example:     `  ghostbridge gen-docs --dir .`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotSkipConfig: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return generateDocs(cmd.Root(), dir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write man/ and completions/ under")
	return cmd
}

// generateDocs writes man/ and completions/ under dir. Output depends only
// on the command tree: no dates, versions or generator tags.
func generateDocs(root *cobra.Command, dir string) error {
	root.DisableAutoGenTag = true
	manDir := filepath.Join(dir, "man")
	compDir := filepath.Join(dir, "completions")
	for _, d := range []string{manDir, compDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("docs: %w", err)
		}
	}
	// Pages of commands that no longer exist must not linger.
	old, err := filepath.Glob(filepath.Join(manDir, "ghostbridge*.1"))
	if err != nil {
		return fmt.Errorf("docs: %w", err)
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return fmt.Errorf("docs: %w", err)
		}
	}
	header := &doc.GenManHeader{
		Section: "1",
		Date:    &docsDate,
		Source:  "ghostbridge",
		Manual:  "ghostbridge manual",
	}
	if err := doc.GenManTree(root, header, manDir); err != nil {
		return fmt.Errorf("docs: man pages: %w", err)
	}
	completions := []struct {
		name string
		gen  func(*bytes.Buffer) error
	}{
		{"ghostbridge.bash", func(b *bytes.Buffer) error { return root.GenBashCompletionV2(b, true) }},
		{"_ghostbridge", func(b *bytes.Buffer) error { return root.GenZshCompletion(b) }},
		{"ghostbridge.fish", func(b *bytes.Buffer) error { return root.GenFishCompletion(b, true) }},
	}
	for _, c := range completions {
		var b bytes.Buffer
		if err := c.gen(&b); err != nil {
			return fmt.Errorf("docs: %s: %w", c.name, err)
		}
		if err := os.WriteFile(filepath.Join(compDir, c.name), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("docs: %w", err)
		}
	}
	return nil
}
