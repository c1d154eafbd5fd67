package netup

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
)

// Health is the configured network as found on the host, one entry per
// configured bridge, for diagnostics. Inspect fills it with the same
// observation Up plans from, so a problem it shows is one `net plan`
// shows too (except where a field says otherwise).
type Health struct {
	Bridges []BridgeHealth `json:"bridges"`
}

// BridgeHealth is one configured bridge as found on the host.
type BridgeHealth struct {
	Name string `json:"name"`
	// Exists: the bridge has an OVS record.
	Exists bool `json:"exists"`
	// LinkExists and Up describe the bridge's kernel device.
	LinkExists bool   `json:"link_exists"`
	Up         bool   `json:"up"`
	MAC        string `json:"mac,omitempty"`
	// ConfiguredMAC is other-config:hwaddr of the bridge record, the MAC
	// Up asks OVS to give the bridge.
	ConfiguredMAC string `json:"configured_mac,omitempty"`
	// Uplink is the uplink as configured (name or MAC), "" for an
	// internal bridge; UplinkDev the interface it resolved to, "" when
	// no interface matches.
	Uplink    string `json:"uplink,omitempty"`
	UplinkDev string `json:"uplink_dev,omitempty"`
	UplinkMAC string `json:"uplink_mac,omitempty"`
	// UplinkAttached: the uplink is a port of this bridge.
	UplinkAttached bool `json:"uplink_attached"`
	// Offloads are the configured offloads of the uplink.
	Offloads map[string]ethtool.State `json:"offloads,omitempty"`
	// Guard: the bridge's flow table is the anti-leak guard.
	Guard bool `json:"guard"`
	// FlowsChecked is false when the flow table could not be compared
	// (bridge or uplink missing); FlowDiff then says why.
	FlowsChecked  bool     `json:"flows_checked"`
	FlowsExpected int      `json:"flows_expected"`
	FlowsInSync   bool     `json:"flows_in_sync"`
	FlowDiff      []string `json:"flow_diff,omitempty"`
}

// Inspect observes every configured bridge without changing anything. A
// bridge whose uplink matches no interface is still reported (UplinkDev
// empty) rather than failing the whole observation, so the other bridges
// can be judged; errors are for a host that cannot be read at all (OVS
// down, netlink refused) and for a configuration that fails Validate.
func Inspect(ctx context.Context, d Deps, cfg Config) (Health, error) {
	if err := cfg.Validate(); err != nil {
		return Health{}, err
	}
	ls, err := d.Links.Links()
	if err != nil {
		return Health{}, fmt.Errorf("list links: %w", err)
	}
	links := map[string]netdev.Link{}
	for _, l := range ls {
		links[l.Name] = l
	}
	ours := map[string]bool{}
	for _, b := range cfg.Bridges {
		ours[b.Name] = true
		for _, p := range b.Ports {
			ours[p.Name] = true
		}
	}
	// Observe refuses a configuration whose uplink is missing (as Up
	// must); observe such a bridge as an internal one and mark it, so
	// the other bridges are still judged.
	probe := cfg
	probe.Bridges = slices.Clone(cfg.Bridges)
	missing := map[string]bool{}
	for i := range probe.Bridges {
		b := &probe.Bridges[i]
		if b.Uplink == "" {
			continue
		}
		if l, ok := findLink(links, b.Uplink, ours); ok && l.Name != b.Name {
			continue
		}
		missing[b.Name] = true
		b.Uplink, b.Guard = "", false
	}
	st, ts, err := Observe(ctx, d, probe)
	if err != nil {
		return Health{}, err
	}
	var h Health
	for i, t := range ts {
		conf := cfg.Bridges[i]
		b, exists := st.Bridges[t.Name]
		bh := BridgeHealth{Name: t.Name, Exists: exists, Uplink: conf.Uplink, UplinkDev: t.uplink, UplinkMAC: t.hostMAC,
			Guard: conf.Guard && !missing[t.Name], ConfiguredMAC: b.OtherConfig["hwaddr"]}
		if l, ok := st.Links[t.Name]; ok {
			bh.LinkExists, bh.Up, bh.MAC = true, l.Up, l.MAC
		}
		if t.uplink != "" {
			_, bh.UplinkAttached = b.Ports[t.uplink]
			bh.Offloads = maps.Clone(st.Offloads[t.uplink])
		}
		switch {
		case !exists:
			bh.FlowDiff = []string{"bridge missing"}
		case missing[t.Name]:
			bh.FlowDiff = []string{"uplink " + conf.Uplink + " missing"}
		case t.uplink != "" && t.uplinkPort(b) <= 0:
			bh.FlowDiff = []string{"uplink port " + t.uplink + " missing"}
		default:
			bh.FlowsChecked = true
			bh.FlowsExpected = len(t.flows(t.uplinkPort(b)))
			bh.FlowDiff = st.FlowDiff[t.Name]
			bh.FlowsInSync = len(bh.FlowDiff) == 0
		}
		h.Bridges = append(h.Bridges, bh)
	}
	return h, nil
}
