package netup

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"golang.org/x/sys/unix"
)

// Change kinds.
const (
	KindBridge  = "bridge"
	KindPort    = "port"
	KindFlows   = "flows"
	KindOffload = "offload"
	KindLink    = "link"
	KindAddress = "address"
	KindRoute   = "route"
	KindSysctl  = "sysctl"
)

// Change is one difference between the host and the desired state, and
// what applying it does. Its exported fields are the JSON contract of
// `net plan`.
type Change struct {
	Kind   string   `json:"kind"`
	Action string   `json:"action"` // add, remove, set, replace
	Bridge string   `json:"bridge,omitempty"`
	Target string   `json:"target"`
	From   string   `json:"from,omitempty"`
	To     string   `json:"to,omitempty"`
	Detail []string `json:"detail,omitempty"`

	// step orders application so the host always keeps a route.
	step    int
	ops     []ovs.Op
	flows   func(uplinkPort int) []string
	uplink  string
	dev     string
	addr    netip.Prefix
	route   netdev.Route
	offload map[string]bool
	key     string
	// record is written to OVS before a sysctl changes, so Down can put
	// back the value the host had.
	record []ovs.Op
}

// String renders c on one line, e.g. "+ address 10.0.0.2/24 on ovsbr0".
func (c Change) String() string {
	sign := map[string]string{"add": "+", "remove": "-", "set": "~", "replace": "~"}[c.Action]
	s := fmt.Sprintf("%s %s %s", sign, c.Kind, c.Target)
	if c.Bridge != "" && !strings.Contains(c.Target, c.Bridge) {
		s += " (" + c.Bridge + ")"
	}
	if c.From != "" || c.To != "" {
		s += fmt.Sprintf(": %s -> %s", orNone(c.From), orNone(c.To))
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Application steps.
const (
	// Offloads go off before the uplink joins its bridge, so no frame
	// the bridge forwards is ever segmented or checksummed by the NIC.
	stepOffload = iota
	stepOVS
	stepFlows
	stepLink
	stepAddrAdd
	stepRoute
	stepRouteDel
	stepAddrDel
	stepSysctl
	stepOVSRemove
	stepLinkDown
)

func quote(s string) string { return strconv.Quote(s) }

func isLinkLocal(p netip.Prefix) bool { return p.Addr().IsLinkLocalUnicast() }

// learned reports whether the kernel learned r from an IPv6 router
// advertisement (proto ra). Such a route is neither moved to the bridge
// nor recorded for Down: moved, it would lose its lifetime (expires)
// and router preference and live for ever; left alone, it expires on
// the uplink, and the interface that receives the router's next
// advertisement (the bridge, or the uplink again after Down) learns it
// afresh.
func learned(r netdev.Route) bool { return r.Protocol == unix.RTPROT_RA }

// Plan lists what must change to turn st into the desired state. It is
// pure: the same inputs give the same changes in the same order.
func plan(cfg Config, ts []target, st State) []Change {
	var cs []Change
	add := func(c Change) { cs = append(cs, c) }
	for _, t := range ts {
		b, exists := st.Bridges[t.Name]
		managed := !exists || b.ExternalIDs[idOwner] == idOwnerValue
		var up netdev.Link
		if t.uplink != "" {
			up = st.Links[t.uplink]
		}
		// Records of what the uplink had, written before anything moves.
		var record []string
		if t.uplink != "" && managed && b.ExternalIDs[idUplink] == "" {
			var moved []netip.Prefix
			for _, a := range up.Addrs {
				if slices.Contains(t.Addresses, a) {
					moved = append(moved, a)
				}
			}
			var routes []netdev.Route
			for _, r := range st.Routes {
				if r.Uses(t.uplink) && !learned(r) {
					routes = append(routes, r)
				}
			}
			var on []string
			for _, f := range cfg.Offloads {
				if s, ok := st.Offloads[t.uplink][f]; ok && s.On && !s.Fixed {
					on = append(on, f)
				}
			}
			record = []string{
				"external_ids:" + idUplink + "=" + quote(t.uplink),
				"external_ids:" + idUplinkAddrs + "=" + quote(encodePrefixes(moved)),
				"external_ids:" + idUplinkRoutes + "=" + quote(encodeRoutes(routes)),
				"external_ids:" + idUplinkOffload + "=" + quote(strings.Join(on, ",")),
			}
		}
		// A change of datapath_type, fail_mode or the bridge MAC makes
		// ovs-vswitchd rebuild the bridge with an empty flow table (there
		// is no controller to refill it), so the flows observed before
		// are gone after the OVS step and must be replaced after it.
		var reset []string
		if !exists {
			cols := []string{"datapath_type=" + cfg.DatapathType, "fail_mode=" + t.FailMode, "external_ids:" + idOwner + "=" + idOwnerValue}
			if t.hostMAC != "" {
				cols = append(cols, "other-config:hwaddr="+quote(t.hostMAC))
			}
			cols = append(cols, record...)
			add(Change{Kind: KindBridge, Action: "add", Bridge: t.Name, Target: t.Name, step: stepOVS,
				ops: []ovs.Op{ovs.AddBridge(t.Name), ovs.SetBridge(t.Name, cols...)}})
		} else {
			set := func(what, from, to string, op ovs.Op) {
				add(Change{Kind: KindBridge, Action: "set", Bridge: t.Name, Target: t.Name + " " + what, From: from, To: to, step: stepOVS, ops: []ovs.Op{op}})
				if what != "uplink record" {
					reset = append(reset, "the "+what+" change empties the flow table")
				}
			}
			if b.DatapathType != cfg.DatapathType && !(b.DatapathType == "" && cfg.DatapathType == "system") {
				set("datapath_type", b.DatapathType, cfg.DatapathType, ovs.SetBridge(t.Name, "datapath_type="+cfg.DatapathType))
			}
			if b.FailMode != t.FailMode {
				set("fail_mode", b.FailMode, t.FailMode, ovs.SetBridge(t.Name, "fail_mode="+t.FailMode))
			}
			if t.hostMAC != "" && b.OtherConfig["hwaddr"] != t.hostMAC {
				set("hwaddr", b.OtherConfig["hwaddr"], t.hostMAC, ovs.SetBridge(t.Name, "other-config:hwaddr="+quote(t.hostMAC)))
			}
			if len(record) > 0 {
				set("uplink record", "", t.uplink, ovs.SetBridge(t.Name, record...))
			}
		}
		// Ports: the uplink, then internal ports.
		type want struct {
			name, typ string
			tag       int
		}
		wants := []want{}
		if t.uplink != "" {
			wants = append(wants, want{name: t.uplink})
		}
		for _, p := range t.Ports {
			wants = append(wants, want{p.Name, "internal", p.Tag})
		}
		for _, w := range wants {
			p, ok := b.Ports[w.name]
			if !ok {
				ops := []ovs.Op{ovs.AddPort(t.Name, w.name), ovs.SetPort(w.name, "external_ids:"+idOwner+"="+idOwnerValue)}
				if w.typ != "" {
					ops = append(ops, ovs.SetInterface(w.name, "type="+w.typ))
				}
				if w.tag != 0 {
					ops = append(ops, ovs.SetPort(w.name, "tag="+strconv.Itoa(w.tag)))
				}
				to := ""
				if w.tag != 0 {
					to = "tag " + strconv.Itoa(w.tag)
				}
				add(Change{Kind: KindPort, Action: "add", Bridge: t.Name, Target: w.name, To: to, step: stepOVS, ops: ops})
				continue
			}
			if p.Type != w.typ {
				add(Change{Kind: KindPort, Action: "set", Bridge: t.Name, Target: w.name + " type", From: p.Type, To: w.typ, step: stepOVS,
					ops: []ovs.Op{ovs.SetInterface(w.name, "type="+quote(w.typ))}})
			}
			if p.Tag != w.tag {
				op := ovs.SetPort(w.name, "tag="+strconv.Itoa(w.tag))
				if w.tag == 0 {
					op = ovs.ClearPort(w.name, "tag")
				}
				add(Change{Kind: KindPort, Action: "set", Bridge: t.Name, Target: w.name + " tag", From: strconv.Itoa(p.Tag), To: strconv.Itoa(w.tag), step: stepOVS, ops: []ovs.Op{op}})
			}
		}
		for _, name := range sortedKeys(b.Ports) {
			p := b.Ports[name]
			if p.ExternalIDs[idOwner] == idOwnerValue && !slices.ContainsFunc(wants, func(w want) bool { return w.name == name }) {
				add(Change{Kind: KindPort, Action: "remove", Bridge: t.Name, Target: name, step: stepOVS, ops: []ovs.Op{ovs.DelPort(t.Name, name)}})
			}
		}
		if diff, drift := st.FlowDiff[t.Name]; !exists || drift || len(reset) > 0 {
			if !drift {
				diff = reset
			}
			n := len(t.flows(0))
			add(Change{Kind: KindFlows, Action: "replace", Bridge: t.Name, Target: t.Name, To: fmt.Sprintf("%d flows", n), Detail: diff, step: stepFlows, flows: t.flows, uplink: t.uplink})
		}
		if t.uplink != "" {
			for _, f := range cfg.Offloads {
				if s, ok := st.Offloads[t.uplink][f]; ok && s.On && !s.Fixed {
					add(Change{Kind: KindOffload, Action: "set", Bridge: t.Name, Target: t.uplink + " " + f, From: "on", To: "off", step: stepOffload, dev: t.uplink, offload: map[string]bool{f: false}})
				}
			}
		}
		bl, linkExists := st.Links[t.Name]
		if !linkExists || !bl.Up {
			add(Change{Kind: KindLink, Action: "set", Bridge: t.Name, Target: t.Name, From: "down", To: "up", step: stepLink, dev: t.Name})
		}
		for _, a := range t.Addresses {
			if !slices.Contains(bl.Addrs, a) {
				add(Change{Kind: KindAddress, Action: "add", Bridge: t.Name, Target: a.String() + " on " + t.Name, step: stepAddrAdd, dev: t.Name, addr: a})
			}
		}
		if managed {
			for _, a := range bl.Addrs {
				if !isLinkLocal(a) && !slices.Contains(t.Addresses, a) {
					add(Change{Kind: KindAddress, Action: "remove", Bridge: t.Name, Target: a.String() + " on " + t.Name, step: stepAddrDel, dev: t.Name, addr: a})
				}
			}
		}
		desired := desiredRoutes(t)
		for _, r := range desired {
			if slices.ContainsFunc(st.Routes, func(o netdev.Route) bool { return sameDesired(o, r) }) {
				continue
			}
			c := Change{Kind: KindRoute, Action: "add", Bridge: t.Name, Target: r.String(), step: stepRoute, route: r}
			if i := slices.IndexFunc(st.Routes, func(o netdev.Route) bool { return sameRouteKey(o, r) }); i >= 0 {
				// The route the configured one takes over (the uplink's
				// default route, say) keeps what the configuration does
				// not say: its source address, metrics and protocol.
				o := st.Routes[i]
				if o.Gw == r.Gw && len(o.Nexthops) == 0 {
					r.Src, r.Protocol, r.Metrics = o.Src, o.Protocol, o.Metrics
				}
				c.route = r
				c.Action, c.Target, c.From, c.To = "replace", routeDst(r), o.String(), r.String()
			}
			add(c)
		}
		// Every other route through the uplink moves to the bridge too:
		// once the uplink is a bridge port, nothing routed through it
		// directly works. Each is one replace, after the bridge has the
		// addresses and before the uplink loses them.
		if t.uplink != "" && managed {
			for _, r := range st.Routes {
				if !r.Uses(t.uplink) || learned(r) || slices.ContainsFunc(desired, func(o netdev.Route) bool { return sameRouteKey(o, r) }) {
					continue
				}
				moved := r.Moved(t.uplink, t.Name)
				add(Change{Kind: KindRoute, Action: "replace", Bridge: t.Name, Target: routeDst(r), From: r.String(), To: moved.String(), step: stepRoute, route: moved})
			}
		}
		if t.uplink != "" {
			for _, a := range up.Addrs {
				if slices.Contains(t.Addresses, a) {
					add(Change{Kind: KindAddress, Action: "remove", Bridge: t.Name, Target: a.String() + " on " + t.uplink, step: stepAddrDel, dev: t.uplink, addr: a})
				}
			}
		}
	}
	for _, k := range forwardingKeys(cfg) {
		want := cfg.IPv4Forwarding
		if k == SysctlIPv6Forward {
			want = cfg.IPv6Forwarding
		}
		v := "0"
		if *want {
			v = "1"
		}
		if st.Sysctl[k] != v {
			c := Change{Kind: KindSysctl, Action: "set", Target: k, From: st.Sysctl[k], To: v, step: stepSysctl, key: k}
			if _, ok := st.RootIDs[idSysctl+k]; !ok && st.Sysctl[k] != "" {
				c.record = []ovs.Op{ovs.SetRoot("external_ids:" + quote(idSysctl+k) + "=" + quote(st.Sysctl[k]))}
			}
			add(c)
		}
	}
	slices.SortStableFunc(cs, func(a, b Change) int { return cmp.Compare(a.step, b.step) })
	// The records of previous kernel parameters ride along in the OVS
	// step's transaction when there is one (it runs before the sysctl
	// step): one ovs-vsctl run fewer.
	if i := slices.IndexFunc(cs, func(c Change) bool { return c.step == stepOVS && c.ops != nil }); i >= 0 {
		for j := range cs {
			if cs[j].record != nil {
				cs[i].ops = append(slices.Clip(cs[i].ops), cs[j].record...)
				cs[j].record = nil
			}
		}
	}
	return cs
}

// sameRouteKey reports whether a and b are the same route to the kernel:
// a replace of one overwrites the other.
func sameRouteKey(a, b netdev.Route) bool {
	return a.Dst == b.Dst && kernelMetric(a) == kernelMetric(b) && a.Table == b.Table
}

// sameDesired reports whether the host's route have is the configured
// route want: equal in what the configuration decides (destination,
// gateway, device, on-link, metric, table, type). The source address,
// metrics and protocol are the host's to keep.
func sameDesired(have, want netdev.Route) bool {
	return have.Dst == want.Dst && have.Gw == want.Gw && have.Dev == want.Dev && have.OnLink == want.OnLink &&
		kernelMetric(have) == kernelMetric(want) && have.Table == want.Table && have.Type == want.Type && len(have.Nexthops) == 0
}

// containsRoute reports whether rs holds r, equal in every field.
func containsRoute(rs []netdev.Route, r netdev.Route) bool {
	return slices.ContainsFunc(rs, r.Equal)
}

// ipv6DefaultMetric is the metric the kernel gives an IPv6 route added
// without one (IP6_RT_PRIO_USER); IPv4 routes keep 0.
const ipv6DefaultMetric = 1024

// kernelMetric is the metric r has once the kernel holds it.
func kernelMetric(r netdev.Route) int {
	if r.Metric == 0 && r.Dst.Addr().Is6() {
		return ipv6DefaultMetric
	}
	return r.Metric
}

func routeDst(r netdev.Route) string {
	if r.Dst.Bits() == 0 {
		return "default"
	}
	return r.Dst.String()
}

// desiredRoutes are a bridge's static routes and its default route. A
// gateway outside every address's prefix (the provider's /32 style) is
// reached on-link.
func desiredRoutes(t target) []netdev.Route {
	var rs []netdev.Route
	for _, r := range t.Routes {
		rt := netdev.Route{Dst: r.To.Masked(), Gw: r.Via, Dev: t.Name}
		rt.Metric = kernelMetric(rt)
		if !r.Via.IsValid() {
			rt.Scope = unix.RT_SCOPE_LINK
		}
		if r.Via.IsValid() && !onLink(t.Addresses, r.Via) && !slices.ContainsFunc(t.Routes, func(o Route) bool { return !o.Via.IsValid() && o.To.Contains(r.Via) }) {
			rt.OnLink = true
		}
		rs = append(rs, rt)
	}
	if t.Gateway.IsValid() {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if t.Gateway.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		rt := netdev.Route{Dst: dst, Gw: t.Gateway, Dev: t.Name}
		rt.Metric = kernelMetric(rt)
		if !onLink(t.Addresses, t.Gateway) && !slices.ContainsFunc(t.Routes, func(o Route) bool { return !o.Via.IsValid() && o.To.Contains(t.Gateway) }) {
			rt.OnLink = true
		}
		rs = append(rs, rt)
	}
	return rs
}

func onLink(addrs []netip.Prefix, gw netip.Addr) bool {
	return slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Masked().Contains(gw) })
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// planDown lists what Down does: for every bridge netup created, give its
// uplink back the recorded addresses, routes and offloads, then delete
// the bridge; from other bridges remove only the ports netup added. A
// record of the uplink's routes that does not decode stops it: deleting
// the bridge then would leave the uplink without its routes.
func planDown(st State) ([]Change, error) {
	var cs []Change
	for _, name := range sortedKeys(st.Bridges) {
		b := st.Bridges[name]
		if b.ExternalIDs[idOwner] != idOwnerValue {
			for _, pn := range sortedKeys(b.Ports) {
				if b.Ports[pn].ExternalIDs[idOwner] == idOwnerValue {
					cs = append(cs, Change{Kind: KindPort, Action: "remove", Bridge: name, Target: pn, step: stepOVSRemove, ops: []ovs.Op{ovs.DelPort(name, pn)}})
				}
			}
			continue
		}
		if up := b.ExternalIDs[idUplink]; up != "" {
			if l, ok := st.Links[up]; ok {
				for _, a := range decodePrefixes(b.ExternalIDs[idUplinkAddrs]) {
					if !slices.Contains(l.Addrs, a) {
						cs = append(cs, Change{Kind: KindAddress, Action: "add", Bridge: name, Target: a.String() + " on " + up, step: stepAddrAdd, dev: up, addr: a})
					}
				}
				rs, err := decodeRoutes(b.ExternalIDs[idUplinkRoutes], up)
				if err != nil {
					return nil, fmt.Errorf("bridge %s: external_ids:%s does not decode (%w), so %s's routes cannot be given back; fix or remove the record, or move the routes by hand, before net down",
						name, idUplinkRoutes, err, up)
				}
				for _, r := range rs {
					if !containsRoute(st.Routes, r) {
						cs = append(cs, Change{Kind: KindRoute, Action: "replace", Bridge: name, Target: routeDst(r), To: r.String(), step: stepRoute, route: r})
					}
				}
				for _, f := range strings.Split(b.ExternalIDs[idUplinkOffload], ",") {
					if s, ok := st.Offloads[up][f]; f != "" && (!ok || !s.On) {
						cs = append(cs, Change{Kind: KindOffload, Action: "set", Bridge: name, Target: up + " " + f, From: "off", To: "on", step: stepOffload, dev: up, offload: map[string]bool{f: true}})
					}
				}
			}
		}
		cs = append(cs, Change{Kind: KindBridge, Action: "remove", Bridge: name, Target: name, step: stepOVSRemove, ops: []ovs.Op{ovs.DelBridge(name)}})
	}
	// Kernel parameters Up changed go back to what they were.
	for _, id := range sortedKeys(st.RootIDs) {
		k, ok := strings.CutPrefix(id, idSysctl)
		if !ok {
			continue
		}
		was := st.RootIDs[id]
		if cur, ok := st.Sysctl[k]; ok && cur != was {
			cs = append(cs, Change{Kind: KindSysctl, Action: "set", Target: k, From: cur, To: was, step: stepSysctl, key: k})
		}
		cs = append(cs, Change{Kind: KindSysctl, Action: "remove", Target: k + " record", From: was, step: stepOVSRemove, ops: []ovs.Op{ovs.RemoveRootKey("external_ids", id)}})
	}
	slices.SortStableFunc(cs, func(a, b Change) int { return cmp.Compare(a.step, b.step) })
	return cs, nil
}
