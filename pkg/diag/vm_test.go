package diag_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/diag"
	"github.com/ghostbridge/ghostbridge/pkg/sys/libvirt"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

func runVM(t *testing.T, in diag.VMInputs, timeout time.Duration) map[string]diag.Result {
	t.Helper()
	return runGroup(t, diag.VMChecks(in), timeout, 2)
}

// TestVMChecks runs a guest on libvirtd's test driver with NICs on two
// OVS bridges of a userspace Open vSwitch. The test driver names each
// NIC's host device (testnet0, ...) but, having no real taps, plugs
// nothing into OVS: the test adds the ports as libvirt's qemu driver does
// when it starts a guest (add-port with the attached MAC and interface
// ID), then breaks them.
func TestVMChecks(t *testing.T) {
	h := testenv.OVS(t)
	vsctl := func(args ...string) {
		t.Helper()
		if _, err := h.Vsctl(args...); err != nil {
			t.Fatal(err)
		}
	}
	for _, br := range []string{"ovsbr0", "ovsbr1"} {
		vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
	}
	d := testenv.StartLibvirtd(t)
	conn, err := libvirt.Dial(t.Context(), d.TestURI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s := vm.Spec{Name: "web", Type: "test", VCPUs: 1, Memory: 256 << 20, Disk: 1 << 30, Pool: "default-pool",
		NICs: []vm.NIC{{Bridge: "ovsbr0"}, {Bridge: "ovsbr1", VLAN: 100}}, Start: true}
	if _, err := vm.Create(t.Context(), vm.Deps{Hyp: conn, Switch: ovs.New(h.DB)}, s); err != nil {
		t.Fatal(err)
	}
	g, err := vm.RunningNICs(t.Context(), conn)
	if err != nil || len(g.NICs) != 2 {
		t.Fatalf("RunningNICs = %+v, %v", g, err)
	}
	for _, n := range g.NICs {
		if n.Dev == "" || !n.OVS || n.MAC == "" {
			t.Fatalf("NIC as read from the live XML: %+v", n)
		}
	}
	plug := func(br string, n vm.GuestNIC) {
		t.Helper()
		args := []string{"--may-exist", "add-port", br, n.Dev}
		if n.VLAN != 0 {
			args = append(args, fmt.Sprintf("tag=%d", n.VLAN))
		}
		vsctl(append(args, "--", "set", "Interface", n.Dev, "type=internal",
			"external-ids:attached-mac="+n.MAC, "external-ids:iface-status=active")...)
	}
	nic0, nic1 := g.NICs[0], g.NICs[1]
	if nic0.VLAN != 0 || nic1.VLAN != 100 {
		t.Fatalf("VLANs read from the live XML: %+v", g.NICs)
	}
	plug("ovsbr0", nic0)
	plug("ovsbr1", nic1)
	in := diag.VMInputs{URI: d.TestURI, OVSDB: h.DB}

	t.Run("healthy", func(t *testing.T) {
		rs := runVM(t, in, 10*time.Second)
		expectResult(t, rs["vm.libvirt"], diag.StatusPass, []string{"libvirt", d.TestURI, "answers"}, nil)
		expectResult(t, rs["vm.nics"], diag.StatusPass, []string{"2 Open vSwitch NICs of 2 running guests"}, nil)
	})
	t.Run("port removed", func(t *testing.T) {
		vsctl("del-port", "ovsbr1", nic1.Dev)
		rs := runVM(t, in, 10*time.Second)
		expectResult(t, rs["vm.nics"], diag.StatusFail,
			[]string{"1 of 2", "vm web NIC " + nic1.MAC, nic1.Dev + ") is not a port of any bridge, want ovsbr1"},
			[]string{"ovs-vsctl --may-exist add-port ovsbr1 " + nic1.Dev, "restart the guest"})
	})
	t.Run("port on the wrong bridge", func(t *testing.T) {
		plug("ovsbr0", nic1)
		rs := runVM(t, in, 10*time.Second)
		expectResult(t, rs["vm.nics"], diag.StatusFail, []string{nic1.Dev + ") is a port of ovsbr0, want ovsbr1"},
			[]string{"ovs-vsctl del-port ovsbr0 " + nic1.Dev})
		vsctl("del-port", "ovsbr0", nic1.Dev)
		plug("ovsbr1", nic1)
		expectResult(t, runVM(t, in, 10*time.Second)["vm.nics"], diag.StatusPass, nil, nil)
	})
	t.Run("wrong VLAN tag", func(t *testing.T) {
		vsctl("set", "Port", nic1.Dev, "tag=200")
		rs := runVM(t, in, 10*time.Second)
		expectResult(t, rs["vm.nics"], diag.StatusFail, []string{nic1.Dev + ") on ovsbr1 has VLAN tag 200, want 100"},
			[]string{"ovs-vsctl set Port " + nic1.Dev + " tag=100"})
		vsctl("set", "Port", nic0.Dev, "tag=5")
		vsctl("set", "Port", nic1.Dev, "tag=100")
		rs = runVM(t, in, 10*time.Second)
		expectResult(t, rs["vm.nics"], diag.StatusFail, []string{nic0.Dev + ") on ovsbr0 has VLAN tag 5, want 0"},
			[]string{"ovs-vsctl clear Port " + nic0.Dev + " tag"})
		vsctl("clear", "Port", nic0.Dev, "tag")
		expectResult(t, runVM(t, in, 10*time.Second)["vm.nics"], diag.StatusPass, nil, nil)
	})
	t.Run("bridge deleted", func(t *testing.T) {
		vsctl("del-br", "ovsbr1")
		rs := runVM(t, in, 10*time.Second)
		expectResult(t, rs["vm.nics"], diag.StatusFail, []string{"bridge ovsbr1 does not exist"}, []string{"ghostbridge net up"})
	})
	t.Run("ovs unreachable", func(t *testing.T) {
		gone := in
		gone.OVSDB = filepath.Join(t.TempDir(), "db.sock")
		rs := runVM(t, gone, 10*time.Second)
		expectResult(t, rs["vm.libvirt"], diag.StatusPass, nil, nil)
		expectResult(t, rs["vm.nics"], diag.StatusUnknown, []string{"Open vSwitch bridges at " + gone.OVSDB}, []string{"net.ovsdb_socket"})
	})
	t.Run("guest stopped", func(t *testing.T) {
		if _, err := d.Virsh(d.TestURI, "destroy", "web"); err != nil {
			t.Fatal(err)
		}
		// The test driver's own domain "test" runs, without bridge NICs.
		rs := runVM(t, in, 10*time.Second)
		expectResult(t, rs["vm.nics"], diag.StatusPass, []string{"none with a bridge NIC"}, nil)
	})
	t.Run("guest on a Linux bridge", func(t *testing.T) {
		// A NIC without <virtualport type='openvswitch'/> is plugged into a
		// Linux bridge by libvirt; OVS knowing no bridge of that name is
		// how it should be, not a fault.
		xml := filepath.Join(t.TempDir(), "lan.xml")
		dom := `<domain type='test'><name>lan</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type>hvm</type></os><devices>
<interface type='bridge'><mac address='52:54:00:aa:bb:01'/><source bridge='lanbr0'/><target dev='lanvnet0'/></interface>
</devices></domain>`
		if err := os.WriteFile(xml, []byte(dom), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"define", xml}, {"start", "lan"}} {
			if out, err := d.Virsh(d.TestURI, args...); err != nil {
				t.Fatalf("virsh %v: %v: %s", args, err, out)
			}
		}
		t.Cleanup(func() { _, _ = d.Virsh(d.TestURI, "destroy", "lan") })
		g, err := vm.RunningNICs(t.Context(), conn)
		if err != nil || len(g.NICs) != 1 || g.NICs[0].OVS || g.NICs[0].Bridge != "lanbr0" {
			t.Fatalf("RunningNICs = %+v, %v", g, err)
		}
		want := []string{"not Open vSwitch, not checked: 1 on Linux bridges", "vm lan NIC 52:54:00:aa:bb:01 on lanbr0"}
		expectResult(t, runVM(t, in, 10*time.Second)["vm.nics"], diag.StatusPass, want, nil)
		// With no OVS NIC to judge, Open vSwitch is not asked at all.
		gone := in
		gone.OVSDB = filepath.Join(t.TempDir(), "db.sock")
		expectResult(t, runVM(t, gone, 10*time.Second)["vm.nics"], diag.StatusPass, want, nil)

		// Next to an OVS guest whose bridge is gone, only the OVS NIC fails.
		if out, err := d.Virsh(d.TestURI, "start", "web"); err != nil {
			t.Fatalf("virsh start web: %v: %s", err, out)
		}
		rs := runVM(t, in, 10*time.Second)
		expectResult(t, rs["vm.nics"], diag.StatusFail,
			[]string{"of 2 Open vSwitch NICs", "bridge ovsbr1 does not exist", "1 on Linux bridges"}, []string{"ghostbridge net up"})
		if strings.Contains(rs["vm.nics"].Detail, "lanbr0 does not exist") {
			t.Errorf("Linux-bridge NIC judged against OVS: %s", rs["vm.nics"].Detail)
		}
	})
}

// A libvirtd that is not there fails vm.libvirt; one that accepts and
// never answers (a daemon still starting its drivers) is unknown after the
// timeout, and neither hangs diag.
func TestVMLibvirtUnreachable(t *testing.T) {
	dir := t.TempDir()
	gone := diag.VMInputs{URI: "test+unix:///default?socket=" + filepath.Join(dir, "none"), OVSDB: filepath.Join(dir, "db.sock")}
	rs := runVM(t, gone, 5*time.Second)
	expectResult(t, rs["vm.libvirt"], diag.StatusFail, []string{"not reachable"}, []string{"systemctl status libvirtd.service", "vm.uri"})
	expectResult(t, rs["vm.nics"], diag.StatusUnknown, []string{"not reachable"}, []string{"vm.libvirt"})

	sock := filepath.Join(dir, "silent")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	// Connections are held open, unanswered, until the listener closes.
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	silent := diag.VMInputs{URI: "test+unix:///default?socket=" + sock, OVSDB: gone.OVSDB}
	rs = runVM(t, silent, 300*time.Millisecond)
	expectResult(t, rs["vm.libvirt"], diag.StatusUnknown, nil, []string{"diag.timeout"})
	expectResult(t, rs["vm.nics"], diag.StatusUnknown, nil, []string{"diag.timeout"})
}
