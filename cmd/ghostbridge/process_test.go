package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
	buildDir  string
)

// TestMain removes the binary built by builtBinary; a t.TempDir would be
// gone after the first test that used it.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		if err := os.RemoveAll(buildDir); err != nil {
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

// builtBinary builds ghostbridge once per test run and returns its path.
func builtBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		if buildDir, err = os.MkdirTemp("", "ghostbridge-bin-"); err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(buildDir, "ghostbridge")
		if out, err := exec.Command(goTool, "build", "-o", binary, ".").CombinedOutput(); err != nil {
			buildErr = errors.New("go build: " + err.Error() + ": " + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// cleanEnv is the test process's environment without GHOSTBRIDGE_* and
// systemd variables, so nothing on the machine changes the run.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, envPrefix) || strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// startSnapRun starts the built binary's `snap run --format json` on a
// scratch BTRFS, every 10 ms, and returns the binary, the database, the
// running command, its stdout pipe and its stderr.
func startSnapRun(t *testing.T) (bin, db string, cmd *exec.Cmd, stdout io.ReadCloser, stderr *bytes.Buffer) {
	t.Helper()
	bin = builtBinary(t)
	mnt := testenv.BTRFS(t, 0)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	db = filepath.Join(t.TempDir(), "chain.db")
	cmd = exec.Command(bin, "--db", db, "snap", "run", "--source", "data="+src,
		"--dir", filepath.Join(mnt, "snaps"), "--interval", "10ms", "--format", "json")
	cmd.Env = cleanEnv()
	stderr = &bytes.Buffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return bin, db, cmd, stdout, stderr
}

// TestSnapRunProcessSIGTERM: the real binary, sent SIGTERM after its first
// tick, finishes the tick in hand and exits 0, and the chain it wrote
// verifies.
func TestSnapRunProcessSIGTERM(t *testing.T) {
	bin, db, cmd, stdout, stderr := startSnapRun(t)
	var err error
	lines := bufio.NewScanner(stdout)
	signalled := false
	var types []string
	for lines.Scan() {
		var m struct {
			Schema int    `json:"schema"`
			Type   string `json:"type"`
		}
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil || m.Schema != 1 {
			t.Errorf("stdout line %q: not a schema 1 JSON object (%v)", lines.Text(), err)
		}
		types = append(types, m.Type)
		if m.Type == "tick" && !signalled {
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	if err := lines.Err(); err != nil {
		t.Error(err)
	}
	err = cmd.Wait()
	if !signalled {
		t.Fatalf("snap run printed no tick before exiting (%v); lines %v, stderr %s", err, types, stderr.String())
	}
	if err != nil {
		t.Fatalf("snap run after SIGTERM: %v, want exit status 0; stderr %s", err, stderr.String())
	}

	verify := exec.Command(bin, "--db", db, "chain", "verify", "--format", "json")
	verify.Env = cleanEnv()
	out, err := verify.Output()
	if err != nil {
		t.Fatalf("chain verify after SIGTERM: %v; stdout %s", err, out)
	}
	var res struct {
		OK      bool   `json:"ok"`
		Checked uint64 `json:"checked"`
	}
	if err := json.Unmarshal(out, &res); err != nil || !res.OK || res.Checked < 2 {
		t.Errorf("chain verify after SIGTERM: %s (%v); want ok and at least the genesis and one snapshot", out, err)
	}
}

// TestSnapRunProcessStdoutClosed: when the reader of stdout goes away, the
// real binary stops by itself (exit 1, not killed by SIGPIPE) and the
// chain verifies.
func TestSnapRunProcessStdoutClosed(t *testing.T) {
	bin, db, cmd, stdout, stderr := startSnapRun(t)
	var err error
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && !strings.Contains(lines.Text(), `"type":"tick"`) {
	}
	// The reader dies: the next tick line meets a closed pipe.
	if err := stdout.Close(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Fatalf("snap run with its stdout closed: %v, want exit status 1; stderr %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "stdout: ") {
		t.Errorf("stderr %q does not name stdout", stderr.String())
	}
	verify := exec.Command(bin, "--db", db, "chain", "verify")
	verify.Env = cleanEnv()
	if out, err := verify.CombinedOutput(); err != nil {
		t.Errorf("chain verify after the stop: %v: %s", err, out)
	}
}
