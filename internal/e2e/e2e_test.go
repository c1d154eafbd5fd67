package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// ghostbridge builds the binary once per test process.
func ghostbridge(tb testing.TB) string {
	tb.Helper()
	root := moduleRoot(tb)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ghostbridge-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "ghostbridge")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/ghostbridge")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binary
}

// scratchSource makes a BTRFS filesystem with a source subvolume holding a
// few hundred small files, the same for every side of a comparison.
func scratchSource(tb testing.TB) (mnt, src string) {
	tb.Helper()
	mnt = testenv.BTRFS(tb, 2<<30)
	src = testenv.MkSubvol(tb, filepath.Join(mnt, "src"))
	for i := range 300 {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", i%30))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), bytes.Repeat([]byte{byte(i)}, 4096), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return mnt, src
}

func cpuOf(ps *os.ProcessState) time.Duration { return ps.UserTime() + ps.SystemTime() }

func moduleRoot(tb testing.TB) string {
	tb.Helper()
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(mod)))
}

// snapRun starts `ghostbridge snap run` with JSON output and calls onTick
// with the running count for every tick line until onTick returns false;
// then it stops the process with SIGTERM and returns its final state.
func snapRun(tb testing.TB, args []string, onTick func(n int, pid int) bool) *os.ProcessState {
	tb.Helper()
	cmd := exec.Command(ghostbridge(tb), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	n := 0
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(`"type":"tick"`)) {
			continue
		}
		n++
		if !onTick(n, cmd.Process.Pid) {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	go func() { _, _ = bufio.NewReader(out).WriteTo(&bytes.Buffer{}) }()
	if err := cmd.Wait(); err != nil {
		tb.Fatalf("snap run: %v\n%s", err, stderr.String())
	}
	return cmd.ProcessState
}

// BenchmarkTickCPU measures CPU time per steady-state tick (one snapshot
// created, one deleted, both recorded) of `snap run` and of the shell loop
// in testdata/bench/shell-tick.sh, side by side on one scratch filesystem.
func BenchmarkTickCPU(b *testing.B) {
	mnt, src := scratchSource(b)
	const keep = 10
	shellTicks, ourTicks := 100, 1000
	script := filepath.Join(moduleRoot(b), "testdata", "bench", "shell-tick.sh")
	for b.Loop() {
		// Warm up the filesystem and page cache for both, then measure.
		sh := exec.Command("bash", script, src, filepath.Join(mnt, "shell-snaps"), filepath.Join(mnt, "shell.db"), strconv.Itoa(keep+5), strconv.Itoa(keep))
		if out, err := sh.CombinedOutput(); err != nil {
			b.Fatalf("shell loop: %v\n%s", err, out)
		}
		sh = exec.Command("bash", script, src, filepath.Join(mnt, "shell-snaps"), filepath.Join(mnt, "shell.db"), strconv.Itoa(shellTicks), strconv.Itoa(keep))
		if out, err := sh.CombinedOutput(); err != nil {
			b.Fatalf("shell loop: %v\n%s", err, out)
		}
		shellCPU := cpuOf(sh.ProcessState) / time.Duration(shellTicks)

		ps := snapRun(b, []string{"--db", filepath.Join(mnt, "chain.db"), "--format", "json", "snap", "run",
			"--source", "src=" + src, "--dir", filepath.Join(mnt, "snaps"), "--interval", "20ms", "--keep", "200ms"},
			func(n, _ int) bool { return n < ourTicks })
		ourCPU := cpuOf(ps) / time.Duration(ourTicks)

		b.ReportMetric(float64(shellCPU.Microseconds())/1000, "shell-ms-cpu/tick")
		b.ReportMetric(float64(ourCPU.Microseconds())/1000, "ghostbridge-ms-cpu/tick")
		b.ReportMetric(float64(shellCPU)/float64(ourCPU), "x-less-cpu")
	}
}

// BenchmarkSnapRunRSS runs `snap run` for 10,000 ticks at a short interval
// and reports its resident memory after 1,000 and 10,000 ticks and its
// peak, to show that memory stays flat.
func BenchmarkSnapRunRSS(b *testing.B) {
	mnt, src := scratchSource(b)
	const ticks = 10000
	for b.Loop() {
		var at1k, at10k float64
		ps := snapRun(b, []string{"--db", filepath.Join(mnt, "chain.db"), "--format", "json", "snap", "run",
			"--source", "src=" + src, "--dir", filepath.Join(mnt, "snaps"), "--interval", "10ms", "--keep", "1s"},
			func(n, pid int) bool {
				switch n {
				case 1000:
					at1k = testenv.ProcStatusMB(b, pid, "VmRSS")
				case ticks:
					at10k = testenv.ProcStatusMB(b, pid, "VmRSS")
				}
				return n < ticks
			})
		peak := float64(ps.SysUsage().(*syscall.Rusage).Maxrss) / 1024
		b.ReportMetric(at1k, "rss-MB@1k")
		b.ReportMetric(at10k, "rss-MB@10k")
		b.ReportMetric(peak, "peak-rss-MB")
	}
}
