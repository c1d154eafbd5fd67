package netup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
)

// Snapshot is everything netup can change on a host, as observed at one
// moment: every OVS bridge with its ports and flow table, the ghostbridge
// records on the root Open_vSwitch record, every link's addresses and
// state, the main routing table, the named offloads and the forwarding
// parameters. Restore puts a host back to a Snapshot.
type Snapshot struct {
	Bridges  map[string]ovs.Bridge               `json:"bridges"`
	Flows    map[string][]string                 `json:"flows"`
	RootIDs  map[string]string                   `json:"root_external_ids"`
	Links    map[string]netdev.Link              `json:"links"`
	Routes   []netdev.Route                      `json:"routes"`
	Offloads map[string]map[string]ethtool.State `json:"offloads"`
	Sysctl   map[string]string                   `json:"sysctl"`
}

// TakeSnapshot observes the host; offloads names, per device, the
// offload features to record.
func TakeSnapshot(ctx context.Context, d Deps, offloads map[string][]string) (Snapshot, error) {
	s := Snapshot{Flows: map[string][]string{}, Links: map[string]netdev.Link{}, Offloads: map[string]map[string]ethtool.State{}, Sysctl: map[string]string{}}
	var err error
	if s.Bridges, s.RootIDs, err = d.OVS.ReadAll(ctx); err != nil {
		return s, fmt.Errorf("read Open vSwitch: %w", err)
	}
	for name := range s.Bridges {
		if s.Flows[name], err = d.OVS.SaveFlows(ctx, name); err != nil {
			return s, fmt.Errorf("bridge %s flows: %w", name, err)
		}
	}
	ls, err := d.Links.Links()
	if err != nil {
		return s, err
	}
	for _, l := range ls {
		s.Links[l.Name] = l
	}
	if s.Routes, err = d.Links.Routes(); err != nil {
		return s, err
	}
	for dev, feats := range offloads {
		if _, ok := s.Links[dev]; !ok || len(feats) == 0 {
			continue
		}
		if s.Offloads[dev], err = d.Offloads.Get(dev, feats); err != nil {
			return s, fmt.Errorf("%s offloads: %w", dev, err)
		}
	}
	for _, k := range []string{SysctlIPv4Forward, SysctlIPv6Forward} {
		v, err := d.Sysctl.Get(k)
		if errors.Is(err, fs.ErrNotExist) {
			continue // IPv6 disabled
		}
		if err != nil {
			return s, err
		}
		s.Sysctl[k] = v
	}
	return s, nil
}

// offloadFeatures lists the devices and features s recorded.
func (s Snapshot) offloadFeatures() map[string][]string {
	out := map[string][]string{}
	for dev, fs := range s.Offloads {
		out[dev] = slices.Sorted(maps.Keys(fs))
	}
	return out
}

// Restore puts the host back to s: it observes the host, plans the
// difference and applies it in an order that gives the uplink its
// addresses and routes before its bridge goes away. It carries on past a
// failed step, so as much as possible is restored, and returns every
// failure joined.
func Restore(ctx context.Context, d Deps, s Snapshot) (Result, error) {
	return restore(ctx, d, s, nil)
}

// RestoreChanged undoes what happened between before and after, and
// nothing else: of the differences between the host and before, it puts
// back only the objects that before and after disagree on and that lie
// within scope (the bridges, devices and parameters a plan touched).
// Ports, addresses, routes and parameters others changed meanwhile (a
// VM's tap port, an unrelated interface's address) stay as they are.
func RestoreChanged(ctx context.Context, d Deps, before, after Snapshot, scope Scope) (Result, error) {
	return restore(ctx, d, before, func(c Change) bool { return changedByUs(c, before, after, scope) })
}

func restore(ctx context.Context, d Deps, s Snapshot, keep func(Change) bool) (Result, error) {
	cur, err := TakeSnapshot(ctx, d, s.offloadFeatures())
	if err != nil {
		return Result{Changes: []Change{}}, err
	}
	cs := planRestore(s, cur)
	if keep != nil {
		cs = slices.DeleteFunc(cs, func(c Change) bool { return !keep(c) })
	}
	res := Result{InSync: len(cs) == 0, Changes: cs}
	if len(cs) == 0 {
		res.Changes = []Change{}
		return res, nil
	}
	if err := apply(ctx, d, cs, nil, true); err != nil {
		return res, fmt.Errorf("restore the previous network state: %w", err)
	}
	res.Applied = true
	return res, nil
}

func quoteCols(col string, m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, col+":"+quote(k)+"="+quote(m[k]))
	}
	return out
}

// planRestore lists the changes that turn cur into want.
func planRestore(want, cur Snapshot) []Change {
	var cs []Change
	add := func(c Change) { cs = append(cs, c) }

	// Open vSwitch records.
	if !maps.Equal(onlyOurs(want.RootIDs), onlyOurs(cur.RootIDs)) {
		var ops []ovs.Op
		for _, k := range sortedKeys(onlyOurs(cur.RootIDs)) {
			if _, ok := want.RootIDs[k]; !ok {
				ops = append(ops, ovs.RemoveRootKey("external_ids", k))
			}
		}
		if cols := quoteCols("external_ids", onlyOurs(want.RootIDs)); len(cols) > 0 {
			ops = append(ops, ovs.SetRoot(cols...))
		}
		add(Change{Kind: KindSysctl, Action: "set", Target: "records of previous values", step: stepOVS, ops: ops})
	}
	for _, name := range sortedKeys(want.Bridges) {
		wb := want.Bridges[name]
		cb, exists := cur.Bridges[name]
		if !exists {
			cols := []string{"datapath_type=" + quote(wb.DatapathType)}
			if wb.FailMode != "" {
				cols = append(cols, "fail_mode="+wb.FailMode)
			}
			cols = append(cols, quoteCols("other_config", wb.OtherConfig)...)
			cols = append(cols, quoteCols("external_ids", wb.ExternalIDs)...)
			add(Change{Kind: KindBridge, Action: "add", Bridge: name, Target: name, step: stepOVS,
				ops: []ovs.Op{ovs.AddBridge(name), ovs.SetBridge(name, cols...)}})
		} else {
			set := func(what, from, to string, ops ...ovs.Op) {
				add(Change{Kind: KindBridge, Action: "set", Bridge: name, Target: name + " " + what, From: from, To: to, step: stepOVS, ops: ops})
			}
			if cb.DatapathType != wb.DatapathType {
				set("datapath_type", cb.DatapathType, wb.DatapathType, ovs.SetBridge(name, "datapath_type="+quote(wb.DatapathType)))
			}
			if cb.FailMode != wb.FailMode {
				op := ovs.SetBridge(name, "fail_mode="+wb.FailMode)
				if wb.FailMode == "" {
					op = ovs.ClearBridge(name, "fail_mode")
				}
				set("fail_mode", cb.FailMode, wb.FailMode, op)
			}
			for _, col := range []struct {
				name     string
				cur, was map[string]string
			}{{"other_config", cb.OtherConfig, wb.OtherConfig}, {"external_ids", cb.ExternalIDs, wb.ExternalIDs}} {
				if maps.Equal(col.cur, col.was) {
					continue
				}
				ops := []ovs.Op{ovs.ClearBridge(name, col.name)}
				if cols := quoteCols(col.name, col.was); len(cols) > 0 {
					ops = append(ops, ovs.SetBridge(name, cols...))
				}
				set(col.name, "", "", ops...)
			}
		}
		for _, pn := range sortedKeys(wb.Ports) {
			wp := wb.Ports[pn]
			cp, ok := cb.Ports[pn]
			if !ok {
				if pn == name {
					continue // add-br makes the bridge's own port
				}
				ops := []ovs.Op{ovs.AddPort(name, pn)}
				if wp.Type != "" {
					ops = append(ops, ovs.SetInterface(pn, "type="+quote(wp.Type)))
				}
				if wp.Tag != 0 {
					ops = append(ops, ovs.SetPort(pn, "tag="+strconv.Itoa(wp.Tag)))
				}
				if cols := quoteCols("external_ids", wp.ExternalIDs); len(cols) > 0 {
					ops = append(ops, ovs.SetPort(pn, cols...))
				}
				add(Change{Kind: KindPort, Action: "add", Bridge: name, Target: pn, step: stepOVS, ops: ops})
				continue
			}
			var ops []ovs.Op
			if cp.Type != wp.Type {
				ops = append(ops, ovs.SetInterface(pn, "type="+quote(wp.Type)))
			}
			if cp.Tag != wp.Tag {
				op := ovs.SetPort(pn, "tag="+strconv.Itoa(wp.Tag))
				if wp.Tag == 0 {
					op = ovs.ClearPort(pn, "tag")
				}
				ops = append(ops, op)
			}
			if !maps.Equal(cp.ExternalIDs, wp.ExternalIDs) {
				ops = append(ops, ovs.ClearPort(pn, "external_ids"))
				if cols := quoteCols("external_ids", wp.ExternalIDs); len(cols) > 0 {
					ops = append(ops, ovs.SetPort(pn, cols...))
				}
			}
			if len(ops) > 0 {
				add(Change{Kind: KindPort, Action: "set", Bridge: name, Target: pn, step: stepOVS, ops: ops})
			}
		}
		for _, pn := range sortedKeys(cb.Ports) {
			if _, ok := wb.Ports[pn]; !ok && exists {
				add(Change{Kind: KindPort, Action: "remove", Bridge: name, Target: pn, step: stepOVSRemove, ops: []ovs.Op{ovs.DelPort(name, pn)}})
			}
		}
		if wf := want.Flows[name]; !exists || !slices.Equal(wf, cur.Flows[name]) {
			flows := slices.Clone(wf)
			add(Change{Kind: KindFlows, Action: "replace", Bridge: name, Target: name, To: fmt.Sprintf("%d flows", len(flows)), step: stepFlows,
				flows: func(int) []string { return flows }})
		}
	}
	for _, name := range sortedKeys(cur.Bridges) {
		if _, ok := want.Bridges[name]; !ok {
			add(Change{Kind: KindBridge, Action: "remove", Bridge: name, Target: name, step: stepOVSRemove, ops: []ovs.Op{ovs.DelBridge(name)}})
		}
	}

	// Offloads.
	for _, dev := range sortedKeys(want.Offloads) {
		for _, f := range sortedKeys(want.Offloads[dev]) {
			w, c := want.Offloads[dev][f], cur.Offloads[dev][f]
			if w.On != c.On && !c.Fixed {
				add(Change{Kind: KindOffload, Action: "set", Target: dev + " " + f, From: onOff(c.On), To: onOff(w.On), step: stepOffload, dev: dev, offload: map[string]bool{f: w.On}})
			}
		}
	}

	// Links, addresses and routes. A link of a bridge being created comes
	// back with it; other missing links cannot be made again.
	recreated := map[string]bool{}
	for name, b := range want.Bridges {
		if _, ok := cur.Bridges[name]; ok {
			continue
		}
		recreated[name] = true
		for pn, p := range b.Ports {
			if p.Type == "internal" {
				recreated[pn] = true
			}
		}
	}
	for _, name := range sortedKeys(want.Links) {
		wl := want.Links[name]
		cl, ok := cur.Links[name]
		if !ok && !recreated[name] {
			continue
		}
		if wl.Up && !cl.Up {
			add(Change{Kind: KindLink, Action: "set", Target: name, From: "down", To: "up", step: stepLink, dev: name})
		}
		if !wl.Up && cl.Up {
			add(Change{Kind: KindLink, Action: "set", Target: name, From: "up", To: "down", step: stepLinkDown, dev: name})
		}
		for _, a := range wl.Addrs {
			if !slices.Contains(cl.Addrs, a) && !isLinkLocal(a) {
				add(Change{Kind: KindAddress, Action: "add", Target: a.String() + " on " + name, step: stepAddrAdd, dev: name, addr: a})
			}
		}
		for _, a := range cl.Addrs {
			if !slices.Contains(wl.Addrs, a) && !isLinkLocal(a) {
				add(Change{Kind: KindAddress, Action: "remove", Target: a.String() + " on " + name, step: stepAddrDel, dev: name, addr: a})
			}
		}
	}
	reachable := func(r netdev.Route) bool {
		devs := r.Devs()
		return len(devs) > 0 && !slices.ContainsFunc(devs, func(dev string) bool { _, ok := cur.Links[dev]; return !ok && !recreated[dev] })
	}
	for _, r := range want.Routes {
		if containsRoute(cur.Routes, r) || !reachable(r) {
			continue
		}
		c := Change{Kind: KindRoute, Action: "add", Target: r.String(), step: stepRoute, route: r}
		if i := slices.IndexFunc(cur.Routes, func(o netdev.Route) bool { return sameRouteKey(o, r) }); i >= 0 {
			c.Action, c.Target, c.From, c.To = "replace", routeDst(r), cur.Routes[i].String(), r.String()
		}
		add(c)
	}
	for _, r := range cur.Routes {
		if containsRoute(want.Routes, r) || slices.ContainsFunc(want.Routes, func(o netdev.Route) bool { return sameRouteKey(o, r) && reachable(o) }) {
			continue
		}
		devs := r.Devs()
		if len(devs) == 0 || slices.ContainsFunc(devs, func(dev string) bool { _, had := want.Links[dev]; return !had }) {
			continue // its link goes away with its bridge
		}
		add(Change{Kind: KindRoute, Action: "remove", Target: r.String(), step: stepRouteDel, route: r})
	}

	// Kernel parameters.
	for _, k := range sortedKeys(want.Sysctl) {
		if c, ok := cur.Sysctl[k]; ok && c != want.Sysctl[k] {
			add(Change{Kind: KindSysctl, Action: "set", Target: k, From: c, To: want.Sysctl[k], step: stepSysctl, key: k})
		}
	}
	slices.SortStableFunc(cs, func(a, b Change) int { return a.step - b.step })
	return cs
}

// onlyOurs keeps the ghostbridge keys of an external_ids map: Restore
// leaves other tools' records on the root record alone.
func onlyOurs(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if strings.HasPrefix(k, idOwner) {
			out[k] = v
		}
	}
	return out
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// Scope names what a list of changes touches.
type Scope struct {
	Bridges []string `json:"bridges"`
	// Devices are the bridges' devices, their ports and uplinks.
	Devices []string `json:"devices"`
	Sysctls []string `json:"sysctls"`
}

// scopeOf is the Scope of cs.
func scopeOf(cs []Change) Scope {
	var sc Scope
	addTo := func(list *[]string, v string) {
		if v != "" && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for _, c := range cs {
		addTo(&sc.Bridges, c.Bridge)
		addTo(&sc.Devices, c.Bridge)
		addTo(&sc.Devices, c.dev)
		addTo(&sc.Devices, c.uplink)
		for _, dev := range c.route.Devs() {
			addTo(&sc.Devices, dev)
		}
		addTo(&sc.Sysctls, c.key)
		if c.Kind == KindPort {
			addTo(&sc.Devices, strings.Fields(c.Target)[0])
		}
	}
	return sc
}

// inScope reports whether restore change c concerns an object within sc.
func inScope(c Change, sc Scope) bool {
	switch c.Kind {
	case KindBridge, KindPort, KindFlows:
		return slices.Contains(sc.Bridges, c.Bridge)
	case KindOffload, KindLink, KindAddress:
		return slices.Contains(sc.Devices, c.dev)
	case KindRoute:
		return slices.ContainsFunc(c.route.Devs(), func(dev string) bool { return slices.Contains(sc.Devices, dev) })
	case KindSysctl:
		return c.key == "" || slices.Contains(sc.Sysctls, c.key)
	}
	return false
}

// changedByUs reports whether restore change c puts back an object that
// is within scope and that before and after disagree on.
func changedByUs(c Change, before, after Snapshot, sc Scope) bool {
	inDev := func(dev string) bool { return slices.Contains(sc.Devices, dev) }
	switch c.Kind {
	case KindBridge:
		if !slices.Contains(sc.Bridges, c.Bridge) {
			return false
		}
		wb, had := before.Bridges[c.Bridge]
		ab, has := after.Bridges[c.Bridge]
		if had != has {
			return true
		}
		switch strings.TrimPrefix(c.Target, c.Bridge+" ") {
		case "datapath_type":
			return wb.DatapathType != ab.DatapathType
		case "fail_mode":
			return wb.FailMode != ab.FailMode
		case "other_config":
			return !maps.Equal(wb.OtherConfig, ab.OtherConfig)
		case "external_ids":
			return !maps.Equal(wb.ExternalIDs, ab.ExternalIDs)
		}
		return false
	case KindPort:
		if !slices.Contains(sc.Bridges, c.Bridge) {
			return false
		}
		wp, had := before.Bridges[c.Bridge].Ports[c.Target]
		ap, has := after.Bridges[c.Bridge].Ports[c.Target]
		return had != has || wp.Type != ap.Type || wp.Tag != ap.Tag || !maps.Equal(wp.ExternalIDs, ap.ExternalIDs)
	case KindFlows:
		_, had := before.Bridges[c.Bridge]
		_, has := after.Bridges[c.Bridge]
		return slices.Contains(sc.Bridges, c.Bridge) && (had != has || !slices.Equal(before.Flows[c.Bridge], after.Flows[c.Bridge]))
	case KindOffload:
		for f := range c.offload {
			if inDev(c.dev) && before.Offloads[c.dev][f].On != after.Offloads[c.dev][f].On {
				return true
			}
		}
		return false
	case KindLink:
		return inDev(c.dev) && before.Links[c.dev].Up != after.Links[c.dev].Up
	case KindAddress:
		return inDev(c.dev) && slices.Contains(before.Links[c.dev].Addrs, c.addr) != slices.Contains(after.Links[c.dev].Addrs, c.addr)
	case KindRoute:
		return slices.ContainsFunc(c.route.Devs(), inDev) && containsRoute(before.Routes, c.route) != containsRoute(after.Routes, c.route)
	case KindSysctl:
		if c.key == "" { // the ghostbridge records on the root record
			return !maps.Equal(onlyOurs(before.RootIDs), onlyOurs(after.RootIDs))
		}
		return slices.Contains(sc.Sysctls, c.key) && before.Sysctl[c.key] != after.Sysctl[c.key]
	}
	return false
}
