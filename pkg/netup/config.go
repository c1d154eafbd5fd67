package netup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// ErrInvalidConfig is wrapped by every error about the desired state itself:
// the operator fixes the configuration, not the host.
var ErrInvalidConfig = errors.New("invalid network configuration")

// Fail modes of an OVS bridge.
const (
	FailSecure     = "secure"
	FailStandalone = "standalone"
)

// DefaultOffloads are the uplink offloads switched off unless configured
// otherwise: offloaded segmentation, checksums and VLAN handling can put
// frames on the provider's wire that it treats as malformed.
var DefaultOffloads = []string{"tso", "gso", "gro", "lro", "rx", "tx", "rxvlan", "txvlan"}

// Config is the desired network state.
type Config struct {
	Bridges []Bridge `json:"bridges"`
	// Offloads are switched off on every uplink.
	Offloads []string `json:"offloads"`
	// IPv4Forwarding and IPv6Forwarding set net.ipv4.ip_forward and
	// net.ipv6.conf.all.forwarding; nil leaves them alone.
	IPv4Forwarding *bool `json:"ipv4_forwarding,omitempty"`
	IPv6Forwarding *bool `json:"ipv6_forwarding,omitempty"`
	// DatapathType is the bridges' datapath: "system" (kernel) or
	// "netdev" (userspace).
	DatapathType string `json:"datapath_type"`
}

// Bridge is one OVS bridge and the host's addressing on it.
type Bridge struct {
	Name string `json:"name"`
	// Uplink is the physical NIC, by interface name or MAC; "" for an
	// internal bridge.
	Uplink    string         `json:"uplink,omitempty"`
	Addresses []netip.Prefix `json:"addresses"`
	Gateway   netip.Addr     `json:"gateway,omitzero"`
	Routes    []Route        `json:"routes"`
	// FailMode is "secure" (only our flows forward) or "standalone".
	FailMode string `json:"fail_mode"`
	Ports    []Port `json:"ports"`
	// Guard installs the flows that keep foreign source MACs and
	// broadcast/multicast from internal ports off the uplink.
	Guard     bool     `json:"guard"`
	AllowMACs []string `json:"allow_macs"`
	Flows     []string `json:"flows"`
}

// Route is a static route on a bridge; without Via it is on-link.
type Route struct {
	To  netip.Prefix `json:"to"`
	Via netip.Addr   `json:"via,omitzero"`
}

// Port is an internal port of a bridge, optionally an access port of a VLAN.
type Port struct {
	Name string `json:"name"`
	Tag  int    `json:"tag,omitempty"`
}

// MaxIfName is the longest Linux interface name (IFNAMSIZ-1).
const MaxIfName = 15

// ParseAddress parses a host address with its prefix length
// ("203.0.113.10/26", "2001:db8::2/64"). The host bits are kept: the
// address is the host's, the length says which neighbours are on-link.
func ParseAddress(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address %q: want ADDRESS/LENGTH, e.g. 203.0.113.10/26", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q: zones are not allowed", s)
	}
	a := p.Addr()
	if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || (a.Is4() && p.Addr() == p.Masked().Addr() && p.Bits() < 31) {
		return netip.Prefix{}, fmt.Errorf("address %q: want a host address, not a network, loopback or multicast address", s)
	}
	return netip.PrefixFrom(a.Unmap(), p.Bits()), nil
}

// ValidName reports why name cannot be a Linux interface or OVS bridge
// name, or "" when it can.
func ValidName(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > MaxIfName:
		return fmt.Sprintf("%d characters; the kernel allows at most %d", len(name), MaxIfName)
	case name == "." || name == "..":
		return "not a name"
	}
	for _, r := range name {
		if r <= ' ' || r == '/' || r == ':' || r > '~' {
			return fmt.Sprintf("contains %q", r)
		}
	}
	return ""
}

// Validate checks what can be checked without the host: names, addresses,
// overlaps, duplicate uplinks and the syntax of flows. Each problem is one
// line; the returned error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	var ps []string
	bad := func(format string, a ...any) { ps = append(ps, fmt.Sprintf(format, a...)) }
	for _, o := range c.Offloads {
		if !slices.Contains(KnownOffloads, o) {
			bad("offload %q: want one of %s", o, strings.Join(KnownOffloads, ", "))
		}
	}
	switch c.DatapathType {
	case "system", "netdev":
	default:
		bad("datapath_type %q: want system or netdev", c.DatapathType)
	}
	names := map[string]bool{}
	uplinks := map[string]string{}
	type owned struct {
		p      netip.Prefix
		bridge string
	}
	var nets []owned
	for _, b := range c.Bridges {
		if why := ValidName(b.Name); why != "" {
			bad("bridge %q: name %s", b.Name, why)
		}
		if names[b.Name] {
			bad("bridge %q: defined twice", b.Name)
		}
		names[b.Name] = true
		switch b.FailMode {
		case FailSecure, FailStandalone:
		default:
			bad("bridge %s: fail_mode %q: want secure or standalone", b.Name, b.FailMode)
		}
		if b.Guard && b.FailMode == FailStandalone {
			// A standalone bridge falls back to NORMAL switching whenever
			// its flow table is empty (as after a bridge reconfiguration),
			// so the guard would leak foreign MACs onto the uplink.
			bad("bridge %s: guard = true needs fail_mode = \"secure\", not %q", b.Name, b.FailMode)
		}
		if b.Uplink != "" {
			key := strings.ToLower(b.Uplink)
			if other, dup := uplinks[key]; dup {
				bad("bridge %s: uplink %s is already the uplink of bridge %s", b.Name, b.Uplink, other)
			}
			uplinks[key] = b.Name
			if _, err := net.ParseMAC(b.Uplink); err != nil {
				if why := ValidName(b.Uplink); why != "" {
					bad("bridge %s: uplink %q: name %s", b.Name, b.Uplink, why)
				}
			}
		}
		for _, p := range b.Ports {
			if why := ValidName(p.Name); why != "" {
				bad("bridge %s: port %q: name %s", b.Name, p.Name, why)
			}
			if names[p.Name] {
				bad("bridge %s: port %q: name already used", b.Name, p.Name)
			}
			names[p.Name] = true
			if p.Tag < 0 || p.Tag > 4094 {
				bad("bridge %s: port %s: tag %d: want 1..4094 (0: untagged)", b.Name, p.Name, p.Tag)
			}
		}
		for _, a := range b.Addresses {
			for _, o := range nets {
				if o.p.Overlaps(a.Masked()) || a.Masked().Overlaps(o.p) {
					bad("bridge %s: address %s overlaps %s on bridge %s", b.Name, a, o.p, o.bridge)
				}
			}
			nets = append(nets, owned{a.Masked(), b.Name})
		}
		hasFamily := func(a netip.Addr) bool {
			return slices.ContainsFunc(b.Addresses, func(p netip.Prefix) bool { return p.Addr().Is4() == a.Is4() })
		}
		if b.Gateway.IsValid() && len(b.Addresses) == 0 {
			bad("bridge %s: gateway %s needs an address on the bridge", b.Name, b.Gateway)
		} else if b.Gateway.IsValid() && !hasFamily(b.Gateway) {
			bad("bridge %s: gateway %s: the bridge has no %s address", b.Name, b.Gateway, family(b.Gateway))
		}
		for _, r := range b.Routes {
			switch {
			case r.Via.IsValid() && r.Via.Is4() != r.To.Addr().Is4():
				bad("bridge %s: route %s via %s: the gateway is %s, the destination %s", b.Name, r.To, r.Via, family(r.Via), family(r.To.Addr()))
			case r.Via.IsValid() && !hasFamily(r.Via):
				bad("bridge %s: route %s via %s: the bridge has no %s address", b.Name, r.To, r.Via, family(r.Via))
			case r.To.Bits() == 0 && b.Gateway.IsValid() && b.Gateway.Is4() == r.To.Addr().Is4():
				// A second-family default route (::/0 next to an IPv4
				// gateway) belongs here; a second one of the same family
				// would fight the gateway's.
				bad("bridge %s: route %s: gateway %s already is the %s default route", b.Name, r.To, b.Gateway, family(b.Gateway))
			}
		}
		for _, m := range b.AllowMACs {
			if hw, err := net.ParseMAC(m); err != nil || len(hw) != 6 || hw[0]&1 == 1 {
				bad("bridge %s: allow_macs %q: want a unicast MAC such as 52:54:00:12:34:56", b.Name, m)
			}
		}
		for _, f := range b.Flows {
			if _, err := ParseFlow(f); err != nil {
				bad("bridge %s: %v", b.Name, err)
			}
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps}
}

// ValidationError lists every problem of a Config.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	msg := ErrInvalidConfig.Error() + ": " + e.Problems[0]
	if n := len(e.Problems) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *ValidationError) Unwrap() error { return ErrInvalidConfig }

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func invalid(format string, a ...any) error {
	return &ValidationError{Problems: []string{fmt.Sprintf(format, a...)}}
}

// Warnings lists what is valid but probably not meant: a bridge with an
// uplink and no guard switches every frame, foreign source MACs and
// internal broadcasts included, onto the provider's wire.
func (c Config) Warnings() []string {
	var ws []string
	for _, b := range c.Bridges {
		if b.Uplink != "" && !b.Guard {
			ws = append(ws, fmt.Sprintf("bridge %s: guard = false: uplink %s gets NORMAL switching, so foreign source MACs and broadcasts from internal ports reach the provider", b.Name, b.Uplink))
		}
	}
	return ws
}
