// Package vm creates and manages libvirt guests on the host's Open vSwitch
// bridges: it turns a Spec into domain XML (NICs with an openvswitch
// virtualport and a deterministic MAC, VNC on 127.0.0.1, optional UEFI and
// PCI passthrough), checks the host before creating anything, and removes
// what a failed run created.
//
// The package decides and builds; it never prints, reads flags, environment
// or viper, and never exits. libvirt, Open vSwitch and sysfs are reached
// through the small interfaces in this package, implemented in pkg/sys.
// It only ever deletes volumes that its own domain metadata records as made
// by this tool.
package vm
