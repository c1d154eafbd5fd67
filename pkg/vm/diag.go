package vm

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// GuestNIC is one bridge interface of a running guest, as its live XML
// says.
type GuestNIC struct {
	VM     string `json:"vm"`
	Bridge string `json:"bridge"`
	MAC    string `json:"mac"`
	// Dev is the host side of the interface (<target dev='vnet0'/>):
	// libvirt plugs it into the bridge as a port of that name. Empty when
	// the hypervisor reports none.
	Dev string `json:"dev"`
	// VLAN is the access tag the XML asks for (<vlan><tag id=.../>);
	// 0 means untagged.
	VLAN int `json:"vlan,omitempty"`
	// OVS: the interface has <virtualport type='openvswitch'/>.
	OVS bool `json:"ovs"`
}

// RunningGuests is what RunningNICs found.
type RunningGuests struct {
	// Guests counts the running domains.
	Guests int `json:"guests"`
	// NICs are their interfaces that plug into a bridge, by guest name
	// then XML order; other interface types (network, direct, user) are
	// not listed.
	NICs []GuestNIC `json:"nics"`
}

// RunningNICs reads every running guest's live XML and lists its bridge
// interfaces. It changes nothing.
func RunningNICs(ctx context.Context, hyp Hypervisor) (RunningGuests, error) {
	doms, err := hyp.Domains(ctx)
	if err != nil {
		return RunningGuests{}, fmt.Errorf("list domains: %w", err)
	}
	slices.SortFunc(doms, func(a, b DomainInfo) int { return strings.Compare(a.Name, b.Name) })
	res := RunningGuests{NICs: []GuestNIC{}}
	for _, di := range doms {
		if di.State != "running" {
			continue
		}
		res.Guests++
		if di.Err != nil {
			return res, fmt.Errorf("vm %s: %w", di.Name, di.Err)
		}
		var dom libvirtxml.Domain
		if err := dom.Unmarshal(di.XML); err != nil {
			return res, fmt.Errorf("vm %s: read XML: %w", di.Name, err)
		}
		if dom.Devices == nil {
			continue
		}
		for _, i := range dom.Devices.Interfaces {
			if i.Source == nil || i.Source.Bridge == nil {
				continue
			}
			n := GuestNIC{VM: di.Name, Bridge: i.Source.Bridge.Bridge}
			if i.MAC != nil {
				n.MAC = i.MAC.Address
			}
			if i.Target != nil {
				n.Dev = i.Target.Dev
			}
			if i.VLan != nil && len(i.VLan.Tags) == 1 {
				n.VLAN = int(i.VLan.Tags[0].ID)
			}
			n.OVS = i.VirtualPort != nil && i.VirtualPort.Params != nil && i.VirtualPort.Params.OpenVSwitch != nil
			res.NICs = append(res.NICs, n)
		}
	}
	return res, nil
}
