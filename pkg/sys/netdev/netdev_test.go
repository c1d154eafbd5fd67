package netdev_test

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
)

func TestAddressesAndRoutes(t *testing.T) {
	h := testenv.OVS(t)
	nl, err := netdev.OpenAt(h.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	hasAddr := func(p netip.Prefix) bool {
		ls, err := nl.Links()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if l.Name == h.Uplink {
				return slices.Contains(l.Addrs, p)
			}
		}
		t.Fatalf("no %s in the namespace", h.Uplink)
		return false
	}
	if !hasAddr(h.UplinkAddr) {
		t.Fatal("uplink address not seen")
	}
	extra := netip.MustParsePrefix("192.0.2.5/32")
	if err := nl.AddAddr(h.Uplink, extra); err != nil {
		t.Fatal(err)
	}
	if !hasAddr(extra) {
		t.Error("added address not seen")
	}
	// The provider's /32 style: a gateway outside every prefix, on-link.
	r := netdev.Route{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gw: netip.MustParseAddr("172.31.1.1"), Dev: h.Uplink, OnLink: true, Protocol: unix.RTPROT_BOOT}
	// Every field a moved route must keep, in a table of its own.
	full := netdev.Route{Dst: netip.MustParsePrefix("203.0.113.0/24"), Gw: h.Gateway, Dev: h.Uplink, Metric: 7,
		Src: h.UplinkAddr.Addr(), Protocol: unix.RTPROT_STATIC, Table: 100,
		Metrics: netdev.Metrics{MTU: 1400, MTULock: true, AdvMSS: 1360, InitCwnd: 10}}
	link := netdev.Route{Dst: netip.MustParsePrefix("10.66.0.0/24"), Dev: h.Uplink, Protocol: unix.RTPROT_STATIC, Scope: unix.RT_SCOPE_LINK}
	multi := netdev.Route{Dst: netip.MustParsePrefix("10.55.0.0/16"), Protocol: unix.RTPROT_STATIC, Nexthops: []netdev.Nexthop{
		{Gw: h.Gateway, Dev: h.Uplink, Weight: 1}, {Gw: netip.MustParseAddr("10.77.0.3"), Dev: h.Uplink, Weight: 3}}}
	for _, x := range []netdev.Route{r, full, link, multi} {
		if err := nl.ReplaceRoute(x); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := nl.Routes()
	if err != nil {
		t.Fatal(err)
	}
	def := netdev.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: h.Gateway, Dev: h.Uplink, Protocol: unix.RTPROT_BOOT}
	for _, want := range []netdev.Route{r, full, link, multi, def} {
		if !slices.ContainsFunc(rs, want.Equal) {
			t.Errorf("routes lack %v:\n%v", want, rs)
		}
	}
	if !multi.Uses(h.Uplink) || multi.Uses("ovsbr0") || !slices.Equal(multi.Moved(h.Uplink, "ovsbr0").Devs(), []string{"ovsbr0"}) || multi.Nexthops[0].Dev != h.Uplink {
		t.Errorf("Uses/Moved/Devs of %v", multi)
	}
	for _, x := range []netdev.Route{r, full, link, multi} {
		if err := nl.DelRoute(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := nl.DelAddr(h.Uplink, extra); err != nil {
		t.Fatal(err)
	}
	if rs, err = nl.Routes(); err != nil || !slices.EqualFunc(rs, []netdev.Route{def}, netdev.Route.Equal) {
		t.Errorf("after removal: %v %v", rs, err)
	}
	if hasAddr(extra) || nl.Changes() != 10 {
		t.Errorf("after removal: changes %d", nl.Changes())
	}
	if err := nl.SetUp("nosuch0"); err == nil {
		t.Error("no error for a missing link")
	}
}
