package netup_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

// editTryState rewrites the try's state file in dir through fn.
func editTryState(t *testing.T, dir string, fn func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "try.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// bootNetwork puts the kernel side of the host where a boot would: the
// bridges' devices come back from ovs-vswitchd empty and down, the
// network manager gives the NIC its address and routes, and offloads
// and forwarding are the kernel's and driver's defaults. OVS keeps what
// the try made: its database survives a reboot.
func (h *host) bootNetwork(t *testing.T, before netup.Snapshot) {
	t.Helper()
	eth := []string{"ethtool", "-K", h.Uplink}
	for f, s := range before.Offloads[h.Uplink] {
		if !s.Fixed {
			eth = append(eth, f, map[bool]string{true: "on", false: "off"}[s.On])
		}
	}
	for _, argv := range [][]string{
		{"ip", "addr", "flush", "dev", "ovsbr0"}, {"ip", "link", "set", "ovsbr0", "down"},
		{"ip", "addr", "flush", "dev", "ovsbr1"}, {"ip", "link", "set", "ovsbr1", "down"},
		{"ip", "addr", "add", h.UplinkAddr.String(), "dev", h.Uplink},
		{"ip", "route", "replace", "default", "via", h.Gateway.String(), "dev", h.Uplink},
		{"ip", "route", "replace", extraRoute.Dst.String(), "via", extraRoute.Gw.String(), "dev", h.Uplink},
		{"sysctl", "-q", "-w", netup.SysctlIPv4Forward + "=" + before.Sysctl[netup.SysctlIPv4Forward]},
		eth,
	} {
		if out, err := h.Exec(h.NS, argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
}

// TestTryExpired: a try whose process is gone expires when the host
// reboots before a confirmation or when its deadline passes. Its state
// is kept on disk, so status shows it, confirm refuses it, and the next
// up (the boot-time unit) rolls it back to the exact previous state and
// stops instead of applying the unconfirmed configuration again; later
// ups refuse that configuration until --force (or a confirmed try).
func TestTryExpired(t *testing.T) {
	h := newHost(t)
	h.prepareHost(t)
	ctx := context.Background()
	cfg := h.config()
	dir := filepath.Join(t.TempDir(), "var", "lib", "ghostbridge", "net")
	before := h.full(t)

	// A reboot within the deadline.
	h.startTryAndKill(t, dir)
	editTryState(t, dir, func(m map[string]any) { m["boot_id"] = "00000000-0000-4000-8000-000000000000" })
	h.bootNetwork(t, before)
	info, err := netup.PendingTry(dir)
	if err != nil || info == nil || info.Waiting || !info.Expired || !info.Rebooted {
		t.Fatalf("pending after a reboot: %+v %v", info, err)
	}
	if fi, err := os.Stat(info.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file %s: %v %v", info.Path, fi, err)
	}
	if _, err := netup.Confirm(ctx, dir); !errors.Is(err, netup.ErrTryExpired) {
		t.Errorf("confirm after a reboot: %v", err)
	}
	if res, err := netup.Up(ctx, h.deps, cfg, netup.Options{DryRun: true, StateDir: dir}); !errors.Is(err, netup.ErrTryPending) || len(res.Changes) != 0 {
		t.Errorf("plan after a reboot: %v %v", kinds(res.Changes), err)
	}
	res, err := netup.Up(ctx, h.deps, cfg, netup.Options{StateDir: dir})
	var ee *netup.ExpiredTryError
	if !errors.As(err, &ee) || !errors.Is(err, netup.ErrRolledBack) || !ee.Rebooted || len(res.Changes) == 0 {
		t.Fatalf("up after a reboot: %v %v", kinds(res.Changes), err)
	}
	t.Log(err)
	sameState(t, "after up rolled back the try", h.full(t), before)
	if info, err := netup.PendingTry(dir); info != nil || err != nil {
		t.Errorf("pending after the rollback: %+v %v", info, err)
	}
	if res, err := netup.Up(ctx, h.deps, cfg, netup.Options{StateDir: dir}); !errors.Is(err, netup.ErrUnconfirmedConfig) || len(res.Changes) != 0 {
		t.Fatalf("up of the unconfirmed configuration: %v %v", kinds(res.Changes), err)
	}
	sameState(t, "after up refused the unconfirmed configuration", h.full(t), before)
	if res, err := netup.Up(ctx, h.deps, cfg, netup.Options{StateDir: dir, Force: true}); err != nil || !res.Applied {
		t.Fatalf("up --force after the rollback: %v %v", kinds(res.Changes), err)
	}
	if _, err := netup.Down(ctx, h.deps, netup.Options{StateDir: dir}); err != nil {
		t.Fatal(err)
	}

	// A deadline passed without a watchdog (it died with the try).
	h.startTryAndKill(t, dir)
	info, err = netup.PendingTry(dir)
	if err != nil || info == nil || info.Expired {
		t.Fatalf("pending before the deadline: %+v %v", info, err)
	}
	editTryState(t, dir, func(m map[string]any) { m["deadline"] = time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano) })
	if info, err = netup.PendingTry(dir); err != nil || info == nil || !info.Expired || info.Rebooted {
		t.Fatalf("pending after the deadline: %+v %v", info, err)
	}
	if _, err := netup.Confirm(ctx, dir); !errors.Is(err, netup.ErrTryExpired) {
		t.Errorf("confirm after the deadline: %v", err)
	}
	tr, err := netup.Try(ctx, h.deps, cfg, netup.TryOptions{StateDir: dir, Timeout: time.Hour})
	if !errors.As(err, &ee) || !tr.RolledBack || tr.Reason != "expired" || tr.Applied || len(tr.Restored) == 0 {
		t.Fatalf("try after the deadline: %v %+v", err, tr)
	}
	sameState(t, "after try rolled back the expired one", h.full(t), before)
	h.ping(t, h.Peer, h.UplinkAddr.Addr().String())
}

// TestWatchdogKillsStoppedTry: a try process stopped with SIGSTOP holds
// its lock and cannot roll back; the watchdog kills it after the
// deadline and restores the previous state.
func TestWatchdogKillsStoppedTry(t *testing.T) {
	h := newHost(t)
	h.prepareHost(t)
	dir := t.TempDir()
	before := h.full(t)
	cmd := h.startTry(t, dir, time.Hour)
	stopProcess(t, cmd.Process.Pid)
	// The stopped process cannot see its deadline move: put it in the
	// past, beyond the grace a stopped try gets.
	editTryState(t, dir, func(m map[string]any) { m["deadline"] = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano) })
	info, err := netup.PendingTry(dir)
	if err != nil || info == nil || !info.Waiting || !info.Overdue {
		t.Fatalf("pending while stopped: %+v %v", info, err)
	}
	// Without the kill the watchdog would wait for ever; the timeout
	// only turns such a hang into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := netup.Watchdog(ctx, h.deps, dir, info.Deadline, nil)
	if err != nil || len(res.Changes) == 0 {
		t.Fatalf("watchdog: %v %v", kinds(res.Changes), err)
	}
	werr := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("stopped try process: %v, want killed by SIGKILL", werr)
	}
	sameState(t, "after the watchdog's rollback", h.full(t), before)
	if info, err := netup.PendingTry(dir); info != nil || err != nil {
		t.Errorf("pending after the rollback: %+v %v", info, err)
	}
}
