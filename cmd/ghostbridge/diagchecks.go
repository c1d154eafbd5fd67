package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/diag"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"github.com/ghostbridge/ghostbridge/pkg/sys/sysctl"
	"github.com/ghostbridge/ghostbridge/pkg/vector"
)

// diagBuild turns the loaded configuration into diag checks. Each group
// has its own method below; a group whose subsystem is absent from the
// config returns diag.Skipped checks with the reason. Checks only read:
// whatever a group opens to read from, it registers with onClose.
type diagBuild struct {
	app     *App
	cfg     Config
	closers []func() error
	chain   *diag.ChainInputs // built once for the chain and snapshots groups
}

// diagGroups are the group builders in the order diag shows them.
func (b *diagBuild) groups() []struct {
	name  string
	build func() []diag.Check
} {
	return []struct {
		name  string
		build func() []diag.Check
	}{
		{"net", b.netChecks},
		{"storage", b.storageChecks},
		{"snapshots", b.snapshotsChecks},
		{"chain", b.chainChecks},
		{"vector", b.vectorChecks},
		{"vm", b.vmChecks},
		{"services", b.servicesChecks},
		{"security", b.securityChecks},
	}
}

// diagChecks builds the checks --only and --skip select, in the order
// diag shows them, and a function that releases what they hold open. The
// selection is made on diag.Catalog first and only the groups it keeps
// are built, so "--only chain" opens no netlink socket and reads no API
// key. A name that matches no check is an error (diag.ErrUnknownCheck).
func diagChecks(a *App, cfg Config, only, skip []string) ([]diag.Check, func() error, error) {
	wanted, err := diag.Select(catalogChecks(), only, skip)
	if err != nil {
		return nil, nil, err
	}
	keep := map[string]bool{}
	groups := map[string]bool{}
	for _, c := range wanted {
		keep[c.Name] = true
		groups[c.Group()] = true
	}
	b := &diagBuild{app: a, cfg: cfg}
	var checks []diag.Check
	for _, g := range b.groups() {
		if !groups[g.name] {
			continue
		}
		for _, c := range g.build() {
			if keep[c.Name] {
				checks = append(checks, c)
			}
		}
	}
	return checks, b.close, nil
}

// onClose registers f to run after the checks have run.
func (b *diagBuild) onClose(f func() error) { b.closers = append(b.closers, f) }

func (b *diagBuild) close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(errs...)
}

// ---- net group: net.bridges net.uplink net.offloads net.forwarding net.flows net.bridge_mac ----

func (b *diagBuild) netChecks() []diag.Check {
	n := b.cfg.Net
	cfg, ps := netupConfig(n)
	if len(ps) > 0 {
		cfg = netup.Config{} // Validate refused it already; the checks say skipped
	}
	if len(cfg.Bridges) == 0 {
		return diag.NetChecks(cfg, netup.Deps{})
	}
	// No ping first: a missing OVS is what the checks report, as unknown.
	d := netup.Deps{OVS: ovs.New(n.OVSDBSocket), Sysctl: sysctl.Proc{}, Logger: b.app.log}
	nl, err := netdev.Open()
	if err != nil {
		return diagUnknown(diag.NetChecks(cfg, d), "run diag as root", fmt.Errorf("open rtnetlink: %w", err))
	}
	b.onClose(func() error { nl.Close(); return nil })
	eth, err := ethtool.Open()
	if err != nil {
		return diagUnknown(diag.NetChecks(cfg, d), "run diag as root", fmt.Errorf("open ethtool: %w", err))
	}
	b.onClose(eth.Close)
	d.Links, d.Offloads = nl, eth
	return diag.NetChecks(cfg, d)
}

// netNeedsNoLinks are the net checks that read neither rtnetlink nor
// ethtool: net.forwarding reads sysctls only, and still answers when
// those sockets cannot be opened.
var netNeedsNoLinks = []string{"net.forwarding"}

// diagUnknown makes the runnable net checks that read links or offloads
// report err as unknown, for when those adapters could not be opened.
func diagUnknown(cs []diag.Check, hint string, err error) []diag.Check {
	for i := range cs {
		if cs[i].SkipReason == "" && !slices.Contains(netNeedsNoLinks, cs[i].Name) {
			cs[i].Run = func(context.Context) diag.Outcome { return diag.Unknown(hint, "%v", err) }
		}
	}
	return cs
}

// ---- storage group: storage.mounts storage.device_errors storage.free ----

func (b *diagBuild) storageChecks() []diag.Check {
	cfg := diag.StorageConfig{FreeMinPercent: b.cfg.Diag.FreeMinPercent}
	for _, m := range b.cfg.Diag.Mounts {
		cfg.Mounts = append(cfg.Mounts, diag.MountSpec{Path: m.Path, Options: m.Options})
	}
	// The snapshot directory and sources hold what ghostbridge keeps:
	// their filesystems are checked for device errors and free space.
	if sc, err := snapConfig(b.cfg); err == nil && len(sc.Sources) > 0 {
		cfg.Paths = append(cfg.Paths, sc.Dir)
		for _, s := range sc.Sources {
			cfg.Paths = append(cfg.Paths, s.Path)
		}
	}
	return diag.StorageChecks(cfg)
}

// ---- snapshots group: snapshots.loop snapshots.count snapshots.orphans ----

// The snapshots group is built whether or not a [snap] table is set,
// unlike vector and vm (tableSet): snap has defaults that always apply
// (the root source, the snapshot directory, the 1s interval), so a host
// without a [snap] table still snapshots and its loop is still checked.
func (b *diagBuild) snapshotsChecks() []diag.Check {
	sc, err := snapConfig(b.cfg)
	if err != nil {
		// Validate refused it already; this keeps the names listed.
		return []diag.Check{
			diag.Skipped("snapshots.loop", "snap.sources does not parse: "+err.Error()),
			diag.Skipped("snapshots.count", "snap.sources does not parse"),
			diag.Skipped("snapshots.orphans", "snap.sources does not parse"),
		}
	}
	return diag.SnapshotChecks(b.chainInputs(), sc, nil)
}

// ---- chain group: chain.verify chain.head_age ----

func (b *diagBuild) chainChecks() []diag.Check {
	return diag.ChainChecks(b.chainInputs())
}

// chainInputs names the database and loads the trusted checkpoint the
// way chain verify does.
func (b *diagBuild) chainInputs() diag.ChainInputs {
	if b.chain == nil {
		in := diag.ChainInputs{DB: b.cfg.DB, Now: b.app.Now}
		in.Trust, in.NoTrust, in.TrustErr = b.app.loadTrust()
		b.chain = &in
	}
	return *b.chain
}

// ---- vector group: vector.reachable vector.collection vector.lag ----

func (b *diagBuild) vectorChecks() []diag.Check {
	if !b.tableSet("vector") {
		return []diag.Check{
			diag.Skipped("vector.reachable", "no [vector] table in the config"),
			diag.Skipped("vector.collection", "no [vector] table in the config"),
			diag.Skipped("vector.lag", "no [vector] table in the config"),
		}
	}
	vc := b.cfg.Vector
	dist, err := vector.ParseDistance(vc.Distance)
	if err != nil {
		dist = vector.Distance(vc.Distance) // Validate refused it already
	}
	in := diag.VectorInputs{
		Conn:       vector.Conn{Host: vc.Host, Port: vc.Port, TLS: vc.TLS},
		Collection: vc.Collection, Dim: vc.Dimension, Distance: dist,
		DB: b.cfg.DB, LagMax: b.cfg.Diag.SyncLagMax,
	}
	// Qdrant cannot be asked without the key or the CA it is signed by;
	// the lag needs neither.
	unusable := func(key, what string, err error) []diag.Check {
		checks := diag.VectorChecks(in)
		for i, c := range checks {
			if slices.Contains(qdrantChecks, c.Name) {
				checks[i].Run = func(context.Context) diag.Outcome {
					return diag.Fail("fix "+key+" (ghostbridge config show)", "cannot read the %s: %v", what, err)
				}
			}
		}
		return checks
	}
	key, err := b.app.qdrantAPIKey()
	if err != nil {
		return unusable("vector.api_key_file", "Qdrant API key", err)
	}
	roots, err := b.app.qdrantRootCAs()
	if err != nil {
		return unusable("vector.tls_ca_file", "CA bundle for Qdrant", err)
	}
	in.Conn.APIKey, in.Conn.RootCAs = key, roots
	return diag.VectorChecks(in)
}

// qdrantChecks are the vector checks that ask Qdrant, and so need its
// API key and CA.
var qdrantChecks = []string{"vector.reachable", "vector.collection"}

// tableSet reports whether any key of the config table was set (by the
// config file, the environment or a flag) rather than left at its default:
// a group whose table is absent is skipped.
func (b *diagBuild) tableSet(table string) bool {
	for k, origin := range b.app.conf.Origins {
		if strings.HasPrefix(k, table+".") && origin != "default" {
			return true
		}
	}
	return false
}

// ---- vm group: vm.libvirt vm.nics ----

func (b *diagBuild) vmChecks() []diag.Check {
	if !b.tableSet("vm") {
		return []diag.Check{
			diag.Skipped("vm.libvirt", "no [vm] table in the config"),
			diag.Skipped("vm.nics", "no [vm] table in the config"),
		}
	}
	return diag.VMChecks(diag.VMInputs{URI: b.cfg.VM.URI, OVSDB: b.cfg.Net.OVSDBSocket})
}

// ---- services group: services.units services.dbus_names ----

func (b *diagBuild) servicesChecks() []diag.Check {
	dc := b.cfg.Diag
	return diag.ServiceChecks(dc.DBusAddress, dc.Services, dc.DBusNames)
}

// ---- security group: security.sshd security.listeners ----

func (b *diagBuild) securityChecks() []diag.Check {
	return diag.SecurityChecks(diag.SecurityConfig{
		SSHD: b.cfg.Diag.SSHD,
		Listeners: []diag.Listener{
			{Key: "snap.metrics_listen", Addr: b.cfg.Snap.MetricsListen},
			{Key: "vector.metrics_listen", Addr: b.cfg.Vector.MetricsListen},
		},
	})
}
