package netdev_test

import (
	"net/netip"
	"slices"
	"testing"

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
	r := netdev.Route{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gw: netip.MustParseAddr("172.31.1.1"), Dev: h.Uplink, OnLink: true}
	if err := nl.ReplaceRoute(r); err != nil {
		t.Fatal(err)
	}
	rs, err := nl.Routes()
	if err != nil {
		t.Fatal(err)
	}
	def := netdev.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: h.Gateway, Dev: h.Uplink}
	if !slices.Contains(rs, r) || !slices.Contains(rs, def) {
		t.Errorf("routes %v lack %v or %v", rs, r, def)
	}
	if err := nl.DelRoute(r); err != nil {
		t.Fatal(err)
	}
	if err := nl.DelAddr(h.Uplink, extra); err != nil {
		t.Fatal(err)
	}
	if hasAddr(extra) || nl.Changes() != 4 {
		t.Errorf("after removal: changes %d", nl.Changes())
	}
	if err := nl.SetUp("nosuch0"); err == nil {
		t.Error("no error for a missing link")
	}
}
