package libvirt_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/libvirt"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

// TestQEMUDefine checks the qemu driver accepts the generated XML, with
// schema validation on: OVS virtualport with a VLAN, VNC on loopback, a
// PCI hostdev and a volume disk.
//
// The qemu driver probes qemu-system-x86 when it starts (about a minute
// here, under TCG); that is the price of knowing the XML is accepted. It
// defines a persistent domain in the host's /etc/libvirt/qemu and
// undefines it at the end.
func TestQEMUDefine(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testenv.Skip(t, "qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
	}
	d := testenv.StartLibvirtd(t)
	ctx := t.Context()
	c, err := libvirt.Dial(ctx, d.QEMUURI)
	if err != nil {
		testenv.Skip(t, "qemu driver: "+err.Error())
	}
	t.Cleanup(func() { _ = c.Close() }) // after the undefine below: cleanups run last-first
	x, err := vm.DomainXML(vm.Spec{Name: "gbdefine", Type: "qemu", VCPUs: 1, Memory: 256 << 20, Disk: 1 << 30, Pool: "default",
		NICs: []vm.NIC{{Bridge: "ovsbr0"}, {Bridge: "ovsbr1", VLAN: 7}}, HostDevs: []vm.PCIAddress{{Bus: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Define(ctx, x); err != nil {
		t.Fatalf("qemu driver refused the generated XML: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Undefine(context.Background(), "gbdefine"); err != nil {
			t.Error(err)
		}
	})
	got, err := d.Virsh(d.QEMUURI, "dumpxml", "gbdefine")
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"<virtualport type='openvswitch'>", "<tag id='7'/>", "listen='127.0.0.1'", "<hostdev mode='subsystem' type='pci' managed='yes'>", "ghostbridge.dev/xmlns/vm/1"} {
		if !strings.Contains(got, must) {
			t.Errorf("qemu driver's XML lacks %s:\n%s", must, got)
		}
	}
}
