package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// SQLite3 runs the sqlite3 command-line shell on db with the given SQL
// statements (each one argument), as someone editing the file by hand
// would, and returns its trimmed output. It skips (or fails when Strict)
// when the shell is not installed, and fails the test when sqlite3 fails.
func SQLite3(t testing.TB, db string, statements ...string) string {
	t.Helper()
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		Skip(t, "the sqlite3 CLI is not installed (apt-get install sqlite3)")
	}
	cmd := exec.Command(bin, append([]string{"-batch", "-bail", db}, statements...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
