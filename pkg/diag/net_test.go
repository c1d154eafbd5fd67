package diag_test

import (
	"context"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/diag"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
)

// netHost is the shared NetHost with the steps these tests take on it.
type netHost struct{ *diag.NetHost }

func newNetHost(t *testing.T) *netHost { return &netHost{diag.NewNetHost(t)} }

func (h *netHost) must(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := h.Exec(h.NS, argv...); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// run runs the net group against the host; the timeout is generous
// because the machine is shared and slowness is not what is tested.
func (h *netHost) run(t *testing.T, cfg netup.Config) diag.Report {
	t.Helper()
	return diag.Run(context.Background(), diag.NetChecks(cfg, h.Deps), diag.Options{Timeout: time.Minute})
}

func expectHealthy(t *testing.T, r diag.Report) {
	t.Helper()
	if r.Status != diag.StatusPass || r.Counts.Pass != 6 {
		t.Fatalf("healthy host: status %s, counts %+v\n%s", r.Status, r.Counts, hostDump(r))
	}
}

// TestNetChecksOnOVS converges a real userspace OVS host, sees every net
// check pass, then breaks one thing at a time the way drift happens on a
// host (by hand, with the OVS, ethtool and sysctl tools) and expects the
// check that covers it to fail with the fix as hint; net up repairs each.
func TestNetChecksOnOVS(t *testing.T) {
	h := newNetHost(t)

	r := h.run(t, h.Cfg)
	expectCheck(t, r, "net.bridges", diag.StatusFail, "ghostbridge net up", "bridge ovsbr0 missing")
	expectCheck(t, r, "net.forwarding", diag.StatusFail, "net.ipv4_forwarding", "net.ipv4.ip_forward = 0, want 1")

	h.Up(t)
	r = h.run(t, h.Cfg)
	expectHealthy(t, r)
	expectCheck(t, r, "net.flows", diag.StatusPass, "", "ovsbr0 guard flows (3)")
	t.Logf("healthy: wall %s, sum %s\n%s", r.Wall, r.Sum, hostDump(r))

	steps := []struct {
		what         string
		brk          []string // argv in the host's namespace
		check        string
		hint, detail string
	}{
		{"offload turned on", []string{"ethtool", "-K", h.Uplink, "gro", "on"},
			"net.offloads", "ghostbridge net up", "uplink uplink0 has gro on"},
		{"forwarding flipped", []string{"sysctl", "-w", "net.ipv4.ip_forward=0"},
			"net.forwarding", "net.ipv4_forwarding", "net.ipv4.ip_forward = 0, want 1"},
		{"guard flow deleted", []string{"ovs-ofctl", "del-flows", "unix:" + h.Dir + "/ovsbr0.mgmt", "--strict", "priority=1"},
			"net.flows", "ghostbridge net up", "bridge ovsbr0: guard flows differ from the 3 expected"},
		{"uplink port removed", []string{"ovs-vsctl", "--db=unix:" + h.DB, "del-port", "ovsbr0", h.Uplink},
			"net.uplink", "ghostbridge net up", "uplink uplink0 is not a port of bridge ovsbr0"},
		{"bridge MAC changed", []string{"ovs-vsctl", "--db=unix:" + h.DB, "set", "bridge", "ovsbr0", `other-config:hwaddr="02:00:00:00:00:99"`},
			"net.bridge_mac", "ghostbridge net up", "bridge ovsbr0 has MAC 02:00:00:00:00:99"},
		{"internal bridge set down", []string{"ip", "link", "set", "dev", "ovsbr1", "down"},
			"net.bridges", "ghostbridge net up", "bridge ovsbr1 is down"},
		{"internal bridge deleted", []string{"ovs-vsctl", "--db=unix:" + h.DB, "del-br", "ovsbr1"},
			"net.bridges", "ghostbridge net up", "bridge ovsbr1 missing"},
	}
	for _, s := range steps {
		h.must(t, s.brk...)
		// The userspace datapath applies a database change a moment
		// later; wait for the change to show, not for a fixed time.
		var r diag.Report
		for range 50 {
			r = h.run(t, h.Cfg)
			if hostResult(t, r, s.check).Status != diag.StatusPass {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Run(s.what, func(t *testing.T) { expectCheck(t, r, s.check, diag.StatusFail, s.hint, s.detail) })
		if r.Status != diag.StatusFail {
			t.Errorf("%s: overall %s, want fail", s.what, r.Status)
		}
		h.Up(t)
		expectHealthy(t, h.run(t, h.Cfg))
	}

	// An uplink that names nothing is a config problem: the hint is the
	// key, and the other bridge is still judged.
	bad := h.Cfg
	bad.Bridges = append([]netup.Bridge{}, h.Cfg.Bridges...)
	bad.Bridges[0].Uplink = "nosuch0"
	r = h.run(t, bad)
	expectCheck(t, r, "net.uplink", diag.StatusFail, "uplink of bridge ovsbr0 in net.bridges", "uplink nosuch0 matches no interface")
	expectCheck(t, r, "net.bridges", diag.StatusPass, "", "2 bridges up")

	// Last, the external bridge itself: everything about it fails.
	h.must(t, "ovs-vsctl", "--db=unix:"+h.DB, "del-br", "ovsbr0")
	r = h.run(t, h.Cfg)
	expectCheck(t, r, "net.bridges", diag.StatusFail, "ghostbridge net up", "bridge ovsbr0 missing")
	expectCheck(t, r, "net.uplink", diag.StatusFail, "ghostbridge net up", "bridge ovsbr0 missing, so uplink uplink0 is not attached")
	expectCheck(t, r, "net.flows", diag.StatusFail, "ghostbridge net up", "bridge ovsbr0: guard flows not checked: bridge missing")
	expectCheck(t, r, "net.bridge_mac", diag.StatusFail, "ghostbridge net up", "bridge ovsbr0 has no kernel device")
}

// TestNetChecksOVSDown: with no OVS to ask, the checks that need it say
// they cannot tell, and why.
func TestNetChecksOVSDown(t *testing.T) {
	h := newNetHost(t)
	h.Deps.OVS = ovs.New(h.Dir + "/nosuch.sock")
	r := h.run(t, h.Cfg)
	expectCheck(t, r, "net.bridges", diag.StatusUnknown, "net.ovsdb_socket", "observe the network")
	expectCheck(t, r, "net.forwarding", diag.StatusFail, "net.ipv4_forwarding", "want 1")
}

func TestNetChecksSkipped(t *testing.T) {
	r := diag.Run(context.Background(), diag.NetChecks(netup.Config{}, netup.Deps{}), diag.Options{})
	if r.Counts.Skip != 6 || len(r.Checks) != 6 {
		t.Fatalf("no bridges: %+v", r.Counts)
	}
	for _, c := range r.Checks {
		if c.Detail != "no [net] bridges configured" {
			t.Errorf("%s: detail %q", c.Name, c.Detail)
		}
	}
	internal := netup.Config{DatapathType: "system", Bridges: []netup.Bridge{{Name: "ovsbr1", FailMode: netup.FailSecure}}}
	for _, c := range diag.NetChecks(internal, netup.Deps{}) {
		want := map[string]string{"net.uplink": "no [net] bridge has an uplink", "net.offloads": "no [net] bridge has an uplink",
			"net.bridge_mac": "no [net] bridge has an uplink", "net.forwarding": "net.ipv4_forwarding and net.ipv6_forwarding are unset"}[c.Name]
		if c.SkipReason != want {
			t.Errorf("%s: skip reason %q, want %q", c.Name, c.SkipReason, want)
		}
	}
}
