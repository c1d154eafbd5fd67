package libvirt_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
		NICs: []vm.NIC{{Bridge: "ovsbr0"}, {Bridge: "ovsbr1", VLAN: 7}}, HostDevs: []vm.PCIAddress{{Bus: 1}},
		CloudInit: vm.CloudInit{Hostname: "gbdefine"}})
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
	for _, must := range []string{"<virtualport type='openvswitch'>", "<tag id='7'/>", "listen='127.0.0.1'", "<hostdev mode='subsystem' type='pci' managed='yes'>", "ghostbridge.dev/xmlns/vm/1", "<disk type='volume' device='cdrom'>", "volume='gbdefine-cidata.iso'"} {
		if !strings.Contains(got, must) {
			t.Errorf("qemu driver's XML lacks %s:\n%s", must, got)
		}
	}
}

// TestQEMUSeedUpload creates a guest with a cloud-init seed through the
// qemu driver, whose directory pools take volume uploads: the seed lands in
// the pool as the exact image BuildSeedISO makes, the CD-ROM points at it,
// and delete --remove-storage removes it.
func TestQEMUSeedUpload(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testenv.Skip(t, "qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
	}
	d := testenv.StartLibvirtd(t)
	ctx := t.Context()
	c, err := libvirt.Dial(ctx, d.QEMUURI)
	if err != nil {
		testenv.Skip(t, "qemu driver: "+err.Error())
	}
	t.Cleanup(func() { _ = c.Close() })
	dir := t.TempDir()
	if out, err := d.Virsh(d.QEMUURI, "pool-create-as", "gbseed", "dir", "--target", dir); err != nil {
		t.Fatalf("pool-create-as: %v %s", err, out)
	}
	t.Cleanup(func() { _, _ = d.Virsh(d.QEMUURI, "pool-destroy", "gbseed") })
	ci := vm.CloudInit{Hostname: "seedy", SSHKeys: []string{"ssh-ed25519 AAAAC3Nza op@host"}}
	s := vm.Spec{Name: "gbseed", Type: "qemu", VCPUs: 1, Memory: 64 << 20, Pool: "gbseed", NICs: []vm.NIC{{Bridge: "ovsbr0"}}, CloudInit: ci}
	deps := vm.Deps{Hyp: c}
	res, err := vm.Create(ctx, deps, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Undefine(context.Background(), "gbseed") })
	if len(res.Volumes) != 1 || res.Volumes[0].Name != "gbseed-cidata.iso" {
		t.Errorf("volumes = %+v", res.Volumes)
	}
	want, err := vm.BuildSeedISO(vm.SeedLabel, vm.SeedFiles("gbseed", ci))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "gbseed-cidata.iso"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("seed in the pool: %d bytes, %v; want the %d-byte image", len(got), err, len(want))
	}
	if x, _ := d.Virsh(d.QEMUURI, "dumpxml", "gbseed"); !strings.Contains(x, "volume='gbseed-cidata.iso'") {
		t.Errorf("dumpxml lacks the seed CD-ROM:\n%s", x)
	}
	r, err := vm.Delete(ctx, deps, "gbseed", true)
	if err != nil || len(r.RemovedVolumes) != 1 {
		t.Fatalf("delete: %+v, %v", r, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "gbseed-cidata.iso")); !os.IsNotExist(err) {
		t.Errorf("seed left after delete --remove-storage: %v", err)
	}
}
