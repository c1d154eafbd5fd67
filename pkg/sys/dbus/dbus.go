// Package dbus reads the state of a host's services over D-Bus, with
// github.com/godbus/dbus: systemd units the way systemctl reads them (the
// org.freedesktop.systemd1 Manager's GetUnit/LoadUnit, then the unit
// object's org.freedesktop.systemd1.Unit properties) and whether a bus
// name has an owner.
//
// Every call, the connection handshake included, is bounded by the
// caller's context, so a bus or a service that never answers ends the
// call with the context's error instead of hanging. The package only
// reads: it never starts, stops or reloads a unit, never requests a name
// and never reads the environment (the caller says which bus).
package dbus

import (
	"context"
	"errors"
	"fmt"

	godbus "github.com/godbus/dbus/v5"
)

// SystemBusAddress is the system bus's well-known socket, used when Dial
// is given "".
const SystemBusAddress = "unix:path=/run/dbus/system_bus_socket"

// D-Bus names of systemd's manager.
const (
	systemdName     = "org.freedesktop.systemd1"
	systemdPath     = godbus.ObjectPath("/org/freedesktop/systemd1")
	managerIface    = "org.freedesktop.systemd1.Manager"
	unitIface       = "org.freedesktop.systemd1.Unit"
	propertiesIface = "org.freedesktop.DBus.Properties"
)

// Errors callers tell apart.
var (
	// ErrNoSuchUnit: systemd does not know the unit and could not load it
	// (an invalid unit name, for instance). A unit without a unit file is
	// not this error: it loads with LoadState "not-found".
	ErrNoSuchUnit = errors.New("no such unit")
	// ErrNoOwner: the call's destination name has no owner on the bus
	// (for units: systemd is not on this bus).
	ErrNoOwner = errors.New("bus name has no owner")
)

// Conn is one private connection to a message bus.
type Conn struct {
	c     *godbus.Conn
	addr  string
	close context.CancelFunc
}

// Dial connects to the bus at address ("" means the system bus), in the
// D-Bus address syntax ("unix:path=/run/dbus/system_bus_socket"). The
// connection, authentication and Hello are abandoned when ctx ends first;
// the connection itself then lives on until Close.
func Dial(ctx context.Context, address string) (*Conn, error) {
	if address == "" {
		address = SystemBusAddress
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dbus %s: %w", address, err)
	}
	// The connection's own context closes it when cancelled, which is what
	// unblocks a handshake stuck on a bus that accepted and went silent.
	life, closeConn := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, closeConn)
	type result struct {
		c   *godbus.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := godbus.Connect(address, godbus.WithContext(life))
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		if !stop() {
			// ctx ended while the handshake finished: the connection is
			// being closed under us.
			if r.c != nil {
				_ = r.c.Close()
			}
			return nil, fmt.Errorf("dbus %s: %w", address, ctx.Err())
		}
		if r.err != nil {
			closeConn()
			return nil, fmt.Errorf("dbus %s: %w", address, r.err)
		}
		return &Conn{c: r.c, addr: address, close: closeConn}, nil
	case <-ctx.Done():
		// closeConn has run (AfterFunc); the goroutine ends when Connect
		// sees the closed transport.
		return nil, fmt.Errorf("dbus %s: %w", address, ctx.Err())
	}
}

// Close ends the connection.
func (c *Conn) Close() error {
	err := c.c.Close()
	c.close()
	return err
}

// Address is the bus address the connection was made to.
func (c *Conn) Address() string { return c.addr }

// NameHasOwner reports whether name (well-known or unique) has an owner,
// asking the bus daemon.
func (c *Conn) NameHasOwner(ctx context.Context, name string) (bool, error) {
	var has bool
	err := c.c.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has)
	if err != nil {
		return false, fmt.Errorf("dbus NameHasOwner %s: %w", name, classify(err))
	}
	return has, nil
}

// UnitState is a systemd unit's state as `systemctl show` reports it.
type UnitState struct {
	Name string `json:"name"`
	// Path is the unit's object path on the bus.
	Path string `json:"path"`
	// LoadState: loaded, not-found, bad-setting, error, masked.
	LoadState string `json:"load_state"`
	// ActiveState: active, reloading, inactive, failed, activating,
	// deactivating (also maintenance, refreshing on newer systemd).
	ActiveState string `json:"active_state"`
	// SubState is the unit type's own state: running, exited, dead, ...
	SubState    string `json:"sub_state"`
	Description string `json:"description,omitempty"`
}

// Unit reads a unit's state from systemd. A unit systemd has not loaded
// is loaded first (LoadUnit), as systemctl status does, so a unit without
// a unit file reports LoadState "not-found" rather than an error.
func (c *Conn) Unit(ctx context.Context, name string) (UnitState, error) {
	mgr := c.c.Object(systemdName, systemdPath)
	var path godbus.ObjectPath
	err := mgr.CallWithContext(ctx, managerIface+".GetUnit", 0, name).Store(&path)
	if isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
		err = mgr.CallWithContext(ctx, managerIface+".LoadUnit", 0, name).Store(&path)
	}
	if err != nil {
		return UnitState{Name: name}, fmt.Errorf("systemd unit %s: %w", name, classify(err))
	}
	var props map[string]godbus.Variant
	err = c.c.Object(systemdName, path).CallWithContext(ctx, propertiesIface+".GetAll", 0, unitIface).Store(&props)
	if err != nil {
		return UnitState{Name: name}, fmt.Errorf("systemd unit %s: properties of %s: %w", name, path, classify(err))
	}
	str := func(key string) string {
		s, _ := props[key].Value().(string)
		return s
	}
	st := UnitState{
		Name: name, Path: string(path),
		LoadState: str("LoadState"), ActiveState: str("ActiveState"), SubState: str("SubState"),
		Description: str("Description"),
	}
	if st.ActiveState == "" || st.LoadState == "" {
		return st, fmt.Errorf("systemd unit %s: %s lacks LoadState or ActiveState", name, path)
	}
	return st, nil
}

func isDBusError(err error, name string) bool {
	var e godbus.Error
	if errors.As(err, &e) {
		return e.Name == name
	}
	var pe *godbus.Error
	return errors.As(err, &pe) && pe.Name == name
}

// classify wraps the errors callers tell apart with the package's
// sentinels, keeping the bus's message.
func classify(err error) error {
	switch {
	case isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit"),
		isDBusError(err, "org.freedesktop.systemd1.LoadFailed"):
		return fmt.Errorf("%w: %w", ErrNoSuchUnit, err)
	case isDBusError(err, "org.freedesktop.DBus.Error.ServiceUnknown"),
		isDBusError(err, "org.freedesktop.DBus.Error.NameHasNoOwner"):
		return fmt.Errorf("%w: %w", ErrNoOwner, err)
	}
	return err
}
