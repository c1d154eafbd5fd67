package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/sys/libvirt"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

func newVMCmd(a *App) *cobra.Command {
	cmd := newGroupCmd("vm", "Create and manage libvirt guests on the OVS bridges",
		`Create libvirt/KVM guests whose NICs plug into the Open vSwitch bridges
(virtualport openvswitch), with VNC on 127.0.0.1 for noVNC, optional UEFI and
PCI passthrough, and manage them. The libvirt URI is vm.uri (default
qemu:///system). Guests made here carry ghostbridge metadata; "vm delete"
touches only those, and only the volumes made for them.`)
	cmd.AddCommand(newVMCreateCmd(a), newVMListCmd(a), newVMStartCmd(a), newVMStopCmd(a),
		newVMDeleteCmd(a), newVMConsoleCmd(a), newVMXMLCmd(a))
	return cmd
}

// withVM connects to libvirt and runs fn; withSwitch adds the OVS check.
func (a *App) withVM(ctx context.Context, withSwitch bool, fn func(vm.Deps) error) (err error) {
	uri := a.conf.Config.VM.URI
	conn, err := libvirt.Dial(ctx, uri)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, conn.Close()) }()
	d := vm.Deps{Hyp: conn, Logger: a.log}
	if withSwitch {
		d.Switch = ovs.New(a.conf.Config.Net.OVSDBSocket)
	}
	return fn(d)
}

type vmCreateOptions struct {
	Profile, Memory, Disk, Pool string
	Base, Hostname, UserData    string
	VCPUs                       int
	NICs, HostDevs, SSHKeys     []string
	UEFI, Autostart, Start      bool
	PrintXML                    bool
}

func newVMCreateCmd(a *App) *cobra.Command {
	o := &vmCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a guest: a qcow2 volume, NICs on OVS bridges, VNC",
		Long: `Create a guest from flags, or from a [[vm.profiles]] entry named by
--profile with flags overriding it. Before anything is made, the name and
volume NAME.qcow2 must be free, every bridge must exist in Open vSwitch,
vCPUs and memory must fit the host, and each --hostdev must exist with the
IOMMU on. If a later step fails, what this run made is removed.

With --base, the disk is a qcow2 copy-on-write overlay on that volume of
the pool (--disk sizes the overlay); the base is never written. With
--hostname, --ssh-key or --user-data, a cloud-init NoCloud seed (an ISO
labelled cidata holding user-data and meta-data) is made as volume
NAME-cidata.iso and attached as a CD-ROM; "vm delete --remove-storage"
removes it with the disk.

Each NIC gets a MAC derived from the name and NIC index (locally
administered), so re-creating a guest keeps its addresses.`,
		Example: `  ghostbridge vm create web --vcpus 2 --memory 2GiB --disk 20GiB --nic ovsbr0 --nic ovsbr1:100 --start
  ghostbridge vm create gpu1 --profile gpu --hostdev 0000:01:00.0 --uefi --autostart
  ghostbridge vm create web --nic ovsbr1 --print-xml > web.xml
  ghostbridge vm create app --base debian-12.qcow2 --disk 20GiB --nic ovsbr1 --hostname app --ssh-key ~/.ssh/id_ed25519.pub --start`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVMCreate(cmd, a, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Profile, "profile", "", "start from the [[vm.profiles]] entry `NAME`")
	f.IntVar(&o.VCPUs, "vcpus", 0, "virtual CPUs (default 1, or the profile's)")
	f.StringVar(&o.Memory, "memory", "", "memory `SIZE`, e.g. 512MiB or 2GiB (default 1GiB, or the profile's)")
	f.StringVar(&o.Disk, "disk", "", "size of a new qcow2 volume, e.g. 20GiB (default: no disk, or the profile's)")
	f.StringVar(&o.Pool, "pool", "", "storage pool for the volumes (default vm.pool)")
	f.StringVar(&o.Base, "base", "", "make the disk a copy-on-write overlay on the pool's `VOLUME`")
	f.StringVar(&o.Hostname, "hostname", "", "cloud-init hostname (default: the guest name when a seed is made)")
	f.StringArrayVar(&o.SSHKeys, "ssh-key", nil, "cloud-init authorized keys from the public key `FILE` (repeatable)")
	f.StringVar(&o.UserData, "user-data", "", "cloud-init user-data `FILE`, used as is")
	f.StringArrayVar(&o.NICs, "nic", nil, "NIC on an OVS bridge: `BRIDGE` or BRIDGE:VLAN (repeatable)")
	f.StringArrayVar(&o.HostDevs, "hostdev", nil, "pass the PCI device `ADDRESS` through, e.g. 0000:01:00.0 (repeatable)")
	f.BoolVar(&o.UEFI, "uefi", false, "boot with UEFI firmware")
	f.BoolVar(&o.Autostart, "autostart", false, "start the guest when libvirtd starts")
	f.BoolVar(&o.Start, "start", false, "start the guest once created")
	f.BoolVar(&o.PrintXML, "print-xml", false, "print the domain XML and create nothing")
	return cmd
}

// vmSpec merges the profile and flags into a spec; bad values wrap
// vm.ErrInvalidConfig and name the flag.
func (a *App) vmSpec(cmd *cobra.Command, o *vmCreateOptions, name string) (vm.Spec, error) {
	c := a.conf.Config.VM
	s := vm.Spec{Name: name, Type: c.DomainType, VCPUs: 1, Memory: 1 << 30, Pool: c.Pool}
	nics := o.NICs
	if o.Profile != "" {
		i := slices.IndexFunc(c.Profiles, func(p VMProfile) bool { return p.Name == o.Profile })
		if i < 0 {
			names := make([]string, len(c.Profiles))
			for j, p := range c.Profiles {
				names[j] = p.Name
			}
			return s, fmt.Errorf("%w: --profile %q: no such [[vm.profiles]] entry (have: %s)", vm.ErrInvalidConfig, o.Profile, orNone(strings.Join(names, ", ")))
		}
		p := c.Profiles[i]
		if p.VCPUs > 0 {
			s.VCPUs = p.VCPUs
		}
		if p.Memory != "" {
			s.Memory, _ = vm.ParseSize(p.Memory) // validated with the config
		}
		if p.Disk != "" {
			s.Disk, _ = vm.ParseSize(p.Disk)
		}
		s.UEFI = p.UEFI
		if !cmd.Flags().Changed("nic") {
			nics = p.NICs
		}
	}
	var err error
	if cmd.Flags().Changed("vcpus") {
		s.VCPUs = o.VCPUs
	}
	if o.Memory != "" {
		if s.Memory, err = vm.ParseSize(o.Memory); err != nil {
			return s, fmt.Errorf("--memory: %w", err)
		}
	}
	if o.Disk != "" {
		if s.Disk, err = vm.ParseSize(o.Disk); err != nil {
			return s, fmt.Errorf("--disk: %w", err)
		}
	}
	if o.Pool != "" {
		s.Pool = o.Pool
	}
	for _, n := range nics {
		nic, err := vm.ParseNIC(n)
		if err != nil {
			return s, fmt.Errorf("--nic: %w", err)
		}
		s.NICs = append(s.NICs, nic)
	}
	for _, h := range o.HostDevs {
		addr, err := vm.ParsePCIAddress(h)
		if err != nil {
			return s, fmt.Errorf("--hostdev: %w", err)
		}
		s.HostDevs = append(s.HostDevs, addr)
	}
	s.UEFI = s.UEFI || o.UEFI
	s.Autostart, s.Start = o.Autostart, o.Start
	s.Base = o.Base
	if s.CloudInit, err = readCloudInit(o); err != nil {
		return s, err
	}
	return s, s.Validate()
}

func runVMCreate(cmd *cobra.Command, a *App, o *vmCreateOptions, name string) error {
	ctx := cmd.Context()
	s, err := a.vmSpec(cmd, o, name)
	if err != nil {
		return err
	}
	if o.PrintXML {
		x, err := vm.DomainXML(s)
		if err != nil {
			return err
		}
		if a.format == FormatJSON {
			return writeJSON(a.IO.Out, struct {
				Name string `json:"name"`
				XML  string `json:"xml"`
			}{s.Name, x})
		}
		_, err = fmt.Fprint(a.IO.Out, x)
		return err
	}
	return a.withVM(ctx, true, func(d vm.Deps) error {
		res, err := vm.Create(ctx, d, s)
		if err != nil {
			return err
		}
		if a.format == FormatJSON {
			return writeJSON(a.IO.Out, res)
		}
		var b strings.Builder
		state := "defined"
		if res.Started {
			state = "created and started"
		}
		fmt.Fprintf(&b, "%s %s\n", res.Name, state)
		for i, n := range res.NICs {
			fmt.Fprintf(&b, "  nic%d    %s on %s%s\n", i, n.MAC, n.Bridge, vlanSuffix(n.VLAN))
		}
		for _, v := range res.Volumes {
			fmt.Fprintf(&b, "  volume  %s/%s\n", v.Pool, v.Name)
		}
		for _, h := range res.HostDevs {
			fmt.Fprintf(&b, "  hostdev %s (IOMMU group %d)\n", h.Address, h.IOMMUGroup)
		}
		if res.Autostart {
			b.WriteString("  autostart on\n")
		}
		_, err = fmt.Fprint(a.IO.Out, b.String())
		return err
	})
}

// readCloudInit reads the key and user-data files named by the flags.
func readCloudInit(o *vmCreateOptions) (vm.CloudInit, error) {
	c := vm.CloudInit{Hostname: o.Hostname}
	for _, path := range o.SSHKeys {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("%w: --ssh-key: %w", vm.ErrInvalidConfig, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := vm.ValidSSHKey(line); err != nil {
				return c, fmt.Errorf("--ssh-key %s: %w", path, err)
			}
			c.SSHKeys = append(c.SSHKeys, line)
		}
	}
	if o.UserData != "" {
		b, err := os.ReadFile(o.UserData)
		if err != nil {
			return c, fmt.Errorf("%w: --user-data: %w", vm.ErrInvalidConfig, err)
		}
		if len(b) == 0 {
			return c, fmt.Errorf("%w: --user-data %s is empty", vm.ErrInvalidConfig, o.UserData)
		}
		c.UserData = b
	}
	return c, nil
}

func vlanSuffix(v int) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf(" vlan %d", v)
}
