package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// repoRoot is where testdata/, man/ and completions/ live, seen from this
// package's directory (where `go test` runs it).
const repoRoot = "../.."

// fixedNow is the clock of every in-process run, so ages are stable.
var fixedNow = time.Date(2099, 1, 2, 3, 5, 5, 0, time.UTC)

// result is what one in-process run of ghostbridge produced.
type result struct {
	stdout, stderr string
	code           int
}

// cliEnv is a fake environment for one run; nothing leaks in from the
// machine running the tests.
type cliEnv map[string]string

// runCLI runs ghostbridge in-process with buffer streams, a fixed clock and
// fixed version values, and no default config file.
func runCLI(t *testing.T, env cliEnv, args ...string) result {
	t.Helper()
	return runCLIWith(t, cliOptions{env: env}, args...)
}

// cliOptions adjust an in-process run.
type cliOptions struct {
	ctx       context.Context // default context.Background()
	env       cliEnv
	out       *syncBuffer // stdout readable while the command runs
	realClock bool        // time.Now instead of fixedNow (for snap run)
}

func runCLIWith(t *testing.T, o cliOptions, args ...string) result {
	t.Helper()
	ios, _, stdout, stderr := TestIO()
	if o.out != nil {
		ios.Out = o.out
	}
	if o.ctx == nil {
		o.ctx = context.Background()
	}
	app := NewApp(ios, func(k string) string { return o.env[k] })
	if !o.realClock {
		app.Now = func() time.Time { return fixedNow }
	}
	app.Version = VersionInfo{Version: "1.2.3", Commit: "0123abc", Go: "go1.26.0"}
	app.DefaultConfigFiles = nil
	app.PollInterval = 2 * time.Millisecond
	code := app.Run(o.ctx, args)
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: code}
	if o.out != nil {
		r.stdout = o.out.String()
	}
	return r
}

// scrubber replaces values that differ between runs (the genesis block's
// time and chain id, every hash, temporary paths) with stable placeholders.
// Hashes are numbered in order of appearance, so equal hashes (a block's
// hash and the next block's prev) stay visibly equal.
type scrubber struct {
	literal []string // old, new pairs
}

var hashRE = regexp.MustCompile(`\b[0-9a-f]{64}\b`)

func (s scrubber) scrub(text string) string {
	text = strings.NewReplacer(s.literal...).Replace(text)
	seen := map[string]string{}
	return hashRE.ReplaceAllStringFunc(text, func(h string) string {
		if p, ok := seen[h]; ok {
			return p
		}
		p := fmt.Sprintf("HASH_%02d", len(seen)+1)
		seen[h] = p
		return p
	})
}

// syncBuffer is a stdout that a test can read while a command is still
// writing to it (chain log --follow), and that signals each write.
type syncBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{wrote: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// checkGolden compares a run with testdata/golden/NAME, or rewrites it with
// -update. The file shows the command, the exit code and both streams.
func checkGolden(t *testing.T, name string, args []string, r result, s scrubber) {
	t.Helper()
	var b strings.Builder
	b.WriteString("$ ghostbridge " + strings.Join(args, " ") + "\n")
	fmt.Fprintf(&b, "exit %d\n", r.code)
	b.WriteString("--- stdout\n" + r.stdout)
	b.WriteString("--- stderr\n" + r.stderr)
	got := s.scrub(b.String())
	path := filepath.Join(repoRoot, "testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/ghostbridge -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./cmd/ghostbridge -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
