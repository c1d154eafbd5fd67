// Package netdev reads and changes links, addresses and routes through
// rtnetlink (github.com/vishvananda/netlink), in the network namespace the
// handle was opened in.
//
// It makes exactly the change it is asked for and counts every change, so
// callers can prove that a converged host is left alone. It decides
// nothing and never runs the ip program.
package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNoLink is returned for a link name or MAC that does not exist.
var ErrNoLink = errors.New("no such link")

// Link is one network interface.
type Link struct {
	Name  string         `json:"name"`
	Index int            `json:"index"`
	MAC   string         `json:"mac"`
	Up    bool           `json:"up"`
	Kind  string         `json:"kind"`
	Addrs []netip.Prefix `json:"addresses"`
}

// Route is one route of any table but the kernel's local one, with what
// `ip route` can set on it, so a route moved between devices or put back
// keeps its preferred source, metrics, protocol, scope and table. The
// zero Type and Table stand for unicast and main; Routes fills every
// other field as the kernel reports it, so a Route read back equals the
// one written when the kernel kept it.
type Route struct {
	Dst netip.Prefix `json:"to"`
	Gw  netip.Addr   `json:"via,omitzero"`
	// Dev is the output device; "" for a multipath route (its devices
	// are in Nexthops) and for routes of types with no device.
	Dev    string `json:"dev"`
	OnLink bool   `json:"onlink,omitempty"`
	Metric int    `json:"metric,omitempty"`
	// Src is the preferred source address (ip route ... src).
	Src netip.Addr `json:"src,omitzero"`
	// Protocol is what installed the route (RTPROT_*: 3 boot, 4 static,
	// 16 dhcp ...); 0 is unspec.
	Protocol int `json:"protocol,omitempty"`
	// Scope is the RT_SCOPE_* value: 0 global, 253 link, 254 host.
	Scope int `json:"scope,omitempty"`
	// Type is the RTN_* route type; 0 stands for unicast.
	Type int `json:"type,omitempty"`
	// Table is the routing table; 0 stands for main (254).
	Table    int       `json:"table,omitempty"`
	Metrics  Metrics   `json:"metrics,omitzero"`
	Nexthops []Nexthop `json:"nexthops,omitempty"`
}

// Metrics are a route's RTA_METRICS (ip route ... mtu 1400 advmss ...);
// zero fields are unset.
type Metrics struct {
	MTU              int    `json:"mtu,omitempty"`
	MTULock          bool   `json:"mtu_lock,omitempty"`
	AdvMSS           int    `json:"advmss,omitempty"`
	Window           int    `json:"window,omitempty"`
	RTT              int    `json:"rtt,omitempty"`
	RTTVar           int    `json:"rttvar,omitempty"`
	Ssthresh         int    `json:"ssthresh,omitempty"`
	Cwnd             int    `json:"cwnd,omitempty"`
	Reordering       int    `json:"reordering,omitempty"`
	Hoplimit         int    `json:"hoplimit,omitempty"`
	InitCwnd         int    `json:"initcwnd,omitempty"`
	InitRwnd         int    `json:"initrwnd,omitempty"`
	Features         int    `json:"features,omitempty"`
	RTOMin           int    `json:"rto_min,omitempty"`
	RTOMinLock       bool   `json:"rto_min_lock,omitempty"`
	QuickACK         int    `json:"quickack,omitempty"`
	Congctl          string `json:"congctl,omitempty"`
	FastOpenNoCookie int    `json:"fastopen_no_cookie,omitempty"`
}

// Nexthop is one path of a multipath route.
type Nexthop struct {
	Gw  netip.Addr `json:"via,omitzero"`
	Dev string     `json:"dev"`
	// Weight is ip's weight: 1 + the kernel's rtnh_hops.
	Weight int  `json:"weight"`
	OnLink bool `json:"onlink,omitempty"`
}

// Equal reports whether r and o are the same route in every field.
func (r Route) Equal(o Route) bool {
	return r.Dst == o.Dst && r.Gw == o.Gw && r.Dev == o.Dev && r.OnLink == o.OnLink && r.Metric == o.Metric &&
		r.Src == o.Src && r.Protocol == o.Protocol && r.Scope == o.Scope && r.Type == o.Type && r.Table == o.Table &&
		r.Metrics == o.Metrics && slices.Equal(r.Nexthops, o.Nexthops)
}

// Uses reports whether r sends traffic out of dev, directly or through
// one of its nexthops.
func (r Route) Uses(dev string) bool {
	return r.Dev == dev || slices.ContainsFunc(r.Nexthops, func(n Nexthop) bool { return n.Dev == dev })
}

// Devs lists the devices r uses.
func (r Route) Devs() []string {
	var ds []string
	if r.Dev != "" {
		ds = append(ds, r.Dev)
	}
	for _, n := range r.Nexthops {
		if n.Dev != "" && !slices.Contains(ds, n.Dev) {
			ds = append(ds, n.Dev)
		}
	}
	return ds
}

// Moved is r with every use of device from replaced by to; everything
// else about the route stays.
func (r Route) Moved(from, to string) Route {
	m := r
	if m.Dev == from {
		m.Dev = to
	}
	m.Nexthops = slices.Clone(r.Nexthops)
	for i := range m.Nexthops {
		if m.Nexthops[i].Dev == from {
			m.Nexthops[i].Dev = to
		}
	}
	return m
}

// String renders r the way `ip route` does.
func (r Route) String() string {
	var b strings.Builder
	switch r.Type {
	case 0, unix.RTN_UNICAST:
	default:
		fmt.Fprintf(&b, "type %d ", r.Type)
	}
	if r.Dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gw.IsValid() {
		b.WriteString(" via " + r.Gw.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev " + r.Dev)
	}
	if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	if name, ok := protoNames[r.Protocol]; ok {
		b.WriteString(" proto " + name)
	} else if r.Protocol != 0 {
		fmt.Fprintf(&b, " proto %d", r.Protocol)
	}
	switch r.Scope {
	case 0:
	case unix.RT_SCOPE_LINK:
		b.WriteString(" scope link")
	case unix.RT_SCOPE_HOST:
		b.WriteString(" scope host")
	default:
		fmt.Fprintf(&b, " scope %d", r.Scope)
	}
	if r.Src.IsValid() {
		b.WriteString(" src " + r.Src.String())
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	if r.OnLink {
		b.WriteString(" onlink")
	}
	if r.Metrics.MTU != 0 {
		lock := ""
		if r.Metrics.MTULock {
			lock = "lock "
		}
		fmt.Fprintf(&b, " mtu %s%d", lock, r.Metrics.MTU)
	}
	if r.Metrics.AdvMSS != 0 {
		fmt.Fprintf(&b, " advmss %d", r.Metrics.AdvMSS)
	}
	for _, n := range r.Nexthops {
		b.WriteString(" nexthop")
		if n.Gw.IsValid() {
			b.WriteString(" via " + n.Gw.String())
		}
		fmt.Fprintf(&b, " dev %s weight %d", n.Dev, n.Weight)
		if n.OnLink {
			b.WriteString(" onlink")
		}
	}
	return b.String()
}

var protoNames = map[int]string{
	unix.RTPROT_REDIRECT: "redirect", unix.RTPROT_KERNEL: "kernel", unix.RTPROT_BOOT: "boot",
	unix.RTPROT_STATIC: "static", unix.RTPROT_RA: "ra", unix.RTPROT_DHCP: "dhcp",
}

// Handle talks rtnetlink in one network namespace.
type Handle struct {
	h       *netlink.Handle
	changes atomic.Int64
}

// Open returns a handle for the calling thread's network namespace.
func Open() (*Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &Handle{h: h}, nil
}

// OpenAt returns a handle for the namespace ns.
func OpenAt(ns netns.NsHandle) (*Handle, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace: %w", err)
	}
	return &Handle{h: h}, nil
}

// Close releases the netlink sockets.
func (h *Handle) Close() { h.h.Close() }

// Changes counts the changes made through h.
func (h *Handle) Changes() int64 { return h.changes.Load() }

// Links lists every link with its addresses (all scopes but host).
func (h *Handle) Links() ([]Link, error) {
	ls, err := h.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	addrs, err := h.h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	byIndex := map[int][]netip.Prefix{}
	for _, a := range addrs {
		if a.Scope == unix.RT_SCOPE_HOST || a.IPNet == nil {
			continue
		}
		p, ok := prefixOf(a.IPNet)
		if ok {
			byIndex[a.LinkIndex] = append(byIndex[a.LinkIndex], p)
		}
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		at := l.Attrs()
		ps := byIndex[at.Index]
		slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		out = append(out, Link{
			Name: at.Name, Index: at.Index, MAC: at.HardwareAddr.String(),
			Up: at.Flags&net.FlagUp != 0, Kind: l.Type(), Addrs: ps,
		})
	}
	return out, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// Routes lists the routes of both families in every table but the
// kernel's local one: unicast routes and the device-less kinds an
// operator adds (blackhole, unreachable, prohibit, throw). Routes the
// kernel derives from addresses (proto kernel) and IPv6 link-local and
// multicast routes are left out: they come and go with their addresses.
func (h *Handle) Routes() ([]Route, error) {
	rs, err := h.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	names := map[int]string{}
	ls, err := h.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []Route
	for _, r := range rs {
		switch r.Type {
		case unix.RTN_UNICAST, unix.RTN_BLACKHOLE, unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT, unix.RTN_THROW:
		default:
			continue
		}
		if r.Table == unix.RT_TABLE_LOCAL || r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		rt := Route{Dev: names[r.LinkIndex], OnLink: r.Flags&unix.RTNH_F_ONLINK != 0, Metric: r.Priority,
			Protocol: int(r.Protocol), Scope: int(r.Scope), Type: r.Type, Table: r.Table, Metrics: metricsOf(r)}
		if rt.Type == unix.RTN_UNICAST {
			rt.Type = 0
		}
		if rt.Table == unix.RT_TABLE_MAIN {
			rt.Table = 0
		}
		if r.Dst != nil {
			rt.Dst, _ = prefixOf(r.Dst)
		} else if r.Family == unix.AF_INET6 {
			rt.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		} else {
			rt.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		rt.Gw = addrOf(r.Gw)
		rt.Src = addrOf(r.Src)
		for _, nh := range r.MultiPath {
			rt.Nexthops = append(rt.Nexthops, Nexthop{Gw: addrOf(nh.Gw), Dev: names[nh.LinkIndex], Weight: nh.Hops + 1, OnLink: nh.Flags&unix.RTNH_F_ONLINK != 0})
		}
		if rt.Dst.Addr().Is6() && rt.Dst.Addr().IsLinkLocalUnicast() || rt.Dst.Addr().IsMulticast() {
			continue
		}
		out = append(out, rt)
	}
	return out, nil
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

func metricsOf(r netlink.Route) Metrics {
	return Metrics{MTU: r.MTU, MTULock: r.MTULock, AdvMSS: r.AdvMSS, Window: r.Window, RTT: r.Rtt, RTTVar: r.RttVar,
		Ssthresh: r.Ssthresh, Cwnd: r.Cwnd, Reordering: r.Reordering, Hoplimit: r.Hoplimit, InitCwnd: r.InitCwnd,
		InitRwnd: r.InitRwnd, Features: r.Features, RTOMin: r.RtoMin, RTOMinLock: r.RtoMinLock, QuickACK: r.QuickACK,
		Congctl: r.Congctl, FastOpenNoCookie: r.FastOpenNoCookie}
}

func (h *Handle) link(name string) (netlink.Link, error) {
	l, err := h.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, ErrNoLink)
	}
	return l, nil
}

// SetUp brings a link up.
func (h *Handle) SetUp(dev string) error {
	l, err := h.link(dev)
	if err != nil {
		return err
	}
	h.changes.Add(1)
	if err := h.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("link %s up: %w", dev, err)
	}
	return nil
}

// SetDown takes a link down.
func (h *Handle) SetDown(dev string) error {
	l, err := h.link(dev)
	if err != nil {
		return err
	}
	h.changes.Add(1)
	if err := h.h.LinkSetDown(l); err != nil {
		return fmt.Errorf("link %s down: %w", dev, err)
	}
	return nil
}

// AddAddr adds an address to a link. An IPv6 address is added without
// duplicate address detection (IFA_F_NODAD): it is the host's own address
// moving between its devices, and DAD would leave it tentative, unusable
// for a second or more, right when traffic moves over.
func (h *Handle) AddAddr(dev string, p netip.Prefix) error {
	l, err := h.link(dev)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	h.changes.Add(1)
	if err := h.h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("address %s on %s: %w", p, dev, err)
	}
	return nil
}

// DelAddr removes an address from a link.
func (h *Handle) DelAddr(dev string, p netip.Prefix) error {
	l, err := h.link(dev)
	if err != nil {
		return err
	}
	h.changes.Add(1)
	if err := h.h.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		return fmt.Errorf("remove address %s from %s: %w", p, dev, err)
	}
	return nil
}

func (h *Handle) nlRoute(r Route) (*netlink.Route, error) {
	m := r.Metrics
	nr := &netlink.Route{Dst: ipNet(r.Dst), Priority: r.Metric, Table: r.Table, Type: r.Type,
		Protocol: netlink.RouteProtocol(r.Protocol), Scope: netlink.Scope(r.Scope),
		MTU: m.MTU, MTULock: m.MTULock, AdvMSS: m.AdvMSS, Window: m.Window, Rtt: m.RTT, RttVar: m.RTTVar,
		Ssthresh: m.Ssthresh, Cwnd: m.Cwnd, Reordering: m.Reordering, Hoplimit: m.Hoplimit, InitCwnd: m.InitCwnd,
		InitRwnd: m.InitRwnd, Features: m.Features, RtoMin: m.RTOMin, RtoMinLock: m.RTOMinLock, QuickACK: m.QuickACK,
		Congctl: m.Congctl, FastOpenNoCookie: m.FastOpenNoCookie}
	if r.Dev != "" {
		l, err := h.link(r.Dev)
		if err != nil {
			return nil, err
		}
		nr.LinkIndex = l.Attrs().Index
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	for _, n := range r.Nexthops {
		l, err := h.link(n.Dev)
		if err != nil {
			return nil, err
		}
		nh := &netlink.NexthopInfo{LinkIndex: l.Attrs().Index, Hops: max(n.Weight-1, 0)}
		if n.Gw.IsValid() {
			nh.Gw = n.Gw.AsSlice()
		}
		if n.OnLink {
			nh.Flags = int(netlink.FLAG_ONLINK)
		}
		nr.MultiPath = append(nr.MultiPath, nh)
	}
	return nr, nil
}

// ReplaceRoute installs r in place of any route to the same destination
// and metric, in one netlink message: the destination is never unrouted.
func (h *Handle) ReplaceRoute(r Route) error {
	nr, err := h.nlRoute(r)
	if err != nil {
		return err
	}
	h.changes.Add(1)
	if err := h.h.RouteReplace(nr); err != nil {
		return fmt.Errorf("route %s: %w", r, err)
	}
	return nil
}

// DelRoute removes r.
func (h *Handle) DelRoute(r Route) error {
	nr, err := h.nlRoute(r)
	if err != nil {
		return err
	}
	h.changes.Add(1)
	if err := h.h.RouteDel(nr); err != nil {
		return fmt.Errorf("remove route %s: %w", r, err)
	}
	return nil
}

// Do runs fn on an OS thread switched into the namespace ns. The thread
// is discarded afterwards, so no other goroutine ever runs in ns.
func Do(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the goroutine's exit retires the thread.
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
