package main

import (
	"bytes"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// testRoot builds the command tree the way a run does.
func testRoot(t *testing.T) *cobra.Command {
	t.Helper()
	ios, _, _, _ := TestIO()
	root := newRootCmd(NewApp(ios, func(string) string { return "" }))
	root.InitDefaultHelpCmd()
	return root
}

func walkCommands(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walkCommands(sub, fn)
	}
}

// isCobraHelp reports cobra's own help command, whose text we do not own.
func isCobraHelp(c *cobra.Command) bool {
	return c.Name() == "help" && c.Parent() == c.Root()
}

func TestHelpTextStyle(t *testing.T) {
	walkCommands(testRoot(t), func(c *cobra.Command) {
		if isCobraHelp(c) {
			return
		}
		path := c.CommandPath()
		short := c.Short
		if short == "" {
			t.Errorf("%s: no Short", path)
			return
		}
		if r := []rune(short)[0]; !unicode.IsUpper(r) {
			t.Errorf("%s: Short %q does not start with a capital letter", path, short)
		}
		if strings.HasSuffix(short, ".") {
			t.Errorf("%s: Short %q ends with a period", path, short)
		}
		leaf := !c.HasSubCommands() && c.Runnable()
		if !leaf {
			return
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s: leaf command has no Example", path)
		}
		for _, line := range strings.Split(c.Example, "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.Contains(line, "ghostbridge ") {
				t.Errorf("%s: Example line %q is not a ghostbridge command line", path, line)
			}
		}
	})
}

func TestNoDuplicateFlags(t *testing.T) {
	walkCommands(testRoot(t), func(c *cobra.Command) {
		inherited := c.InheritedFlags()
		c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if inherited.Lookup(f.Name) != nil {
				t.Errorf("%s: local flag --%s shadows a persistent flag", c.CommandPath(), f.Name)
			}
			if f.Shorthand != "" && inherited.ShorthandLookup(f.Shorthand) != nil {
				t.Errorf("%s: local flag -%s shadows a persistent shorthand", c.CommandPath(), f.Shorthand)
			}
		})
	})
}

// TestPackageDocs: every package under cmd/, pkg/ and internal/ says what
// it is for in a package doc comment.
func TestPackageDocs(t *testing.T) {
	dirs := map[string]bool{} // dir -> has doc
	for _, top := range []string{"cmd", "pkg", "internal"} {
		root := filepath.Join(repoRoot, top)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				return err
			}
			dir := filepath.Dir(path)
			dirs[dir] = dirs[dir] || (f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "")
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if len(dirs) == 0 {
		t.Fatal("no packages found")
	}
	for dir, ok := range dirs {
		if !ok {
			t.Errorf("package in %s has no package doc comment", dir)
		}
	}
}

// TestLibrariesHaveNoCLIDeps: pkg/ must not reach the command-line stack.
func TestLibrariesHaveNoCLIDeps(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./pkg/...")
	cmd.Dir = repoRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	banned := []string{"github.com/spf13/cobra", "github.com/spf13/viper", "github.com/spf13/pflag", "github.com/charmbracelet/lipgloss"}
	for _, dep := range strings.Fields(string(out)) {
		for _, b := range banned {
			if dep == b || strings.HasPrefix(dep, b+"/") {
				t.Errorf("pkg/... depends on %s", dep)
			}
		}
	}
}

// TestGeneratedDocsFresh regenerates man/ and completions/ and compares.
func TestGeneratedDocsFresh(t *testing.T) {
	tmp := t.TempDir()
	if err := generateDocs(testRoot(t), tmp); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"man", "completions"} {
		got := readTree(t, filepath.Join(tmp, sub))
		want := readTree(t, filepath.Join(repoRoot, sub))
		for name, content := range got {
			if w, ok := want[name]; !ok || w != content {
				t.Errorf("%s/%s differs: man/ or completions/ stale: run make docs", sub, name)
			}
		}
		for name := range want {
			if _, ok := got[name]; !ok {
				t.Errorf("%s/%s is no longer generated: man/ or completions/ stale: run make docs", sub, name)
			}
		}
	}
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%v: man/ or completions/ stale: run make docs", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// TestExitCodesDocumented: the help topic and the root help (and so the
// man page) carry the same table.
func TestExitCodesDocumented(t *testing.T) {
	root := testRoot(t)
	if !strings.Contains(root.Long, exitCodesHelp) {
		t.Error("root Long lacks the exit code table")
	}
	man, err := os.ReadFile(filepath.Join(repoRoot, "man", "ghostbridge.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"130", "a check failed"} {
		if !bytes.Contains(man, []byte(code)) {
			t.Errorf("man/ghostbridge.1 lacks %q from the exit code table", code)
		}
	}
}
