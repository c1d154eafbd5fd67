package netup

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
)

func testConfig() Config {
	return Config{
		DatapathType: "system",
		Offloads:     []string{"tso", "gro"},
		Bridges: []Bridge{{
			Name: "ovsbr0", Uplink: "eth0", FailMode: FailSecure, Guard: true,
			Addresses: []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")},
			Gateway:   netip.MustParseAddr("172.31.1.1"),
		}},
	}
}

// convergedState is what the host looks like after Up of testConfig.
func convergedState() State {
	mac := "02:00:00:00:00:01"
	return State{
		Bridges: map[string]ovs.Bridge{"ovsbr0": {
			Name: "ovsbr0", DatapathType: "system", FailMode: FailSecure,
			OtherConfig: map[string]string{"hwaddr": mac},
			ExternalIDs: map[string]string{idOwner: idOwnerValue, idUplink: "eth0"},
			Ports: map[string]ovs.Port{
				"ovsbr0": {Name: "ovsbr0", Type: "internal", OFPort: 65534},
				"eth0":   {Name: "eth0", OFPort: 1, ExternalIDs: map[string]string{idOwner: idOwnerValue}},
			},
		}},
		Links: map[string]netdev.Link{
			"eth0":   {Name: "eth0", MAC: mac, Up: true},
			"ovsbr0": {Name: "ovsbr0", MAC: mac, Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("fe80::1/64")}},
		},
		Routes:   []netdev.Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("172.31.1.1"), Dev: "ovsbr0", OnLink: true}},
		Offloads: map[string]map[string]ethtool.State{"eth0": {"tso": {}, "gro": {}}},
		FlowDiff: map[string][]string{},
	}
}

func planFor(t *testing.T, cfg Config, st State) []string {
	t.Helper()
	ts, err := resolve(cfg, st.Links)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range plan(cfg, ts, st) {
		out = append(out, c.String())
	}
	return out
}

func TestPlan(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config, *State)
		wants []string
	}{
		{"converged", func(*Config, *State) {}, nil},
		{"fail mode drift", func(_ *Config, s *State) {
			b := s.Bridges["ovsbr0"]
			b.FailMode = FailStandalone
			s.Bridges["ovsbr0"] = b
		}, []string{"~ bridge ovsbr0 fail_mode: standalone -> secure", "~ flows ovsbr0: none -> 3 flows"}},
		{"offload back on", func(_ *Config, s *State) { s.Offloads["eth0"]["gro"] = ethtool.State{On: true} }, []string{"~ offload eth0 gro (ovsbr0): on -> off"}},
		{"fixed offload left alone", func(_ *Config, s *State) { s.Offloads["eth0"]["gro"] = ethtool.State{On: true, Fixed: true} }, nil},
		{"uplink kept its address", func(_ *Config, s *State) {
			l := s.Links["eth0"]
			l.Addrs = []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}
			s.Links["eth0"] = l
		}, []string{"- address 203.0.113.10/32 on eth0 (ovsbr0)"}},
		{"default route on the uplink", func(_ *Config, s *State) {
			s.Routes[0].Dev = "eth0"
		}, []string{"~ route default (ovsbr0): default via 172.31.1.1 dev eth0 onlink -> default via 172.31.1.1 dev ovsbr0 onlink"}},
		{"managed port removed from config", func(_ *Config, s *State) {
			s.Bridges["ovsbr0"].Ports["vm9"] = ovs.Port{Name: "vm9", ExternalIDs: map[string]string{idOwner: idOwnerValue}}
		}, []string{"- port vm9 (ovsbr0)"}},
		{"foreign port left alone", func(_ *Config, s *State) {
			s.Bridges["ovsbr0"].Ports["vnet0"] = ovs.Port{Name: "vnet0"}
		}, nil},
		{"flows drifted", func(_ *Config, s *State) { s.FlowDiff["ovsbr0"] = []string{"-priority=1 actions=drop"} }, []string{"~ flows ovsbr0: none -> 3 flows"}},
		{"new tagged port", func(c *Config, _ *State) { c.Bridges[0].Ports = []Port{{Name: "vm0", Tag: 10}} }, []string{"+ port vm0 (ovsbr0): none -> tag 10"}},
		{"forwarding", func(c *Config, s *State) {
			on := true
			c.IPv4Forwarding = &on
			s.Sysctl = map[string]string{SysctlIPv4Forward: "0"}
		}, []string{"~ sysctl net.ipv4.ip_forward: 0 -> 1"}},
		{"uplink by MAC", func(c *Config, _ *State) { c.Bridges[0].Uplink = "02:00:00:00:00:01" }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, st := testConfig(), convergedState()
			c.edit(&cfg, &st)
			got := planFor(t, cfg, st)
			if strings.Join(got, "\n") != strings.Join(c.wants, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.wants, "\n"))
			}
		})
	}
}

func TestPlanFromEmptyOrdersSafely(t *testing.T) {
	st := convergedState()
	st.Bridges = map[string]ovs.Bridge{}
	delete(st.Links, "ovsbr0")
	up := st.Links["eth0"]
	up.Addrs = []netip.Prefix{netip.MustParsePrefix("203.0.113.10/32")}
	st.Links["eth0"] = up
	st.Routes[0].Dev = "eth0"
	got := strings.Join(planFor(t, testConfig(), st), "\n")
	// The bridge gets the address and the default route before the
	// uplink loses the address: the host is never without a route.
	order := []string{"+ bridge ovsbr0", "+ port eth0", "~ flows ovsbr0", "~ link ovsbr0", "+ address 203.0.113.10/32 on ovsbr0", "~ route default", "- address 203.0.113.10/32 on eth0"}
	last := -1
	for _, o := range order {
		i := strings.Index(got, o)
		if i <= last {
			t.Fatalf("%q out of order in:\n%s", o, got)
		}
		last = i
	}
}

func TestValidate(t *testing.T) {
	cases := map[string]struct {
		edit func(*Config)
		want string
	}{
		"ok":        {func(*Config) {}, ""},
		"long name": {func(c *Config) { c.Bridges[0].Name = "ovsbr0123456789x" }, "name 16 characters"},
		"fail mode": {func(c *Config) { c.Bridges[0].FailMode = "open" }, `fail_mode "open"`},
		"offload":   {func(c *Config) { c.Offloads = []string{"tso", "warp"} }, `offload "warp"`},
		"uplink twice": {func(c *Config) {
			c.Bridges = append(c.Bridges, Bridge{Name: "ovsbr1", Uplink: "ETH0", FailMode: FailSecure})
		}, "already the uplink"},
		"overlap": {func(c *Config) {
			c.Bridges = append(c.Bridges, Bridge{Name: "ovsbr1", FailMode: FailSecure, Addresses: []netip.Prefix{netip.MustParsePrefix("203.0.113.1/24")}})
		}, "overlaps"},
		"tag":           {func(c *Config) { c.Bridges[0].Ports = []Port{{Name: "p", Tag: 5000}} }, "tag 5000"},
		"bad flow":      {func(c *Config) { c.Bridges[0].Flows = []string{"priority=1"} }, "no actions="},
		"cookie":        {func(c *Config) { c.Bridges[0].Flows = []string{"cookie=1,actions=drop"} }, "reserved"},
		"multicast mac": {func(c *Config) { c.Bridges[0].AllowMACs = []string{"01:00:5e:00:00:01"} }, "unicast MAC"},
		"datapath":      {func(c *Config) { c.DatapathType = "dpdk" }, "datapath_type"},
		"route family": {func(c *Config) {
			c.Bridges[0].Routes = []Route{{To: netip.MustParsePrefix("2001:db8::/32"), Via: netip.MustParseAddr("172.31.1.1")}}
		}, "the gateway is IPv4, the destination IPv6"},
		"gateway family": {func(c *Config) { c.Bridges[0].Gateway = netip.MustParseAddr("fe80::1") }, "no IPv6 address"},
		"second default": {func(c *Config) {
			c.Bridges[0].Routes = []Route{{To: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("172.31.1.2")}}
		}, "already is the IPv4 default route"},
		"dual-stack default": {func(c *Config) {
			c.Bridges[0].Addresses = append(c.Bridges[0].Addresses, netip.MustParsePrefix("2001:db8::2/64"))
			c.Bridges[0].Routes = []Route{{To: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("fe80::1")}}
		}, ""},
		"guard standalone": {func(c *Config) { c.Bridges[0].Guard, c.Bridges[0].FailMode = true, FailStandalone }, `guard = true needs fail_mode = "secure"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig()
			c.edit(&cfg)
			err := cfg.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line with %q", err, c.want)
			}
		})
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	rs := []netdev.Route{
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("172.31.1.1"), Dev: "eth0", OnLink: true,
			Src: netip.MustParseAddr("203.0.113.10"), Protocol: 4, Metrics: netdev.Metrics{MTU: 1400, MTULock: true, AdvMSS: 1360}},
		{Dst: netip.MustParsePrefix("2001:db8::/32"), Gw: netip.MustParseAddr("fe80::1"), Dev: "eth0", Metric: 1024, Protocol: 3},
		{Dst: netip.MustParsePrefix("10.0.0.0/8"), Dev: "eth0", Scope: 253, Table: 100},
		{Dst: netip.MustParsePrefix("198.51.100.0/24"), Protocol: 4, Nexthops: []netdev.Nexthop{
			{Gw: netip.MustParseAddr("172.31.1.1"), Dev: "eth0", Weight: 1},
			{Gw: netip.MustParseAddr("172.31.1.2"), Dev: "eth1", Weight: 3, OnLink: true}}},
	}
	got, err := decodeRoutes(encodeRoutes(rs), "eth0")
	if err != nil || len(got) != len(rs) {
		t.Fatalf("%v %v", got, err)
	}
	for i := range rs {
		if !got[i].Equal(rs[i]) {
			t.Errorf("route %d: %v, want %v", i, got[i], rs[i])
		}
	}
	// Records written before routes kept every field.
	legacy, err := decodeRoutes("0.0.0.0/0|172.31.1.1|true|0;10.0.0.0/8||false|5", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	want := []netdev.Route{
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("172.31.1.1"), Dev: "eth0", OnLink: true, Protocol: 3},
		{Dst: netip.MustParsePrefix("10.0.0.0/8"), Dev: "eth0", Metric: 5, Protocol: 3, Scope: 253},
	}
	if !slices.EqualFunc(legacy, want, netdev.Route.Equal) {
		t.Errorf("legacy record: %v, want %v", legacy, want)
	}
	for _, bad := range []string{"[", `[{"to":"nonsense"}]`, "0.0.0.0/0|172.31.1.1", "x|y|z|w"} {
		if rs, err := decodeRoutes(bad, "eth0"); err == nil {
			t.Errorf("record %q decodes to %v, want an error", bad, rs)
		}
	}
	ps := []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24"), netip.MustParsePrefix("2001:db8::2/64")}
	if g := decodePrefixes(encodePrefixes(ps)); len(g) != 2 || g[0] != ps[0] || g[1] != ps[1] {
		t.Errorf("prefixes %v", g)
	}
}

func FuzzParseFlow(f *testing.F) {
	for _, s := range []string{"priority=10,dl_type=0x0800,actions=drop", "arp,actions=NORMAL", "in_port=1 actions=output:2", "actions=", "priority=1,actions=drop\npriority=2,actions=NORMAL", "table=1,actions=drop"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fl, err := ParseFlow(s)
		if err != nil {
			return
		}
		out := fl.String()
		if strings.ContainsAny(out, "\n\r\x00") {
			t.Fatalf("%q renders as %q: more than one line", s, out)
		}
		again, err := ParseFlow(out)
		if err != nil || again.String() != out {
			t.Fatalf("%q -> %q does not round-trip: %v %q", s, out, err, again.String())
		}
	})
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"203.0.113.10/26", "2001:db8::2/64", "10.0.0.0/8", "fe80::1%eth0/64", "1.2.3.4", "::/0", " 10.1.1.1/32 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseAddress(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().IsUnspecified() || p.Addr().Is4In6() {
			t.Fatalf("%q parsed to %v", s, p)
		}
		again, err := ParseAddress(p.String())
		if err != nil || again != p {
			t.Fatalf("%q -> %v does not round-trip: %v", s, p, err)
		}
	})
}

// FuzzDecodeRoutes: the uplink's route record comes back from OVSDB,
// where anyone with access may have edited it; decoding never panics,
// and what it yields encodes and decodes to itself.
func FuzzDecodeRoutes(f *testing.F) {
	f.Add(`[{"to":"0.0.0.0/0","via":"172.31.1.1","dev":"eth0","protocol":4,"metrics":{"mtu":1400}}]`)
	f.Add(`[{"to":"10.0.0.0/8","dev":"","nexthops":[{"via":"10.0.0.1","dev":"eth0","weight":2}]}]`)
	f.Add("0.0.0.0/0|172.31.1.1|true|0;10.0.0.0/8||false|5")
	f.Add("[")
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := decodeRoutes(s, "eth0")
		if err != nil {
			return
		}
		again, err := decodeRoutes(encodeRoutes(rs), "eth0")
		if err != nil || !slices.EqualFunc(rs, again, netdev.Route.Equal) {
			t.Errorf("%q: %v, then %v", s, rs, again)
		}
	})
}
