package vm

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// NIC is one guest network interface on an Open vSwitch bridge.
type NIC struct {
	Bridge string `json:"bridge"`
	// VLAN is the access VLAN tag on the bridge port; 0 means untagged.
	VLAN int    `json:"vlan,omitempty"`
	MAC  string `json:"mac"`
}

// ParseNIC reads "BRIDGE" or "BRIDGE:VLAN" (VLAN 1..4094).
func ParseNIC(s string) (NIC, error) {
	br, tag, hasTag := strings.Cut(strings.TrimSpace(s), ":")
	n := NIC{Bridge: br}
	if hasTag {
		v, err := strconv.Atoi(tag)
		if err != nil || v < 1 || v > 4094 {
			return NIC{}, fmt.Errorf("%w: NIC %q: want BRIDGE or BRIDGE:VLAN with VLAN 1..4094", ErrInvalidConfig, s)
		}
		n.VLAN = v
	}
	if !bridgeName.MatchString(br) {
		return NIC{}, fmt.Errorf("%w: NIC %q: bridge name must be 1..15 characters of a-z A-Z 0-9 . _ -", ErrInvalidConfig, s)
	}
	return n, nil
}

// Spec is everything `vm create` needs to know about a guest.
type Spec struct {
	Name string `json:"name"`
	// Type is the libvirt domain type: "kvm" on the host, "qemu" for TCG,
	// "test" for libvirt's test driver.
	Type   string `json:"type"`
	VCPUs  int    `json:"vcpus"`
	Memory uint64 `json:"memory_bytes"`
	// Disk is the size of the new qcow2 volume made in Pool; 0 means no disk.
	Disk uint64 `json:"disk_bytes"`
	// Base, when set, names a volume in Pool the disk is a copy-on-write
	// overlay on; Disk is then the overlay's size.
	Base string `json:"base,omitempty"`
	Pool string `json:"pool"`
	// CloudInit, when not empty, becomes a NoCloud seed image attached as
	// a CD-ROM, in a volume made in Pool.
	CloudInit CloudInit    `json:"cloud_init"`
	NICs      []NIC        `json:"nics"`
	UEFI      bool         `json:"uefi"`
	HostDevs  []PCIAddress `json:"hostdevs"`
	Autostart bool         `json:"autostart"`
	Start     bool         `json:"start"`
}

var (
	domainName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	bridgeName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,15}$`)
	poolName   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	hostName   = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
)

// MaxVCPUs bounds vCPUs before the host check, so a typo fails fast.
const MaxVCPUs = 4096

// MinMemory is the smallest guest memory accepted.
const MinMemory = 16 << 20

// Validate checks the spec on its own, without the host. Errors wrap
// ErrInvalidConfig and name the field and value.
func (s Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if !domainName.MatchString(s.Name) {
		return bad("name %q: want 1..63 characters of a-z A-Z 0-9 . _ -, starting with a letter or digit", s.Name)
	}
	switch s.Type {
	case "kvm", "qemu", "test":
	default:
		return bad("domain type %q: want kvm, qemu or test", s.Type)
	}
	if s.VCPUs < 1 || s.VCPUs > MaxVCPUs {
		return bad("vcpus %d: want 1..%d", s.VCPUs, MaxVCPUs)
	}
	if s.Memory < MinMemory || s.Memory%1024 != 0 {
		return bad("memory %s: want at least %s in whole KiB", FormatSize(s.Memory), FormatSize(MinMemory))
	}
	if (s.Disk > 0 || !s.CloudInit.Empty()) && !poolName.MatchString(s.Pool) {
		return bad("pool %q: want a storage pool name", s.Pool)
	}
	if s.Base != "" {
		if s.Disk == 0 {
			return bad("base %q: give the overlay's size with --disk (at least the base's size)", s.Base)
		}
		if !poolName.MatchString(s.Base) || s.Base == VolumeName(s.Name) {
			return bad("base %q: want the name of another volume in pool %s", s.Base, s.Pool)
		}
	}
	if h := s.CloudInit.Hostname; h != "" && !hostName.MatchString(h) {
		return bad("hostname %q: want letters, digits and hyphens, dot-separated, up to 253 characters", h)
	}
	for i, k := range s.CloudInit.SSHKeys {
		if err := ValidSSHKey(k); err != nil {
			return fmt.Errorf("ssh key %d: %w", i+1, err)
		}
	}
	if len(s.NICs) == 0 {
		return bad("no NIC: want at least one --nic BRIDGE[:VLAN]")
	}
	for i, n := range s.NICs {
		if !bridgeName.MatchString(n.Bridge) {
			return bad("nic %d: bridge %q: want 1..15 characters of a-z A-Z 0-9 . _ -", i, n.Bridge)
		}
		if n.VLAN < 0 || n.VLAN > 4094 {
			return bad("nic %d: vlan %d: want 0 (untagged) or 1..4094", i, n.VLAN)
		}
	}
	seen := map[PCIAddress]bool{}
	for _, a := range s.HostDevs {
		if seen[a] {
			return bad("hostdev %s given twice", a)
		}
		seen[a] = true
	}
	return nil
}

// VolumeName is the name of the disk volume made for a guest.
func VolumeName(name string) string { return name + ".qcow2" }

// withMACs fills in each NIC's deterministic MAC.
func (s Spec) withMACs() Spec {
	nics := make([]NIC, len(s.NICs))
	for i, n := range s.NICs {
		n.MAC = MAC(s.Name, i).String()
		nics[i] = n
	}
	s.NICs = nics
	return s
}
