package libvirt_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/libvirt"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

// qemuEnv is one private libvirtd whose qemu driver every check here
// shares: the driver probes qemu-system-x86 on first use (about a minute
// here, under TCG), so a daemon per check would multiply that. The daemon
// runs in the network namespace of a userspace Open vSwitch, with
// OVS_RUNDIR pointing libvirt's ovs-vsctl at that switch's database, so
// guests' tap devices are plugged into the test's bridges.
type qemuEnv struct {
	d    *testenv.Libvirtd
	ovs  *testenv.OVSHost
	conn *libvirt.Conn
	// pool is a directory pool in a temp dir; poolDir is that directory.
	pool, poolDir string
}

func newQEMUEnv(t *testing.T) *qemuEnv {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testenv.Skip(t, "qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
	}
	h := testenv.OVS(t)
	for _, br := range []string{"ovsbr0", "ovsbr1"} {
		if _, err := h.Vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev"); err != nil {
			t.Fatal(err)
		}
	}
	d := testenv.StartLibvirtdWith(t, testenv.LibvirtdOptions{NetNS: h.NS, Env: []string{"OVS_RUNDIR=" + h.Dir}})
	c, err := libvirt.Dial(t.Context(), d.QEMUURI)
	if err != nil {
		testenv.Skip(t, "qemu driver: "+err.Error())
	}
	t.Cleanup(func() { _ = c.Close() }) // after the checks' own clean-ups: those run last-first
	e := &qemuEnv{d: d, ovs: h, conn: c, pool: "gbtest", poolDir: t.TempDir()}
	if out, err := d.Virsh(d.QEMUURI, "pool-create-as", e.pool, "dir", "--target", e.poolDir); err != nil {
		t.Fatalf("pool-create-as: %v %s", err, out)
	}
	t.Cleanup(func() { _, _ = d.Virsh(d.QEMUURI, "pool-destroy", e.pool) })
	return e
}

func (e *qemuEnv) virsh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.d.Virsh(e.d.QEMUURI, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cleanup makes sure the named guest is off and undefined when the test
// ends, whatever happened to it.
func (e *qemuEnv) cleanup(t *testing.T, name string) {
	t.Cleanup(func() {
		ctx := context.Background()
		if di, err := e.conn.Domain(ctx, name); err == nil {
			if di.State != "shut off" {
				_ = e.conn.Stop(ctx, name, true)
			}
			if err := e.conn.Undefine(ctx, name); err != nil {
				t.Errorf("undefine %s: %v", name, err)
			}
		}
	})
}

// TestQEMU runs the qemu-driver checks against one daemon (see qemuEnv).
func TestQEMU(t *testing.T) {
	e := newQEMUEnv(t)
	t.Run("define", e.testDefine)
	t.Run("seed upload", e.testSeedUpload)
	t.Run("refused define leaves nothing", e.testRefusedDefine)
	t.Run("uefi", e.testUEFI)
	t.Run("boot on ovs", e.testBootOnOVS)
}

// testDefine checks the qemu driver accepts the generated XML, with schema
// validation on: OVS virtualport with a VLAN, VNC on loopback, a PCI
// hostdev, a volume disk and the seed CD-ROM.
func (e *qemuEnv) testDefine(t *testing.T) {
	ctx := t.Context()
	x, err := vm.DomainXML(vm.Spec{Name: "gbdefine", Type: "qemu", VCPUs: 1, Memory: 256 << 20, Disk: 1 << 30, Pool: "default",
		NICs: []vm.NIC{{Bridge: "ovsbr0"}, {Bridge: "ovsbr1", VLAN: 7}}, HostDevs: []vm.PCIAddress{{Bus: 1}},
		CloudInit: vm.CloudInit{Hostname: "gbdefine"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.conn.Define(ctx, x); err != nil {
		t.Fatalf("qemu driver refused the generated XML: %v", err)
	}
	e.cleanup(t, "gbdefine")
	got := e.virsh(t, "dumpxml", "gbdefine")
	for _, must := range []string{"<virtualport type='openvswitch'>", "<tag id='7'/>", "listen='127.0.0.1'", "<hostdev mode='subsystem' type='pci' managed='yes'>", "ghostbridge.dev/xmlns/vm/1", "<disk type='volume' device='cdrom'>", "volume='gbdefine-cidata.iso'"} {
		if !strings.Contains(got, must) {
			t.Errorf("qemu driver's XML lacks %s:\n%s", must, got)
		}
	}
}

// testSeedUpload creates a guest with a cloud-init seed through the qemu
// driver, whose directory pools take volume uploads: the seed lands in the
// pool as the exact image BuildSeedISO makes, the CD-ROM points at it, and
// delete --remove-storage removes it.
func (e *qemuEnv) testSeedUpload(t *testing.T) {
	ctx := t.Context()
	ci := vm.CloudInit{Hostname: "seedy", SSHKeys: []string{"ssh-ed25519 AAAAC3Nza op@host"}}
	s := vm.Spec{Name: "gbseed", Type: "qemu", VCPUs: 1, Memory: 64 << 20, Pool: e.pool, NICs: []vm.NIC{{Bridge: "ovsbr0"}}, CloudInit: ci}
	deps := vm.Deps{Hyp: e.conn}
	res, err := vm.Create(ctx, deps, s)
	if err != nil {
		t.Fatal(err)
	}
	e.cleanup(t, "gbseed")
	if len(res.Volumes) != 1 || res.Volumes[0].Name != "gbseed-cidata.iso" {
		t.Errorf("volumes = %+v", res.Volumes)
	}
	want, err := vm.BuildSeedISO(vm.SeedLabel, vm.SeedFiles("gbseed", ci))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(e.poolDir, "gbseed-cidata.iso"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("seed in the pool: %d bytes, %v; want the %d-byte image", len(got), err, len(want))
	}
	if x := e.virsh(t, "dumpxml", "gbseed"); !strings.Contains(x, "volume='gbseed-cidata.iso'") {
		t.Errorf("dumpxml lacks the seed CD-ROM:\n%s", x)
	}
	r, err := vm.Delete(ctx, deps, "gbseed", true)
	if err != nil || len(r.RemovedVolumes) != 1 {
		t.Fatalf("delete: %+v, %v", r, err)
	}
	if _, err := os.Stat(filepath.Join(e.poolDir, "gbseed-cidata.iso")); !os.IsNotExist(err) {
		t.Errorf("seed left after delete --remove-storage: %v", err)
	}
}

// testRefusedDefine makes libvirt itself refuse the domain after the disk
// volume and the cloud-init seed exist: the spec asks for domain type
// "test" (vm.domain_type pointing at the wrong driver), which passes every
// pre-flight check and which only the qemu driver's define knows it cannot
// run. Create must remove both volumes, from libvirt and from the disk.
func (e *qemuEnv) testRefusedDefine(t *testing.T) {
	ctx := t.Context()
	before := e.virsh(t, "list", "--all", "--name")
	s := vm.Spec{Name: "gbrefused", Type: "test", VCPUs: 1, Memory: 64 << 20, Disk: 64 << 20, Pool: e.pool,
		NICs: []vm.NIC{{Bridge: "ovsbr0"}}, CloudInit: vm.CloudInit{Hostname: "gbrefused"}}
	var log bytes.Buffer
	deps := vm.Deps{Hyp: e.conn, Switch: ovs.New(e.ovs.DB), Logger: slog.New(slog.NewTextHandler(&log, nil))}
	e.cleanup(t, "gbrefused")
	_, err := vm.Create(ctx, deps, s)
	if err == nil || !strings.Contains(err.Error(), "define:") || !strings.Contains(err.Error(), "virt type 'test'") {
		t.Fatalf("create: err = %v; want libvirt's define refusing virt type 'test'", err)
	}
	// The refusal came after both volumes were made, so there was
	// something to clean up.
	for _, step := range []string{"msg=\"volume created\"", "msg=\"cloud-init seed created\""} {
		if !strings.Contains(log.String(), step) {
			t.Errorf("create did not log %s before the refusal:\n%s", step, log.String())
		}
	}
	if strings.Contains(err.Error(), "clean-up also failed") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one clean line: %q", err)
	}
	if got := e.virsh(t, "list", "--all", "--name"); got != before {
		t.Errorf("domains changed: %q -> %q", before, got)
	}
	vols, err := e.conn.Volumes(ctx, e.pool)
	if err != nil || len(vols) != 0 {
		t.Errorf("volumes left in pool %s: %v, %v", e.pool, vols, err)
	}
	files, err := os.ReadDir(e.poolDir)
	if err != nil || len(files) != 0 {
		t.Errorf("files left in %s: %v, %v", e.poolDir, files, err)
	}
}

// testUEFI defines and starts a guest with firmware='efi': the qemu driver
// picks OVMF from the firmware descriptors (Debian's ovmf package) when it
// starts, and the live XML names the loader and an NVRAM file that
// undefine removes.
func (e *qemuEnv) testUEFI(t *testing.T) {
	if _, err := os.Stat("/usr/share/qemu/firmware/60-edk2-x86_64.json"); err != nil {
		testenv.Skip(t, "no OVMF firmware descriptor (apt-get install ovmf)")
	}
	ctx := t.Context()
	s := vm.Spec{Name: "gbuefi", Type: "qemu", VCPUs: 1, Memory: 128 << 20, UEFI: true, NICs: []vm.NIC{{Bridge: "ovsbr1"}}}
	deps := vm.Deps{Hyp: e.conn}
	e.cleanup(t, "gbuefi")
	if _, err := vm.Create(ctx, deps, s); err != nil {
		t.Fatalf("qemu driver refused the UEFI guest: %v", err)
	}
	if x := e.virsh(t, "dumpxml", "--inactive", "gbuefi"); !strings.Contains(x, "<os firmware='efi'>") {
		t.Errorf("defined XML lacks firmware='efi':\n%s", x)
	}
	if _, err := vm.Start(ctx, deps, "gbuefi"); err != nil {
		t.Fatalf("start the UEFI guest: %v", err)
	}
	x := e.virsh(t, "dumpxml", "gbuefi")
	if !strings.Contains(x, "/usr/share/OVMF/") || !strings.Contains(x, "<nvram") {
		t.Errorf("live XML of the UEFI guest names no OVMF loader and NVRAM:\n%s", x)
	}
	if _, err := vm.Stop(ctx, deps, "gbuefi", vm.StopOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	nvram := ""
	if i := strings.Index(x, "<nvram"); i >= 0 {
		if j := strings.Index(x[i:], ">"); j >= 0 {
			if k := strings.Index(x[i+j:], "<"); k >= 0 {
				nvram = x[i+j+1 : i+j+k]
			}
		}
	}
	if _, err := vm.Delete(ctx, deps, "gbuefi", false); err != nil {
		t.Fatal(err)
	}
	if nvram == "" {
		t.Errorf("no NVRAM path in the live XML")
	} else if _, err := os.Stat(nvram); !os.IsNotExist(err) {
		t.Errorf("NVRAM %s left after delete: %v", nvram, err)
	}
}

// guestPorts returns the ports on each bridge other than the bridge's
// own internal port, as pkg/sys/ovs reads them from the test's OVSDB.
func (e *qemuEnv) guestPorts(t *testing.T) map[string][]ovs.Port {
	t.Helper()
	brs, err := ovs.New(e.ovs.DB).Bridges(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]ovs.Port{}
	for name, b := range brs {
		for _, p := range b.Ports {
			if p.Name != name {
				out[name] = append(out[name], p)
			}
		}
	}
	return out
}

// testBootOnOVS starts a diskless guest under TCG with NICs on both
// userspace bridges and sees libvirt plug its taps in: each port appears
// on its bridge with the VLAN tag, opened by ovs-vswitchd (an OpenFlow
// port number), recording the guest's MAC. The guest has no OS, so it
// ignores the ACPI shutdown: a graceful stop times out with a one-line
// error naming --force and leaves it running; --force then powers it off
// and the ports go.
func (e *qemuEnv) testBootOnOVS(t *testing.T) {
	ctx := t.Context()
	s := vm.Spec{Name: "gbboot", Type: "qemu", VCPUs: 1, Memory: 64 << 20,
		NICs: []vm.NIC{{Bridge: "ovsbr0", VLAN: 5}, {Bridge: "ovsbr1"}}, Start: true}
	deps := vm.Deps{Hyp: e.conn, Switch: ovs.New(e.ovs.DB)}
	if ports := e.guestPorts(t); len(ports) != 0 {
		t.Fatalf("bridges have guest ports before the guest starts: %+v", ports)
	}
	e.cleanup(t, "gbboot")
	res, err := vm.Create(ctx, deps, s)
	if err != nil {
		t.Fatalf("create and start under TCG: %v", err)
	}
	if !res.Started {
		t.Fatalf("create = %+v, want started", res)
	}
	ports := e.guestPorts(t)
	for i, br := range []string{"ovsbr0", "ovsbr1"} {
		if len(ports[br]) != 1 {
			t.Fatalf("%s: guest ports %+v, want one", br, ports[br])
		}
		p := ports[br][0]
		if p.OFPort <= 0 || p.Tag != s.NICs[i].VLAN {
			t.Errorf("%s: port %+v, want an OpenFlow port number and tag %d", br, p, s.NICs[i].VLAN)
		}
		mac, err := e.ovs.Vsctl("get", "Interface", p.Name, "external_ids:attached-mac")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Trim(strings.TrimSpace(mac), `"`); got != vm.MAC("gbboot", i).String() {
			t.Errorf("%s: port %s attached-mac %s, want %s", br, p.Name, got, vm.MAC("gbboot", i))
		}
	}
	l, err := vm.List(ctx, deps)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(l.VMs, func(v vm.VM) bool { return v.Name == "gbboot" })
	if i < 0 || l.VMs[i].State != "running" || l.VMs[i].VNCPort < 5900 || !l.VMs[i].Managed {
		t.Fatalf("list: %+v", l.VMs)
	}

	_, err = vm.Stop(ctx, deps, "gbboot", vm.StopOptions{Timeout: 3 * time.Second})
	if !errors.Is(err, vm.ErrStopTimeout) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "vm stop gbboot --force") {
		t.Fatalf("graceful stop of a guest without an OS: err = %v; want a one-line ErrStopTimeout naming --force", err)
	}
	if st := e.virsh(t, "domstate", "gbboot"); st != "running" {
		t.Errorf("after the timed-out stop the guest is %q, want it left running", st)
	}

	// Paused while the stop waits, the guest cannot act on the request:
	// the wait ends there, rather than after its hour, with a one-line
	// error naming the state and --force.
	waiting := make(chan struct{})
	pausing := deps
	pausing.Logger = slog.New(onMessage{msg: "shutdown requested; waiting", seen: sync.OnceFunc(func() { close(waiting) })})
	errc := make(chan error, 1)
	go func() {
		_, err := vm.Stop(ctx, pausing, "gbboot", vm.StopOptions{Timeout: time.Hour})
		errc <- err
	}()
	select {
	case <-waiting:
		e.virsh(t, "suspend", "gbboot")
	case err := <-errc:
		t.Fatalf("graceful stop returned before it waited: %v", err)
	}
	if err := <-errc; !errors.Is(err, vm.ErrCannotShutDown) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "paused") || !strings.Contains(err.Error(), "vm stop gbboot --force") {
		t.Fatalf("graceful stop of a guest paused while it waited: %v; want one line wrapping ErrCannotShutDown naming paused and --force", err)
	}

	r, err := vm.Stop(ctx, deps, "gbboot", vm.StopOptions{Force: true})
	if err != nil || r.State != "shut off" || !r.Changed {
		t.Fatalf("stop --force: %+v, %v", r, err)
	}
	if ports := e.guestPorts(t); len(ports) != 0 {
		t.Errorf("guest ports left after the guest stopped: %+v", ports)
	}
	if _, err := vm.Delete(ctx, deps, "gbboot", true); err != nil {
		t.Fatal(err)
	}
}

// onMessage is a log handler that calls seen when a record with message
// msg is logged: a test's cue that the code under test reached that point.
type onMessage struct {
	msg  string
	seen func()
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h onMessage) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h onMessage) WithGroup(string) slog.Handler            { return h }
func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.seen()
	}
	return nil
}
