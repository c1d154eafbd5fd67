package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

// hostState renders what net try changes on the test host: addresses,
// routes, bridges, the uplink's offloads and forwarding.
func hostState(t *testing.T, h *testenv.OVSHost) string {
	t.Helper()
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "-br", "addr"}, {"ip", "route"}, {"ovs-vsctl", "--db=unix:" + h.DB, "list-br"},
		{"ethtool", "-k", h.Uplink}, {"sysctl", "-n", "net.ipv4.ip_forward"},
	} {
		out, err := h.Exec(h.NS, argv...)
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, l := range strings.Split(out, "\n") {
			// ovs-vswitchd's datapath device comes with the first bridge
			// and stays; netup neither makes nor removes it.
			if !strings.HasPrefix(l, "ovs-netdev") {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

// startTryProcess runs the built binary's net try inside the test host's
// namespace and returns once it waits for a confirmation. The test's
// clean-up kills and reaps the try process and its watchdog.
func startTryProcess(t *testing.T, h *testenv.OVSHost, cfgFile, stateDir, timeout string) *exec.Cmd {
	t.Helper()
	bin := builtBinary(t)
	cmd := exec.Command("ip", "netns", "exec", h.NS, bin, "--config", cfgFile, "net", "try",
		"--timeout", timeout, "--state-dir", stateDir, "--format", "json")
	cmd.Env = append(cleanEnv(), "GHOSTBRIDGE_NET_OVSDB_SOCKET="+h.DB)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if pid := findWatchdog(t, stateDir); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitExit(t, pid)
		}
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"type":"waiting"`) {
			go func() { _, _ = bufio.NewReader(out).WriteTo(discard{}) }()
			return cmd
		}
	}
	_ = cmd.Wait()
	t.Fatalf("net try never waited: %s", stderr.String())
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestNetTryProcessHangupAndKill: a try process survives SIGHUP (the SSH
// session dropping) and can still be confirmed; killed with SIGKILL, its
// detached watchdog rolls the host back at the deadline.
func TestNetTryProcessHangupAndKill(t *testing.T) {
	h, cfgFile := configuredHost(t)
	stateDir := filepath.Join(t.TempDir(), "net")
	before := hostState(t, h)

	// SIGKILL: nothing of the try process is left to roll back. The
	// watchdog rolls back at the deadline and exits.
	cmd := startTryProcess(t, h, cfgFile, stateDir, "10s")
	watchdog := findWatchdog(t, stateDir)
	if watchdog == 0 {
		t.Fatal("no watchdog process found")
	}
	if hostState(t, h) == before {
		t.Fatal("net try changed nothing")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitExit(t, watchdog)
	statePath := filepath.Join(stateDir, "try.json")
	if _, err := os.Stat(statePath); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the watchdog exited and left %s: %v", statePath, err)
	}
	if got := hostState(t, h); got != before {
		t.Errorf("after the watchdog's rollback:\n%s\nwant:\n%s", got, before)
	}

	// SIGHUP: the try keeps waiting, and a confirmation still reaches it.
	cmd = startTryProcess(t, h, cfgFile, stateDir, "10m")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	out, err := h.Exec(h.NS, builtBinary(t), "net", "confirm", "--state-dir", stateDir, "--format", "json")
	var cr netup.ConfirmResult
	if err != nil || json.Unmarshal([]byte(out), &cr) != nil || !cr.Confirmed || cr.Orphaned {
		t.Errorf("confirm after SIGHUP: %v %s (orphaned: the try died of SIGHUP)", err, out)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("try after SIGHUP and confirm: %v", err)
	}
	if hostState(t, h) == before {
		t.Error("confirmed try did not keep its changes")
	}
}

// TestNetConfigRefusedOneLine: a guard on a standalone bridge and a route
// whose gateway is of the other IP family are configuration errors: exit
// 2 and one line, before anything is touched.
func TestNetConfigRefusedOneLine(t *testing.T) {
	for name, c := range map[string]struct{ bridge, want string }{
		"guard standalone": {`fail_mode = "standalone"
guard = true`, `guard = true needs fail_mode = "secure"`},
		"route family": {`fail_mode = "secure"
routes = [{ to = "2001:db8::/32", via = "203.0.113.1" }]`, "the gateway is IPv4, the destination IPv6"},
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "config.toml")
			cfg := "[net]\n\n[[net.bridges]]\nname = \"ovsbr0\"\nuplink = \"eth0\"\naddresses = [\"203.0.113.10/24\"]\n" + c.bridge + "\n"
			if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			r := runCLI(t, nil, "--config", file, "net", "up")
			if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q: want exit 2 and one line with %q", r.code, r.stderr, c.want)
			}
		})
	}
}

// TestNetTryProcessStopped: a try process stopped with SIGSTOP cannot
// roll back by itself; the watchdog kills it after the deadline and
// rolls the host back.
func TestNetTryProcessStopped(t *testing.T) {
	h, cfgFile := configuredHost(t)
	stateDir := filepath.Join(t.TempDir(), "net")
	before := hostState(t, h)

	cmd := startTryProcess(t, h, cfgFile, stateDir, "10m")
	if hostState(t, h) == before {
		t.Fatal("net try changed nothing")
	}
	// ip netns exec execs the binary: the try process is cmd's.
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The stop lands when the process's threads next run: wait for it, so
	// the watchdog below meets a stopped try, not a busy one.
	for testenv.ProcState(t, cmd.Process.Pid) != "T" {
		time.Sleep(10 * time.Millisecond)
	}
	// Stopped, the try cannot see its deadline move into the past; the
	// spawned watchdog guards the old deadline and leaves, and a
	// watchdog run here guards the new one.
	statePath := filepath.Join(stateDir, "try.json")
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	st["deadline"] = deadline
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	wd := exec.Command("ip", "netns", "exec", h.NS, builtBinary(t), "--config", cfgFile, "net", "try", "--state-dir", stateDir, "--rollback-at", deadline)
	wd.Env = append(cleanEnv(), "GHOSTBRIDGE_NET_OVSDB_SOCKET="+h.DB)
	if out, err := wd.CombinedOutput(); err != nil {
		t.Fatalf("watchdog: %v\n%s", err, out)
	}
	if _, err := os.Stat(statePath); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the watchdog exited and left %s: %v", statePath, err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("stopped try process: %v, want killed by SIGKILL", err)
	}
	if got := hostState(t, h); got != before {
		t.Errorf("after the watchdog's rollback:\n%s\nwant:\n%s", got, before)
	}
}

// TestNetUpRollsBackExpiredTry: after a reboot before a try was confirmed
// (its process and watchdog gone, its record on disk), net up at boot
// restores the previous state, lists what it restored, and exits 1
// without applying the unconfirmed configuration; net status shows the
// expired try before.
func TestNetUpRollsBackExpiredTry(t *testing.T) {
	h, cfgFile := configuredHost(t)
	stateDir := filepath.Join(t.TempDir(), "var", "lib", "ghostbridge", "net")
	before := hostState(t, h)

	cmd := startTryProcess(t, h, cfgFile, stateDir, "10m")
	// A reboot ends the try process and its watchdog.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killWatchdog(t, stateDir)
	statePath := filepath.Join(stateDir, "try.json")
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	st["boot_id"] = "00000000-0000-4000-8000-000000000000"
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath, b, 0o600); err != nil {
		t.Fatal(err)
	}

	env := append(cleanEnv(), "GHOSTBRIDGE_NET_OVSDB_SOCKET="+h.DB)
	run := func(args ...string) (string, string, int) {
		c := exec.Command("ip", append([]string{"netns", "exec", h.NS, builtBinary(t), "--config", cfgFile, "net"}, args...)...)
		c.Env = env
		var out, errOut strings.Builder
		c.Stdout, c.Stderr = &out, &errOut
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), code
	}
	out, errOut, code := run("status", "--state-dir", stateDir)
	if !strings.Contains(out, "EXPIRED unconfirmed") || !strings.Contains(out, "the host rebooted") {
		t.Errorf("status after a reboot (exit %d):\n%s%s", code, out, errOut)
	}
	out, errOut, code = run("confirm", "--state-dir", stateDir)
	if code != 1 || !strings.Contains(errOut, "too late to confirm") {
		t.Errorf("confirm after a reboot: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = run("up", "--state-dir", stateDir)
	if code != 1 || !strings.Contains(out, "restored") || !strings.Contains(errOut, "rolled back the net try") || strings.Count(errOut, "Error:") != 1 {
		t.Errorf("up after a reboot: exit %d\nstdout:\n%sstderr:\n%s", code, out, errOut)
	}
	if got := hostState(t, h); got != before {
		t.Errorf("after up rolled back:\n%s\nwant:\n%s", got, before)
	}
	// The next boot does not apply the unconfirmed configuration.
	out, errOut, code = run("up", "--state-dir", stateDir)
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "rolled back unconfirmed") || !strings.Contains(errOut, "net up --force") {
		t.Errorf("second up: exit %d\nstdout:\n%sstderr:\n%s", code, out, errOut)
	}
	if got := hostState(t, h); got != before {
		t.Errorf("after the refused up:\n%s\nwant:\n%s", got, before)
	}
	if _, errOut, code = run("up", "--force", "--state-dir", stateDir); code != 0 || hostState(t, h) == before {
		t.Errorf("up --force: exit %d: %s", code, errOut)
	}
	if _, errOut, code = run("up", "--state-dir", stateDir); code != 0 {
		t.Errorf("up after up --force: exit %d: %s", code, errOut)
	}
}

// killWatchdog kills the detached watchdog of the try in stateDir and
// waits for it to exit.
func killWatchdog(t *testing.T, stateDir string) {
	t.Helper()
	pid := findWatchdog(t, stateDir)
	if pid == 0 {
		t.Fatal("no watchdog process found")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, pid)
}

// findWatchdog is the PID of the detached watchdog of the try in
// stateDir, or 0.
func findWatchdog(t *testing.T, stateDir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if slices.Contains(args, "--rollback-at") && slices.Contains(args, stateDir) {
			pid, _ := strconv.Atoi(e.Name())
			return pid
		}
	}
	return 0
}

// waitExit waits, however long it takes, for process pid, which is not
// the test's child, to exit: a pidfd becomes readable when it does.
func waitExit(t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Close(fd) }()
	for {
		_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
		if err == nil {
			return
		}
		if !errors.Is(err, unix.EINTR) {
			t.Fatal(err)
		}
	}
}
