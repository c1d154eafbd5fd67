package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
)

// TestNetDownBrokenConfigForeignPorts: "net plan" warns about an uplink
// without guard; "net down" and "net try --rollback" work with a broken
// config file; "net down" refuses to delete a bridge holding a port
// ghostbridge did not create, naming it, until --force.
func TestNetDownBrokenConfigForeignPorts(t *testing.T) {
	h := testenv.OVS(t)
	cfgFile := filepath.Join(t.TempDir(), "config.toml")
	env := cliEnv{"GHOSTBRIDGE_NET_OVSDB_SOCKET": h.DB}
	stateDir := t.TempDir()
	run := func(args ...string) result {
		t.Helper()
		var r result
		if err := netdev.Do(h.Handle, func() error {
			r = runCLI(t, env, append([]string{"--config", cfgFile, "--state-dir", stateDir}, args...)...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return r
	}

	writeHostConfig(t, cfgFile, h, "uplink0")
	if r := run("net", "plan"); strings.Contains(r.stderr, "guard = false") {
		t.Errorf("plan warns with the guard on:\n%s", r.stderr)
	}
	raw, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	unguarded := strings.Replace(string(raw), "fail_mode = \"secure\"\n", "fail_mode = \"secure\"\nguard = false\n", 1)
	if err := os.WriteFile(cfgFile, []byte(unguarded), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run("net", "plan")
	if r.code != exitPending || !strings.Contains(r.stderr, "Warning: bridge ovsbr0: guard = false: uplink uplink0 gets NORMAL switching") {
		t.Errorf("plan without guard: exit %d, stderr %q", r.code, r.stderr)
	}

	writeHostConfig(t, cfgFile, h, "uplink0")
	if r := run("net", "up"); r.code != exitOK {
		t.Fatalf("up: exit %d\n%s", r.code, r.stderr)
	}
	if out, err := h.Vsctl("add-port", "ovsbr0", "vnet0", "--", "set", "interface", "vnet0", "type=internal"); err != nil {
		t.Fatalf("add vnet0: %v %s", err, out)
	}
	if err := os.WriteFile(cfgFile, []byte("[net\nbroken = "), 0o600); err != nil {
		t.Fatal(err)
	}

	r = run("net", "try", "--rollback")
	if r.code != exitFailure || !strings.Contains(r.stderr, "no net try is pending") {
		t.Errorf("try --rollback with a broken config: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run("net", "down")
	if r.code != exitFailure || !strings.Contains(r.stderr, "vnet0") || !strings.Contains(r.stderr, "--force") {
		t.Errorf("down with a foreign port: exit %d, stderr %q", r.code, r.stderr)
	}
	if out, _ := h.Vsctl("list-br"); !strings.Contains(out, "ovsbr0") {
		t.Fatalf("refused down deleted ovsbr0: %q", out)
	}
	r = run("net", "down", "--force")
	if r.code != exitOK {
		t.Fatalf("down --force: exit %d\n%s", r.code, r.stderr)
	}
	if out, err := h.Vsctl("list-br"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("bridges after down --force: %q %v", out, err)
	}
	out, err := h.Exec(h.NS, "ip", "-4", "addr", "show", "dev", "uplink0")
	if err != nil || !strings.Contains(out, h.UplinkAddr.String()) {
		t.Errorf("uplink after down --force: %v\n%s", err, out)
	}
}
