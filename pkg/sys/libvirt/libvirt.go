// Package libvirt adapts a libvirt daemon, reached over its RPC protocol by
// the pure-Go github.com/digitalocean/go-libvirt client, to the Hypervisor
// interface of pkg/vm. It translates calls and errors; it decides nothing
// and never touches a domain or volume it is not named.
package libvirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

// DefaultURI is the system qemu driver on the local host.
const DefaultURI = "qemu:///system"

// Conn is one connection to a libvirt daemon.
type Conn struct {
	l   *golibvirt.Libvirt
	uri string
	// allStats and xmlDesc, when set, stand in for the client's calls of
	// those names, so tests can make a real daemon's answer fail.
	allStats func(doms []golibvirt.Domain, stats, flags uint32) ([]golibvirt.DomainStatsRecord, error)
	xmlDesc  func(d golibvirt.Domain, flags golibvirt.DomainXMLFlags) (string, error)
}

var _ vm.Hypervisor = (*Conn)(nil)

// Dial connects to uri, e.g. "qemu:///system" or
// "test+unix:///default?socket=/tmp/x/libvirt-sock".
func Dial(ctx context.Context, uri string) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q: %w", uri, err)
	}
	l, err := golibvirt.ConnectToURI(u)
	if err != nil {
		return nil, fmt.Errorf("libvirt %s: %w", uri, err)
	}
	return &Conn{l: l, uri: uri}, nil
}

// Close ends the connection.
func (c *Conn) Close() error { return c.l.Disconnect() }

// URI is the URI the connection was made with.
func (c *Conn) URI() string { return c.uri }

func notFound(err error) bool {
	var e golibvirt.Error
	if errors.As(err, &e) {
		switch golibvirt.ErrorNumber(e.Code) {
		case golibvirt.ErrNoDomain, golibvirt.ErrNoStorageVol, golibvirt.ErrNoStoragePool:
			return true
		}
	}
	return false
}

var stateNames = map[int32]string{
	0: "no state", 1: "running", 2: "blocked", 3: "paused", 4: "shutting down", 5: "shut off", 6: "crashed", 7: "suspended",
}

func (c *Conn) info(d golibvirt.Domain) (vm.DomainInfo, error) {
	st, _, err := c.l.DomainGetState(d, 0)
	if err != nil {
		return vm.DomainInfo{}, domErr("state", d.Name, err)
	}
	auto, err := c.l.DomainGetAutostart(d)
	if err != nil {
		return vm.DomainInfo{}, domErr("autostart", d.Name, err)
	}
	x, err := c.l.DomainGetXMLDesc(d, 0)
	if err != nil {
		return vm.DomainInfo{}, domErr("XML", d.Name, err)
	}
	return vm.DomainInfo{Name: d.Name, State: stateName(st), Autostart: auto != 0, XML: x}, nil
}

// domErr names what could not be read of which domain. A domain gone
// since it was looked up (a transient guest that shut down, one undefined
// meanwhile) is reported as vm.ErrNotFound, as a failed lookup is.
func domErr(what, name string, err error) error {
	if notFound(err) {
		return fmt.Errorf("%s of %s: %w", what, name, vm.ErrNotFound)
	}
	return fmt.Errorf("%s of %s: %w", what, name, err)
}

func stateName(st int32) string {
	if name, ok := stateNames[st]; ok {
		return name
	}
	return fmt.Sprintf("state %d", st)
}

func (c *Conn) lookup(ctx context.Context, name string) (golibvirt.Domain, error) {
	if err := ctx.Err(); err != nil {
		return golibvirt.Domain{}, err
	}
	d, err := c.l.DomainLookupByName(name)
	if notFound(err) {
		return d, vm.ErrNotFound
	}
	return d, err
}

// Domain returns one domain; a missing one wraps vm.ErrNotFound.
func (c *Conn) Domain(ctx context.Context, name string) (vm.DomainInfo, error) {
	d, err := c.lookup(ctx, name)
	if err != nil {
		return vm.DomainInfo{}, err
	}
	return c.info(d)
}

// DomainState returns one domain's state in two calls (lookup and state),
// for polling; a missing domain wraps vm.ErrNotFound.
func (c *Conn) DomainState(ctx context.Context, name string) (string, error) {
	d, err := c.lookup(ctx, name)
	if err != nil {
		return "", err
	}
	st, _, err := c.l.DomainGetState(d, 0)
	if err != nil {
		return "", domErr("state", name, err)
	}
	return stateName(st), nil
}

// domState is a listed domain and its state; err is set when the state
// could not be read.
type domState struct {
	dom   golibvirt.Domain
	state int32
	err   error
}

// Domains returns every domain, running or defined. It costs a fixed number
// of calls plus one per domain (its XML): the states of all domains come in
// one stats call and autostart from one filtered listing, where asking each
// domain would take three round trips apiece. A domain undefined while it
// is listed is left out; one whose state or XML cannot be read is returned
// with Err set, so one bad guest does not hide the others.
func (c *Conn) Domains(ctx context.Context) ([]vm.DomainInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	recs, err := c.states()
	if err != nil {
		return nil, err
	}
	auto, _, err := c.l.ConnectListAllDomains(1, golibvirt.ConnectListDomainsAutostart)
	if err != nil {
		return nil, fmt.Errorf("autostart domains: %w", err)
	}
	autostart := make(map[golibvirt.UUID]bool, len(auto))
	for _, d := range auto {
		autostart[d.UUID] = true
	}
	// The XML requests are pipelined over the one connection: libvirtd
	// serves them on its worker threads, so the round trips overlap.
	xmls := make([]string, len(recs))
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(xmlWorkers, len(recs)) {
		wg.Go(func() {
			for i := range next {
				xmls[i], errs[i] = c.getXML(recs[i].dom)
			}
		})
	}
	for i, r := range recs {
		if ctx.Err() != nil {
			break
		}
		if r.err != nil {
			continue
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]vm.DomainInfo, 0, len(recs))
	for i, r := range recs {
		di := vm.DomainInfo{Name: r.dom.Name, State: stateName(r.state), Autostart: autostart[r.dom.UUID], XML: xmls[i]}
		switch {
		case notFound(r.err) || notFound(errs[i]):
			continue // undefined while we listed
		case r.err != nil:
			di.State, di.Err = "", fmt.Errorf("state of %s: %w", r.dom.Name, r.err)
		case errs[i] != nil:
			di.Err = fmt.Errorf("XML of %s: %w", r.dom.Name, errs[i])
		}
		out = append(out, di)
	}
	return out, nil
}

// states lists every domain with its state: in one stats call where the
// driver has it, else (VIR_ERR_NO_SUPPORT) a listing and a state call per
// domain.
func (c *Conn) states() ([]domState, error) {
	stats := c.l.ConnectGetAllDomainStats
	if c.allStats != nil {
		stats = c.allStats
	}
	recs, err := stats(nil, uint32(golibvirt.DomainStatsState),
		uint32(golibvirt.ConnectGetAllDomainsStatsActive|golibvirt.ConnectGetAllDomainsStatsInactive))
	if isErr(err, golibvirt.ErrNoSupport) {
		return c.statesOneByOne()
	}
	if err != nil {
		return nil, fmt.Errorf("domain states: %w", err)
	}
	out := make([]domState, 0, len(recs))
	for _, r := range recs {
		st := int32(0) // "no state", should the driver leave it out
		for _, p := range r.Params {
			if p.Field == "state.state" {
				if v, ok := p.Value.I.(int32); ok {
					st = v
				}
			}
		}
		out = append(out, domState{dom: r.Dom, state: st})
	}
	return out, nil
}

func (c *Conn) statesOneByOne() ([]domState, error) {
	doms, _, err := c.l.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	out := make([]domState, 0, len(doms))
	for _, d := range doms {
		st, _, err := c.l.DomainGetState(d, 0)
		out = append(out, domState{dom: d, state: st, err: err})
	}
	return out, nil
}

func (c *Conn) getXML(d golibvirt.Domain) (string, error) {
	if c.xmlDesc != nil {
		return c.xmlDesc(d, 0)
	}
	return c.l.DomainGetXMLDesc(d, 0)
}

func isErr(err error, code golibvirt.ErrorNumber) bool {
	var e golibvirt.Error
	return errors.As(err, &e) && golibvirt.ErrorNumber(e.Code) == code
}

// xmlWorkers bounds the XML requests Domains keeps in flight: libvirtd
// works on at most max_client_requests (default 5) calls of one client at
// a time, and staying under it leaves room for the daemon's keepalive.
const xmlWorkers = 4

// Define makes a persistent domain from XML, validated against libvirt's
// schema so a typo is refused rather than silently dropped.
func (c *Conn) Define(ctx context.Context, xml string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := c.l.DomainDefineXMLFlags(xml, golibvirt.DomainDefineValidate)
	return err
}

// Undefine removes a stopped domain's definition, its NVRAM file included.
func (c *Conn) Undefine(ctx context.Context, name string) error {
	d, err := c.lookup(ctx, name)
	if err != nil {
		return err
	}
	if err := c.l.DomainUndefineFlags(d, golibvirt.DomainUndefineNvram|golibvirt.DomainUndefineManagedSave); err != nil {
		// Drivers without NVRAM support refuse the flag; retry plainly.
		var e golibvirt.Error
		if errors.As(err, &e) && (golibvirt.ErrorNumber(e.Code) == golibvirt.ErrNoSupport || golibvirt.ErrorNumber(e.Code) == golibvirt.ErrInvalidArg) {
			return c.l.DomainUndefineFlags(d, 0)
		}
		return err
	}
	return nil
}

// Start boots a defined domain.
func (c *Conn) Start(ctx context.Context, name string) error {
	d, err := c.lookup(ctx, name)
	if err != nil {
		return err
	}
	return c.l.DomainCreate(d)
}

// Stop sends an ACPI shutdown, or destroys the domain when force is set.
func (c *Conn) Stop(ctx context.Context, name string, force bool) error {
	d, err := c.lookup(ctx, name)
	if err != nil {
		return err
	}
	if force {
		err = c.l.DomainDestroyFlags(d, 0)
	} else {
		err = c.l.DomainShutdown(d)
	}
	if notFound(err) {
		return fmt.Errorf("%s: %w", name, vm.ErrNotFound)
	}
	return err
}

// SetAutostart turns starting with the daemon on or off.
func (c *Conn) SetAutostart(ctx context.Context, name string, on bool) error {
	d, err := c.lookup(ctx, name)
	if err != nil {
		return err
	}
	v := int32(0)
	if on {
		v = 1
	}
	return c.l.DomainSetAutostart(d, v)
}

// Host reports the host's CPUs and memory.
func (c *Conn) Host(ctx context.Context) (vm.HostInfo, error) {
	if err := ctx.Err(); err != nil {
		return vm.HostInfo{}, err
	}
	_, mem, cpus, _, _, _, _, _, err := c.l.NodeGetInfo()
	if err != nil {
		return vm.HostInfo{}, err
	}
	return vm.HostInfo{CPUs: int(cpus), Memory: mem << 10}, nil
}

// PoolExists reports whether the storage pool is defined.
func (c *Conn) PoolExists(ctx context.Context, pool string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	_, err := c.l.StoragePoolLookupByName(pool)
	if notFound(err) {
		return false, nil
	}
	return err == nil, err
}

// VolumeExists reports whether pool holds a volume called name.
func (c *Conn) VolumeExists(ctx context.Context, pool, name string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return false, err
	}
	_, err = c.l.StorageVolLookupByName(p, name)
	if notFound(err) {
		return false, nil
	}
	return err == nil, err
}

// CreateVolume makes a new qcow2 volume of size bytes in pool. When
// backing names another volume in the pool, the new volume is a
// copy-on-write overlay on it: writes land in the overlay and the base is
// never changed.
func (c *Conn) CreateVolume(ctx context.Context, pool, name string, size uint64, backing string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return err
	}
	v := libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Value: size, Unit: "bytes"},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
	}
	if backing != "" {
		bs, err := c.backingStore(p, backing)
		if err != nil {
			return fmt.Errorf("base volume %s/%s: %w", pool, backing, err)
		}
		v.BackingStore = bs
	}
	x, err := v.Marshal()
	if err != nil {
		return err
	}
	_, err = c.l.StorageVolCreateXML(p, x, 0)
	return err
}

// backingStore describes the base volume base by path and format, as a
// volume's <backingStore> needs.
func (c *Conn) backingStore(p golibvirt.StoragePool, base string) (*libvirtxml.StorageVolumeBackingStore, error) {
	bv, err := c.l.StorageVolLookupByName(p, base)
	if notFound(err) {
		return nil, vm.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	text, err := c.l.StorageVolGetXMLDesc(bv, 0)
	if err != nil {
		return nil, err
	}
	var bx libvirtxml.StorageVolume
	if err := bx.Unmarshal(text); err != nil {
		return nil, err
	}
	path, err := c.l.StorageVolGetPath(bv)
	if err != nil {
		return nil, err
	}
	format := "raw"
	if bx.Target != nil && bx.Target.Format != nil && bx.Target.Format.Type != "" {
		format = bx.Target.Format.Type
	}
	return &libvirtxml.StorageVolumeBackingStore{Path: path, Format: &libvirtxml.StorageVolumeTargetFormat{Type: format}}, nil
}

// UploadVolume makes a raw volume called name in pool holding data (a
// cloud-init seed image, for instance). Drivers without upload support
// (libvirt's test driver) report an error and leave no volume behind.
func (c *Conn) UploadVolume(ctx context.Context, pool, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return err
	}
	v := libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Value: uint64(len(data)), Unit: "bytes"},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "raw"}},
	}
	x, err := v.Marshal()
	if err != nil {
		return err
	}
	vol, err := c.l.StorageVolCreateXML(p, x, 0)
	if err != nil {
		return err
	}
	if err := c.l.StorageVolUpload(vol, bytes.NewReader(data), 0, uint64(len(data)), 0); err != nil {
		return errors.Join(fmt.Errorf("upload: %w", err), c.l.StorageVolDelete(vol, 0))
	}
	return nil
}

// VolumeXML returns a volume's XML as libvirt holds it, for tests and
// diagnostics.
func (c *Conn) VolumeXML(ctx context.Context, pool, name string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return "", err
	}
	v, err := c.l.StorageVolLookupByName(p, name)
	if err != nil {
		return "", err
	}
	return c.l.StorageVolGetXMLDesc(v, 0)
}

// DeleteVolume removes a volume; a missing one is not an error, so a
// clean-up can be repeated.
func (c *Conn) DeleteVolume(ctx context.Context, pool, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return err
	}
	v, err := c.l.StorageVolLookupByName(p, name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.l.StorageVolDelete(v, 0)
}

// Volumes lists the volume names in pool, for tests and diagnostics.
func (c *Conn) Volumes(ctx context.Context, pool string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return nil, err
	}
	vols, _, err := c.l.StoragePoolListAllVolumes(p, 1, 0)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(vols))
	for _, v := range vols {
		out = append(out, v.Name)
	}
	return out, nil
}
