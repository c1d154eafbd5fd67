package diag

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
)

// Hints of the net group. Up converges exactly what these checks look at,
// and plan shows first what it would change.
const (
	hintNetUp     = "ghostbridge net up (ghostbridge net plan shows what it changes)"
	hintNetOVS    = "check that ovsdb-server and ovs-vswitchd run and net.ovsdb_socket points at their database"
	hintNetConfig = "fix the [net] table (ghostbridge net plan names the problem)"
)

// NetChecks returns the net group: the configured Open vSwitch bridges,
// their uplinks, the uplinks' offloads, IP forwarding, the flow tables and
// the bridges' MACs, judged against cfg as `net up` would converge them.
// Every check is skipped when cfg has no bridges; checks about uplinks
// are skipped when no bridge has one.
//
// The checks share one observation of the host per diag run (netup.Inspect);
// forwarding is read through d.Sysctl alone, so it still answers when OVS
// does not.
func NetChecks(cfg netup.Config, d netup.Deps) []Check {
	names := []string{"net.bridges", "net.uplink", "net.offloads", "net.forwarding", "net.flows", "net.bridge_mac"}
	if len(cfg.Bridges) == 0 {
		var cs []Check
		for _, n := range names {
			cs = append(cs, Skipped(n, "no [net] bridges configured"))
		}
		return cs
	}
	o := &netObserver{cfg: cfg, d: d}
	hasUplink := false
	for _, b := range cfg.Bridges {
		hasUplink = hasUplink || b.Uplink != ""
	}
	cs := []Check{{Name: "net.bridges", Run: o.check(netBridges)}}
	if hasUplink {
		cs = append(cs, Check{Name: "net.uplink", Run: o.check(netUplink)})
	} else {
		cs = append(cs, Skipped("net.uplink", "no [net] bridge has an uplink"))
	}
	switch {
	case !hasUplink:
		cs = append(cs, Skipped("net.offloads", "no [net] bridge has an uplink"))
	case len(cfg.Offloads) == 0:
		cs = append(cs, Skipped("net.offloads", "net.offloads is empty"))
	default:
		cs = append(cs, Check{Name: "net.offloads", Run: o.check(func(h netup.Health) Outcome { return netOffloads(cfg.Offloads, h) })})
	}
	if cfg.IPv4Forwarding == nil && cfg.IPv6Forwarding == nil {
		cs = append(cs, Skipped("net.forwarding", "net.ipv4_forwarding and net.ipv6_forwarding are unset"))
	} else {
		cs = append(cs, Check{Name: "net.forwarding", Run: func(context.Context) Outcome { return netForwarding(cfg, d.Sysctl) }})
	}
	cs = append(cs, Check{Name: "net.flows", Run: o.check(netFlows)})
	if hasUplink {
		cs = append(cs, Check{Name: "net.bridge_mac", Run: o.check(netBridgeMAC)})
	} else {
		cs = append(cs, Skipped("net.bridge_mac", "no [net] bridge has an uplink"))
	}
	return cs
}

// netObserver shares one netup.Inspect among the checks of a run: a check
// that starts while an observation is in flight waits for it; one that
// starts after it finished starts a fresh one, so repeated runs (--watch)
// never see an old host.
type netObserver struct {
	cfg netup.Config
	d   netup.Deps

	mu     sync.Mutex
	flight *netFlight
}

type netFlight struct {
	done chan struct{}
	h    netup.Health
	err  error
}

func (o *netObserver) observe(ctx context.Context) (netup.Health, error) {
	o.mu.Lock()
	f := o.flight
	if f == nil {
		f = &netFlight{done: make(chan struct{})}
		o.flight = f
		go func() {
			f.h, f.err = netup.Inspect(ctx, o.d, o.cfg)
			o.mu.Lock()
			o.flight = nil
			o.mu.Unlock()
			close(f.done)
		}()
	}
	o.mu.Unlock()
	select {
	case <-f.done:
		return f.h, f.err
	case <-ctx.Done():
		return netup.Health{}, ctx.Err()
	}
}

// check turns a judgement of the observed host into a Check's Run.
func (o *netObserver) check(judge func(netup.Health) Outcome) func(context.Context) Outcome {
	return func(ctx context.Context) Outcome {
		h, err := o.observe(ctx)
		switch {
		case errors.Is(err, netup.ErrInvalidConfig):
			return Fail(hintNetConfig, "%v", err)
		case err != nil:
			// The tool's stderr says what went wrong; its long argv
			// would bury that in the one-line detail.
			var ce *ovs.CommandError
			if errors.As(err, &ce) && ce.Stderr != "" {
				return Unknown(hintNetOVS, "observe the network: %s", ce.Stderr)
			}
			return Unknown(hintNetOVS, "observe the network: %v", err)
		}
		return judge(h)
	}
}

// hostProblems collects one line per broken thing and the hint of the
// first, and what was found in order.
type hostProblems struct {
	lines []string
	hint  string
	ok    []string
}

func (p *hostProblems) add(hint, format string, args ...any) {
	p.lines = append(p.lines, fmt.Sprintf(format, args...))
	if p.hint == "" {
		p.hint = hint
	}
}

func (p *hostProblems) fail() Outcome { return Fail(p.hint, "%s", strings.Join(p.lines, "; ")) }

// pass records one thing found in order.
func (p *hostProblems) pass(what string) { p.ok = append(p.ok, what) }

// verdict fails with every problem when there is one, and otherwise
// passes with format, whose last verb takes the list of what is in order.
func (p *hostProblems) verdict(format string, args ...any) Outcome {
	if len(p.lines) > 0 {
		return p.fail()
	}
	return Pass(format, append(args, strings.Join(p.ok, ", "))...)
}

func netBridges(h netup.Health) Outcome {
	var p hostProblems
	for _, b := range h.Bridges {
		switch {
		case !b.Exists:
			p.add(hintNetUp, "bridge %s missing", b.Name)
		case !b.LinkExists:
			p.add(hintNetUp, "bridge %s has no kernel device", b.Name)
		case !b.Up:
			p.add(hintNetUp, "bridge %s is down", b.Name)
		default:
			p.pass(b.Name)
		}
	}
	return p.verdict("%d bridges up: %s", len(p.ok))
}

// uplinkHint names the config entry of a bridge whose uplink matches no
// interface: net up cannot fix that.
func uplinkHint(b netup.BridgeHealth) string {
	return fmt.Sprintf("set the uplink of bridge %s in net.bridges to an existing interface name or MAC (ip link lists them)", b.Name)
}

// uplinks hands judge each bridge whose uplink resolved to an interface,
// records each whose uplink matches none, and passes over internal
// bridges (no uplink, so no UplinkDev either).
func (p *hostProblems) uplinks(h netup.Health, judge func(b netup.BridgeHealth)) {
	for _, b := range h.Bridges {
		switch {
		case b.Uplink == "":
		case b.UplinkDev == "":
			p.add(uplinkHint(b), "bridge %s: uplink %s matches no interface", b.Name, b.Uplink)
		default:
			judge(b)
		}
	}
}

func netUplink(h netup.Health) Outcome {
	var p hostProblems
	p.uplinks(h, func(b netup.BridgeHealth) {
		switch {
		case !b.Exists:
			p.add(hintNetUp, "bridge %s missing, so uplink %s is not attached", b.Name, b.UplinkDev)
		case !b.UplinkAttached:
			p.add(hintNetUp, "uplink %s is not a port of bridge %s", b.UplinkDev, b.Name)
		default:
			p.pass(b.UplinkDev + " on " + b.Name)
		}
	})
	return p.verdict("uplink attached: %s")
}

func netOffloads(want []string, h netup.Health) Outcome {
	var p hostProblems
	var fixed []string
	p.uplinks(h, func(b netup.BridgeHealth) {
		var on []string
		for _, f := range want {
			s, known := b.Offloads[f]
			switch {
			case !known || !s.On:
			case s.Fixed:
				fixed = append(fixed, b.UplinkDev+" "+f)
			default:
				on = append(on, f)
			}
		}
		if len(on) > 0 {
			p.add(hintNetUp, "uplink %s has %s on", b.UplinkDev, strings.Join(on, ", "))
		} else {
			p.pass(b.UplinkDev)
		}
	})
	if len(p.lines) == 0 && len(fixed) > 0 {
		return Warn("the NIC cannot switch these off; drop them from net.offloads to accept them",
			"fixed on by the driver: %s", strings.Join(fixed, ", "))
	}
	return p.verdict("%s off on %s", strings.Join(want, ","))
}

// sysctlReader reads kernel parameters; netup.Sysctl satisfies it.
type sysctlReader interface {
	Get(key string) (string, error)
}

func netForwarding(cfg netup.Config, s sysctlReader) Outcome {
	type want struct {
		key, cfgKey string
		on          *bool
	}
	var p hostProblems
	for _, w := range []want{
		{netup.SysctlIPv4Forward, "net.ipv4_forwarding", cfg.IPv4Forwarding},
		{netup.SysctlIPv6Forward, "net.ipv6_forwarding", cfg.IPv6Forwarding},
	} {
		if w.on == nil {
			continue
		}
		v := "0"
		if *w.on {
			v = "1"
		}
		got, err := s.Get(w.key)
		if err != nil {
			return Unknown("read /proc/sys as root", "read %s: %v", w.key, err)
		}
		if got != v {
			p.add(fmt.Sprintf("ghostbridge net up sets it (or change %s)", w.cfgKey), "%s = %s, want %s", w.key, got, v)
			continue
		}
		p.pass(w.key + " = " + got)
	}
	return p.verdict("%s")
}

func netFlows(h netup.Health) Outcome {
	var p hostProblems
	for _, b := range h.Bridges {
		what := "flow table"
		if b.Guard {
			what = "guard flows"
		}
		switch {
		case !b.FlowsChecked:
			hint := hintNetUp
			if b.UplinkDev == "" && b.Uplink != "" {
				hint = uplinkHint(b)
			}
			p.add(hint, "bridge %s: %s not checked: %s", b.Name, what, strings.Join(b.FlowDiff, ", "))
		case !b.FlowsInSync:
			p.add(hintNetUp, "bridge %s: %s differ from the %d expected: %s", b.Name, what, b.FlowsExpected, strings.Join(b.FlowDiff, " "))
		default:
			p.pass(fmt.Sprintf("%s %s (%d)", b.Name, what, b.FlowsExpected))
		}
	}
	return p.verdict("installed as expected: %s")
}

func netBridgeMAC(h netup.Health) Outcome {
	var p hostProblems
	p.uplinks(h, func(b netup.BridgeHealth) {
		switch {
		case !b.LinkExists:
			p.add(hintNetUp, "bridge %s has no kernel device", b.Name)
		case !strings.EqualFold(b.MAC, b.UplinkMAC) && !strings.EqualFold(b.ConfiguredMAC, b.UplinkMAC):
			p.add(hintNetUp, "bridge %s has MAC %s, uplink %s has %s", b.Name, b.MAC, b.UplinkDev, b.UplinkMAC)
		case !strings.EqualFold(b.MAC, b.UplinkMAC):
			// OVS already has the right hwaddr, so net up sees nothing
			// to change; the device was changed behind OVS's back.
			p.add(fmt.Sprintf("ip link set dev %s address %s", b.Name, b.UplinkMAC),
				"bridge %s has MAC %s, uplink %s has %s (OVS is configured with the right one)", b.Name, b.MAC, b.UplinkDev, b.UplinkMAC)
		default:
			p.pass(b.Name + " " + b.MAC)
		}
	})
	return p.verdict("bridge MAC equals the uplink's: %s")
}
