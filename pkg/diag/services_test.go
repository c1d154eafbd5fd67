package diag_test

import (
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/diag"
)

// oneResult runs the named check of cs and returns its result.
func oneResult(t *testing.T, cs []diag.Check, name string, timeout time.Duration) diag.Result {
	t.Helper()
	sel, err := diag.Select(cs, []string{name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := diag.Run(t.Context(), sel, diag.Options{Timeout: timeout})
	if len(r.Checks) != 1 {
		t.Fatalf("%s: %d results", name, len(r.Checks))
	}
	return r.Checks[0]
}

var hostUnits = map[string]testenv.SystemdUnit{
	"ghostbridge-snap.service":   {LoadState: "loaded", ActiveState: "active", SubState: "running"},
	"openvswitch-switch.service": {LoadState: "loaded", ActiveState: "active", SubState: "exited"},
	"qdrant.service":             {LoadState: "loaded", ActiveState: "failed", SubState: "failed"},
	"grafana.service":            {LoadState: "loaded", ActiveState: "inactive", SubState: "dead"},
	"prometheus.service":         {LoadState: "loaded", ActiveState: "activating", SubState: "start-pre"},
	"op-dbus.service":            {LoadState: "masked", ActiveState: "inactive", SubState: "dead"},
}

func TestServicesUnits(t *testing.T) {
	bus := testenv.StartDBus(t)
	bus.ServeSystemd(t, hostUnits)
	for _, c := range []struct {
		name         string
		units        []string
		want         diag.Status
		detail, hint []string
	}{
		{"all active", []string{"ghostbridge-snap.service", "openvswitch-switch.service"}, diag.StatusPass,
			[]string{"2 units active"}, nil},
		{"failed", []string{"ghostbridge-snap.service", "qdrant.service"}, diag.StatusFail,
			[]string{"1 of 2", "qdrant.service failed (failed)"}, []string{"systemctl status qdrant.service", "journalctl -u qdrant.service"}},
		{"inactive", []string{"grafana.service"}, diag.StatusFail,
			[]string{"grafana.service inactive (dead)"}, []string{"systemctl status grafana.service", "journalctl -u grafana.service"}},
		{"not found", []string{"dbus-mcp.service"}, diag.StatusFail,
			[]string{"dbus-mcp.service not found"}, []string{"diag.services"}},
		{"masked", []string{"op-dbus.service"}, diag.StatusFail,
			[]string{"op-dbus.service masked"}, []string{"systemctl unmask op-dbus.service"}},
		{"activating", []string{"ghostbridge-snap.service", "prometheus.service"}, diag.StatusWarn,
			[]string{"prometheus.service activating (start-pre)"}, []string{"journalctl -u prometheus.service"}},
		{"worst wins", []string{"prometheus.service", "grafana.service", "qdrant.service"}, diag.StatusFail,
			[]string{"3 of 3", "prometheus.service activating", "grafana.service inactive", "qdrant.service failed"},
			[]string{"systemctl status prometheus.service grafana.service qdrant.service", "journalctl -u prometheus.service -u grafana.service -u qdrant.service"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cs := diag.ServiceChecks(bus.Address, c.units, nil)
			expectResult(t, oneResult(t, cs, "services.units", 5*time.Second), c.want, c.detail, c.hint)
		})
	}
}

func TestServicesDBusNames(t *testing.T) {
	bus := testenv.StartDBus(t)
	bus.OwnName(t, "org.opdbus.Daemon")
	bus.OwnName(t, "org.dbusmcp.Server")
	cs := diag.ServiceChecks(bus.Address, nil, []string{"org.opdbus.Daemon", "org.dbusmcp.Server"})
	expectResult(t, oneResult(t, cs, "services.dbus_names", 5*time.Second), diag.StatusPass, []string{"2 bus names owned"}, nil)

	cs = diag.ServiceChecks(bus.Address, nil, []string{"org.opdbus.Daemon", "org.dbusmcp.Web"})
	expectResult(t, oneResult(t, cs, "services.dbus_names", 5*time.Second), diag.StatusFail,
		[]string{"1 of 2", "org.dbusmcp.Web"}, []string{"busctl --address=" + bus.Address + " list", "diag.dbus_names"})
}

func TestServicesSkippedWhenUnconfigured(t *testing.T) {
	r := diag.Run(t.Context(), diag.ServiceChecks("", nil, nil), diag.Options{})
	if r.Counts.Skip != 2 || r.Checks[0].Detail != "diag.services is empty" || r.Checks[1].Detail != "diag.dbus_names is empty" {
		t.Fatalf("unconfigured services group: %+v", r.Checks)
	}
}

// A systemd that owns its name but never answers makes services.units
// unknown once the timeout passes; diag does not hang on it.
func TestServicesSilentSystemd(t *testing.T) {
	bus := testenv.StartDBus(t)
	bus.ServeSilentSystemd(t)
	cs := diag.ServiceChecks(bus.Address, []string{"ghostbridge-snap.service"}, nil)
	expectResult(t, oneResult(t, cs, "services.units", 200*time.Millisecond), diag.StatusUnknown, nil, []string{"diag.timeout"})
}

func TestServicesNoSystemdOrBus(t *testing.T) {
	bus := testenv.StartDBus(t)
	cs := diag.ServiceChecks(bus.Address, []string{"x.service"}, nil)
	expectResult(t, oneResult(t, cs, "services.units", 5*time.Second), diag.StatusUnknown,
		[]string{"systemd is not on bus"}, []string{"diag.dbus_address"})

	gone := "unix:path=" + t.TempDir() + "/none"
	cs = diag.ServiceChecks(gone, []string{"x.service"}, []string{"org.x"})
	r := diag.Run(t.Context(), cs, diag.Options{Timeout: 5 * time.Second})
	for _, res := range r.Checks {
		expectResult(t, res, diag.StatusUnknown, []string{"cannot reach bus " + gone}, []string{"diag.dbus_address"})
	}
}
