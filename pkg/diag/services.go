package diag

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/sys/dbus"
)

// ServiceChecks returns the services group: services.units (every unit in
// units is active, read from systemd over D-Bus as systemctl reads it) and
// services.dbus_names (every bus name in names has an owner). address is
// the bus ("" = the system bus). An empty list skips its check. Each check
// opens its own connection for the run and closes it.
func ServiceChecks(address string, units, names []string) []Check {
	var cs []Check
	if len(units) == 0 {
		cs = append(cs, Skipped("services.units", "diag.services is empty"))
	} else {
		cs = append(cs, Check{Name: "services.units", Run: func(ctx context.Context) Outcome {
			return checkUnits(ctx, address, units)
		}})
	}
	if len(names) == 0 {
		cs = append(cs, Skipped("services.dbus_names", "diag.dbus_names is empty"))
	} else {
		cs = append(cs, Check{Name: "services.dbus_names", Run: func(ctx context.Context) Outcome {
			return checkBusNames(ctx, address, names)
		}})
	}
	return cs
}

// busName names the bus in details and hints.
func busName(address string) string {
	if address == "" {
		return "the system bus"
	}
	return "bus " + address
}

// busctl is the busctl invocation that reads the same bus.
func busctl(address string) string {
	if address == "" {
		return "busctl --system"
	}
	return "busctl --address=" + address
}

// dialBus connects, or says why the check cannot tell.
func dialBus(ctx context.Context, address string) (*dbus.Conn, *Outcome) {
	c, err := dbus.Dial(ctx, address)
	if err != nil {
		o := Unknown("systemctl status dbus.service; check diag.dbus_address", "cannot reach %s: %v", busName(address), err)
		if ctx.Err() != nil {
			o = Unknown("systemctl status dbus.service, or raise diag.timeout", "%s did not answer: %v", busName(address), err)
		}
		return nil, &o
	}
	return c, nil
}

// unitVerdict is one unit's share of services.units.
type unitVerdict struct {
	name   string
	status Status
	text   string // "qdrant.service failed (failed)"
	// fix is the kind of remediation: "status" (look at why),
	// "unmask", "missing".
	fix string
}

// judgeUnit maps a unit's state to a verdict, as an operator reads
// systemctl: active (or reloading) is healthy, on the way up or down is
// a warning, anything else is broken.
func judgeUnit(u dbus.UnitState) unitVerdict {
	v := unitVerdict{name: u.Name, text: fmt.Sprintf("%s %s (%s)", u.Name, u.ActiveState, u.SubState)}
	switch u.LoadState {
	case "loaded":
	case "not-found":
		return unitVerdict{name: u.Name, status: StatusFail, text: u.Name + " not found (no unit file)", fix: "missing"}
	case "masked":
		return unitVerdict{name: u.Name, status: StatusFail, text: u.Name + " masked", fix: "unmask"}
	default: // bad-setting, error, merged, stub
		return unitVerdict{name: u.Name, status: StatusFail, text: fmt.Sprintf("%s failed to load (%s)", u.Name, u.LoadState), fix: "status"}
	}
	switch u.ActiveState {
	case "active", "reloading", "refreshing":
		v.status = StatusPass
	case "activating", "deactivating", "maintenance":
		v.status, v.fix = StatusWarn, "status"
	case "failed", "inactive":
		v.status, v.fix = StatusFail, "status"
	default:
		v.status, v.fix = StatusUnknown, "status"
	}
	return v
}

func checkUnits(ctx context.Context, address string, units []string) Outcome {
	c, bad := dialBus(ctx, address)
	if bad != nil {
		return *bad
	}
	defer c.Close()
	verdicts := make([]unitVerdict, 0, len(units))
	for _, name := range units {
		u, err := c.Unit(ctx, name)
		switch {
		case err == nil:
			verdicts = append(verdicts, judgeUnit(u))
		case errors.Is(err, dbus.ErrNoOwner):
			return Unknown("is systemd the service manager here? check diag.dbus_address",
				"systemd is not on %s (org.freedesktop.systemd1 has no owner)", busName(address))
		case ctx.Err() != nil:
			return Unknown("systemctl status (is systemd answering?), or raise diag.timeout",
				"systemd did not answer on %s after %d of %d units: %v", busName(address), len(verdicts), len(units), err)
		default:
			verdicts = append(verdicts, unitVerdict{name: name, status: StatusUnknown, text: fmt.Sprintf("%s unreadable: %v", name, err), fix: "status"})
		}
	}
	return unitsOutcome(verdicts)
}

// unitsOutcome folds the units' verdicts into one: the worst status, the
// units that are not healthy, and one hint per kind of fix.
func unitsOutcome(vs []unitVerdict) Outcome {
	worst := StatusPass
	var texts, status, unmask, missing []string
	for _, v := range vs {
		if v.status.Worse(worst) {
			worst = v.status
		}
		if v.status == StatusPass {
			continue
		}
		texts = append(texts, v.text)
		switch v.fix {
		case "unmask":
			unmask = append(unmask, v.name)
		case "missing":
			missing = append(missing, v.name)
		default:
			status = append(status, v.name)
		}
	}
	if worst == StatusPass {
		return Pass("%d units active", len(vs))
	}
	var hints []string
	if len(status) > 0 {
		hints = append(hints, "systemctl status "+strings.Join(status, " "), "journalctl -u "+strings.Join(status, " -u "))
	}
	if len(unmask) > 0 {
		hints = append(hints, "systemctl unmask "+strings.Join(unmask, " "))
	}
	if len(missing) > 0 {
		hints = append(hints, "install "+strings.Join(missing, ", ")+" or remove it from diag.services")
	}
	return Outcome{Status: worst, Hint: strings.Join(hints, "; "),
		Detail: fmt.Sprintf("%d of %d units not active: %s", len(texts), len(vs), strings.Join(texts, ", "))}
}

func checkBusNames(ctx context.Context, address string, names []string) Outcome {
	c, bad := dialBus(ctx, address)
	if bad != nil {
		return *bad
	}
	defer c.Close()
	var missing []string
	for i, name := range names {
		ok, err := c.NameHasOwner(ctx, name)
		if err != nil {
			return Unknown("systemctl status dbus.service, or raise diag.timeout",
				"%s did not answer NameHasOwner after %d of %d names: %v", busName(address), i, len(names), err)
		}
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return Fail(fmt.Sprintf("start the services that own them (%s list shows the names present), or remove them from diag.dbus_names", busctl(address)),
			"%d of %d bus names have no owner on %s: %s", len(missing), len(names), busName(address), strings.Join(missing, ", "))
	}
	return Pass("%d bus names owned on %s", len(names), busName(address))
}
