package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Errors the CLI maps to exit codes. ErrExists and ErrNotManaged wrap
// ErrInvalidConfig: the operator fixes them by choosing another name or
// another tool.
var (
	ErrExists     = fmt.Errorf("%w: name in use", ErrInvalidConfig)
	ErrNotManaged = fmt.Errorf("%w: not created by ghostbridge", ErrInvalidConfig)
	ErrNotFound   = errors.New("no such vm")
	ErrRunning    = errors.New("vm is running")
	ErrNotRunning = errors.New("vm is not running")
	// ErrStopTimeout: a graceful stop sent the ACPI shutdown but the
	// guest was still up when the timeout passed.
	ErrStopTimeout = errors.New("did not shut down")
	// ErrCannotShutDown: the guest is in a state (paused, crashed,
	// suspended) in which it cannot act on an ACPI shutdown, so waiting
	// would only run out the timeout.
	ErrCannotShutDown = errors.New("cannot act on an ACPI shutdown")
	// ErrIncomplete: List read some guests but not all; the result holds
	// the others, and each guest it could not read carries its error.
	ErrIncomplete = errors.New("some guests could not be read")
)

// DomainInfo is a domain as the hypervisor reports it.
type DomainInfo struct {
	Name      string
	State     string // running, paused, shut off, ...
	Autostart bool
	XML       string // live XML when running, else the persistent one
	// Err is set by Domains for a domain it listed but could not read
	// in full (XML, or its state): the other fields hold what is known.
	Err error
}

// HostInfo is the capacity of the host.
type HostInfo struct {
	CPUs   int
	Memory uint64 // bytes
}

// Hypervisor is the libvirt connection this package needs; pkg/sys/libvirt
// implements it. Missing domains are reported by wrapping ErrNotFound.
type Hypervisor interface {
	Domain(ctx context.Context, name string) (DomainInfo, error)
	// DomainState is the domain's state alone (running, shut off, ...),
	// cheaper than Domain: no XML.
	DomainState(ctx context.Context, name string) (string, error)
	// Domains lists every domain. A domain that vanishes while it is
	// listed is left out; one that cannot be read is returned with Err
	// set rather than failing the whole list.
	Domains(ctx context.Context) ([]DomainInfo, error)
	Define(ctx context.Context, xml string) error
	Undefine(ctx context.Context, name string) error
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string, force bool) error
	SetAutostart(ctx context.Context, name string, on bool) error
	Host(ctx context.Context) (HostInfo, error)
	PoolExists(ctx context.Context, pool string) (bool, error)
	VolumeExists(ctx context.Context, pool, name string) (bool, error)
	// CreateVolume makes a qcow2 volume; with backing set (a volume in
	// the same pool) it is a copy-on-write overlay on it.
	CreateVolume(ctx context.Context, pool, name string, size uint64, backing string) error
	// UploadVolume makes a raw volume holding data.
	UploadVolume(ctx context.Context, pool, name string, data []byte) error
	DeleteVolume(ctx context.Context, pool, name string) error
}

// Switch reports the bridges Open vSwitch has; pkg/sys/ovs implements it.
type Switch interface {
	BridgeNames(ctx context.Context) ([]string, error)
}

// Deps are the systems the operations touch.
type Deps struct {
	Hyp    Hypervisor
	Switch Switch // nil: bridges are not checked
	// Sysfs is the sysfs mount ("" means /sys), read for PCI devices and
	// IOMMU groups before passthrough.
	Sysfs  string
	Logger *slog.Logger // nil = discard
}

func (d Deps) log() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// CreateResult is the JSON contract of `vm create`.
type CreateResult struct {
	Name      string      `json:"name"`
	NICs      []NIC       `json:"nics"`
	Volumes   []VolumeRef `json:"volumes"`
	HostDevs  []HostDev   `json:"hostdevs"`
	Autostart bool        `json:"autostart"`
	Started   bool        `json:"started"`
	XML       string      `json:"xml,omitempty"`
}

// HostDev is a passthrough device found by pre-flight.
type HostDev struct {
	Address    string `json:"address"`
	IOMMUGroup int    `json:"iommu_group"`
}

// Create checks the host, then makes the volume, defines the domain, and
// sets autostart and starts it as asked. On any failure it removes what
// this run made, so a failed create leaves the host as it was.
func Create(ctx context.Context, d Deps, s Spec) (res CreateResult, err error) {
	text, err := DomainXML(s)
	if err != nil {
		return res, err
	}
	s = s.withMACs()
	devs, err := Preflight(ctx, d, s)
	if err != nil {
		return res, err
	}
	var seed []byte
	if !s.CloudInit.Empty() {
		if seed, err = BuildSeedISO(SeedLabel, SeedFiles(s.Name, s.CloudInit)); err != nil {
			return res, fmt.Errorf("vm %s: cloud-init seed: %w", s.Name, err)
		}
	}
	log := d.log().With("vm", s.Name)
	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		if cerr := errors.Join(errs...); cerr != nil {
			err = fmt.Errorf("%w (clean-up also failed: %v)", err, cerr)
		}
	}()
	if s.Disk > 0 {
		vol := VolumeName(s.Name)
		if err := d.Hyp.CreateVolume(ctx, s.Pool, vol, s.Disk, s.Base); err != nil {
			return res, fmt.Errorf("vm %s: create volume %s/%s: %w", s.Name, s.Pool, vol, err)
		}
		log.Info("volume created", "pool", s.Pool, "volume", vol, "base", s.Base)
		undo = append(undo, func() error { return d.Hyp.DeleteVolume(context.WithoutCancel(ctx), s.Pool, vol) })
		res.Volumes = append(res.Volumes, VolumeRef{Pool: s.Pool, Name: vol})
	}
	if seed != nil {
		vol := SeedVolumeName(s.Name)
		if err := d.Hyp.UploadVolume(ctx, s.Pool, vol, seed); err != nil {
			return res, fmt.Errorf("vm %s: cloud-init seed volume %s/%s: %w", s.Name, s.Pool, vol, err)
		}
		log.Info("cloud-init seed created", "pool", s.Pool, "volume", vol)
		undo = append(undo, func() error { return d.Hyp.DeleteVolume(context.WithoutCancel(ctx), s.Pool, vol) })
		res.Volumes = append(res.Volumes, VolumeRef{Pool: s.Pool, Name: vol})
	}
	if err := d.Hyp.Define(ctx, text); err != nil {
		return res, fmt.Errorf("vm %s: define: %w", s.Name, err)
	}
	log.Info("domain defined")
	undo = append(undo, func() error { return d.Hyp.Undefine(context.WithoutCancel(ctx), s.Name) })
	if s.Autostart {
		if err := d.Hyp.SetAutostart(ctx, s.Name, true); err != nil {
			return res, fmt.Errorf("vm %s: autostart: %w", s.Name, err)
		}
	}
	if s.Start {
		if err := d.Hyp.Start(ctx, s.Name); err != nil {
			return res, fmt.Errorf("vm %s: start: %w", s.Name, err)
		}
		log.Info("domain started")
		undo = append(undo, func() error { return d.Hyp.Stop(context.WithoutCancel(ctx), s.Name, true) })
	}
	return CreateResult{Name: s.Name, NICs: s.NICs, Volumes: nonNil(res.Volumes), HostDevs: devs, Autostart: s.Autostart, Started: s.Start}, nil
}

// Preflight checks, without changing anything, that the spec can be created:
// the name and volume are free, the pool exists, every bridge is in Open
// vSwitch, vCPUs and memory fit the host, and each passthrough device
// exists in an IOMMU group.
func Preflight(ctx context.Context, d Deps, s Spec) ([]HostDev, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if _, err := d.Hyp.Domain(ctx, s.Name); err == nil {
		return nil, fmt.Errorf("vm %s: %w", s.Name, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("vm %s: %w", s.Name, err)
	}
	if s.Disk > 0 || !s.CloudInit.Empty() {
		ok, err := d.Hyp.PoolExists(ctx, s.Pool)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", s.Pool, err)
		}
		if !ok {
			return nil, fmt.Errorf("%w: storage pool %q does not exist", ErrInvalidConfig, s.Pool)
		}
		for _, vol := range ownVolumes(s) {
			ok, err = d.Hyp.VolumeExists(ctx, s.Pool, vol)
			if err != nil {
				return nil, fmt.Errorf("volume %s/%s: %w", s.Pool, vol, err)
			}
			if ok {
				return nil, fmt.Errorf("%w: volume %s/%s already exists (left from another guest?)", ErrInvalidConfig, s.Pool, vol)
			}
		}
		if s.Base != "" {
			ok, err = d.Hyp.VolumeExists(ctx, s.Pool, s.Base)
			if err != nil {
				return nil, fmt.Errorf("volume %s/%s: %w", s.Pool, s.Base, err)
			}
			if !ok {
				return nil, fmt.Errorf("%w: base volume %s/%s does not exist", ErrInvalidConfig, s.Pool, s.Base)
			}
		}
	}
	if d.Switch != nil {
		have, err := d.Switch.BridgeNames(ctx)
		if err != nil {
			return nil, fmt.Errorf("open vswitch bridges: %w", err)
		}
		for _, n := range s.NICs {
			if !slices.Contains(have, n.Bridge) {
				return nil, fmt.Errorf("%w: bridge %q is not an Open vSwitch bridge here (have: %s)", ErrInvalidConfig, n.Bridge, strings.Join(have, ", "))
			}
		}
	}
	host, err := d.Hyp.Host(ctx)
	if err != nil {
		return nil, fmt.Errorf("host capacity: %w", err)
	}
	if s.VCPUs > host.CPUs {
		return nil, fmt.Errorf("%w: vcpus %d: the host has %d CPUs", ErrInvalidConfig, s.VCPUs, host.CPUs)
	}
	if s.Memory > host.Memory {
		return nil, fmt.Errorf("%w: memory %s: the host has %s", ErrInvalidConfig, FormatSize(s.Memory), FormatSize(host.Memory))
	}
	devs := make([]HostDev, 0, len(s.HostDevs))
	for _, a := range s.HostDevs {
		g, err := IOMMUGroup(d.Sysfs, a)
		if err != nil {
			return nil, err
		}
		devs = append(devs, HostDev{Address: a.String(), IOMMUGroup: g})
	}
	return devs, nil
}

// IOMMUGroup returns the IOMMU group of the PCI device at a, reading sysfs
// under root ("" means /sys). It fails when the device does not exist or
// the IOMMU is off (no groups at all).
func IOMMUGroup(root string, a PCIAddress) (int, error) {
	if root == "" {
		root = "/sys"
	}
	devDir := filepath.Join(root, "bus", "pci", "devices", a.String())
	if _, err := os.Stat(devDir); err != nil {
		return 0, fmt.Errorf("%w: PCI device %s does not exist on this host", ErrInvalidConfig, a)
	}
	groups, err := os.ReadDir(filepath.Join(root, "kernel", "iommu_groups"))
	if err != nil || len(groups) == 0 {
		return 0, fmt.Errorf("%w: PCI device %s: the IOMMU is off (no groups in %s/kernel/iommu_groups; boot with intel_iommu=on or amd_iommu=on)", ErrInvalidConfig, a, root)
	}
	link, err := os.Readlink(filepath.Join(devDir, "iommu_group"))
	if err != nil {
		return 0, fmt.Errorf("%w: PCI device %s is in no IOMMU group", ErrInvalidConfig, a)
	}
	g, err := strconv.Atoi(filepath.Base(link))
	if err != nil {
		return 0, fmt.Errorf("%w: PCI device %s: IOMMU group link %q", ErrInvalidConfig, a, link)
	}
	return g, nil
}

// VM is one guest as `vm list` shows it.
type VM struct {
	Name      string      `json:"name"`
	State     string      `json:"state"`
	VCPUs     int         `json:"vcpus"`
	Memory    uint64      `json:"memory_bytes"`
	Autostart bool        `json:"autostart"`
	Managed   bool        `json:"managed"`
	NICs      []NIC       `json:"nics"`
	VNCPort   int         `json:"vnc_port"` // -1 when not running
	Volumes   []VolumeRef `json:"volumes"`
	// Error says why the guest could not be read; the fields other than
	// Name (and State, when known) are then zero. Absent when it was read.
	Error string `json:"error,omitempty"`
}

// ListResult is the JSON contract of `vm list`.
type ListResult struct {
	VMs []VM `json:"vms"`
}

func toVM(di DomainInfo) (VM, error) {
	p, err := parseDomain(di.XML)
	if err != nil {
		return VM{}, fmt.Errorf("vm %s: read XML: %w", di.Name, err)
	}
	v := VM{Name: di.Name, State: di.State, Autostart: di.Autostart, VCPUs: p.vcpus, Memory: p.memory,
		VNCPort: p.vncPort, NICs: p.nics, Volumes: []VolumeRef{}}
	if p.meta != nil {
		v.Managed = true
		v.Volumes = nonNil(p.meta.Volumes)
	}
	return v, nil
}

func memBytes(v uint64, unit string) uint64 {
	switch strings.ToLower(unit) {
	case "b", "bytes":
		return v
	case "", "k", "kib":
		return v << 10
	case "m", "mib":
		return v << 20
	case "g", "gib":
		return v << 30
	}
	return v << 10
}

// List returns every domain on the connection, sorted by name. A guest that
// cannot be read (its XML could not be fetched or parsed) does not hide the
// others: it is listed with Error set, and List returns the result with an
// error wrapping ErrIncomplete that names each such guest.
func List(ctx context.Context, d Deps) (ListResult, error) {
	doms, err := d.Hyp.Domains(ctx)
	if err != nil {
		return ListResult{}, fmt.Errorf("list domains: %w", err)
	}
	out := ListResult{VMs: make([]VM, 0, len(doms))}
	var bad []string
	for _, di := range doms {
		v, err := toVM(di)
		if di.Err != nil {
			err = fmt.Errorf("vm %s: %w", di.Name, di.Err)
		}
		if err != nil {
			v = VM{Name: di.Name, State: di.State, VNCPort: -1, NICs: []NIC{}, Volumes: []VolumeRef{}, Error: err.Error()}
			bad = append(bad, err.Error())
		}
		out.VMs = append(out.VMs, v)
	}
	slices.SortFunc(out.VMs, func(a, b VM) int { return strings.Compare(a.Name, b.Name) })
	if len(bad) > 0 {
		slices.Sort(bad)
		return out, fmt.Errorf("list domains: %w: %d of %d: %s", ErrIncomplete, len(bad), len(doms), strings.Join(bad, "; "))
	}
	return out, nil
}

// Get returns one guest.
func Get(ctx context.Context, d Deps, name string) (VM, error) {
	di, err := d.Hyp.Domain(ctx, name)
	if err != nil {
		return VM{}, fmt.Errorf("vm %s: %w", name, err)
	}
	return toVM(di)
}

// StateResult is the JSON contract of `vm start` and `vm stop`.
type StateResult struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Changed bool   `json:"changed"`
	// Gone: the guest was transient and libvirt removed it once it was
	// off; State is then "shut off".
	Gone bool `json:"gone,omitempty"`
}

// Start boots the guest; a running guest is left alone.
func Start(ctx context.Context, d Deps, name string) (StateResult, error) {
	v, err := Get(ctx, d, name)
	if err != nil {
		return StateResult{}, err
	}
	if v.State == "running" {
		return StateResult{Name: name, State: v.State}, nil
	}
	if err := d.Hyp.Start(ctx, name); err != nil {
		return StateResult{}, fmt.Errorf("vm %s: start: %w", name, err)
	}
	return stateAfter(ctx, d, name)
}

// DefaultStopTimeout is a sensible StopOptions.Timeout: long enough for a
// guest OS to shut its services down.
const DefaultStopTimeout = 60 * time.Second

// stopPoll is how often a graceful Stop reads the guest's state.
const stopPoll = 250 * time.Millisecond

// StopOptions says how Stop brings a guest down.
type StopOptions struct {
	// Force destroys the guest at once (pulls the plug) instead of
	// sending an ACPI shutdown; Timeout is then not used.
	Force bool
	// Timeout bounds the wait for a graceful shutdown. It must be
	// positive (DefaultStopTimeout, say) unless Force is set.
	Timeout time.Duration
}

// Validate refuses a graceful stop without a positive timeout.
func (o StopOptions) Validate() error {
	if !o.Force && o.Timeout <= 0 {
		return fmt.Errorf("%w: stop timeout %s: want a positive duration such as 60s", ErrInvalidConfig, o.Timeout)
	}
	return nil
}

// Stop brings the guest down; a stopped guest is left alone. A graceful stop
// sends an ACPI shutdown and waits until the guest is shut off; a guest
// still up after the timeout (one whose OS ignores ACPI, or that hangs on
// the way down) gives an error wrapping ErrStopTimeout, and is left running
// for the operator to force. A guest that is paused, crashed or suspended,
// before the request or while waiting, cannot act on it: Stop fails at once
// with an error wrapping ErrCannotShutDown. A transient guest, which libvirt
// removes once it is off, counts as shut off when it is gone (Gone).
func Stop(ctx context.Context, d Deps, name string, opts StopOptions) (StateResult, error) {
	if err := opts.Validate(); err != nil {
		return StateResult{}, err
	}
	v, err := Get(ctx, d, name)
	if err != nil {
		return StateResult{}, err
	}
	if v.State == stateOff {
		return StateResult{Name: name, State: v.State}, nil
	}
	if !opts.Force {
		if err := shutdownBlocked(name, v.State); err != nil {
			return StateResult{}, err
		}
	}
	if err := d.Hyp.Stop(ctx, name, opts.Force); err != nil {
		return StateResult{}, fmt.Errorf("vm %s: stop: %w", name, err)
	}
	if opts.Force {
		return stateAfter(ctx, d, name)
	}
	d.log().Info("shutdown requested; waiting", "vm", name, "timeout", opts.Timeout)
	state, gone := v.State, false
	err = waitUntil(ctx, opts.Timeout, stopPoll, func(ctx context.Context) (bool, error) {
		st, err := d.Hyp.DomainState(ctx, name)
		if errors.Is(err, ErrNotFound) {
			gone = true
			return true, nil
		}
		if err != nil {
			return false, err
		}
		state = st
		if err := shutdownBlocked(name, st); err != nil {
			return false, err
		}
		return state == stateOff, nil
	})
	if errors.Is(err, ErrStopTimeout) {
		return StateResult{}, fmt.Errorf("vm %s: %w within %s (%s); power it off with: ghostbridge vm stop %s --force", name, ErrStopTimeout, opts.Timeout, state, name)
	}
	if errors.Is(err, ErrCannotShutDown) {
		return StateResult{}, err
	}
	if err != nil {
		return StateResult{}, fmt.Errorf("vm %s: wait for shutdown: %w", name, err)
	}
	if gone {
		return StateResult{Name: name, State: stateOff, Changed: true, Gone: true}, nil
	}
	return StateResult{Name: name, State: state, Changed: true}, nil
}

// stateOff is libvirt's name for a defined guest that is not running.
const stateOff = "shut off"

// shutdownBlocked refuses to wait on a guest that cannot act on an ACPI
// shutdown in state, saying what the operator can do instead.
func shutdownBlocked(name, state string) error {
	var fix string
	switch state {
	case "paused":
		fix = "resume it (virsh resume " + name + ") and stop again, or "
	case "suspended":
		fix = "wake it (virsh dompmwakeup " + name + ") and stop again, or "
	case "crashed":
	default:
		return nil
	}
	return fmt.Errorf("vm %s: %s: %w; %spower it off with: ghostbridge vm stop %s --force", name, state, ErrCannotShutDown, fix, name)
}

// waitUntil calls done every poll until it reports true, returns an error,
// or timeout passes (ErrStopTimeout). done is called once at the start, so
// a guest already down costs no wait.
func waitUntil(ctx context.Context, timeout, poll time.Duration, done func(context.Context) (bool, error)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		ok, err := done(ctx)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			// One last look: the guest may have gone down in the
			// final interval.
			if ok, err := done(ctx); err != nil || ok {
				return err
			}
			return ErrStopTimeout
		case <-tick.C:
		}
	}
}

// stateAfter reads the guest's state after a start or a forced stop. A
// transient guest that is gone has been destroyed: it is off.
func stateAfter(ctx context.Context, d Deps, name string) (StateResult, error) {
	st, err := d.Hyp.DomainState(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return StateResult{Name: name, State: stateOff, Changed: true, Gone: true}, nil
	}
	if err != nil {
		return StateResult{}, fmt.Errorf("vm %s: %w", name, err)
	}
	return StateResult{Name: name, State: st, Changed: true}, nil
}

// DeleteResult is the JSON contract of `vm delete`.
type DeleteResult struct {
	Name           string      `json:"name"`
	RemovedVolumes []VolumeRef `json:"removed_volumes"`
	KeptVolumes    []VolumeRef `json:"kept_volumes"`
}

// Delete undefines a guest made by ghostbridge; with removeStorage it also
// deletes the volumes its metadata lists (and no others). A running guest
// is refused: stop it first.
func Delete(ctx context.Context, d Deps, name string, removeStorage bool) (DeleteResult, error) {
	v, err := Get(ctx, d, name)
	if err != nil {
		return DeleteResult{}, err
	}
	if !v.Managed {
		return DeleteResult{}, fmt.Errorf("vm %s: %w (no ghostbridge metadata); use virsh", name, ErrNotManaged)
	}
	if v.State != stateOff {
		return DeleteResult{}, fmt.Errorf("vm %s: %w (%s); stop it first (vm stop --force)", name, ErrRunning, v.State)
	}
	if err := d.Hyp.Undefine(ctx, name); err != nil {
		return DeleteResult{}, fmt.Errorf("vm %s: undefine: %w", name, err)
	}
	res := DeleteResult{Name: name, RemovedVolumes: []VolumeRef{}, KeptVolumes: []VolumeRef{}}
	if !removeStorage {
		res.KeptVolumes = v.Volumes
		return res, nil
	}
	var errs []error
	for _, vol := range v.Volumes {
		if err := d.Hyp.DeleteVolume(ctx, vol.Pool, vol.Name); err != nil {
			errs = append(errs, fmt.Errorf("vm %s: delete volume %s/%s: %w", name, vol.Pool, vol.Name, err))
			res.KeptVolumes = append(res.KeptVolumes, vol)
			continue
		}
		res.RemovedVolumes = append(res.RemovedVolumes, vol)
	}
	return res, errors.Join(errs...)
}

// ConsoleResult is the JSON contract of `vm console`.
type ConsoleResult struct {
	Name    string `json:"name"`
	Listen  string `json:"listen"`
	Port    int    `json:"port"`
	Display string `json:"display"`
	NoVNC   string `json:"novnc_url"`
}

// Console returns where the running guest's VNC display is, and the noVNC
// URL built from noVNCBase (e.g. "http://HOST:6080/vnc.html").
func Console(ctx context.Context, d Deps, name, noVNCBase string) (ConsoleResult, error) {
	di, err := d.Hyp.Domain(ctx, name)
	if err != nil {
		return ConsoleResult{}, fmt.Errorf("vm %s: %w", name, err)
	}
	p, err := parseDomain(di.XML)
	if err != nil {
		return ConsoleResult{}, fmt.Errorf("vm %s: read XML: %w", name, err)
	}
	if di.State != "running" || p.vncPort <= 0 {
		return ConsoleResult{}, fmt.Errorf("vm %s: %w (%s): no VNC display", name, ErrNotRunning, di.State)
	}
	r := ConsoleResult{Name: name, Listen: "127.0.0.1", Port: p.vncPort, Display: fmt.Sprintf("127.0.0.1:%d", p.vncPort-5900)}
	if noVNCBase != "" {
		sep := "?"
		if strings.Contains(noVNCBase, "?") {
			sep = "&"
		}
		r.NoVNC = noVNCBase + sep + "autoconnect=1&path=" + "websockify%3Ftoken%3D" + name
	}
	return r, nil
}

// XML returns the guest's domain XML as libvirt holds it.
func XML(ctx context.Context, d Deps, name string) (string, error) {
	di, err := d.Hyp.Domain(ctx, name)
	if err != nil {
		return "", fmt.Errorf("vm %s: %w", name, err)
	}
	return di.XML, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
