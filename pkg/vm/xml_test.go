package vm

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/vm")

// TestDomainXMLGolden pins the generated XML: the parts operators rely on
// (openvswitch virtualport, VLAN, MACs, VNC on loopback, UEFI, hostdev,
// metadata) are reviewed in the golden file.
func TestDomainXMLGolden(t *testing.T) {
	for name, s := range map[string]Spec{
		"vm-minimal.xml": {Name: "small", Type: "kvm", VCPUs: 1, Memory: 512 << 20, NICs: []NIC{{Bridge: "ovsbr1"}}},
		"vm-full.xml": {Name: "gpu-box", Type: "kvm", VCPUs: 8, Memory: 16 << 30, Disk: 100 << 30, Pool: "default",
			NICs: []NIC{{Bridge: "ovsbr0"}, {Bridge: "ovsbr1", VLAN: 42}}, UEFI: true,
			HostDevs:  []PCIAddress{{Bus: 1}, {Bus: 1, Function: 1}},
			CloudInit: CloudInit{Hostname: "gpu-box", SSHKeys: []string{"ssh-ed25519 AAAAC3Nza op@host"}}},
	} {
		got, err := DomainXML(s)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("..", "..", "testdata", "vm", name)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./pkg/vm -update writes it)", err)
		}
		if got != string(want) {
			t.Errorf("%s differs (go test ./pkg/vm -update rewrites it)\n--- got\n%s", name, got)
		}
		again, _ := DomainXML(s)
		if again != got {
			t.Errorf("%s: DomainXML is not deterministic", name)
		}
		p, err := parseDomain(got)
		if err != nil || p.meta == nil {
			t.Fatalf("%s: metadata not read back: %v", name, err)
		}
		if s.Disk > 0 && (len(p.meta.Volumes) != 2 || p.meta.Volumes[0].Name != VolumeName(s.Name) || p.meta.Volumes[1].Name != SeedVolumeName(s.Name)) {
			t.Errorf("%s: metadata volumes = %+v, want the disk and the seed", name, p.meta.Volumes)
		}
		if hasSeed := strings.Contains(got, `<disk type="volume" device="cdrom">`); hasSeed != !s.CloudInit.Empty() {
			t.Errorf("%s: cloud-init CD-ROM present %v, want %v", name, hasSeed, !s.CloudInit.Empty())
		}
		for _, must := range []string{`<virtualport type="openvswitch">`, `listen="127.0.0.1"`, MAC(s.Name, 0).String()} {
			if !strings.Contains(got, must) {
				t.Errorf("%s lacks %s", name, must)
			}
		}
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{Name: "a", Type: "kvm", VCPUs: 1, Memory: 1 << 30, NICs: []NIC{{Bridge: "ovsbr0"}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for what, mut := range map[string]func(*Spec){
		"vcpus 0":      func(s *Spec) { s.VCPUs = 0 },
		"name":         func(s *Spec) { s.Name = "a b" },
		"empty name":   func(s *Spec) { s.Name = "" },
		"type":         func(s *Spec) { s.Type = "xen" },
		"memory":       func(s *Spec) { s.Memory = 1 << 20 },
		"no nic":       func(s *Spec) { s.NICs = nil },
		"vlan":         func(s *Spec) { s.NICs = []NIC{{Bridge: "b", VLAN: 4095}} },
		"bridge":       func(s *Spec) { s.NICs = []NIC{{Bridge: "a/b"}} },
		"pool":         func(s *Spec) { s.Disk = 1 << 30; s.Pool = "" },
		"hostdev":      func(s *Spec) { s.HostDevs = []PCIAddress{{Bus: 1}, {Bus: 1}} },
		"base no disk": func(s *Spec) { s.Base = "debian.qcow2"; s.Pool = "default" },
		"base is self": func(s *Spec) { s.Base = "a.qcow2"; s.Disk = 1 << 30; s.Pool = "default" },
		"seed no pool": func(s *Spec) { s.CloudInit.Hostname = "h" },
		"hostname":     func(s *Spec) { s.CloudInit.Hostname = "a_b"; s.Pool = "default" },
		"private key": func(s *Spec) {
			s.CloudInit.SSHKeys = []string{"-----BEGIN OPENSSH PRIVATE KEY-----"}
			s.Pool = "default"
		},
	} {
		s := ok
		mut(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), ErrInvalidConfig.Error()) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Validate = %v, want a one-line ErrInvalidConfig", what, err)
		}
	}
}

func TestParseNIC(t *testing.T) {
	n, err := ParseNIC("ovsbr1:42")
	if err != nil || n.Bridge != "ovsbr1" || n.VLAN != 42 {
		t.Fatalf("ParseNIC = %+v, %v", n, err)
	}
	for _, bad := range []string{"", "br:0", "br:4095", "br:x", "a very long bridge name"} {
		if _, err := ParseNIC(bad); err == nil {
			t.Errorf("ParseNIC(%q) accepted", bad)
		}
	}
}

// fakeSysfs builds the part of sysfs IOMMUGroup reads.
func fakeSysfs(t *testing.T, iommu bool, devs map[string]int) string {
	root := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "kernel", "iommu_groups"), 0o755))
	for addr, g := range devs {
		dev := filepath.Join(root, "bus", "pci", "devices", addr)
		must(os.MkdirAll(dev, 0o755))
		if iommu {
			gdir := filepath.Join(root, "kernel", "iommu_groups", strconv.Itoa(g))
			must(os.MkdirAll(gdir, 0o755))
			must(os.Symlink(gdir, filepath.Join(dev, "iommu_group")))
		}
	}
	return root
}

func TestIOMMUGroup(t *testing.T) {
	a := PCIAddress{Bus: 1}
	g, err := IOMMUGroup(fakeSysfs(t, true, map[string]int{"0000:01:00.0": 7}), a)
	if err != nil || g != 7 {
		t.Fatalf("IOMMUGroup = %d, %v; want 7", g, err)
	}
	if _, err := IOMMUGroup(fakeSysfs(t, false, map[string]int{"0000:01:00.0": 7}), a); err == nil || !strings.Contains(err.Error(), "IOMMU is off") {
		t.Errorf("IOMMU off: %v", err)
	}
	if _, err := IOMMUGroup(fakeSysfs(t, true, nil), a); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing device: %v", err)
	}
}

// TestParseDomainLibvirtXML reads XML as libvirt hands it back (single
// quotes, extra elements, another tool's metadata before ours, a running
// guest's VNC port) into what `vm list` shows.
func TestParseDomainLibvirtXML(t *testing.T) {
	const text = `<domain type='kvm' id='3'>
  <name>web</name>
  <uuid>0d38cc7f-fa56-4f21-a018-a50221272e63</uuid>
  <metadata>
    <other:thing xmlns:other='https://example.org/other'><vm/></other:thing>
    <gb:vm xmlns:gb='https://ghostbridge.dev/xmlns/vm/1'><gb:volume pool='default' name='web.qcow2'/></gb:vm>
  </metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='bridge'>
      <mac address='02:00:00:00:00:01'/>
      <source bridge='ovsbr0'/>
      <vlan><tag id='100'/></vlan>
      <virtualport type='openvswitch'><parameters interfaceid='x'/></virtualport>
      <target dev='vnet0'/>
    </interface>
    <interface type='network'>
      <mac address='02:00:00:00:00:02'/>
      <source network='default'/>
    </interface>
    <graphics type='spice' port='5930'/>
    <graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1'/>
  </devices>
</domain>`
	p, err := parseDomain(text)
	if err != nil {
		t.Fatal(err)
	}
	if p.vcpus != 2 || p.memory != 2<<30 || p.vncPort != 5901 {
		t.Errorf("vcpus %d memory %d vnc %d; want 2, 2 GiB, 5901", p.vcpus, p.memory, p.vncPort)
	}
	want := []NIC{{Bridge: "ovsbr0", VLAN: 100, MAC: "02:00:00:00:00:01"}, {MAC: "02:00:00:00:00:02"}}
	if len(p.nics) != 2 || p.nics[0] != want[0] || p.nics[1] != want[1] {
		t.Errorf("nics %+v, want %+v", p.nics, want)
	}
	if p.meta == nil || len(p.meta.Volumes) != 1 || p.meta.Volumes[0] != (VolumeRef{Pool: "default", Name: "web.qcow2"}) {
		t.Errorf("metadata %+v, want ours with the one volume", p.meta)
	}

	off, err := parseDomain(`<domain type='kvm'><name>x</name><vcpu>1</vcpu><memory>65536</memory><devices><graphics type='vnc' port='-1' autoport='yes'/></devices></domain>`)
	if err != nil || off.vncPort != -1 || off.meta != nil || off.memory != 64<<20 || len(off.nics) != 0 {
		t.Errorf("stopped foreign guest: %+v, %v", off, err)
	}
	for _, bad := range []string{`<network><name>x</name></network>`, `<domain><vcpu>two</vcpu></domain>`, `<domain`} {
		if _, err := parseDomain(bad); err == nil {
			t.Errorf("parseDomain(%q) succeeded", bad)
		}
	}
}
