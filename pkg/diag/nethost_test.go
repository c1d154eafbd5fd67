package diag

import (
	"context"
	"net/netip"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

// NetHost is a scratch OVS host with the real adapters opened inside its
// network namespace, and the configuration the net checks judge it by:
// an external bridge with the uplink and guard flows, and an internal one.
// It is exported from the test build so that the benchmark here and the
// black-box net tests share it.
type NetHost struct {
	*testenv.OVSHost
	Deps netup.Deps
	Cfg  netup.Config
}

// NewNetHost starts a NetHost; nothing is converged yet.
func NewNetHost(t testing.TB) *NetHost {
	t.Helper()
	h := &NetHost{OVSHost: testenv.OVS(t)}
	a := h.Adapters(t)
	h.Deps = netup.Deps{OVS: a.OVS, Links: a.Links, Offloads: a.Offloads, Sysctl: a.Sysctl}
	on := true
	h.Cfg = netup.Config{
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
	return h
}

// Up converges the host to Cfg with net up.
func (h *NetHost) Up(t testing.TB) {
	t.Helper()
	if _, err := netup.Up(context.Background(), h.Deps, h.Cfg, netup.Options{}); err != nil {
		t.Fatalf("net up: %v\n%s", err, h.Log())
	}
}
