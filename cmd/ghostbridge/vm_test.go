package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
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

// TestVMStopTimeoutExitCode runs "vm stop" against a real guest that
// ignores the ACPI request (a diskless qemu guest without an OS, under
// TCG): a graceful stop exits 5, one line naming --force, and leaves the
// guest running, so the documented "|| { [ $? -eq 5 ] && ... --force; }"
// forces that case alone; --force then powers it off. The guest is
// transient, so it is gone once off.
func TestVMStopTimeoutExitCode(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testenv.Skip(t, "qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
	}
	d := testenv.StartLibvirtd(t)
	x := filepath.Join(t.TempDir(), "gbdeaf.xml")
	text := `<domain type='qemu'><name>gbdeaf</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>`
	if err := os.WriteFile(x, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := d.Virsh(d.QEMUURI, "create", x); err != nil {
		t.Fatalf("virsh create: %v %s", err, out)
	}
	t.Cleanup(func() { _, _ = d.Virsh(d.QEMUURI, "destroy", "gbdeaf") })
	env := cliEnv{"GHOSTBRIDGE_VM_URI": d.QEMUURI}
	r := runCLI(t, env, "vm", "stop", "gbdeaf", "--timeout", "2s")
	// stderr also carries the log line saying the stop is waiting.
	_, msg, _ := strings.Cut(r.stderr, "Error: ")
	if r.code != exitStopTimeout || r.stdout != "" || strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "vm stop gbdeaf --force\n") {
		t.Fatalf("graceful stop of a guest ignoring ACPI: %+v; want exit %d and one error line naming --force", r, exitStopTimeout)
	}
	if st, err := d.Virsh(d.QEMUURI, "domstate", "gbdeaf"); err != nil || st != "running" {
		t.Fatalf("after the timed-out stop: %q, %v; want the guest left running", st, err)
	}
	r = runCLI(t, env, "vm", "stop", "gbdeaf", "--force")
	if r.code != 0 || r.stdout != "gbdeaf shut off (transient: gone)\n" {
		t.Fatalf("stop --force: %+v", r)
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
		"timeout + force": {"vm", "stop", "test", "--force", "--timeout", "5s"},
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
	// A paused guest cannot act on the ACPI request: exit 1 at once, one
	// line naming the state and --force, instead of waiting the hour out.
	if _, err := d.Virsh(d.TestURI, "suspend", "web"); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, env, "vm", "stop", "web", "--timeout", "1h")
	if r.code != 1 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "paused") || !strings.Contains(r.stderr, "vm stop web --force") {
		t.Errorf("graceful stop of a paused guest: %+v; want exit 1, one line naming paused and --force", r)
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

	// A transient guest is gone once it is off: the graceful stop reports
	// that, exit 0, where it used to fail with "no such vm" (exit 2).
	x := filepath.Join(t.TempDir(), "gbtransient.xml")
	if err := os.WriteFile(x, []byte(`<domain type='test'><name>gbtransient</name><memory>8192</memory><os><type>hvm</type></os></domain>`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Virsh(d.TestURI, "create", x); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, env, "vm", "stop", "gbtransient", "--timeout", "30s", "--format", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"state": "shut off"`) || !strings.Contains(r.stdout, `"gone": true`) {
		t.Errorf("graceful stop of a transient guest: %+v", r)
	}
}

// TestVMListUnreadableRow: a guest vm.List could not read is a row with its
// name, its state when known, and "?" where its XML would have told; the
// readable guests render as usual. (The partial list and its error come
// from a real daemon in pkg/vm's TestListKeepsReadableGuests.)
func TestVMListUnreadableRow(t *testing.T) {
	ios, _, out, _ := TestIO()
	a := &App{IO: ios}
	res := vm.ListResult{VMs: []vm.VM{
		{Name: "bad", State: "shut off", Error: "vm bad: XML of bad: internal error"},
		{Name: "web", State: "running", VCPUs: 2, Memory: 1 << 30, Managed: true, VNCPort: 5900,
			NICs: []vm.NIC{{Bridge: "ovsbr0", MAC: "52:54:00:00:00:01"}}},
	}}
	if err := a.printVMList(res); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 3 || !reflect.DeepEqual(strings.Fields(lines[1]), []string{"bad", "shut", "off", "?", "?", "?", "?", "?", "?"}) ||
		!strings.HasPrefix(strings.Fields(lines[2])[0], "web") || !strings.Contains(lines[2], "ovsbr0") {
		t.Errorf("table:\n%s", out.String())
	}
}
