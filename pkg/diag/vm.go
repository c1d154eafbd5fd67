package diag

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/sys/libvirt"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

// Hints of the vm group.
const (
	hintLibvirtDown = "systemctl status libvirtd.service; check vm.uri"
	hintLibvirtSlow = "systemctl status libvirtd.service (it may still be starting its drivers), or raise diag.timeout"
	hintVMOVS       = "systemctl status openvswitch-switch.service; check net.ovsdb_socket"
)

// VMInputs are what the vm group reads.
type VMInputs struct {
	// URI is vm.uri, the libvirt connection.
	URI string
	// OVSDB is the OVSDB socket (net.ovsdb_socket) the bridges are read
	// from.
	OVSDB string
}

// VMChecks returns the vm group: vm.libvirt (the daemon at URI answers)
// and vm.nics (every Open vSwitch NIC of every running guest is a port of
// the bridge its live XML names; NICs on Linux bridges are listed in the
// detail, not judged). Each check makes its own
// connection for the run; a local connection is closed when the check's
// time is up, so a daemon that stopped answering cannot hold it.
func VMChecks(in VMInputs) []Check {
	return []Check{
		{Name: "vm.libvirt", Run: func(ctx context.Context) Outcome { return checkLibvirt(ctx, in) }},
		{Name: "vm.nics", Run: func(ctx context.Context) Outcome { return checkGuestNICs(ctx, in) }},
	}
}

// dialLibvirt connects for one check, bounded by ctx where the URI is
// local.
func dialLibvirt(ctx context.Context, uri string) (*libvirt.Conn, error) {
	c, err := libvirt.DialBounded(ctx, uri)
	if errors.Is(err, libvirt.ErrNotLocal) {
		return libvirt.Dial(ctx, uri)
	}
	return c, err
}

// libvirtTrouble is the outcome of a libvirt connection or call that
// failed: out of time cannot tell; anything else is the daemon's failure
// (vm.libvirt) or, for checks that need the daemon, unknown.
func libvirtTrouble(ctx context.Context, uri string, err error, mk func(hint, format string, args ...any) Outcome, hint string) Outcome {
	// The adapter's errors name the URI already.
	msg := strings.TrimPrefix(err.Error(), "libvirt "+uri+": ")
	if ctx.Err() != nil {
		return Unknown(hintLibvirtSlow, "libvirt at %s did not answer in time: %s", uri, msg)
	}
	return mk(hint, "libvirt at %s is not reachable: %s", uri, msg)
}

func checkLibvirt(ctx context.Context, in VMInputs) Outcome {
	c, err := dialLibvirt(ctx, in.URI)
	if err != nil {
		return libvirtTrouble(ctx, in.URI, err, Fail, hintLibvirtDown)
	}
	defer c.Close()
	v, err := c.Version(ctx)
	if err != nil {
		return libvirtTrouble(ctx, in.URI, err, Fail, hintLibvirtDown)
	}
	return Pass("libvirt %s at %s answers", v, in.URI)
}

func checkGuestNICs(ctx context.Context, in VMInputs) Outcome {
	c, err := dialLibvirt(ctx, in.URI)
	if err != nil {
		return libvirtTrouble(ctx, in.URI, err, Unknown, "see vm.libvirt; "+hintLibvirtDown)
	}
	defer c.Close()
	g, err := vm.RunningNICs(ctx, c)
	if err != nil {
		return libvirtTrouble(ctx, in.URI, err, Unknown, "see vm.libvirt; "+hintLibvirtDown)
	}
	if g.Guests == 0 {
		return Pass("no running guests")
	}
	if len(g.NICs) == 0 {
		return Pass("running guests: %d, none with a bridge NIC", g.Guests)
	}
	if !slices.ContainsFunc(g.NICs, func(n vm.GuestNIC) bool { return n.OVS }) {
		// Nothing to compare with Open vSwitch: a host without OVS is
		// not a fault of these guests.
		return judgeNICs(g, nil)
	}
	o := ovs.New(in.OVSDB)
	if dl, ok := ctx.Deadline(); ok {
		// ovs-vsctl's own timeout, so it gives up on a wedged ovsdb-server
		// before the check's time is up.
		o.Timeout = max(time.Second, time.Until(dl))
	}
	brs, err := o.Bridges(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return Unknown(hintVMOVS+", or raise diag.timeout", "Open vSwitch at %s did not answer in time: %v", in.OVSDB, err)
		}
		return Unknown(hintVMOVS, "cannot read the Open vSwitch bridges at %s: %v", in.OVSDB, err)
	}
	return judgeNICs(g, brs)
}

// judgeNICs compares each running guest's Open vSwitch NICs
// (<virtualport type='openvswitch'/>) with the bridges' ports. A NIC on a
// Linux bridge is not a port of OVS by design, so it is named in the
// detail and not judged.
func judgeNICs(g vm.RunningGuests, brs map[string]ovs.Bridge) Outcome {
	portBridge := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(brs)) {
		for p := range brs[name].Ports {
			portBridge[p] = name
		}
	}
	worst := StatusPass
	var problems, hints []string
	note := func(s Status, problem, hint string) {
		if s.Worse(worst) {
			worst = s
		}
		problems = append(problems, problem)
		if !slices.Contains(hints, hint) {
			hints = append(hints, hint)
		}
	}
	var linux []string
	judged := 0
	for _, n := range g.NICs {
		who := fmt.Sprintf("vm %s NIC %s", n.VM, n.MAC)
		if !n.OVS {
			linux = append(linux, fmt.Sprintf("%s on %s", who, n.Bridge))
			continue
		}
		judged++
		switch on, plugged := portBridge[n.Dev]; {
		case n.Dev == "":
			note(StatusUnknown, who+" has no host device in its live XML",
				fmt.Sprintf("virsh domiflist %s", n.VM))
		case brs[n.Bridge].Name == "":
			note(StatusFail, fmt.Sprintf("%s (%s): bridge %s does not exist in Open vSwitch", who, n.Dev, n.Bridge),
				"ghostbridge net up creates the configured bridges; then restart the guest so libvirt plugs it again")
		case !plugged:
			note(StatusFail, fmt.Sprintf("%s (%s) is not a port of any bridge, want %s", who, n.Dev, n.Bridge),
				fmt.Sprintf("restart the guest so libvirt plugs it again, or ovs-vsctl --may-exist add-port %s %s", n.Bridge, n.Dev))
		case on != n.Bridge:
			note(StatusFail, fmt.Sprintf("%s (%s) is a port of %s, want %s", who, n.Dev, on, n.Bridge),
				fmt.Sprintf("ovs-vsctl del-port %s %s, then restart the guest so libvirt plugs it into %s", on, n.Dev, n.Bridge))
		case brs[on].Ports[n.Dev].Tag != n.VLAN:
			// A NIC on the right bridge in the wrong VLAN reaches the
			// wrong network.
			note(StatusFail, fmt.Sprintf("%s (%s) on %s has VLAN tag %d, want %d", who, n.Dev, on, brs[on].Ports[n.Dev].Tag, n.VLAN),
				vlanHint(n))
		}
	}
	notJudged := ""
	if len(linux) > 0 {
		notJudged = fmt.Sprintf("; not Open vSwitch, not checked: %d on Linux bridges (%s)", len(linux), strings.Join(linux, ", "))
	}
	if judged == 0 {
		return Pass("running guests: %d, no Open vSwitch NIC%s", g.Guests, notJudged)
	}
	if worst == StatusPass {
		return Pass("%d Open vSwitch NICs of %d running guests are ports of their bridges, VLAN tags as configured%s",
			judged, g.Guests, notJudged)
	}
	return Outcome{Status: worst, Hint: strings.Join(hints, "; "),
		Detail: fmt.Sprintf("%d of %d Open vSwitch NICs of running guests are not on their bridges: %s%s",
			len(problems), judged, strings.Join(problems, "; "), notJudged)}
}

func vlanHint(n vm.GuestNIC) string {
	if n.VLAN == 0 {
		return fmt.Sprintf("ovs-vsctl clear Port %s tag (or restart the guest so libvirt plugs it again)", n.Dev)
	}
	return fmt.Sprintf("ovs-vsctl set Port %s tag=%d (or restart the guest so libvirt plugs it again)", n.Dev, n.VLAN)
}
