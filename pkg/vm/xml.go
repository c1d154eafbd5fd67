package vm

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// MetadataNS is the XML namespace of the metadata element that marks a
// domain as made by ghostbridge and lists the volumes made for it.
const MetadataNS = "https://ghostbridge.dev/xmlns/vm/1"

// Metadata is what a domain made by ghostbridge records about itself.
type Metadata struct {
	XMLName xml.Name     `xml:"https://ghostbridge.dev/xmlns/vm/1 vm"`
	Volumes []VolumeRef  `xml:"volume"`
	HostDev []PCIAddrXML `xml:"hostdev"`
}

// VolumeRef names a storage volume made for the guest.
type VolumeRef struct {
	Pool string `xml:"pool,attr" json:"pool"`
	Name string `xml:"name,attr" json:"name"`
}

// PCIAddrXML records a passed-through device by its sysfs name.
type PCIAddrXML struct {
	Address string `xml:"address,attr"`
}

// ownVolumes are the volumes Create makes for s, all in s.Pool.
func ownVolumes(s Spec) []string {
	var out []string
	if s.Disk > 0 {
		out = append(out, VolumeName(s.Name))
	}
	if !s.CloudInit.Empty() {
		out = append(out, SeedVolumeName(s.Name))
	}
	return out
}

func uintp(v uint) *uint { return &v }

// DomainXML renders the domain definition for s. It is pure: the same spec
// always gives the same bytes.
func DomainXML(s Spec) (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	s = s.withMACs()
	md := Metadata{}
	for _, v := range ownVolumes(s) {
		md.Volumes = append(md.Volumes, VolumeRef{Pool: s.Pool, Name: v})
	}
	for _, a := range s.HostDevs {
		md.HostDev = append(md.HostDev, PCIAddrXML{Address: a.String()})
	}
	mdXML, err := xml.Marshal(md)
	if err != nil {
		return "", fmt.Errorf("domain %s metadata: %w", s.Name, err)
	}
	d := &libvirtxml.Domain{
		Type:          s.Type,
		Name:          s.Name,
		Metadata:      &libvirtxml.DomainMetadata{XML: string(mdXML)},
		Memory:        &libvirtxml.DomainMemory{Value: uint(s.Memory / 1024), Unit: "KiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: uint(s.Memory / 1024), Unit: "KiB"},
		VCPU:          &libvirtxml.DomainVCPU{Placement: "static", Value: uint(s.VCPUs)},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Arch: "x86_64", Type: "hvm"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}, {Dev: "network"}},
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
			APIC: &libvirtxml.DomainFeatureAPIC{},
		},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if s.UEFI {
		d.OS.Firmware = "efi"
	}
	if s.Type == "kvm" {
		d.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	}
	dev := d.Devices
	if s.Disk > 0 {
		dev.Disks = append(dev.Disks, libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
			Source: &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: s.Pool, Volume: VolumeName(s.Name)}},
			Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
		})
	}
	if !s.CloudInit.Empty() {
		// SATA works on both i440fx and q35 machines; libvirt adds the
		// AHCI controller.
		dev.Disks = append(dev.Disks, libvirtxml.DomainDisk{
			Device:   "cdrom",
			Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
			Source:   &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: s.Pool, Volume: SeedVolumeName(s.Name)}},
			Target:   &libvirtxml.DomainDiskTarget{Dev: "sda", Bus: "sata"},
			ReadOnly: &libvirtxml.DomainDiskReadOnly{},
		})
	}
	for _, n := range s.NICs {
		iface := libvirtxml.DomainInterface{
			MAC:         &libvirtxml.DomainInterfaceMAC{Address: n.MAC},
			Source:      &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Bridge}},
			VirtualPort: &libvirtxml.DomainInterfaceVirtualPort{Params: &libvirtxml.DomainInterfaceVirtualPortParams{OpenVSwitch: &libvirtxml.DomainInterfaceVirtualPortParamsOpenVSwitch{}}},
			Model:       &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}
		if n.VLAN > 0 {
			iface.VLan = &libvirtxml.DomainInterfaceVLan{Tags: []libvirtxml.DomainInterfaceVLanTag{{ID: uint(n.VLAN)}}}
		}
		dev.Interfaces = append(dev.Interfaces, iface)
	}
	for _, a := range s.HostDevs {
		dev.Hostdevs = append(dev.Hostdevs, libvirtxml.DomainHostdev{
			Managed: "yes",
			SubsysPCI: &libvirtxml.DomainHostdevSubsysPCI{Source: &libvirtxml.DomainHostdevSubsysPCISource{
				Address: &libvirtxml.DomainAddressPCI{Domain: uintp(uint(a.Domain)), Bus: uintp(uint(a.Bus)), Slot: uintp(uint(a.Slot)), Function: uintp(uint(a.Function))},
			}},
		})
	}
	// VNC listens on loopback only: noVNC on the host (port 6080) is the
	// way in, never the VNC port itself.
	dev.Graphics = []libvirtxml.DomainGraphic{{VNC: &libvirtxml.DomainGraphicVNC{
		Port: -1, AutoPort: "yes", Listen: "127.0.0.1",
		Listeners: []libvirtxml.DomainGraphicListener{{Address: &libvirtxml.DomainGraphicListenerAddress{Address: "127.0.0.1"}}},
	}}}
	dev.Videos = []libvirtxml.DomainVideo{{Model: libvirtxml.DomainVideoModel{Type: "virtio"}}}
	dev.Inputs = []libvirtxml.DomainInput{{Type: "tablet", Bus: "usb"}}
	dev.Serials = []libvirtxml.DomainSerial{{Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}}}
	dev.Consoles = []libvirtxml.DomainConsole{{Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}, Target: &libvirtxml.DomainConsoleTarget{Type: "serial"}}}
	out, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("domain %s XML: %w", s.Name, err)
	}
	return out + "\n", nil
}

// parsedDomain is what List and Console read back from libvirt's XML.
type parsedDomain struct {
	vcpus   int
	memory  uint64 // bytes
	nics    []NIC
	meta    *Metadata
	vncPort int // -1 when no port is allocated (the guest is off)
}

// domainDoc is the part of libvirt's domain XML that List and Console read.
// It is a small struct rather than libvirtxml.Domain because `vm list`
// decodes one document per guest, and decoding only these fields is several
// times cheaper than the full schema.
type domainDoc struct {
	XMLName xml.Name `xml:"domain"`
	VCPU    string   `xml:"vcpu"`
	Memory  struct {
		Value string `xml:",chardata"`
		Unit  string `xml:"unit,attr"`
	} `xml:"memory"`
	Metadata *struct {
		Inner string `xml:",innerxml"`
	} `xml:"metadata"`
	Interfaces []struct {
		MAC struct {
			Address string `xml:"address,attr"`
		} `xml:"mac"`
		Source struct {
			Bridge string `xml:"bridge,attr"`
		} `xml:"source"`
		VLANTags []struct {
			ID int `xml:"id,attr"`
		} `xml:"vlan>tag"`
	} `xml:"devices>interface"`
	Graphics []struct {
		Type string `xml:"type,attr"`
		Port string `xml:"port,attr"`
	} `xml:"devices>graphics"`
}

func parseDomain(text string) (parsedDomain, error) {
	p := parsedDomain{vncPort: -1, nics: []NIC{}}
	var doc domainDoc
	if err := xml.Unmarshal([]byte(text), &doc); err != nil {
		return p, err
	}
	if v := strings.TrimSpace(doc.VCPU); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return p, fmt.Errorf("vcpu %q: %w", v, err)
		}
		p.vcpus = n
	}
	if v := strings.TrimSpace(doc.Memory.Value); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return p, fmt.Errorf("memory %q: %w", v, err)
		}
		p.memory = memBytes(n, doc.Memory.Unit)
	}
	if doc.Metadata != nil {
		p.meta = findMetadata(doc.Metadata.Inner)
	}
	for _, i := range doc.Interfaces {
		n := NIC{MAC: i.MAC.Address, Bridge: i.Source.Bridge}
		if len(i.VLANTags) == 1 {
			n.VLAN = i.VLANTags[0].ID
		}
		p.nics = append(p.nics, n)
	}
	for _, g := range doc.Graphics {
		if g.Type == "vnc" {
			if port, err := strconv.Atoi(g.Port); err == nil {
				p.vncPort = port
			}
			break
		}
	}
	return p, nil
}

// findMetadata returns ghostbridge's element among the <metadata> children,
// found by its namespace: other tools may keep their own elements there.
func findMetadata(inner string) *Metadata {
	dec := xml.NewDecoder(strings.NewReader("<m>" + inner + "</m>"))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Space == MetadataNS && se.Name.Local == "vm" {
			var m Metadata
			if err := dec.DecodeElement(&m, &se); err != nil {
				return nil
			}
			return &m
		}
	}
}
