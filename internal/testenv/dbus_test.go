package testenv

import (
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

func TestStartDBus(t *testing.T) {
	h := StartDBus(t)
	if !strings.HasPrefix(h.Address, "unix:path="+h.Socket) {
		t.Fatalf("address %q does not name socket %s", h.Address, h.Socket)
	}
	c, err := godbus.Connect(h.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The policy lets a test own any name, systemd's included.
	reply, err := c.RequestName("org.freedesktop.systemd1", godbus.NameFlagDoNotQueue)
	if err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName = %v, %v", reply, err)
	}
	var names []string
	if err := c.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range names {
		found = found || n == "org.freedesktop.systemd1"
	}
	if !found {
		t.Fatalf("ListNames lacks the owned name: %v", names)
	}
}
