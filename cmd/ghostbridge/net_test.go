package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
)

func TestNetConfigInvalid(t *testing.T) {
	for _, name := range []string{"bad", "overlap"} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(repoRoot, "testdata", "net", name+".toml")
			args := []string{"config", "validate", file}
			r := runCLI(t, nil, args...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %s", r.code, exitUsage, r.stderr)
			}
			checkGolden(t, "net-config-"+name+".txt", args, r, scrubber{})
			// Any net command refuses the same file before touching the host.
			r = runCLI(t, nil, "--config", file, "net", "up")
			if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("net up: exit %d, stderr %q: want exit 2 and one line", r.code, r.stderr)
			}
		})
	}
}

// TestNetCommandsOnHost runs plan, up, status and down against a real
// Open vSwitch in a scratch network namespace.
func TestNetCommandsOnHost(t *testing.T) {
	h, cfgFile := configuredHost(t)
	env := cliEnv{"GHOSTBRIDGE_NET_OVSDB_SOCKET": h.DB}
	run := func(args ...string) result {
		t.Helper()
		var r result
		err := netdev.Do(h.Handle, func() error {
			r = runCLI(t, env, append([]string{"--config", cfgFile}, args...)...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	sc := scrubber{literal: []string{cfgFile, "CONFIG"}}

	r := run("net", "plan")
	if r.code != exitPending {
		t.Fatalf("plan: exit %d, want %d; stderr %s", r.code, exitPending, r.stderr)
	}
	checkGolden(t, "net-plan.txt", []string{"net", "plan"}, r, sc)
	r = run("net", "plan", "--format", "json")
	if r.code != exitPending {
		t.Fatalf("plan json: exit %d", r.code)
	}
	checkGolden(t, "net-plan.json", []string{"net", "plan", "--format", "json"}, r, sc)

	if r = run("net", "up"); r.code != exitOK {
		t.Fatalf("up: exit %d; stderr %s\n%s", r.code, r.stderr, h.Log())
	}
	if r = run("net", "plan"); r.code != exitOK || !strings.Contains(r.stdout, "in sync") {
		t.Fatalf("plan after up: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run("net", "status", "--format", "json")
	var st netup.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != exitOK {
		t.Fatalf("status: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if !st.InSync || len(st.Bridges) != 2 || !st.Bridges[0].FlowsInSync || st.Bridges[0].Link == nil || !st.Bridges[0].Link.Up {
		t.Errorf("status: %+v", st)
	}
	if r = run("net", "status"); r.code != exitOK || !strings.Contains(r.stdout, "ovsbr0  managed, fail_mode secure, uplink uplink0") {
		t.Errorf("status text: exit %d\n%s", r.code, r.stdout)
	}

	// A missing NIC is a configuration error: exit 2, nothing changed.
	bad := filepath.Join(t.TempDir(), "bad.toml")
	writeHostConfig(t, bad, h, "eth9")
	var br result
	if err := netdev.Do(h.Handle, func() error { br = runCLI(t, env, "--config", bad, "net", "up"); return nil }); err != nil {
		t.Fatal(err)
	}
	if br.code != exitUsage || !strings.Contains(br.stderr, "uplink eth9: no such network interface") {
		t.Errorf("unknown NIC: exit %d, stderr %s", br.code, br.stderr)
	}

	if r = run("net", "down"); r.code != exitOK {
		t.Fatalf("down: exit %d; stderr %s", r.code, r.stderr)
	}
	if out, err := h.Vsctl("list-br"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("bridges after down: %q %v", out, err)
	}
	if r = run("net", "down"); r.code != exitOK || !strings.Contains(r.stdout, "in sync") {
		t.Errorf("second down: exit %d\n%s", r.code, r.stdout)
	}
}

// configuredHost starts a userspace Open vSwitch host and writes a config
// file for it whose uplink is its uplink0.
func configuredHost(t *testing.T) (*testenv.OVSHost, string) {
	t.Helper()
	h := testenv.OVS(t)
	cfgFile := filepath.Join(t.TempDir(), "config.toml")
	writeHostConfig(t, cfgFile, h, "uplink0")
	return h, cfgFile
}

func writeHostConfig(t *testing.T, path string, h *testenv.OVSHost, uplink string) {
	t.Helper()
	cfg := fmt.Sprintf(`[net]
datapath_type = "netdev"
ipv4_forwarding = true

[[net.bridges]]
name = "ovsbr0"
uplink = %q
addresses = [%q]
gateway = %q
fail_mode = "secure"
ports = [{ name = "gbint0" }]

[[net.bridges]]
name = "ovsbr1"
addresses = ["10.88.0.1/24"]
fail_mode = "standalone"
ports = [{ name = "vm0", tag = 10 }]
`, uplink, h.UplinkAddr, h.Gateway)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestNetTryOnHost runs net try against a real Open vSwitch: without
// confirm it rolls back (exit 1), interrupted it rolls back, and with net
// confirm from another command it keeps the new state; while it waits,
// net up refuses and net status shows it.
func TestNetTryOnHost(t *testing.T) {
	h, cfgFile := configuredHost(t)
	stateDir := t.TempDir()
	env := cliEnv{"GHOSTBRIDGE_NET_OVSDB_SOCKET": h.DB}
	runWith := func(o cliOptions, args ...string) result {
		t.Helper()
		o.env = env
		var r result
		if err := netdev.Do(h.Handle, func() error {
			r = runCLIWith(t, o, append([]string{"--config", cfgFile}, args...)...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return r
	}
	run := func(args ...string) result { t.Helper(); return runWith(cliOptions{}, args...) }
	uplinkHasAddr := func() bool {
		out, err := h.Exec(h.NS, "ip", "-br", "addr", "show", "dev", h.Uplink)
		return err == nil && strings.Contains(out, h.UplinkAddr.String())
	}

	r := run("net", "try", "--timeout", "1ms", "--state-dir", stateDir)
	if r.code != exitFailure || !strings.Contains(r.stderr, "rolled back") || !strings.Contains(r.stdout, "rolled back (timeout)") {
		t.Fatalf("try without confirm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("net try --timeout 1ms:\n%s%s", r.stdout, r.stderr)
	if out, err := h.Vsctl("list-br"); err != nil || strings.TrimSpace(out) != "" || !uplinkHasAddr() {
		t.Fatalf("after rollback: bridges %q %v, uplink address back %v", out, err, uplinkHasAddr())
	}

	// waitFor starts net try in the background and returns once it waits.
	waitFor := func(ctx context.Context) (<-chan result, *syncBuffer) {
		t.Helper()
		out := newSyncBuffer()
		done := make(chan result, 1)
		go func() {
			done <- runWith(cliOptions{ctx: ctx, out: out}, "net", "try", "--timeout", "10m", "--state-dir", stateDir, "--format", "json")
		}()
		for !strings.Contains(out.String(), `"type":"waiting"`) {
			select {
			case <-out.wrote:
			case r := <-done:
				t.Fatalf("try ended before waiting: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		}
		return done, out
	}

	ctx, cancel := context.WithCancel(context.Background())
	done, _ := waitFor(ctx)
	cancel() // as SIGINT does through main's signal context
	r = <-done
	if r.code != exitFailure || !strings.Contains(r.stderr, "interrupted before 'net confirm': rolled back") || !strings.Contains(r.stdout, `"reason":"interrupted"`) {
		t.Fatalf("interrupted try: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !uplinkHasAddr() {
		t.Fatal("uplink address not back after an interrupted try")
	}

	done, _ = waitFor(context.Background())
	if r = run("net", "up", "--state-dir", stateDir); r.code != exitFailure || !strings.Contains(r.stderr, "is waiting for 'ghostbridge net confirm'") {
		t.Errorf("up while a try waits: exit %d\n%s", r.code, r.stderr)
	}
	if r = run("net", "status", "--state-dir", stateDir); !strings.Contains(r.stdout, "waiting for 'ghostbridge net confirm'") {
		t.Errorf("status while a try waits: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run("net", "confirm", "--state-dir", stateDir); r.code != exitOK || !strings.Contains(r.stdout, "keeps the new state") {
		t.Fatalf("confirm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = <-done
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var last netup.TryResult
	if r.code != exitOK || len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &last) != nil || !last.Confirmed ||
		!strings.HasPrefix(lines[1], `{"schema":1,"type":"result"`) {
		t.Fatalf("confirmed try: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run("net", "plan", "--state-dir", stateDir); r.code != exitOK || r.stderr != "" {
		t.Errorf("plan after confirm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run("net", "confirm", "--state-dir", stateDir); r.code != exitFailure || !strings.Contains(r.stderr, "no net try is pending") {
		t.Errorf("confirm with nothing pending: exit %d\n%s", r.code, r.stderr)
	}
	if r = run("net", "down", "--state-dir", stateDir); r.code != exitOK || !uplinkHasAddr() {
		t.Errorf("down: exit %d\n%s", r.code, r.stderr)
	}
}
