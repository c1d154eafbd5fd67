package main

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
)

// NetConfig is the [net] table: the host's Open vSwitch bridges and what
// `net up` converges them to.
type NetConfig struct {
	OVSDBSocket  string   `json:"ovsdb_socket"`
	DatapathType string   `json:"datapath_type"`
	Offloads     []string `json:"offloads"`
	// Forwarding switches are left alone when unset.
	IPv4Forwarding *bool             `json:"ipv4_forwarding,omitempty"`
	IPv6Forwarding *bool             `json:"ipv6_forwarding,omitempty"`
	Bridges        []NetBridgeConfig `json:"bridges"`
}

// NetBridgeConfig is one entry of net.bridges.
type NetBridgeConfig struct {
	Name      string           `json:"name"`
	Uplink    string           `json:"uplink,omitempty"`
	Addresses []string         `json:"addresses"`
	Gateway   string           `json:"gateway,omitempty"`
	Routes    []NetRouteConfig `json:"routes"`
	FailMode  string           `json:"fail_mode"`
	Ports     []NetPortConfig  `json:"ports"`
	Guard     bool             `json:"guard"`
	AllowMACs []string         `json:"allow_macs"`
	Flows     []string         `json:"flows"`
}

// NetRouteConfig is a static route; without via it is on-link.
type NetRouteConfig struct {
	To  string `json:"to"`
	Via string `json:"via,omitempty"`
}

// NetPortConfig is an internal port, with a VLAN tag or 0.
type NetPortConfig struct {
	Name string `json:"name"`
	Tag  int    `json:"tag,omitempty"`
}

func defaultNetConfig() NetConfig {
	return NetConfig{
		OVSDBSocket:  ovs.DefaultDB,
		DatapathType: "system",
		Offloads:     slices.Clone(netup.DefaultOffloads),
		Bridges:      []NetBridgeConfig{},
	}
}

// decodeNet reads the [net] keys; get is viper's Get.
func decodeNet(get func(string) any, dst *NetConfig) []Problem {
	var ps []Problem
	bad := func(key string, v any, want string) {
		if want == "" {
			want = wantFor(key)
		}
		ps = append(ps, Problem{Key: key, Value: showValue(v), Want: want})
	}
	switch v := get("net.ovsdb_socket").(type) {
	case nil:
	case string:
		dst.OVSDBSocket = v
	default:
		bad("net.ovsdb_socket", v, "")
	}
	switch v := get("net.datapath_type").(type) {
	case nil:
	case string:
		dst.DatapathType = v
	default:
		bad("net.datapath_type", v, "")
	}
	if l, ok := stringList(get("net.offloads")); ok {
		dst.Offloads = l
	} else {
		bad("net.offloads", get("net.offloads"), "")
	}
	for key, d := range map[string]**bool{"net.ipv4_forwarding": &dst.IPv4Forwarding, "net.ipv6_forwarding": &dst.IPv6Forwarding} {
		switch v := get(key).(type) {
		case nil:
		case bool:
			*d = &v
		case string: // environment
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				bad(key, v, "")
				continue
			}
			*d = &b
		default:
			bad(key, v, "")
		}
	}
	switch v := get("net.bridges").(type) {
	case nil:
	case []any:
		for i, item := range v {
			b, bps := decodeNetBridge(fmt.Sprintf("net.bridges[%d]", i), item)
			ps = append(ps, bps...)
			dst.Bridges = append(dst.Bridges, b)
		}
	default:
		bad("net.bridges", v, "")
	}
	sortProblems(ps)
	return ps
}

// stringList accepts a list of strings from a file or a comma-separated
// string from the environment; nil keeps the default.
func stringList(raw any) ([]string, bool) {
	switch v := raw.(type) {
	case nil:
		return nil, true
	case string:
		return nonNil(splitList(v)), true
	case []string:
		return v, true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

func decodeNetBridge(key string, item any) (NetBridgeConfig, []Problem) {
	b := NetBridgeConfig{FailMode: netup.FailSecure}
	m, ok := toStringMap(item)
	if !ok {
		return b, []Problem{{Key: key, Value: showValue(item), Want: wantFor("net.bridges")}}
	}
	var ps []Problem
	bad := func(k string, v any, want string) {
		ps = append(ps, Problem{Key: key + "." + k, Value: showValue(v), Want: want})
	}
	guardSet := false
	for k, v := range m {
		k = strings.ToLower(k)
		str := func(dst *string) {
			if s, ok := v.(string); ok {
				*dst = s
			} else {
				bad(k, v, "a string")
			}
		}
		list := func(dst *[]string) {
			if l, ok := stringList(v); ok && l != nil {
				*dst = l
			} else {
				bad(k, v, "a list of strings")
			}
		}
		switch k {
		case "name":
			str(&b.Name)
		case "uplink":
			str(&b.Uplink)
		case "gateway":
			str(&b.Gateway)
		case "fail_mode":
			str(&b.FailMode)
		case "addresses":
			list(&b.Addresses)
		case "allow_macs":
			list(&b.AllowMACs)
		case "flows":
			list(&b.Flows)
		case "guard":
			g, ok := v.(bool)
			if !ok {
				bad(k, v, "true or false")
			}
			b.Guard, guardSet = g, true
		case "routes":
			var lps []Problem
			b.Routes, lps = decodeNetList(key+".routes", v, "a list of {to = CIDR, via = ADDRESS}", decodeNetRoute)
			ps = append(ps, lps...)
		case "ports":
			var lps []Problem
			b.Ports, lps = decodeNetList(key+".ports", v, "a list of {name = NAME, tag = VLAN}", decodeNetPort)
			ps = append(ps, lps...)
		default:
			ps = append(ps, Problem{Key: key + "." + k, Want: "unknown key; a bridge allows name, uplink, addresses, gateway, routes, fail_mode, ports, guard, allow_macs, flows"})
		}
	}
	if !guardSet {
		b.Guard = b.Uplink != ""
	}
	b.Addresses, b.Routes, b.Ports = nonNil(b.Addresses), nonNil(b.Routes), nonNil(b.Ports)
	b.AllowMACs, b.Flows = nonNil(b.AllowMACs), nonNil(b.Flows)
	return b, ps
}

// decodeNetList decodes the list of tables at key (a bridge's routes or
// ports) item by item with one, keeping the items that decode; a value
// that is not a list is one problem wanting want.
func decodeNetList[T any](key string, v any, want string, one func(key string, item any) (T, bool, []Problem)) ([]T, []Problem) {
	items, ok := v.([]any)
	if !ok {
		return nil, []Problem{{Key: key, Value: showValue(v), Want: want}}
	}
	var out []T
	var ps []Problem
	for i, it := range items {
		x, ok, ips := one(fmt.Sprintf("%s[%d]", key, i), it)
		ps = append(ps, ips...)
		if ok {
			out = append(out, x)
		}
	}
	return out, ps
}

// decodeNetRoute reads one entry of a bridge's routes; ok means it has a
// destination. Unknown keys are reported, as for a bridge, so a misspelt
// via does not turn a gateway route into an on-link one unnoticed.
func decodeNetRoute(key string, item any) (r NetRouteConfig, ok bool, ps []Problem) {
	m, isMap := toStringMap(item)
	viaOK := true
	for k, v := range m {
		switch k = strings.ToLower(k); k {
		case "to":
			r.To, _ = v.(string)
		case "via":
			r.Via, viaOK = v.(string)
		default:
			ps = append(ps, Problem{Key: key + "." + k, Want: "unknown key; a route allows to, via"})
		}
	}
	if !isMap || r.To == "" || !viaOK {
		return r, false, append(ps, Problem{Key: key, Value: showValue(item), Want: "a table {to = CIDR, via = ADDRESS}"})
	}
	return r, true, ps
}

// decodeNetPort reads one entry of a bridge's ports; ok means it has a
// name and a valid tag (absent means untagged). Unknown keys are reported,
// so a misspelt tag does not leave the port untagged unnoticed.
func decodeNetPort(key string, item any) (p NetPortConfig, ok bool, ps []Problem) {
	m, isMap := toStringMap(item)
	var tagRaw any
	for k, v := range m {
		switch k = strings.ToLower(k); k {
		case "name":
			p.Name, _ = v.(string)
		case "tag":
			tagRaw = v
		default:
			ps = append(ps, Problem{Key: key + "." + k, Want: "unknown key; a port allows name, tag"})
		}
	}
	tag, tagOK := uint64(0), true
	if tagRaw != nil {
		tag, tagOK = parseCount(tagRaw)
	}
	if !isMap || p.Name == "" || !tagOK || tag > 4094 {
		return p, false, append(ps, Problem{Key: key, Value: showValue(item), Want: "a table {name = NAME, tag = 1..4094}"})
	}
	p.Tag = int(tag)
	return p, true, ps
}

// netupConfig converts the [net] table into netup's desired state; the
// problems name each key that does not parse.
func netupConfig(n NetConfig) (netup.Config, []Problem) {
	var ps []Problem
	cfg := netup.Config{Offloads: n.Offloads, DatapathType: n.DatapathType, IPv4Forwarding: n.IPv4Forwarding, IPv6Forwarding: n.IPv6Forwarding}
	for i, b := range n.Bridges {
		key := fmt.Sprintf("net.bridges[%d]", i)
		nb := netup.Bridge{Name: b.Name, Uplink: b.Uplink, FailMode: b.FailMode, Guard: b.Guard, AllowMACs: b.AllowMACs, Flows: b.Flows}
		for j, a := range b.Addresses {
			p, err := netup.ParseAddress(a)
			if err != nil {
				ps = append(ps, Problem{Key: fmt.Sprintf("%s.addresses[%d]", key, j), Value: showValue(a), Want: "a host address with its prefix length, e.g. 203.0.113.10/26"})
				continue
			}
			nb.Addresses = append(nb.Addresses, p)
		}
		if b.Gateway != "" {
			gw, err := netip.ParseAddr(b.Gateway)
			if err != nil || gw.Zone() != "" {
				ps = append(ps, Problem{Key: key + ".gateway", Value: showValue(b.Gateway), Want: "an IP address, e.g. 172.31.1.1"})
			}
			nb.Gateway = gw
		}
		for j, r := range b.Routes {
			to, err1 := netip.ParsePrefix(r.To)
			var via netip.Addr
			var err2 error
			if r.Via != "" {
				via, err2 = netip.ParseAddr(r.Via)
			}
			if err1 != nil || err2 != nil {
				ps = append(ps, Problem{Key: fmt.Sprintf("%s.routes[%d]", key, j), Value: showValue(r), Want: "to = CIDR and optional via = ADDRESS"})
				continue
			}
			nb.Routes = append(nb.Routes, netup.Route{To: to, Via: via})
		}
		for _, p := range b.Ports {
			nb.Ports = append(nb.Ports, netup.Port{Name: p.Name, Tag: p.Tag})
		}
		cfg.Bridges = append(cfg.Bridges, nb)
	}
	return cfg, ps
}

// validateNet checks the [net] table.
func (c Config) validateNet() []Problem {
	n := c.Net
	var ps []Problem
	if !filepath.IsAbs(n.OVSDBSocket) {
		ps = append(ps, Problem{Key: "net.ovsdb_socket", Value: showValue(n.OVSDBSocket), Want: wantFor("net.ovsdb_socket")})
	}
	// Cross-checks run on whatever parsed, so one run names every problem.
	cfg, parse := netupConfig(n)
	ps = append(ps, parse...)
	if ve, ok := cfg.Validate().(*netup.ValidationError); ok {
		for _, p := range ve.Problems {
			key := "net.bridges"
			switch {
			case strings.HasPrefix(p, "offload"):
				key = "net.offloads"
			case strings.HasPrefix(p, "datapath_type"):
				key = "net.datapath_type"
			}
			ps = append(ps, Problem{Key: key, Want: p})
		}
	}
	return ps
}

// netTOML renders the [net] table for `config show`.
func netTOML(line func(key, name, value string), n NetConfig) {
	strs := func(l []string) string {
		q := make([]string, len(l))
		for i, s := range l {
			q[i] = tomlString(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	line("net.ovsdb_socket", "ovsdb_socket", tomlString(n.OVSDBSocket))
	line("net.datapath_type", "datapath_type", tomlString(n.DatapathType))
	line("net.offloads", "offloads", strs(n.Offloads))
	if n.IPv4Forwarding != nil {
		line("net.ipv4_forwarding", "ipv4_forwarding", strconv.FormatBool(*n.IPv4Forwarding))
	}
	if n.IPv6Forwarding != nil {
		line("net.ipv6_forwarding", "ipv6_forwarding", strconv.FormatBool(*n.IPv6Forwarding))
	}
	bs := make([]string, len(n.Bridges))
	for i, b := range n.Bridges {
		parts := []string{"name = " + tomlString(b.Name)}
		if b.Uplink != "" {
			parts = append(parts, "uplink = "+tomlString(b.Uplink))
		}
		parts = append(parts, "addresses = "+strs(b.Addresses))
		if b.Gateway != "" {
			parts = append(parts, "gateway = "+tomlString(b.Gateway))
		}
		if len(b.Routes) > 0 {
			rs := make([]string, len(b.Routes))
			for j, r := range b.Routes {
				rs[j] = "{ to = " + tomlString(r.To)
				if r.Via != "" {
					rs[j] += ", via = " + tomlString(r.Via)
				}
				rs[j] += " }"
			}
			parts = append(parts, "routes = ["+strings.Join(rs, ", ")+"]")
		}
		parts = append(parts, "fail_mode = "+tomlString(b.FailMode))
		if len(b.Ports) > 0 {
			ps := make([]string, len(b.Ports))
			for j, p := range b.Ports {
				ps[j] = "{ name = " + tomlString(p.Name)
				if p.Tag != 0 {
					ps[j] += ", tag = " + strconv.Itoa(p.Tag)
				}
				ps[j] += " }"
			}
			parts = append(parts, "ports = ["+strings.Join(ps, ", ")+"]")
		}
		parts = append(parts, "guard = "+strconv.FormatBool(b.Guard))
		if len(b.AllowMACs) > 0 {
			parts = append(parts, "allow_macs = "+strs(b.AllowMACs))
		}
		if len(b.Flows) > 0 {
			parts = append(parts, "flows = "+strs(b.Flows))
		}
		bs[i] = "{ " + strings.Join(parts, ", ") + " }"
	}
	line("net.bridges", "bridges", "["+strings.Join(bs, ", ")+"]")
}
