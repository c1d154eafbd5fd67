package netup_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"github.com/ghostbridge/ghostbridge/pkg/sys/sysctl"
)

// extraRoute is a route through the uplink besides the default one.
// ip adds it with proto boot.
var extraRoute = netdev.Route{Dst: netip.MustParsePrefix("192.0.2.0/24"), Gw: netip.MustParseAddr("10.77.0.1"), Dev: "uplink0", Protocol: unix.RTPROT_BOOT}

// prepareHost gives the test host what a real uplink has before the
// first converge: every offload on and a second route via the uplink.
func (h *host) prepareHost(t *testing.T) {
	t.Helper()
	if out, err := h.Exec(h.NS, "ethtool", "-K", h.Uplink, "tso", "on", "gso", "on", "gro", "on", "rx", "on", "tx", "on"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := h.Exec(h.NS, "ip", "route", "add", extraRoute.Dst.String(), "via", extraRoute.Gw.String(), "dev", h.Uplink); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// The provider's router answers for an address behind that route.
	if out, err := h.Exec(h.Peer, "ip", "addr", "add", "192.0.2.1/32", "dev", "lo"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	h.ping(t, h.NS, "192.0.2.1")
}

// full observes everything netup can change on the host: OVS records,
// flows, links with their addresses, routes, the uplink's offloads and
// forwarding.
func (h *host) full(t *testing.T) netup.Snapshot {
	t.Helper()
	s, err := netup.TakeSnapshot(context.Background(), h.deps, map[string][]string{h.Uplink: netup.KnownOffloads})
	if err != nil {
		t.Fatal(err)
	}
	// ovs-vswitchd's userspace datapath device appears with the first
	// bridge and stays for the daemon's lifetime; netup neither makes
	// nor removes it.
	delete(s.Links, "ovs-netdev")
	return s
}

func sameState(t *testing.T, what string, got, want netup.Snapshot) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	g, _ := json.MarshalIndent(got, "", " ")
	w, _ := json.MarshalIndent(want, "", " ")
	t.Errorf("%s: host state differs\ngot:\n%s\nwant:\n%s", what, g, w)
}

// TestTryWithoutConfirmRollsBack: a try from a fresh host applies the
// whole configuration, then, unconfirmed, puts back exactly what was
// there: the uplink's address, both routes, offloads, forwarding, and no
// OVS records.
func TestTryWithoutConfirmRollsBack(t *testing.T) {
	h := newHost(t)
	h.prepareHost(t)
	dir := t.TempDir()
	before := h.full(t)
	var during netup.Snapshot
	res, err := netup.Try(context.Background(), h.deps, h.config(), netup.TryOptions{
		StateDir: dir, Timeout: time.Millisecond,
		OnWaiting: func(r netup.Result, info netup.TryInfo) {
			during = h.full(t)
			if fi, err := os.Stat(info.Path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("state file %s: %v %v", info.Path, fi, err)
			}
		},
	})
	if !errors.Is(err, netup.ErrRolledBack) || !res.Applied || !res.RolledBack || res.Confirmed || res.Reason != "timeout" {
		t.Fatalf("try: err %v, result %+v", err, res)
	}
	t.Logf("try: %d changes applied, %d restored: %v", len(res.Changes), len(res.Restored), err)
	// It was applied: bridges, the address and both routes on ovsbr0.
	moved := extraRoute
	moved.Dev = "ovsbr0"
	if len(during.Bridges) != 2 || !slices.Contains(during.Links["ovsbr0"].Addrs, h.UplinkAddr) ||
		!slices.ContainsFunc(during.Routes, moved.Equal) || during.Sysctl[netup.SysctlIPv4Forward] != "1" {
		t.Errorf("while waiting: bridges %d, ovsbr0 %+v, routes %v, forwarding %v", len(during.Bridges), during.Links["ovsbr0"], during.Routes, during.Sysctl)
	}
	sameState(t, "after rollback", h.full(t), before)
	if info, err := netup.PendingTry(dir); info != nil || err != nil {
		t.Errorf("pending after rollback: %+v %v", info, err)
	}
	h.ping(t, h.Peer, h.UplinkAddr.Addr().String())
}

// TestTryRollbackRestoresExistingState: on a converged host, a try that
// changes records, ports, flows and forwarding is rolled back to the
// exact previous records, flow tables and parameters.
func TestTryRollbackRestoresExistingState(t *testing.T) {
	h := newHost(t)
	h.prepareHost(t)
	ctx := context.Background()
	cfg := h.config()
	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatal(err)
	}
	before := h.full(t)
	on := true
	cfg.IPv6Forwarding = &on
	cfg.Bridges[0].AllowMACs = []string{"52:54:00:12:34:56"}
	cfg.Bridges[1].FailMode = netup.FailSecure
	cfg.Bridges[1].Ports = append(cfg.Bridges[1].Ports, netup.Port{Name: "vm1", Tag: 20})
	cfg.Bridges[1].Flows = []string{"priority=10,arp,actions=NORMAL"}
	cfg.Bridges[1].Addresses = append(cfg.Bridges[1].Addresses, netip.MustParsePrefix("10.89.0.1/24"))
	res, err := netup.Try(ctx, h.deps, cfg, netup.TryOptions{StateDir: t.TempDir(), Timeout: time.Millisecond})
	if !errors.Is(err, netup.ErrRolledBack) || !res.RolledBack {
		t.Fatalf("try: %v %+v", err, res)
	}
	t.Logf("applied:\n%s\nrestored:\n%s", strings.Join(kinds(res.Changes), "\n"), strings.Join(kinds(res.Restored), "\n"))
	if len(res.Changes) < 6 {
		t.Errorf("try made only %d changes: %v", len(res.Changes), kinds(res.Changes))
	}
	sameState(t, "after rollback", h.full(t), before)
}

// TestTryConfirmKeeps: a confirmed try keeps the new state, and while it
// waits, up and a second try refuse to run.
func TestTryConfirmKeeps(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	dir := t.TempDir()
	cfg := h.config()
	waiting := make(chan netup.TryInfo, 1)
	type outcome struct {
		res netup.TryResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := netup.Try(ctx, h.deps, cfg, netup.TryOptions{StateDir: dir, Timeout: 10 * time.Minute,
			OnWaiting: func(_ netup.Result, info netup.TryInfo) { waiting <- info }})
		done <- outcome{res, err}
	}()
	var info netup.TryInfo
	select {
	case info = <-waiting:
	case o := <-done:
		t.Fatalf("try returned before waiting: %v %+v", o.err, o.res)
	}
	if p, err := netup.PendingTry(dir); err != nil || p == nil || !p.Waiting || p.PID != os.Getpid() || !p.Deadline.Equal(info.Deadline) {
		t.Errorf("pending while waiting: %+v %v", p, err)
	}
	_, err := netup.Up(ctx, h.deps, cfg, netup.Options{StateDir: dir})
	var pe *netup.PendingTryError
	if !errors.As(err, &pe) || !pe.Waiting {
		t.Errorf("up while a try waits: %v", err)
	}
	if _, err := netup.Try(ctx, h.deps, cfg, netup.TryOptions{StateDir: dir, Timeout: time.Second}); !errors.Is(err, netup.ErrTryPending) {
		t.Errorf("second try while one waits: %v", err)
	}
	cr, err := netup.Confirm(ctx, dir)
	if err != nil || !cr.Confirmed || cr.Orphaned {
		t.Fatalf("confirm: %+v %v", cr, err)
	}
	o := <-done
	if o.err != nil || !o.res.Confirmed || o.res.RolledBack || !o.res.Applied {
		t.Fatalf("try after confirm: %v %+v", o.err, o.res)
	}
	if res, err := netup.Up(ctx, h.deps, cfg, netup.Options{DryRun: true, StateDir: dir}); err != nil || !res.InSync {
		t.Errorf("after confirm: %v %v", kinds(res.Changes), err)
	}
	if _, err := netup.Confirm(ctx, dir); !errors.Is(err, netup.ErrNoTry) {
		t.Errorf("second confirm: %v", err)
	}
	// Nothing to try on a host in sync: no waiting.
	if res, err := netup.Try(ctx, h.deps, cfg, netup.TryOptions{StateDir: dir, Timeout: 10 * time.Minute}); err != nil || !res.InSync || res.Applied {
		t.Errorf("try in sync: %v %+v", err, res)
	}
	h.ping(t, h.Peer, h.UplinkAddr.Addr().String())
}

// Environment of the try helper process.
const (
	envHelper  = "GHOSTBRIDGE_TRY_HELPER"
	envNS      = "GHOSTBRIDGE_TRY_NS"
	envDB      = "GHOSTBRIDGE_TRY_DB"
	envDir     = "GHOSTBRIDGE_TRY_DIR"
	envUplink  = "GHOSTBRIDGE_TRY_UPLINK"
	envAddr    = "GHOSTBRIDGE_TRY_ADDR"
	envGateway = "GHOSTBRIDGE_TRY_GATEWAY"
	envTimeout = "GHOSTBRIDGE_TRY_TIMEOUT"
)

// TestMain doubles as the try process that TestTryKilled starts and
// kills with SIGKILL, and as the process TestTryRecordsDurable traces.
func TestMain(m *testing.M) {
	if dir := os.Getenv(envDurable); dir != "" {
		if err := durableHelper(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(envHelper) == "1" {
		if err := tryHelper(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1) // only SIGKILL is meant to end it
	}
	os.Exit(m.Run())
}

func tryHelper() error {
	ns, err := netns.GetFromName(os.Getenv(envNS))
	if err != nil {
		return err
	}
	h := &host{OVSHost: &testenv.OVSHost{Handle: ns, Uplink: os.Getenv(envUplink), UplinkAddr: netip.MustParsePrefix(os.Getenv(envAddr)), Gateway: netip.MustParseAddr(os.Getenv(envGateway))}}
	h.ovs = ovs.New(os.Getenv(envDB))
	if h.nl, err = netdev.OpenAt(ns); err != nil {
		return err
	}
	if err := netdev.Do(ns, func() (err error) { h.eth, err = ethtool.Open(); return err }); err != nil {
		return err
	}
	h.deps = netup.Deps{OVS: h.ovs, Links: h.nl, Offloads: h.eth,
		Sysctl: sysctl.Proc{Run: func(fn func() error) error { return netdev.Do(ns, fn) }}}
	timeout, err := time.ParseDuration(os.Getenv(envTimeout))
	if err != nil {
		return err
	}
	_, err = netup.Try(context.Background(), h.deps, h.config(), netup.TryOptions{StateDir: os.Getenv(envDir), Timeout: timeout,
		OnWaiting: func(netup.Result, netup.TryInfo) { fmt.Println("waiting") }})
	return fmt.Errorf("try returned: %w", err)
}

// startTryAndKill runs a try in a child process, waits until it applied the
// configuration and kills it with SIGKILL, as a crash or `kill -9` would.
func (h *host) startTryAndKill(t *testing.T, dir string) {
	t.Helper()
	cmd := h.startTry(t, dir, time.Hour)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if _, err := os.Stat(filepath.Join(dir, "try.json")); err != nil {
		t.Fatalf("no state left by the killed try: %v", err)
	}
}

// startTry runs a try with timeout in a child process (no watchdog) and
// returns once it has applied the configuration and waits.
func (h *host) startTry(t *testing.T, dir string, timeout time.Duration) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envHelper+"=1", envNS+"="+h.NS, envDB+"="+h.DB, envDir+"="+dir, envUplink+"="+h.Uplink,
		envAddr+"="+h.UplinkAddr.String(), envGateway+"="+h.Gateway.String(), envTimeout+"="+timeout.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var lines []string
	waited := false
	for !waited && sc.Scan() {
		waited = sc.Text() == "waiting"
		lines = append(lines, sc.Text())
	}
	if !waited {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("try helper never waited:\n%s\n%s", strings.Join(lines, "\n"), stderr.String())
	}
	t.Cleanup(func() {
		// Kill and reap it, stopped or not, unless the test already
		// waited for it.
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// TestTryKilled: a try process killed while waiting leaves its state
// behind; up and try refuse and say so, status reports it, and both
// "try --rollback" and "down" restore the previous state, while
// "confirm" keeps the new one.
func TestTryKilled(t *testing.T) {
	h := newHost(t)
	h.prepareHost(t)
	ctx := context.Background()
	dir := t.TempDir()
	before := h.full(t)

	h.startTryAndKill(t, dir)
	info, err := netup.PendingTry(dir)
	if err != nil || info == nil || info.Waiting {
		t.Fatalf("pending after kill: %+v %v", info, err)
	}
	_, err = netup.Up(ctx, h.deps, h.config(), netup.Options{StateDir: dir})
	var pe *netup.PendingTryError
	if !errors.As(err, &pe) || pe.Waiting || !strings.Contains(err.Error(), "never confirmed") {
		t.Errorf("up after a killed try: %v", err)
	}
	if _, err := netup.Try(ctx, h.deps, h.config(), netup.TryOptions{StateDir: dir, Timeout: time.Second}); !errors.Is(err, netup.ErrTryPending) {
		t.Errorf("try after a killed try: %v", err)
	}
	res, err := netup.Rollback(ctx, h.deps, dir, nil)
	if err != nil || len(res.Changes) == 0 {
		t.Fatalf("rollback: %v %v", kinds(res.Changes), err)
	}
	sameState(t, "after try --rollback", h.full(t), before)

	h.startTryAndKill(t, dir)
	if res, err = netup.Down(ctx, h.deps, netup.Options{StateDir: dir}); err != nil || len(res.Changes) == 0 {
		t.Fatalf("down after a killed try: %v %v", kinds(res.Changes), err)
	}
	sameState(t, "after down", h.full(t), before)

	h.startTryAndKill(t, dir)
	cr, err := netup.Confirm(ctx, dir)
	if err != nil || !cr.Confirmed || !cr.Orphaned {
		t.Fatalf("confirm after kill: %+v %v", cr, err)
	}
	if res, err := netup.Up(ctx, h.deps, h.config(), netup.Options{DryRun: true, StateDir: dir}); err != nil || !res.InSync {
		t.Errorf("after confirming a killed try: %v %v", kinds(res.Changes), err)
	}
}
