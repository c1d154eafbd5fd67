package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// dbusConfig is a bus that anyone on the machine may use for anything:
// tests own any name, including systemd's, on their private bus.
const dbusConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// DBus is a private dbus-daemon for one test.
type DBus struct {
	// Address is the bus address in D-Bus syntax, for dbus.Dial.
	Address string
	Socket  string
	cmd     *exec.Cmd
}

// StartDBus starts a dbus-daemon with a configuration of its own (a unix
// socket in a temp dir, every name and message allowed) in the
// foreground, and kills it when the test ends. It skips (or fails when
// Strict) when dbus-daemon is not installed or cannot start.
func StartDBus(t testing.TB) *DBus {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		Skip(t, "dbus-daemon not found (install dbus)")
	}
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "gbbus")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("clean up dbus-daemon: %v", err)
		}
	})
	h := &DBus{Socket: filepath.Join(dir, "bus.sock")}
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(dbusConfig, h.Socket)), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(bin, "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=1")
	var stderr strings.Builder
	h.cmd.Stderr = &stderr
	out, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		Skip(t, fmt.Sprintf("start %s: %v", strings.Join(h.cmd.Args, " "), err))
	}
	t.Cleanup(h.stop)
	// The daemon prints its address once it listens.
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case h.Address = <-line:
	case <-time.After(30 * time.Second):
	}
	if h.Address == "" {
		Skip(t, fmt.Sprintf("%s printed no address: %s", strings.Join(h.cmd.Args, " "), strings.TrimSpace(stderr.String())))
	}
	return h
}

// stop kills the daemon and reaps it; Wait's error is the kill itself.
func (h *DBus) stop() {
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}

// SystemdUnit is a unit as the systemd stand-in reports it.
type SystemdUnit struct {
	LoadState, ActiveState, SubState string
}

// connect opens a connection of the test's own to the bus, closed when
// the test ends.
func (h *DBus) connect(t testing.TB) *godbus.Conn {
	t.Helper()
	c, err := godbus.Connect(h.Address)
	if err != nil {
		t.Fatalf("connect to test bus %s: %v", h.Address, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// OwnName makes a connection of the test's own the owner of name until
// the test ends (or ReleaseName).
func (h *DBus) OwnName(t testing.TB, name string) *godbus.Conn {
	t.Helper()
	c := h.connect(t)
	reply, err := c.RequestName(name, godbus.NameFlagDoNotQueue)
	if err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s on the test bus: reply %v, %v", name, reply, err)
	}
	return c
}

// ServeSystemd owns org.freedesktop.systemd1 on the bus and serves the
// part of systemd's API that readers of unit state use, as systemd
// answers it: Manager.GetUnit gives a loaded unit's object path or
// org.freedesktop.systemd1.NoSuchUnit; Manager.LoadUnit also loads a unit
// it does not know, as LoadState "not-found", inactive/dead; each unit
// object answers org.freedesktop.DBus.Properties Get/GetAll for
// org.freedesktop.systemd1.Unit (Id, LoadState, ActiveState, SubState).
// Units in the map with LoadState "not-found" are not loaded until
// LoadUnit, as systemd does.
func (h *DBus) ServeSystemd(t testing.TB, units map[string]SystemdUnit) {
	t.Helper()
	c := h.connect(t)
	m := &systemdManager{c: c, units: map[string]SystemdUnit{}, exported: map[string]bool{}}
	for name, u := range units {
		m.units[name] = u
	}
	if err := c.Export(m, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	h.ownOn(t, c, "org.freedesktop.systemd1")
}

// ServeSilentSystemd owns org.freedesktop.systemd1 and accepts calls to
// its Manager without ever answering them while the test runs: a wedged
// service manager.
func (h *DBus) ServeSilentSystemd(t testing.TB) {
	t.Helper()
	c := h.connect(t)
	s := &silentManager{release: make(chan struct{})}
	t.Cleanup(func() { close(s.release) })
	if err := c.Export(s, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	h.ownOn(t, c, "org.freedesktop.systemd1")
}

func (h *DBus) ownOn(t testing.TB, c *godbus.Conn, name string) {
	t.Helper()
	reply, err := c.RequestName(name, godbus.NameFlagDoNotQueue)
	if err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s on the test bus: reply %v, %v", name, reply, err)
	}
}

type systemdManager struct {
	c        *godbus.Conn
	mu       sync.Mutex
	units    map[string]SystemdUnit
	exported map[string]bool
}

// GetUnit is org.freedesktop.systemd1.Manager.GetUnit.
func (m *systemdManager) GetUnit(name string) (godbus.ObjectPath, *godbus.Error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.units[name]
	if !ok || (u.LoadState == "not-found" && !m.exported[name]) {
		return "", godbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{fmt.Sprintf("Unit %s not loaded.", name)})
	}
	return m.export(name, u)
}

// LoadUnit is org.freedesktop.systemd1.Manager.LoadUnit.
func (m *systemdManager) LoadUnit(name string) (godbus.ObjectPath, *godbus.Error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !strings.Contains(name, ".") {
		return "", godbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{fmt.Sprintf("Unit name %s is not valid.", name)})
	}
	u, ok := m.units[name]
	if !ok {
		u = SystemdUnit{LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
		m.units[name] = u
	}
	return m.export(name, u)
}

func (m *systemdManager) export(name string, u SystemdUnit) (godbus.ObjectPath, *godbus.Error) {
	path := godbus.ObjectPath("/org/freedesktop/systemd1/unit/" + systemdEscape(name))
	if !m.exported[name] {
		p := &unitProps{props: map[string]godbus.Variant{
			"Id": godbus.MakeVariant(name), "LoadState": godbus.MakeVariant(u.LoadState),
			"ActiveState": godbus.MakeVariant(u.ActiveState), "SubState": godbus.MakeVariant(u.SubState),
			"Description": godbus.MakeVariant(name),
		}}
		if err := m.c.Export(p, path, "org.freedesktop.DBus.Properties"); err != nil {
			return "", godbus.MakeFailedError(err)
		}
		m.exported[name] = true
	}
	return path, nil
}

// systemdEscape is systemd's bus path escaping: every byte but
// [A-Za-z0-9] (and a leading digit) becomes _xx.
func systemdEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9' && i > 0) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return b.String()
}

type unitProps struct {
	props map[string]godbus.Variant
}

// Get is org.freedesktop.DBus.Properties.Get.
func (p *unitProps) Get(iface, name string) (godbus.Variant, *godbus.Error) {
	if iface != "org.freedesktop.systemd1.Unit" {
		return godbus.Variant{}, &godbus.ErrMsgUnknownInterface
	}
	v, ok := p.props[name]
	if !ok {
		return godbus.Variant{}, godbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{name})
	}
	return v, nil
}

// GetAll is org.freedesktop.DBus.Properties.GetAll.
func (p *unitProps) GetAll(iface string) (map[string]godbus.Variant, *godbus.Error) {
	if iface != "org.freedesktop.systemd1.Unit" {
		return nil, &godbus.ErrMsgUnknownInterface
	}
	return p.props, nil
}

type silentManager struct{ release chan struct{} }

// GetUnit never answers while the test runs.
func (s *silentManager) GetUnit(string) (godbus.ObjectPath, *godbus.Error) {
	<-s.release
	return "", godbus.NewError("org.freedesktop.DBus.Error.NoReply", nil)
}

// LoadUnit never answers while the test runs.
func (s *silentManager) LoadUnit(name string) (godbus.ObjectPath, *godbus.Error) {
	return s.GetUnit(name)
}
