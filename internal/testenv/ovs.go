package testenv

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"github.com/ghostbridge/ghostbridge/pkg/sys/sysctl"
)

// OVSSchema is where Debian's openvswitch-common puts the OVSDB schema.
const OVSSchema = "/usr/share/openvswitch/vswitch.ovsschema"

// OVSHost is a scratch host for network tests: a fresh network namespace
// running its own ovsdb-server and ovs-vswitchd (userspace datapath), with
// a veth pair standing in for the physical NIC. The uplink end (Uplink, in
// NS) carries UplinkAddr and a default route via Gateway; the other end
// (PeerIf, in Peer) is the provider's router holding Gateway.
type OVSHost struct {
	Dir        string // temp dir with the database, sockets, logs
	DB         string // OVSDB socket
	NS, Peer   string // named network namespaces (ip netns)
	Handle     netns.NsHandle
	Uplink     string
	PeerIf     string
	UplinkAddr netip.Prefix
	Gateway    netip.Addr
}

var nsSeq atomic.Int64

// OVS starts an OVSHost and removes everything it made when the test ends.
// It skips (or fails when Strict) when Open vSwitch or iproute2 are missing.
func OVS(t testing.TB) *OVSHost {
	t.Helper()
	RequireRoot(t)
	for _, bin := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			Skip(t, bin+" not found (install openvswitch-switch and iproute2)")
		}
	}
	if _, err := os.Stat(OVSSchema); err != nil {
		Skip(t, fmt.Sprintf("OVSDB schema: %v", err))
	}
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "gbovs")
	if err != nil {
		t.Fatal(err)
	}
	n := nsSeq.Add(1)
	h := &OVSHost{
		Dir: dir, DB: filepath.Join(dir, "db.sock"),
		NS: fmt.Sprintf("gbt%d-%d", os.Getpid(), n), Peer: fmt.Sprintf("gbp%d-%d", os.Getpid(), n),
		Uplink: "uplink0", PeerIf: "peer0",
		UplinkAddr: netip.MustParsePrefix("10.77.0.2/24"), Gateway: netip.MustParseAddr("10.77.0.1"),
	}
	t.Cleanup(func() { h.stop(t) })
	must := func(argv ...string) {
		t.Helper()
		if _, err := run(argv[0], argv[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	must("ip", "netns", "add", h.NS)
	must("ip", "netns", "add", h.Peer)
	must("ip", "-n", h.NS, "link", "set", "lo", "up")
	must("ip", "-n", h.Peer, "link", "set", "lo", "up")
	must("ip", "-n", h.NS, "link", "add", h.Uplink, "type", "veth", "peer", "name", h.PeerIf, "netns", h.Peer)
	must("ip", "-n", h.NS, "addr", "add", h.UplinkAddr.String(), "dev", h.Uplink)
	must("ip", "-n", h.NS, "link", "set", h.Uplink, "up")
	must("ip", "-n", h.Peer, "addr", "add", netip.PrefixFrom(h.Gateway, h.UplinkAddr.Bits()).String(), "dev", h.PeerIf)
	must("ip", "-n", h.Peer, "link", "set", h.PeerIf, "up")
	must("ip", "-n", h.NS, "route", "add", "default", "via", h.Gateway.String(), "dev", h.Uplink)
	if h.Handle, err = netns.GetFromName(h.NS); err != nil {
		t.Fatal(err)
	}

	db := filepath.Join(dir, "conf.db")
	must("ovsdb-tool", "create", db, OVSSchema)
	must("ip", "netns", "exec", h.NS, "ovsdb-server", db, "--remote=punix:"+h.DB,
		"--pidfile="+filepath.Join(dir, "ovsdb.pid"), "--unixctl="+filepath.Join(dir, "ovsdb.ctl"),
		"--detach", "--log-file="+filepath.Join(dir, "ovsdb.log"))
	must("ovs-vsctl", "--db=unix:"+h.DB, "--no-wait", "init")
	// ovs-vswitchd puts bridge management sockets in OVS_RUNDIR.
	cmd := exec.Command("ip", "netns", "exec", h.NS, "ovs-vswitchd", "unix:"+h.DB,
		"--pidfile="+filepath.Join(dir, "vswitchd.pid"), "--unixctl="+filepath.Join(dir, "vswitchd.ctl"),
		"--detach", "--log-file="+filepath.Join(dir, "vswitchd.log"))
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start ovs-vswitchd: %v: %s", err, out)
	}
	return h
}

// Exec runs argv inside namespace ns (h.NS or h.Peer) and returns stdout;
// the error carries argv and stderr.
func (h *OVSHost) Exec(ns string, argv ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// Vsctl runs ovs-vsctl against the host's database, for tests that change
// OVS by hand (drift).
func (h *OVSHost) Vsctl(args ...string) (string, error) {
	return run("ovs-vsctl", append([]string{"--db=unix:" + h.DB, "--timeout=10"}, args...)...)
}

// OVSAdapters are the real system adapters opened inside an OVSHost's
// network namespace: together they are what netup.Deps needs.
type OVSAdapters struct {
	OVS      *ovs.Client
	Links    *netdev.Handle
	Offloads *ethtool.Client
	Sysctl   sysctl.Proc
}

// Adapters opens the real adapters inside h's namespace; they are closed
// when the test ends.
func (h *OVSHost) Adapters(t testing.TB) OVSAdapters {
	t.Helper()
	nl, err := netdev.OpenAt(h.Handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	var eth *ethtool.Client
	if err := netdev.Do(h.Handle, func() (err error) { eth, err = ethtool.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eth.Close() })
	return OVSAdapters{OVS: ovs.New(h.DB), Links: nl, Offloads: eth,
		Sysctl: sysctl.Proc{Run: func(fn func() error) error { return netdev.Do(h.Handle, fn) }}}
}

// Log returns ovs-vswitchd's log, for failure messages.
func (h *OVSHost) Log() string {
	b, _ := os.ReadFile(filepath.Join(h.Dir, "vswitchd.log"))
	return string(b)
}

func (h *OVSHost) stop(t testing.TB) {
	for _, d := range []struct{ ctl, pid string }{{"vswitchd.ctl", "vswitchd.pid"}, {"ovsdb.ctl", "ovsdb.pid"}} {
		pid := readPid(filepath.Join(h.Dir, d.pid))
		if pid == 0 {
			continue
		}
		if _, err := run("ovs-appctl", "-t", filepath.Join(h.Dir, d.ctl), "exit"); err != nil {
			t.Logf("ovs-appctl exit: %v; sending SIGTERM to %d", err, pid)
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if h.Handle.IsOpen() {
		_ = h.Handle.Close()
	}
	var errs []error
	for _, ns := range []string{h.NS, h.Peer} {
		if _, err := run("ip", "netns", "del", ns); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	errs = append(errs, os.RemoveAll(h.Dir))
	if err := errors.Join(errs...); err != nil {
		t.Errorf("clean up OVS host: %v", err)
	}
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
