package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/libvirt"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

func TestGoldenVMPrintXML(t *testing.T) {
	args := []string{"vm", "create", "web", "--vcpus", "2", "--memory", "2GiB", "--disk", "20GiB", "--nic", "ovsbr0", "--nic", "ovsbr1:100", "--hostdev", "0000:01:00.0", "--uefi", "--print-xml"}
	checkGolden(t, "vm-create-print-xml.txt", args, runCLI(t, nil, args...), scrubber{})
}

// TestGoldenVMPrintXMLSeed pins the CD-ROM and metadata a cloud-init seed
// and a copy-on-write base add to the domain XML.
func TestGoldenVMPrintXMLSeed(t *testing.T) {
	args := []string{"vm", "create", "app", "--base", "debian-12.qcow2", "--disk", "20GiB", "--nic", "ovsbr1", "--hostname", "app", "--ssh-key", "../../testdata/vm/id_test.pub", "--print-xml"}
	checkGolden(t, "vm-create-seed-print-xml.txt", args, runCLI(t, nil, args...), scrubber{})
}

// TestVMStopTimeoutExitCode pins the exit code of a graceful stop that
// timed out (the guest ignored ACPI and is still running): 1, a runtime
// failure, not 2, since nothing the operator typed was wrong. The timeout
// itself is produced against a real guest in pkg/sys/libvirt's TestQEMU.
func TestVMStopTimeoutExitCode(t *testing.T) {
	err := fmt.Errorf("vm web: %w within 5s (running); power it off with: ghostbridge vm stop web --force", vm.ErrStopTimeout)
	if got := exitCode(context.Background(), err); got != exitFailure {
		t.Errorf("exit code %d, want %d", got, exitFailure)
	}
}

func TestVMSeedBadInput(t *testing.T) {
	for what, args := range map[string][]string{
		"private key":  {"vm", "create", "x", "--nic", "ovsbr0", "--ssh-key", "../../testdata/vm/id_test_private", "--print-xml"},
		"missing key":  {"vm", "create", "x", "--nic", "ovsbr0", "--ssh-key", "../../testdata/vm/nosuch.pub", "--print-xml"},
		"bad hostname": {"vm", "create", "x", "--nic", "ovsbr0", "--hostname", "a_b", "--print-xml"},
		"base no disk": {"vm", "create", "x", "--nic", "ovsbr0", "--base", "debian.qcow2", "--print-xml"},
		"no user-data": {"vm", "create", "x", "--nic", "ovsbr0", "--user-data", "../../testdata/vm/nosuch", "--print-xml"},
	} {
		r := runCLI(t, nil, args...)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "Error: ") || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 and one error line", what, r.code, r.stdout, r.stderr)
		}
	}
}

// TestVMCLI drives the vm commands against a real libvirtd (test driver)
// and a real Open vSwitch, and checks bad input exits 2 on one line with
// nothing defined.
func TestVMCLI(t *testing.T) {
	h := testenv.OVS(t)
	if _, err := h.Vsctl("add-br", "ovsbr0", "--", "set", "bridge", "ovsbr0", "datapath_type=netdev"); err != nil {
		t.Fatal(err)
	}
	d := testenv.StartLibvirtd(t)
	// The test driver frees its state when its last client leaves; one
	// connection held for the test keeps it across the CLI's runs.
	hold, err := libvirt.Dial(t.Context(), d.TestURI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hold.Close() })
	env := cliEnv{"GHOSTBRIDGE_VM_URI": d.TestURI, "GHOSTBRIDGE_VM_POOL": "default-pool", "GHOSTBRIDGE_VM_DOMAIN_TYPE": "test", "GHOSTBRIDGE_NET_OVSDB_SOCKET": h.DB}
	domains := func() string {
		out, err := d.Virsh(d.TestURI, "list", "--all", "--name")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := domains()
	for what, args := range map[string][]string{
		"memory lots":     {"vm", "create", "x", "--nic", "ovsbr0", "--memory", "lots"},
		"vcpus 0":         {"vm", "create", "x", "--nic", "ovsbr0", "--vcpus", "0"},
		"bad pci":         {"vm", "create", "x", "--nic", "ovsbr0", "--hostdev", "0000:01:00.9"},
		"unknown bridge":  {"vm", "create", "x", "--nic", "nosuchbr"},
		"duplicate":       {"vm", "create", "test", "--nic", "ovsbr0"},
		"no such vm":      {"vm", "start", "nosuchvm"},
		"unknown profile": {"vm", "create", "x", "--profile", "gpu"},
		"stop timeout 0":  {"vm", "stop", "test", "--timeout", "0s"},
	} {
		r := runCLI(t, env, args...)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "Error: ") || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 and one error line", what, r.code, r.stdout, r.stderr)
		}
	}
	if got := domains(); got != before {
		t.Errorf("bad input defined something: %q -> %q", before, got)
	}

	r := runCLI(t, env, "vm", "create", "web", "--memory", "512MiB", "--disk", "1GiB", "--nic", "ovsbr0", "--autostart", "--start")
	if r.code != 0 || !strings.Contains(r.stdout, "web created and started") {
		t.Fatalf("create: %+v", r)
	}
	r = runCLI(t, env, "vm", "list", "--format", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"name": "web"`) || !strings.Contains(r.stdout, `"managed": true`) {
		t.Errorf("list: %+v", r)
	}
	r = runCLI(t, env, "vm", "xml", "web")
	if r.code != 0 || !strings.Contains(r.stdout, "<virtualport type='openvswitch'>") {
		t.Errorf("xml: %+v", r)
	}
	if r = runCLI(t, env, "vm", "delete", "web"); r.code == 0 {
		t.Errorf("delete of a running vm succeeded: %+v", r)
	}
	// The test driver powers off on the ACPI request: a graceful stop
	// waits for that and reports the guest off.
	if r = runCLI(t, env, "vm", "stop", "web", "--timeout", "30s"); r.code != 0 || r.stdout != "web shut off\n" {
		t.Fatalf("graceful stop: %+v", r)
	}
	if r = runCLI(t, env, "vm", "start", "web"); r.code != 0 {
		t.Fatalf("start: %+v", r)
	}
	if r = runCLI(t, env, "vm", "stop", "web", "--force"); r.code != 0 || r.stdout != "web shut off\n" {
		t.Fatalf("stop --force: %+v", r)
	}
	r = runCLI(t, env, "vm", "delete", "web", "--remove-storage")
	if r.code != 0 || !strings.Contains(r.stdout, "removed volume default-pool/web.qcow2") {
		t.Errorf("delete: %+v", r)
	}
	if got := domains(); got != before {
		t.Errorf("domains after delete: %q, want %q", got, before)
	}
}
