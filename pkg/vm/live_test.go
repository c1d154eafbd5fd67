package vm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/libvirt"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

// The test driver's built-in pool and host.
const testPool = "default-pool"

type env struct {
	d    *testenv.Libvirtd
	conn *libvirt.Conn
	deps vm.Deps
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	h := testenv.OVS(t)
	for _, br := range []string{"ovsbr0", "ovsbr1"} {
		if _, err := h.Vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev"); err != nil {
			t.Fatal(err)
		}
	}
	d := testenv.StartLibvirtd(t)
	conn, err := libvirt.Dial(ctx, d.TestURI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &env{d: d, conn: conn, deps: vm.Deps{Hyp: conn, Switch: ovs.New(h.DB)}}
}

func (e *env) virsh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.d.Virsh(e.d.TestURI, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) domains(t *testing.T) []string {
	return strings.Fields(e.virsh(t, "list", "--all", "--name"))
}

func (e *env) volumes(t *testing.T) string {
	return e.virsh(t, "vol-list", testPool)
}

func spec(name string) vm.Spec {
	return vm.Spec{Name: name, Type: "test", VCPUs: 2, Memory: 512 << 20, Disk: 1 << 30, Pool: testPool,
		NICs: []vm.NIC{{Bridge: "ovsbr0"}, {Bridge: "ovsbr1", VLAN: 100}}}
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()

	s := spec("web")
	s.Autostart, s.Start = true, true
	res, err := vm.Create(ctx, e.deps, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Volumes) != 1 || res.Volumes[0].Name != "web.qcow2" || !res.Started || res.NICs[1].MAC != vm.MAC("web", 1).String() {
		t.Fatalf("Create = %+v", res)
	}
	info := e.virsh(t, "dominfo", "web")
	if !strings.Contains(info, "running") || !regexpMatch(info, `Autostart:\s+enable`) {
		t.Errorf("virsh dominfo web:\n%s", info)
	}
	if !strings.Contains(e.volumes(t), "web.qcow2") {
		t.Errorf("volume web.qcow2 missing:\n%s", e.volumes(t))
	}
	x := e.virsh(t, "dumpxml", "web")
	for _, must := range []string{"<virtualport type='openvswitch'>", "<tag id='100'/>", vm.MAC("web", 0).String(), "ghostbridge.dev/xmlns/vm/1"} {
		if !strings.Contains(x, must) {
			t.Errorf("dumpxml web lacks %s:\n%s", must, x)
		}
	}

	t.Run("list", func(t *testing.T) {
		l, err := vm.List(ctx, e.deps)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]vm.VM{}
		for _, v := range l.VMs {
			byName[v.Name] = v
		}
		w := byName["web"]
		if !w.Managed || w.State != "running" || w.VCPUs != 2 || w.Memory != 512<<20 || !w.Autostart || len(w.NICs) != 2 || w.NICs[1].Bridge != "ovsbr1" || w.NICs[1].VLAN != 100 {
			t.Errorf("web = %+v", w)
		}
		if v, ok := byName["test"]; !ok || v.Managed {
			t.Errorf("the test driver's own domain: %+v, %v", v, ok)
		}
	})

	t.Run("bad input defines nothing", func(t *testing.T) {
		before, vols := e.domains(t), e.volumes(t)
		for what, c := range map[string]struct {
			mut  func(*vm.Spec)
			want error
		}{
			"duplicate name": {func(s *vm.Spec) { s.Name = "web" }, vm.ErrExists},
			"unknown bridge": {func(s *vm.Spec) { s.NICs = []vm.NIC{{Bridge: "nosuchbr"}} }, vm.ErrInvalidConfig},
			"vcpus 0":        {func(s *vm.Spec) { s.VCPUs = 0 }, vm.ErrInvalidConfig},
			"vcpus > host":   {func(s *vm.Spec) { s.VCPUs = 999 }, vm.ErrInvalidConfig},
			"memory > host":  {func(s *vm.Spec) { s.Memory = 1 << 40 }, vm.ErrInvalidConfig},
			"no pool":        {func(s *vm.Spec) { s.Pool = "nosuchpool" }, vm.ErrInvalidConfig},
			"hostdev":        {func(s *vm.Spec) { s.HostDevs = []vm.PCIAddress{{Bus: 0xfe}} }, vm.ErrInvalidConfig},
		} {
			s := spec("bad")
			c.mut(&s)
			_, err := vm.Create(ctx, e.deps, s)
			if !errors.Is(err, c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: err = %v, want one line wrapping %v", what, err, c.want)
			}
		}
		if got := e.domains(t); !slices.Equal(got, before) {
			t.Errorf("domains changed: %v -> %v", before, got)
		}
		if got := e.volumes(t); got != vols {
			t.Errorf("volumes changed:\n%s\n->\n%s", vols, got)
		}
	})

	t.Run("start stop idempotent", func(t *testing.T) {
		r, err := vm.Start(ctx, e.deps, "web")
		if err != nil || r.Changed {
			t.Fatalf("start running: %+v, %v", r, err)
		}
		r, err = vm.Stop(ctx, e.deps, "web", vm.StopOptions{Force: true})
		if err != nil || !r.Changed || r.State != "shut off" {
			t.Fatalf("stop --force: %+v, %v", r, err)
		}
		r, err = vm.Stop(ctx, e.deps, "web", vm.StopOptions{Timeout: vm.DefaultStopTimeout})
		if err != nil || r.Changed {
			t.Fatalf("stop stopped: %+v, %v", r, err)
		}
		if _, err := vm.Console(ctx, e.deps, "web", ""); !errors.Is(err, vm.ErrNotRunning) {
			t.Errorf("console of a stopped vm: %v", err)
		}
		r, err = vm.Start(ctx, e.deps, "web")
		if err != nil || !r.Changed || r.State != "running" {
			t.Fatalf("start: %+v, %v", r, err)
		}
		if !strings.Contains(e.virsh(t, "domstate", "web"), "running") {
			t.Error("virsh does not see web running")
		}
		// The test driver powers off on the ACPI request, so a graceful
		// stop returns with the guest already off.
		r, err = vm.Stop(ctx, e.deps, "web", vm.StopOptions{Timeout: vm.DefaultStopTimeout})
		if err != nil || !r.Changed || r.State != "shut off" {
			t.Fatalf("graceful stop: %+v, %v", r, err)
		}
		if !strings.Contains(e.virsh(t, "domstate", "web"), "shut off") {
			t.Error("virsh does not see web shut off after the graceful stop")
		}
	})

	t.Run("delete", func(t *testing.T) {
		if _, err := vm.Delete(ctx, e.deps, "test", true); !errors.Is(err, vm.ErrNotManaged) {
			t.Errorf("delete of a domain ghostbridge did not make: %v", err)
		}
		if _, err := vm.Start(ctx, e.deps, "web"); err != nil {
			t.Fatal(err)
		}
		if _, err := vm.Delete(ctx, e.deps, "web", true); !errors.Is(err, vm.ErrRunning) {
			t.Errorf("delete running: %v", err)
		}
		if _, err := vm.Stop(ctx, e.deps, "web", vm.StopOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		r, err := vm.Delete(ctx, e.deps, "web", true)
		if err != nil || len(r.RemovedVolumes) != 1 {
			t.Fatalf("delete: %+v, %v", r, err)
		}
		if slices.Contains(e.domains(t), "web") || strings.Contains(e.volumes(t), "web.qcow2") {
			t.Errorf("web left behind: %v\n%s", e.domains(t), e.volumes(t))
		}
		if _, err := vm.Delete(ctx, e.deps, "web", true); !errors.Is(err, vm.ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if !slices.Contains(e.domains(t), "test") {
			t.Error("the foreign domain was touched")
		}
	})

	t.Run("delete keeps storage unless asked", func(t *testing.T) {
		if _, err := vm.Create(ctx, e.deps, spec("keep")); err != nil {
			t.Fatal(err)
		}
		r, err := vm.Delete(ctx, e.deps, "keep", false)
		if err != nil || len(r.KeptVolumes) != 1 {
			t.Fatalf("delete: %+v, %v", r, err)
		}
		if !strings.Contains(e.volumes(t), "keep.qcow2") {
			t.Error("volume removed without --remove-storage")
		}
		// The left-over volume blocks a new guest of the same name rather
		// than being adopted.
		if _, err := vm.Create(ctx, e.deps, spec("keep")); !errors.Is(err, vm.ErrInvalidConfig) {
			t.Errorf("create over a left-over volume: %v", err)
		}
		if err := e.conn.DeleteVolume(ctx, testPool, "keep.qcow2"); err != nil {
			t.Fatal(err)
		}
	})
}

// failing wraps the real connection and fails one step, to check that
// Create removes what it made before that step, for each step after the
// volume. A define refused by libvirt itself, with a real disk and seed to
// remove, is checked against the qemu driver in pkg/sys/libvirt (TestQEMU).
type failing struct {
	*libvirt.Conn
	step string
}

var errInjected = errors.New("injected failure")

func (f failing) Define(ctx context.Context, x string) error {
	if f.step == "define" {
		return errInjected
	}
	return f.Conn.Define(ctx, x)
}

func (f failing) Start(ctx context.Context, name string) error {
	if f.step == "start" {
		return errInjected
	}
	return f.Conn.Start(ctx, name)
}

func (f failing) SetAutostart(ctx context.Context, name string, on bool) error {
	if f.step == "autostart" {
		return errInjected
	}
	return f.Conn.SetAutostart(ctx, name, on)
}

func TestCreateCleansUpOnFailure(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	before, vols := e.domains(t), e.volumes(t)
	for _, step := range []string{"define", "autostart", "start"} {
		d := e.deps
		d.Hyp = failing{Conn: e.conn, step: step}
		s := spec("doomed")
		s.Autostart, s.Start = true, true
		if _, err := vm.Create(ctx, d, s); !errors.Is(err, errInjected) {
			t.Fatalf("%s: err = %v, want the injected failure", step, err)
		}
		if got := e.domains(t); !slices.Equal(got, before) {
			t.Errorf("%s: domains left: %v (before %v)", step, got, before)
		}
		if got := e.volumes(t); got != vols {
			t.Errorf("%s: volumes left:\n%s", step, got)
		}
	}
}

func TestHostdevDefined(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	root := t.TempDir()
	dev := filepath.Join(root, "bus", "pci", "devices", "0000:01:00.0")
	grp := filepath.Join(root, "kernel", "iommu_groups", "12")
	for _, dir := range []string{dev, grp} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(grp, filepath.Join(dev, "iommu_group")); err != nil {
		t.Fatal(err)
	}
	d := e.deps
	d.Sysfs = root
	s := spec("gpu")
	s.HostDevs = []vm.PCIAddress{{Bus: 1}}
	s.UEFI = false
	res, err := vm.Create(ctx, d, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.HostDevs) != 1 || res.HostDevs[0].IOMMUGroup != 12 {
		t.Errorf("hostdevs = %+v", res.HostDevs)
	}
	if x := e.virsh(t, "dumpxml", "gpu"); !strings.Contains(x, "<hostdev mode='subsystem' type='pci' managed='yes'>") {
		t.Errorf("dumpxml gpu lacks the hostdev:\n%s", x)
	}
}

func regexpMatch(s, re string) bool { return regexp.MustCompile(re).MatchString(s) }

// TestOverlayAndSeedOnTestDriver checks --base makes the disk a qcow2
// overlay whose volume XML names the base as its backing store, and that
// a cloud-init seed the driver cannot take (the test driver has no volume
// upload) fails the create with nothing left behind.
func TestOverlayAndSeedOnTestDriver(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if err := e.conn.CreateVolume(ctx, testPool, "debian-base.qcow2", 2<<30, ""); err != nil {
		t.Fatal(err)
	}
	s := spec("cow")
	s.Base = "debian-base.qcow2"
	s.Disk = 4 << 30
	res, err := vm.Create(ctx, e.deps, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Volumes) != 1 || res.Volumes[0].Name != "cow.qcow2" {
		t.Errorf("volumes = %+v", res.Volumes)
	}
	x, err := e.conn.VolumeXML(ctx, testPool, "cow.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"<backingStore>", "<path>/default-pool/debian-base.qcow2</path>", "<format type='qcow2'/>", "<capacity unit='bytes'>4294967296</capacity>"} {
		if !strings.Contains(x, must) {
			t.Errorf("overlay volume XML lacks %s:\n%s", must, x)
		}
	}
	r, err := vm.Delete(ctx, e.deps, "cow", true)
	if err != nil || len(r.RemovedVolumes) != 1 {
		t.Fatalf("delete: %+v, %v", r, err)
	}
	if vols := e.volumes(t); !strings.Contains(vols, "debian-base.qcow2") || strings.Contains(vols, "cow.qcow2") {
		t.Errorf("delete --remove-storage must keep the base and remove the overlay:\n%s", vols)
	}

	s = spec("cow2")
	s.Base = "nosuch.qcow2"
	if _, err := vm.Create(ctx, e.deps, s); !errors.Is(err, vm.ErrInvalidConfig) || !strings.Contains(err.Error(), "base volume") {
		t.Errorf("missing base: %v", err)
	}

	before, vols := e.domains(t), e.volumes(t)
	s = spec("seeded")
	s.CloudInit = vm.CloudInit{Hostname: "seeded"}
	if _, err := vm.Create(ctx, e.deps, s); err == nil || !strings.Contains(err.Error(), "cloud-init seed volume") {
		t.Fatalf("seed on the test driver: err = %v, want the upload refused", err)
	}
	if got := e.domains(t); !slices.Equal(got, before) {
		t.Errorf("domains left: %v (before %v)", got, before)
	}
	if got := e.volumes(t); got != vols {
		t.Errorf("volumes left:\n%s\nwant\n%s", got, vols)
	}
}
