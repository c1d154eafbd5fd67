package netup_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
)

// guardInstalled fails t unless ovsbr0 carries exactly the guard flows of
// cfg and the host still reaches the provider's router through it.
func (h *host) guardInstalled(t *testing.T, what string, cfg netup.Config) {
	t.Helper()
	st, err := netup.GetStatus(context.Background(), h.deps, cfg)
	if err != nil {
		t.Fatalf("%s: status: %v", what, err)
	}
	if !st.Bridges[0].FlowsInSync {
		t.Errorf("%s: ovsbr0 flows not the guard: %+v", what, st.Bridges[0])
	}
	flows, err := h.ovs.SaveFlows(context.Background(), "ovsbr0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(flows, "\n"), "dl_src=") {
		t.Errorf("%s: no guard flow (dl_src match) on ovsbr0: %v", what, flows)
	}
	h.ping(t, h.Peer, h.UplinkAddr.Addr().String())
}

// TestBridgeSetKeepsGuard: changing fail_mode (or the bridge MAC) of an
// existing bridge makes OVS drop its flow table; up must install the
// guard again after the change, in both directions.
func TestBridgeSetKeepsGuard(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	cfg := h.config()

	// standalone, unguarded -> secure, guarded.
	open := h.config()
	open.Bridges[0].FailMode, open.Bridges[0].Guard = netup.FailStandalone, false
	if _, err := netup.Up(ctx, h.deps, open, netup.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatal(err)
	}
	h.guardInstalled(t, "standalone -> secure", cfg)

	// A bridge whose guard flows are in place but whose fail_mode or MAC
	// differs (standalone with the guard was once accepted): the flows
	// match when up plans, and the set empties the table.
	guard, err := h.ovs.SaveFlows(ctx, "ovsbr0")
	if err != nil {
		t.Fatal(err)
	}
	for _, drift := range [][]string{
		{"set-fail-mode", "ovsbr0", "standalone"},
		{"set", "bridge", "ovsbr0", "other-config:hwaddr=\"02:00:00:00:00:99\""},
	} {
		if out, err := h.Vsctl(drift...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if err := h.ovs.ReplaceFlows(ctx, "ovsbr0", guard); err != nil {
			t.Fatal(err)
		}
		res, err := netup.Up(ctx, h.deps, cfg, netup.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("after %v: %s", drift, strings.Join(kinds(res.Changes), "; "))
		h.guardInstalled(t, "after "+strings.Join(drift, " "), cfg)
		if res, err := netup.Up(ctx, h.deps, cfg, netup.Options{DryRun: true}); err != nil || !res.InSync {
			t.Errorf("after %v: not in sync: %v %v", drift, kinds(res.Changes), err)
		}
	}
}

// TestTryRollbackKeepsOthersChanges: while a try waits, a VM's tap port
// joins a bridge and an unrelated interface gets an address and a
// route; the rollback undoes only the try's own changes.
func TestTryRollbackKeepsOthersChanges(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	cfg := h.config()
	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatal(err)
	}
	// An unrelated interface, there before the try.
	for _, argv := range [][]string{{"ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1"}, {"ip", "link", "set", "other0", "up"}} {
		if out, err := h.Exec(h.NS, argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	before := h.full(t)
	cfg.Bridges[1].Ports = append(cfg.Bridges[1].Ports, netup.Port{Name: "vm1", Tag: 20})
	others := [][]string{
		{"ovs-vsctl", "--db=unix:" + h.DB, "add-port", "ovsbr1", "vnet0", "--", "set", "interface", "vnet0", "type=internal"},
		{"ip", "addr", "add", "10.99.0.1/24", "dev", "other0"},
		{"ip", "route", "add", "198.51.100.0/24", "via", "10.99.0.2", "dev", "other0"},
	}
	res, err := netup.Try(ctx, h.deps, cfg, netup.TryOptions{StateDir: t.TempDir(), Timeout: time.Millisecond,
		OnWaiting: func(netup.Result, netup.TryInfo) {
			for _, argv := range others {
				if out, err := h.Exec(h.NS, argv...); err != nil {
					t.Errorf("%v: %s", err, out)
				}
			}
		}})
	if !errors.Is(err, netup.ErrRolledBack) || !res.RolledBack {
		t.Fatalf("try: %v %+v", err, res)
	}
	t.Logf("restored: %s", strings.Join(kinds(res.Restored), "; "))
	now := h.full(t)
	if _, ok := now.Bridges["ovsbr1"].Ports["vm1"]; ok {
		t.Errorf("the try's port vm1 is still there")
	}
	if _, ok := now.Bridges["ovsbr1"].Ports["vnet0"]; !ok {
		t.Errorf("vnet0, added while the try waited, was removed: ports %v", now.Bridges["ovsbr1"].Ports)
	}
	if !slices.Contains(now.Links["other0"].Addrs, netip.MustParsePrefix("10.99.0.1/24")) {
		t.Errorf("other0 lost its address: %+v", now.Links["other0"])
	}
	want := netdev.Route{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gw: netip.MustParseAddr("10.99.0.2"), Dev: "other0", Protocol: unix.RTPROT_BOOT}
	if !slices.ContainsFunc(now.Routes, want.Equal) {
		t.Errorf("route %v was removed: %v", want, now.Routes)
	}
	// Apart from what the others added, the host is as before the try.
	b := now.Bridges["ovsbr1"]
	delete(b.Ports, "vnet0")
	delete(now.Links, "vnet0")
	o := now.Links["other0"]
	o.Addrs = before.Links["other0"].Addrs
	now.Links["other0"] = o
	now.Routes = slices.DeleteFunc(now.Routes, func(r netdev.Route) bool { return r.Dev == "other0" })
	sameState(t, "after rollback", now, before)
}

// TestIPv6RouteConverges: the kernel gives IPv6 routes metric 1024 when
// none is asked for; a second up must see the route as in place.
func TestIPv6RouteConverges(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	cfg := h.config()
	cfg.Bridges[1].Addresses = append(cfg.Bridges[1].Addresses, netip.MustParsePrefix("fd00:88::1/64"))
	cfg.Bridges[1].Routes = []netup.Route{{To: netip.MustParsePrefix("fd00:99::/64"), Via: netip.MustParseAddr("fd00:88::2")}}
	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatal(err)
	}
	rs, err := h.nl.Routes()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rs, func(r netdev.Route) bool { return r.Dst == netip.MustParsePrefix("fd00:99::/64") }) {
		t.Fatalf("IPv6 route not installed: %v", rs)
	}
	before := h.counts()
	res, err := netup.Up(ctx, h.deps, cfg, netup.Options{})
	if err != nil || !res.InSync || h.counts() != before {
		t.Errorf("second up: %v, changes %v, counts %v -> %v", err, kinds(res.Changes), before, h.counts())
	}
}
