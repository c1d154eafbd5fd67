package netup

import (
	"fmt"
	"net"
	"strings"
	"unicode"
)

// KnownOffloads are the offload short names (ethtool -K style) netup can
// switch.
var KnownOffloads = []string{"rx", "tx", "sg", "tso", "gso", "gro", "lro", "rxvlan", "txvlan"}

// Flow is a custom OpenFlow rule from the configuration, split into its
// match fields and its actions. ovs-ofctl has the last word on meaning;
// ParseFlow only makes sure a rule is one well-formed line that cannot
// smuggle a second rule into the flow table file.
type Flow struct {
	Match   []Field `json:"match"`
	Actions string  `json:"actions"`
}

// Field is one match field; Value is empty for a bare keyword ("arp").
type Field struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

// ParseFlow parses "priority=10,dl_type=0x0800,actions=drop".
func ParseFlow(s string) (Flow, error) {
	orig := s
	s = strings.TrimSpace(s)
	for _, r := range s {
		if unicode.IsControl(r) || r > unicode.MaxASCII {
			return Flow{}, fmt.Errorf("flow %q: control or non-ASCII character %q", orig, r)
		}
	}
	i := strings.Index(s, "actions=")
	if i < 0 {
		return Flow{}, fmt.Errorf("flow %q: no actions=", orig)
	}
	f := Flow{Actions: strings.TrimSpace(s[i+len("actions="):])}
	if f.Actions == "" {
		return Flow{}, fmt.Errorf("flow %q: empty actions", orig)
	}
	head := strings.TrimRight(strings.TrimSpace(s[:i]), ", \t")
	if i > 0 && !strings.ContainsAny(s[i-1:i], ", \t") {
		return Flow{}, fmt.Errorf("flow %q: actions= must follow a comma", orig)
	}
	for _, part := range strings.FieldsFunc(head, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		k, v, _ := strings.Cut(part, "=")
		if k == "" || strings.IndexFunc(k, func(r rune) bool {
			return !(r == '_' || r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r))
		}) >= 0 {
			return Flow{}, fmt.Errorf("flow %q: bad match field %q", orig, part)
		}
		if k == "cookie" || k == "table" && v != "0" {
			return Flow{}, fmt.Errorf("flow %q: %s is reserved (ghostbridge owns table 0 and the cookies)", orig, k)
		}
		f.Match = append(f.Match, Field{Key: k, Value: v})
	}
	return f, nil
}

// String renders f in ovs-ofctl syntax.
func (f Flow) String() string {
	var b strings.Builder
	for _, m := range f.Match {
		b.WriteString(m.Key)
		if m.Value != "" {
			b.WriteString("=")
			b.WriteString(m.Value)
		}
		b.WriteString(",")
	}
	b.WriteString("actions=")
	b.WriteString(f.Actions)
	return b.String()
}

// Guard flow priorities. Custom flows sit in the same table: one above
// prioFromUplink overrides the guard, so write such rules with care.
const (
	prioFromUplink = 1000
	prioHost       = 900
	prioAllowed    = 800
	prioDrop       = 1
)

// guardFlows is the flow table of an external bridge: frames from the
// uplink are switched normally; from the host (the bridge's LOCAL port)
// only with the host's own MAC, and from anywhere else only with an
// allowed MAC. Everything else, including broadcast and multicast from
// internal ports with other MACs, is dropped, so no foreign source MAC
// ever reaches the provider.
func guardFlows(uplink int, hostMAC string, allow []string, custom []string) []string {
	flows := []string{
		fmt.Sprintf("priority=%d,in_port=%d,actions=NORMAL", prioFromUplink, uplink),
		fmt.Sprintf("priority=%d,in_port=LOCAL,dl_src=%s,actions=NORMAL", prioHost, canonMAC(hostMAC)),
	}
	for _, m := range allow {
		// An allowed MAC may send unicast, and the broadcast and
		// multicast that address resolution needs (ARP, IPv6 router and
		// neighbour solicitation and advertisement); its other
		// broadcasts and multicasts stay off the provider's wire.
		src := "dl_src=" + canonMAC(m)
		flows = append(flows,
			fmt.Sprintf("priority=%d,%s,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,actions=NORMAL", prioAllowed, src),
			fmt.Sprintf("priority=%d,arp,%s,actions=NORMAL", prioAllowed, src))
		for typ := 133; typ <= 136; typ++ {
			flows = append(flows, fmt.Sprintf("priority=%d,icmp6,%s,icmp_type=%d,actions=NORMAL", prioAllowed, src, typ))
		}
	}
	flows = append(flows, fmt.Sprintf("priority=%d,actions=drop", prioDrop))
	return append(flows, custom...)
}

func canonMAC(s string) string {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return s
	}
	return hw.String()
}
