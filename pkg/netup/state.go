package netup

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"golang.org/x/sys/unix"
)

// OVS is what netup needs from Open vSwitch; *ovs.Client implements it.
type OVS interface {
	Bridges(ctx context.Context) (map[string]ovs.Bridge, error)
	ReadAll(ctx context.Context) (map[string]ovs.Bridge, map[string]string, error)
	SaveFlows(ctx context.Context, bridge string) ([]string, error)
	Transact(ctx context.Context, ops ...ovs.Op) error
	ReplaceFlows(ctx context.Context, bridge string, flows []string) error
	FlowsMatch(ctx context.Context, bridge string, flows []string) (bool, []string, error)
	DumpFlows(ctx context.Context, bridge string) ([]ovs.Flow, error)
	ParseFlow(ctx context.Context, flow string) error
}

// Links is what netup needs from rtnetlink; *netdev.Handle implements it.
type Links interface {
	Links() ([]netdev.Link, error)
	Routes() ([]netdev.Route, error)
	SetUp(dev string) error
	SetDown(dev string) error
	AddAddr(dev string, p netip.Prefix) error
	DelAddr(dev string, p netip.Prefix) error
	ReplaceRoute(r netdev.Route) error
	DelRoute(r netdev.Route) error
}

// Offloads reads and switches NIC offloads; *ethtool.Client implements it.
type Offloads interface {
	Get(dev string, names []string) (map[string]ethtool.State, error)
	Set(dev string, want map[string]bool) error
}

// Sysctl reads and writes kernel parameters.
type Sysctl interface {
	Get(key string) (string, error)
	Set(key, value string) error
}

// Deps are the systems netup works on.
type Deps struct {
	OVS      OVS
	Links    Links
	Offloads Offloads
	Sysctl   Sysctl
	Logger   *slog.Logger // nil: discard
}

func (d Deps) log() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// Ownership records, in external_ids of the OVS records netup creates.
const (
	idOwner         = "ghostbridge"
	idOwnerValue    = "managed"
	idUplink        = "ghostbridge-uplink"
	idUplinkAddrs   = "ghostbridge-uplink-addrs"
	idUplinkRoutes  = "ghostbridge-uplink-routes"
	idUplinkOffload = "ghostbridge-uplink-offloads"
	// idSysctl prefixes, on the root Open_vSwitch record, the value a
	// kernel parameter had before Up first changed it.
	idSysctl = "ghostbridge-sysctl-"
)

// Sysctl keys for forwarding.
const (
	SysctlIPv4Forward = "net.ipv4.ip_forward"
	SysctlIPv6Forward = "net.ipv6.conf.all.forwarding"
)

// State is what Observe found: the parts of the host netup manages.
type State struct {
	Bridges  map[string]ovs.Bridge               `json:"bridges"`
	RootIDs  map[string]string                   `json:"root_external_ids"`
	Links    map[string]netdev.Link              `json:"links"`
	Routes   []netdev.Route                      `json:"routes"`
	Offloads map[string]map[string]ethtool.State `json:"offloads"`
	Sysctl   map[string]string                   `json:"sysctl"`
	// FlowDiff holds, per existing bridge, how its flow table differs
	// from the desired one (empty: in sync).
	FlowDiff map[string][]string `json:"flow_diff"`
}

// target is a bridge of the configuration resolved against the host.
type target struct {
	Bridge
	uplink  string // interface name, "" for internal bridges
	hostMAC string
	// flows renders the bridge's flow table; the guard names the uplink
	// by OpenFlow port number, which OVS assigns when the port is added.
	flows func(uplinkPort int) []string
}

// uplinkPort is the OpenFlow port number of t's uplink on b, or 0.
func (t target) uplinkPort(b ovs.Bridge) int {
	if t.uplink == "" {
		return 0
	}
	return b.Ports[t.uplink].OFPort
}

// resolve finds each uplink (by name or MAC) and computes the flow table.
func resolve(cfg Config, links map[string]netdev.Link) ([]target, error) {
	out := make([]target, 0, len(cfg.Bridges))
	// Bridge and internal port devices share MACs with what they stand
	// for; they are never an uplink.
	ours := map[string]bool{}
	for _, b := range cfg.Bridges {
		ours[b.Name] = true
		for _, p := range b.Ports {
			ours[p.Name] = true
		}
	}
	for _, b := range cfg.Bridges {
		t := target{Bridge: b}
		if b.Uplink != "" {
			l, ok := findLink(links, b.Uplink, ours)
			if !ok {
				return nil, invalid("bridge %s: uplink %s: no such network interface", b.Name, b.Uplink)
			}
			if l.Name == b.Name {
				return nil, invalid("bridge %s: uplink %s is the bridge itself", b.Name, b.Uplink)
			}
			t.uplink, t.hostMAC = l.Name, l.MAC
		}
		switch {
		case b.Guard && t.uplink != "":
			mac, allow, custom := t.hostMAC, b.AllowMACs, b.Flows
			t.flows = func(port int) []string { return guardFlows(port, mac, allow, custom) }
		case len(b.Flows) > 0:
			custom := slices.Clone(b.Flows)
			t.flows = func(int) []string { return custom }
		default:
			t.flows = func(int) []string { return []string{"priority=0,actions=NORMAL"} }
		}
		out = append(out, t)
	}
	return out, nil
}

func findLink(links map[string]netdev.Link, nameOrMAC string, skip map[string]bool) (netdev.Link, bool) {
	if l, ok := links[nameOrMAC]; ok {
		return l, true
	}
	hw, err := net.ParseMAC(nameOrMAC)
	if err != nil {
		return netdev.Link{}, false
	}
	var found []netdev.Link
	for _, l := range links {
		if l.MAC == hw.String() && !skip[l.Name] && l.Kind != "openvswitch" {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		return netdev.Link{}, false
	}
	return found[0], true
}

// Observe reads the current state of everything cfg names.
func Observe(ctx context.Context, d Deps, cfg Config) (State, []target, error) {
	st := State{Links: map[string]netdev.Link{}, Offloads: map[string]map[string]ethtool.State{}, Sysctl: map[string]string{}, FlowDiff: map[string][]string{}}
	ls, err := d.Links.Links()
	if err != nil {
		return st, nil, err
	}
	for _, l := range ls {
		st.Links[l.Name] = l
	}
	if st.Routes, err = d.Links.Routes(); err != nil {
		return st, nil, err
	}
	ts, err := resolve(cfg, st.Links)
	if err != nil {
		return st, nil, err
	}
	if st.Bridges, st.RootIDs, err = d.OVS.ReadAll(ctx); err != nil {
		return st, nil, fmt.Errorf("read Open vSwitch: %w", err)
	}
	for _, t := range ts {
		if t.uplink != "" && len(cfg.Offloads) > 0 {
			o, err := d.Offloads.Get(t.uplink, cfg.Offloads)
			if err != nil {
				return st, nil, fmt.Errorf("uplink %s offloads: %w", t.uplink, err)
			}
			st.Offloads[t.uplink] = o
		}
		if b, ok := st.Bridges[t.Name]; ok {
			port := t.uplinkPort(b)
			if t.uplink != "" && port <= 0 {
				st.FlowDiff[t.Name] = []string{"uplink port " + t.uplink + " missing"}
				continue
			}
			same, diff, err := d.OVS.FlowsMatch(ctx, t.Name, t.flows(port))
			if err != nil {
				return st, nil, fmt.Errorf("bridge %s flows: %w", t.Name, err)
			}
			if !same {
				st.FlowDiff[t.Name] = diff
			}
		}
	}
	for _, k := range forwardingKeys(cfg) {
		v, err := d.Sysctl.Get(k)
		if err != nil {
			return st, nil, err
		}
		st.Sysctl[k] = v
	}
	return st, ts, nil
}

func forwardingKeys(cfg Config) []string {
	var ks []string
	if cfg.IPv4Forwarding != nil {
		ks = append(ks, SysctlIPv4Forward)
	}
	if cfg.IPv6Forwarding != nil {
		ks = append(ks, SysctlIPv6Forward)
	}
	return ks
}

// encodeRoutes and decodeRoutes keep the uplink's routes, every field,
// in an external_ids value as a JSON list. Records written before routes
// kept their source, metrics and protocol ("DST|GW|onlink|METRIC;...")
// still decode, as routes of dev. A record that does not decode is an
// error, never an empty list: Down would then delete the bridge without
// giving the uplink its routes back.
func encodeRoutes(rs []netdev.Route) string {
	if len(rs) == 0 {
		return ""
	}
	b, err := json.Marshal(rs)
	if err != nil {
		panic(fmt.Sprintf("encode routes: %v", err)) // plain values: cannot fail
	}
	return string(b)
}

func decodeRoutes(s, dev string) ([]netdev.Route, error) {
	if s == "" {
		return nil, nil
	}
	if strings.HasPrefix(s, "[") {
		var rs []netdev.Route
		if err := json.Unmarshal([]byte(s), &rs); err != nil {
			return nil, err
		}
		return rs, nil
	}
	var out []netdev.Route
	for _, p := range strings.Split(s, ";") {
		f := strings.Split(p, "|")
		if len(f) != 4 {
			return nil, fmt.Errorf("route %q: want DST|GW|ONLINK|METRIC", p)
		}
		dst, err := netip.ParsePrefix(f[0])
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", p, err)
		}
		// What those versions read and wrote: proto boot, and scope
		// link for a route without a gateway.
		r := netdev.Route{Dst: dst, Dev: dev, OnLink: f[2] == "true", Protocol: unix.RTPROT_BOOT}
		r.Gw, _ = netip.ParseAddr(f[1])
		if !r.Gw.IsValid() {
			r.Scope = unix.RT_SCOPE_LINK
		}
		r.Metric, _ = strconv.Atoi(f[3])
		out = append(out, r)
	}
	return out, nil
}

func encodePrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func decodePrefixes(s string) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}
