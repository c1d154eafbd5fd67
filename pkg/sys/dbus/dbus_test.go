package dbus_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/dbus"
)

func dial(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	c, err := dbus.Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestUnits(t *testing.T) {
	bus := testenv.StartDBus(t)
	bus.ServeSystemd(t, map[string]testenv.SystemdUnit{
		"ghostbridge-snap.service": {LoadState: "loaded", ActiveState: "active", SubState: "running"},
		"qdrant.service":           {LoadState: "loaded", ActiveState: "failed", SubState: "failed"},
		"grafana.service":          {LoadState: "loaded", ActiveState: "inactive", SubState: "dead"},
	})
	c := dial(t, bus.Address)
	for name, want := range map[string]dbus.UnitState{
		"ghostbridge-snap.service": {LoadState: "loaded", ActiveState: "active", SubState: "running"},
		"qdrant.service":           {LoadState: "loaded", ActiveState: "failed", SubState: "failed"},
		"grafana.service":          {LoadState: "loaded", ActiveState: "inactive", SubState: "dead"},
		// Not loaded: GetUnit says NoSuchUnit, LoadUnit loads it as not-found.
		"nosuch.service": {LoadState: "not-found", ActiveState: "inactive", SubState: "dead"},
	} {
		got, err := c.Unit(t.Context(), name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got.Name != name || got.LoadState != want.LoadState || got.ActiveState != want.ActiveState || got.SubState != want.SubState || got.Path == "" {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
	if _, err := c.Unit(t.Context(), "noname"); err == nil {
		t.Error("an invalid unit name gave no error")
	}
}

func TestNameHasOwner(t *testing.T) {
	bus := testenv.StartDBus(t)
	bus.OwnName(t, "org.opdbus.Orchestrator")
	c := dial(t, bus.Address)
	for name, want := range map[string]bool{"org.opdbus.Orchestrator": true, "org.dbusmcp.Server": false, "org.freedesktop.DBus": true} {
		got, err := c.NameHasOwner(t.Context(), name)
		if err != nil || got != want {
			t.Errorf("NameHasOwner(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
}

func TestNoSystemd(t *testing.T) {
	bus := testenv.StartDBus(t)
	c := dial(t, bus.Address)
	_, err := c.Unit(t.Context(), "x.service")
	if !errors.Is(err, dbus.ErrNoOwner) {
		t.Fatalf("Unit without systemd on the bus: %v, want ErrNoOwner", err)
	}
}

// A service that owns its name but never answers ends the call with the
// context's error.
func TestSilentServiceBoundedByContext(t *testing.T) {
	bus := testenv.StartDBus(t)
	bus.ServeSilentSystemd(t)
	c := dial(t, bus.Address)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Unit(ctx, "x.service")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Unit on a silent systemd: %v, want DeadlineExceeded", err)
	}
	// The connection stays usable for calls the bus daemon answers.
	if ok, err := c.NameHasOwner(t.Context(), "org.freedesktop.systemd1"); err != nil || !ok {
		t.Fatalf("NameHasOwner after a timed-out call: %v, %v", ok, err)
	}
}

// A socket that accepts but never speaks D-Bus ends Dial with the
// context's error.
func TestDialSilentSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := dbus.Dial(ctx, "unix:path="+sock); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial a silent socket: %v, want DeadlineExceeded", err)
	}
	if _, err := dbus.Dial(t.Context(), "unix:path="+filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("Dial of a missing socket succeeded")
	}
}
