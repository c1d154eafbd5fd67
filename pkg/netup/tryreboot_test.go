package netup_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
)

// bootConverged puts the kernel side of a host whose ovsbr0 was
// converged where a boot would: the bridges' devices come back down and
// without addresses, ovs-vswitchd starts with empty flow tables, the
// network manager gives the NIC its address and routes, the NIC's
// offloads are the driver's (on) and forwarding is off.
func (h *host) bootConverged(t *testing.T) {
	t.Helper()
	for _, br := range []string{"ovsbr0", "ovsbr1"} {
		if err := h.ovs.ReplaceFlows(context.Background(), br, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, argv := range [][]string{
		{"ip", "addr", "flush", "dev", "ovsbr0"}, {"ip", "link", "set", "ovsbr0", "down"},
		{"ip", "addr", "flush", "dev", "ovsbr1"}, {"ip", "link", "set", "ovsbr1", "down"},
		{"ip", "addr", "add", h.UplinkAddr.String(), "dev", h.Uplink},
		{"ip", "route", "replace", "default", "via", h.Gateway.String(), "dev", h.Uplink},
		{"ip", "route", "replace", extraRoute.Dst.String(), "via", extraRoute.Gw.String(), "dev", h.Uplink},
		{"sysctl", "-q", "-w", netup.SysctlIPv4Forward + "=0"},
		{"ethtool", "-K", h.Uplink, "tso", "on", "gso", "on", "gro", "on", "rx", "on", "tx", "on"},
	} {
		if out, err := h.Exec(h.NS, argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
}

// TestTryRebootRestoresConvergedHost: a try on a host whose ovsbr0 was
// already converged only adds ovsbr1; the host reboots before a
// confirmation. The boot undid more than the try did (ovsbr0's address,
// link state, flows, the routes, offloads and forwarding), so the
// boot-time up must restore everything ghostbridge owns to the recorded
// state, not only the try's changes: ovsbr0 carries its address and the
// default route again and the host answers through it. The unconfirmed
// configuration is then refused until a try of it is confirmed.
func TestTryRebootRestoresConvergedHost(t *testing.T) {
	h := newHost(t)
	h.prepareHost(t)
	ctx := context.Background()
	cfg := h.config()
	partial := cfg
	partial.Bridges = cfg.Bridges[:1]
	if _, err := netup.Up(ctx, h.deps, partial, netup.Options{}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "net")
	before := h.full(t)

	h.startTryAndKill(t, dir) // the whole configuration: adds ovsbr1 only
	editTryState(t, dir, func(m map[string]any) { m["boot_id"] = "00000000-0000-4000-8000-000000000000" })
	h.bootConverged(t)
	res, err := netup.Up(ctx, h.deps, cfg, netup.Options{StateDir: dir})
	var ee *netup.ExpiredTryError
	if !errors.As(err, &ee) || !ee.Rebooted {
		t.Fatalf("boot-time up: %v %v", kinds(res.Changes), err)
	}
	sameState(t, "after the boot-time up", h.full(t), before)
	ls, err := h.nl.Links()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ls, func(l netdev.Link) bool { return l.Name == "ovsbr0" })
	if i < 0 || !ls[i].Up || !slices.Contains(ls[i].Addrs, h.UplinkAddr) {
		t.Errorf("ovsbr0 after the boot-time up: %+v", ls)
	}
	rs, err := h.nl.Routes()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rs, func(r netdev.Route) bool { return r.Dst.Bits() == 0 && r.Dev == "ovsbr0" && r.Gw == h.Gateway }) {
		t.Errorf("no default route via %s on ovsbr0: %v", h.Gateway, rs)
	}
	h.ping(t, h.Peer, h.UplinkAddr.Addr().String())

	// The next boot does not apply the unconfirmed configuration.
	n := h.counts()
	res, err = netup.Up(ctx, h.deps, cfg, netup.Options{StateDir: dir})
	if !errors.Is(err, netup.ErrUnconfirmedConfig) || len(res.Changes) != 0 || h.counts() != n {
		t.Fatalf("up of the unconfirmed configuration: %v %v", kinds(res.Changes), err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "net try") || !strings.Contains(msg, "--force") {
		t.Errorf("refusal does not name the ways out on one line: %q", msg)
	}
	// The configuration that was already in place still applies.
	if _, err := netup.Up(ctx, h.deps, partial, netup.Options{StateDir: dir}); err != nil {
		t.Errorf("up of the converged configuration: %v", err)
	}
	// A confirmed try of it lifts the refusal.
	tr, err := netup.Try(ctx, h.deps, cfg, netup.TryOptions{StateDir: dir, Timeout: time.Hour,
		OnWaiting: func(netup.Result, netup.TryInfo) {
			go func() {
				if _, err := netup.Confirm(ctx, dir); err != nil {
					t.Errorf("confirm: %v", err)
				}
			}()
		}})
	if err != nil || !tr.Confirmed {
		t.Fatalf("try: %+v %v", tr, err)
	}
	if res, err := netup.Up(ctx, h.deps, cfg, netup.Options{StateDir: dir}); err != nil || !res.InSync {
		t.Errorf("up after the confirmed try: %v %v", kinds(res.Changes), err)
	}
}

// stopProcess stops pid with SIGSTOP and waits until the kernel shows it
// stopped: the signal is delivered when its threads next run, which on a
// busy machine can be after the test's next step.
func stopProcess(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for testenv.ProcState(t, pid) != "T" {
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOverdueTryOfAnotherBootIsNotKilled: a PID recorded in another
// boot names some other process now, so a try recorded with another
// boot ID is never signalled, however overdue; recorded in this boot,
// the same try is killed and rolled back.
func TestOverdueTryOfAnotherBootIsNotKilled(t *testing.T) {
	h := newHost(t)
	h.prepareHost(t)
	ctx := context.Background()
	dir := t.TempDir()
	before := h.full(t)
	cmd := h.startTry(t, dir, time.Hour)
	stopProcess(t, cmd.Process.Pid)
	var bootID string
	editTryState(t, dir, func(m map[string]any) {
		bootID, _ = m["boot_id"].(string)
		m["boot_id"] = "00000000-0000-4000-8000-000000000000"
		m["deadline"] = time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	})
	if bootID == "" {
		t.Fatal("the try recorded no boot ID")
	}
	if _, err := netup.Rollback(ctx, h.deps, dir, nil); !errors.Is(err, netup.ErrTryPending) {
		t.Errorf("rollback of another boot's try: %v, want it refused as pending", err)
	}
	if st := testenv.ProcState(t, cmd.Process.Pid); st != "T" {
		t.Fatalf("try process state %s after the rollback attempt, want T (stopped, not killed)", st)
	}

	editTryState(t, dir, func(m map[string]any) { m["boot_id"] = bootID })
	res, err := netup.Rollback(ctx, h.deps, dir, nil)
	if err != nil || len(res.Changes) == 0 {
		t.Fatalf("rollback of this boot's overdue try: %v %v", kinds(res.Changes), err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("the overdue try process was not killed")
	}
	sameState(t, "after the rollback", h.full(t), before)
}

// TestTryTimerFollowsRecordedDeadline: the rollback timer runs to the
// recorded deadline, counted from the start of the try, not for the
// whole timeout after the changes were applied. A clock that says the
// try started two hours ago puts a one-hour deadline in the past: the
// try times out at once.
func TestTryTimerFollowsRecordedDeadline(t *testing.T) {
	h := newHost(t)
	h.prepareHost(t)
	before := h.full(t)
	// The limit only turns a wait for the full hour into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tr, err := netup.Try(ctx, h.deps, h.config(), netup.TryOptions{StateDir: t.TempDir(), Timeout: time.Hour,
		Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	if !errors.Is(err, netup.ErrRolledBack) || tr.Reason != "timeout" {
		t.Fatalf("try: reason %q, %v; want a timeout", tr.Reason, err)
	}
	sameState(t, "after the try", h.full(t), before)
}

// TestDownRefusesUndecodableRouteRecord: when the record of the
// uplink's routes does not decode, down refuses, naming the record,
// and deletes nothing: deleting the bridge would leave the uplink
// without its routes.
func TestDownRefusesUndecodableRouteRecord(t *testing.T) {
	h := newHost(t)
	h.prepareHost(t)
	ctx := context.Background()
	if _, err := netup.Up(ctx, h.deps, h.config(), netup.Options{}); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Exec(h.NS, "ovs-vsctl", "--db=unix:"+h.DB, "set", "Bridge", "ovsbr0", `external_ids:ghostbridge-uplink-routes="[{\"to\":"`); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	before := h.full(t)
	res, err := netup.Down(ctx, h.deps, netup.Options{})
	if err == nil || !strings.Contains(err.Error(), "external_ids:ghostbridge-uplink-routes") || res.Applied {
		t.Fatalf("down with a corrupted route record: %v %v", kinds(res.Changes), err)
	}
	t.Log(err)
	sameState(t, "after the refused down", h.full(t), before)
}
