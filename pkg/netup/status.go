package netup

import (
	"context"
	"slices"

	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
)

// Status is the JSON contract of `net status`.
type Status struct {
	InSync     bool              `json:"in_sync"`
	Pending    []Change          `json:"pending"`
	Bridges    []BridgeStatus    `json:"bridges"`
	Forwarding map[string]string `json:"forwarding"`
	// PendingTry is a `net try` not yet confirmed or rolled back.
	PendingTry *TryInfo `json:"pending_try,omitempty"`
}

// BridgeStatus is one configured bridge as found on the host.
type BridgeStatus struct {
	Name           string                   `json:"name"`
	Exists         bool                     `json:"exists"`
	Managed        bool                     `json:"managed"`
	FailMode       string                   `json:"fail_mode"`
	Uplink         string                   `json:"uplink,omitempty"`
	Ports          []ovs.Port               `json:"ports"`
	Link           *netdev.Link             `json:"link,omitempty"`
	Routes         []netdev.Route           `json:"routes"`
	Offloads       map[string]ethtool.State `json:"offloads,omitempty"`
	FlowsInSync    bool                     `json:"flows_in_sync"`
	FlowsExpected  []string                 `json:"flows_expected"`
	FlowsInstalled []ovs.Flow               `json:"flows_installed"`
}

// GetStatus reports the configured bridges as they are, and what Up would
// change.
func GetStatus(ctx context.Context, d Deps, cfg Config) (Status, error) {
	if err := cfg.Validate(); err != nil {
		return Status{}, err
	}
	st, ts, err := Observe(ctx, d, cfg)
	if err != nil {
		return Status{}, err
	}
	out := Status{Pending: plan(cfg, ts, st), Bridges: []BridgeStatus{}, Forwarding: st.Sysctl}
	out.InSync = len(out.Pending) == 0
	for _, t := range ts {
		b, ok := st.Bridges[t.Name]
		bs := BridgeStatus{Name: t.Name, Exists: ok, Managed: b.ExternalIDs[idOwner] == idOwnerValue, FailMode: b.FailMode,
			Uplink: t.uplink, Ports: []ovs.Port{}, Routes: []netdev.Route{}, FlowsExpected: t.flows(t.uplinkPort(b)), FlowsInstalled: []ovs.Flow{}}
		for _, name := range sortedKeys(b.Ports) {
			bs.Ports = append(bs.Ports, b.Ports[name])
		}
		if l, ok := st.Links[t.Name]; ok {
			bs.Link = &l
		}
		for _, r := range st.Routes {
			if r.Uses(t.Name) {
				bs.Routes = append(bs.Routes, r)
			}
		}
		if t.uplink != "" {
			bs.Offloads = st.Offloads[t.uplink]
		}
		if ok {
			_, drift := st.FlowDiff[t.Name]
			bs.FlowsInSync = !drift
			if bs.FlowsInstalled, err = d.OVS.DumpFlows(ctx, t.Name); err != nil {
				return out, err
			}
			bs.FlowsInstalled = slices.Clip(append([]ovs.Flow{}, bs.FlowsInstalled...))
		}
		out.Bridges = append(out.Bridges, bs)
	}
	return out, nil
}
