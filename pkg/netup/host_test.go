package netup_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"github.com/ghostbridge/ghostbridge/pkg/sys/sysctl"
)

// host is a scratch OVS host with the real adapters opened inside its
// network namespace.
type host struct {
	*testenv.OVSHost
	ovs  *ovs.Client
	nl   *netdev.Handle
	eth  *ethtool.Client
	deps netup.Deps
}

func newHost(t *testing.T) *host { return newHostB(t) }

func newHostB(t testing.TB) *host {
	t.Helper()
	h := &host{OVSHost: testenv.OVS(t)}
	h.ovs = ovs.New(h.DB)
	var err error
	if h.nl, err = netdev.OpenAt(h.Handle); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.nl.Close)
	if err := netdev.Do(h.Handle, func() (err error) { h.eth, err = ethtool.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.eth.Close() })
	h.deps = netup.Deps{OVS: h.ovs, Links: h.nl, Offloads: h.eth,
		Sysctl: sysctl.Proc{Run: func(fn func() error) error { return netdev.Do(h.Handle, fn) }}}
	return h
}

func (h *host) config() netup.Config {
	on := true
	return netup.Config{
		DatapathType:   "netdev",
		Offloads:       netup.DefaultOffloads,
		IPv4Forwarding: &on,
		Bridges: []netup.Bridge{
			{Name: "ovsbr0", Uplink: h.Uplink, Addresses: []netip.Prefix{h.UplinkAddr}, Gateway: h.Gateway,
				FailMode: netup.FailSecure, Guard: true, Ports: []netup.Port{{Name: "gbint0"}}},
			{Name: "ovsbr1", Addresses: []netip.Prefix{netip.MustParsePrefix("10.88.0.1/24")},
				FailMode: netup.FailStandalone, Ports: []netup.Port{{Name: "vm0", Tag: 10}}},
		},
	}
}

// snapshot is the host state a test compares before and after.
type snapshot struct {
	uplinkAddrs []netip.Prefix
	routes      []netdev.Route
	offloads    map[string]ethtool.State
	bridges     []string
}

func (h *host) snapshot(t *testing.T) snapshot {
	t.Helper()
	ls, err := h.nl.Links()
	if err != nil {
		t.Fatal(err)
	}
	var s snapshot
	for _, l := range ls {
		if l.Name == h.Uplink {
			s.uplinkAddrs = slices.DeleteFunc(l.Addrs, func(p netip.Prefix) bool { return p.Addr().IsLinkLocalUnicast() })
		}
	}
	if s.routes, err = h.nl.Routes(); err != nil {
		t.Fatal(err)
	}
	if s.offloads, err = h.eth.Get(h.Uplink, netup.DefaultOffloads); err != nil {
		t.Fatal(err)
	}
	brs, err := h.ovs.Bridges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name := range brs {
		s.bridges = append(s.bridges, name)
	}
	slices.Sort(s.bridges)
	return s
}

func (h *host) counts() [3]int64 { return [3]int64{h.ovs.Mutations(), h.nl.Changes(), h.eth.Changes()} }

func (h *host) ping(t *testing.T, ns, addr string) {
	t.Helper()
	if out, err := h.Exec(ns, "ping", "-c", "1", "-W", "5", addr); err != nil {
		t.Fatalf("ping %s from %s: %v\n%s\nvswitchd log:\n%s", addr, ns, err, out, h.Log())
	}
}

func kinds(cs []netup.Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

// TestUpIdempotentDriftDown converges a fresh host, proves a second run
// changes nothing, repairs drift that plan showed first, and takes
// everything down again to the exact starting state.
func TestUpIdempotentDriftDown(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	cfg := h.config()
	// The veth starts with every offload the test switches off on, and
	// a second route through it.
	h.prepareHost(t)
	before := h.snapshot(t)
	fullBefore := h.full(t)
	if fullBefore.Sysctl[netup.SysctlIPv4Forward] != "0" {
		t.Fatalf("forwarding already on in a fresh namespace: %v", fullBefore.Sysctl)
	}
	if len(before.uplinkAddrs) != 1 || !slices.ContainsFunc(before.routes, func(r netdev.Route) bool { return r.Dst.Bits() == 0 && r.Dev == h.Uplink }) {
		t.Fatalf("test host not set up: %+v", before)
	}
	h.ping(t, h.Peer, h.UplinkAddr.Addr().String())

	res, err := netup.Up(ctx, h.deps, cfg, netup.Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.InSync || res.Applied || h.counts() != [3]int64{} {
		t.Fatalf("dry run: in_sync %v applied %v counts %v", res.InSync, res.Applied, h.counts())
	}
	res, err = netup.Up(ctx, h.deps, cfg, netup.Options{})
	if err != nil {
		t.Fatalf("up: %v\n%s", err, h.Log())
	}
	t.Logf("first up: %d changes, %d OVS mutations, %d netlink changes, %d ethtool changes\n%s",
		len(res.Changes), h.ovs.Mutations(), h.nl.Changes(), h.eth.Changes(), strings.Join(kinds(res.Changes), "\n"))

	after := h.snapshot(t)
	if len(after.uplinkAddrs) != 0 {
		t.Errorf("uplink still has %v", after.uplinkAddrs)
	}
	// The default route testenv added with ip (proto boot) moves as it is.
	wantDefault := netdev.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: h.Gateway, Dev: "ovsbr0", Protocol: unix.RTPROT_BOOT}
	movedExtra := extraRoute
	movedExtra.Dev = "ovsbr0"
	if !slices.ContainsFunc(after.routes, wantDefault.Equal) || !slices.ContainsFunc(after.routes, movedExtra.Equal) {
		t.Errorf("routes %v lack %v or %v", after.routes, wantDefault, movedExtra)
	}
	if slices.ContainsFunc(after.routes, func(r netdev.Route) bool { return r.Dev == h.Uplink }) {
		t.Errorf("routes still through the uplink: %v", after.routes)
	}
	h.ping(t, h.NS, "192.0.2.1") // through the moved route

	for _, f := range netup.DefaultOffloads {
		if s := after.offloads[f]; s.On && !s.Fixed {
			t.Errorf("offload %s still on", f)
		}
	}
	if !slices.Equal(after.bridges, []string{"ovsbr0", "ovsbr1"}) {
		t.Errorf("bridges %v", after.bridges)
	}
	links, err := h.nl.Links()
	if err != nil {
		t.Fatal(err)
	}
	var upMAC, brMAC string
	for _, l := range links {
		switch l.Name {
		case h.Uplink:
			upMAC = l.MAC
		case "ovsbr0":
			brMAC = l.MAC
			if !slices.Contains(l.Addrs, h.UplinkAddr) || !l.Up {
				t.Errorf("ovsbr0: %+v", l)
			}
		}
	}
	if upMAC == "" || upMAC != brMAC {
		t.Errorf("bridge MAC %q, uplink MAC %q: want equal", brMAC, upMAC)
	}
	if v, err := h.deps.Sysctl.Get(netup.SysctlIPv4Forward); err != nil || v != "1" {
		t.Errorf("ip_forward in the namespace = %q, %v", v, err)
	}
	// Through the bridge, both ways, with the guard installed.
	h.ping(t, h.Peer, h.UplinkAddr.Addr().String())
	h.ping(t, h.NS, h.Gateway.String())

	// Idempotent: nothing to do and nothing done.
	c0 := h.counts()
	res, err = netup.Up(ctx, h.deps, cfg, netup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.InSync || len(res.Changes) != 0 || h.counts() != c0 {
		t.Fatalf("second up: in_sync %v, changes %v, counts %v -> %v", res.InSync, kinds(res.Changes), c0, h.counts())
	}

	// Drift by hand: a port, a flow and an offload.
	if _, err := h.Vsctl("del-port", "ovsbr0", "gbint0"); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Exec(h.NS, "ovs-ofctl", "del-flows", "unix:"+h.Dir+"/ovsbr0.mgmt", "--strict", "priority=1"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := h.Exec(h.NS, "ethtool", "-K", h.Uplink, "gro", "on"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	res, err = netup.Up(ctx, h.deps, cfg, netup.Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(kinds(res.Changes), "\n")
	for _, want := range []string{"+ port gbint0 (ovsbr0)", "~ flows ovsbr0", "~ offload uplink0 gro (ovsbr0): on -> off"} {
		if !strings.Contains(got, want) {
			t.Errorf("plan after drift lacks %q:\n%s", want, got)
		}
	}
	if len(res.Changes) != 3 {
		t.Errorf("plan after drift: %d changes, want 3:\n%s", len(res.Changes), got)
	}
	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatal(err)
	}
	if res, err = netup.Up(ctx, h.deps, cfg, netup.Options{DryRun: true}); err != nil || !res.InSync {
		t.Fatalf("after repair: %v %v", kinds(res.Changes), err)
	}

	// Down gives everything back.
	if _, err := netup.Down(ctx, h.deps, netup.Options{}); err != nil {
		t.Fatal(err)
	}
	sameState(t, "after down", h.full(t), fullBefore)
	final := h.snapshot(t)
	if !slices.Equal(final.uplinkAddrs, before.uplinkAddrs) || !slices.EqualFunc(final.routes, before.routes, netdev.Route.Equal) ||
		!equalOffloads(final.offloads, before.offloads) || len(final.bridges) != 0 {
		t.Errorf("after down:\n%+v\nwant\n%+v", final, before)
	}
	h.ping(t, h.Peer, h.UplinkAddr.Addr().String())
	c1 := h.counts()
	if res, err := netup.Down(ctx, h.deps, netup.Options{}); err != nil || !res.InSync || h.counts() != c1 {
		t.Errorf("second down: %v %v, counts %v -> %v", kinds(res.Changes), err, c1, h.counts())
	}
}

func equalOffloads(a, b map[string]ethtool.State) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestBadInputChangesNothing: configurations only the host can refuse
// fail with ErrInvalidConfig before any change.
func TestBadInputChangesNothing(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	cases := map[string]func(*netup.Config){
		"unknown NIC":       func(c *netup.Config) { c.Bridges[0].Uplink = "eth9" },
		"unknown MAC":       func(c *netup.Config) { c.Bridges[0].Uplink = "02:00:00:00:99:99" },
		"flow ovs rejects":  func(c *netup.Config) { c.Bridges[1].Flows = []string{"priority=5,nosuchfield=1,actions=drop"} },
		"long bridge name":  func(c *netup.Config) { c.Bridges[1].Name = "averylongbridgename" },
		"uplink claimed x2": func(c *netup.Config) { c.Bridges[1].Uplink = c.Bridges[0].Uplink },
		"overlapping CIDRs": func(c *netup.Config) { c.Bridges[1].Addresses = []netip.Prefix{netip.MustParsePrefix("10.77.0.9/16")} },
		"flow with newline": func(c *netup.Config) { c.Bridges[1].Flows = []string{"actions=drop\npriority=9,actions=NORMAL"} },
	}
	before := h.snapshot(t)
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := h.config()
			mutate(&cfg)
			_, err := netup.Up(ctx, h.deps, cfg, netup.Options{})
			if !errors.Is(err, netup.ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			t.Log(err)
		})
	}
	if h.counts() != [3]int64{} {
		t.Errorf("bad input changed something: counts %v", h.counts())
	}
	after := h.snapshot(t)
	if !slices.Equal(after.uplinkAddrs, before.uplinkAddrs) || !slices.EqualFunc(after.routes, before.routes, netdev.Route.Equal) || len(after.bridges) != 0 {
		t.Errorf("host changed: %+v -> %+v", before, after)
	}
}
