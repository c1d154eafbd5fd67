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

// Route is one unicast route of the main table.
type Route struct {
	Dst    netip.Prefix `json:"to"`
	Gw     netip.Addr   `json:"via,omitzero"`
	Dev    string       `json:"dev"`
	OnLink bool         `json:"onlink,omitempty"`
	Metric int          `json:"metric,omitempty"`
}

// String renders r the way `ip route` does.
func (r Route) String() string {
	s := r.Dst.String()
	if r.Dst.Bits() == 0 {
		s = "default"
	}
	if r.Gw.IsValid() {
		s += " via " + r.Gw.String()
	}
	s += " dev " + r.Dev
	if r.OnLink {
		s += " onlink"
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
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

// Routes lists the unicast routes of the main table, both families.
func (h *Handle) Routes() ([]Route, error) {
	rs, err := h.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
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
		if r.Type != unix.RTN_UNICAST || r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		rt := Route{Dev: names[r.LinkIndex], OnLink: r.Flags&unix.RTNH_F_ONLINK != 0, Metric: r.Priority}
		if r.Dst != nil {
			rt.Dst, _ = prefixOf(r.Dst)
		} else if r.Family == unix.AF_INET6 {
			rt.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		} else {
			rt.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		if r.Gw != nil {
			a, _ := netip.AddrFromSlice(r.Gw)
			rt.Gw = a.Unmap()
		}
		if rt.Dst.Addr().Is6() && rt.Dst.Addr().IsLinkLocalUnicast() || rt.Dst.Addr().IsMulticast() {
			continue
		}
		out = append(out, rt)
	}
	return out, nil
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
	l, err := h.link(r.Dev)
	if err != nil {
		return nil, err
	}
	nr := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(r.Dst), Priority: r.Metric, Table: unix.RT_TABLE_MAIN}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
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
