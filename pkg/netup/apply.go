package netup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
)

// Result is what Plan, Up and Down did: the JSON contract of `net plan`,
// `net up` and `net down`.
type Result struct {
	// InSync is true when nothing needed changing.
	InSync  bool     `json:"in_sync"`
	Applied bool     `json:"applied"`
	Changes []Change `json:"changes"`
}

// Options adjust Up and Down.
type Options struct {
	// DryRun plans without changing anything.
	DryRun bool
	// OnChange is called after each change is applied.
	OnChange func(Change)
	// Force lets Down delete a bridge it created that still has ports
	// it did not create (a VM's tap device), detaching them, and lets Up
	// apply a configuration whose try was rolled back unconfirmed.
	Force bool
	// StateDir holds the state of `net try` (see Try). Up refuses to run
	// while a try is unconfirmed there, and rolls back one that expired
	// (TryInfo.Expired) and stops; Down rolls back any try whose process
	// is gone first. Empty: no try state is consulted.
	StateDir string
}

// Prepare validates cfg, observes the host and plans. Flows are checked by
// ovs-ofctl itself, so a rule it would reject fails here, before anything
// changes. Errors about the configuration wrap ErrInvalidConfig.
func Prepare(ctx context.Context, d Deps, cfg Config) ([]Change, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, b := range cfg.Bridges {
		for _, f := range b.Flows {
			if err := d.OVS.ParseFlow(ctx, f); err != nil {
				var ce *ovs.CommandError
				msg := err.Error()
				if errors.As(err, &ce) {
					msg = ce.Stderr
				}
				return nil, invalid("bridge %s: flow %q: ovs-ofctl rejects it: %s", b.Name, f, strings.TrimPrefix(msg, "ovs-ofctl: "))
			}
		}
	}
	st, ts, err := Observe(ctx, d, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkUplinkAddrs(ts, st); err != nil {
		return nil, err
	}
	return plan(cfg, ts, st), nil
}

// checkUplinkAddrs refuses an uplink that carries addresses its bridge
// does not declare: once the NIC is a bridge port they stop working (an
// undeclared IPv6 address an SSH session uses would be cut), and Down
// could not give them back. IPv6 link-local addresses stay on the NIC.
func checkUplinkAddrs(ts []target, st State) error {
	for _, t := range ts {
		if t.uplink == "" {
			continue
		}
		var extra []string
		for _, a := range st.Links[t.uplink].Addrs {
			if !isLinkLocal(a) && !slices.Contains(t.Addresses, a) {
				extra = append(extra, a.String())
			}
		}
		if len(extra) > 0 {
			return invalid("bridge %s: uplink %s carries %s, not in the bridge's addresses; list %s in addresses so it moves to the bridge (or remove it from %s)",
				t.Name, t.uplink, strings.Join(extra, ", "), plural(len(extra), "it", "them"), t.uplink)
		}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Up converges the host to cfg, changing only what differs. When a step
// fails, the host is put back to the state observed before the first
// change.
func Up(ctx context.Context, d Deps, cfg Config, opts Options) (Result, error) {
	if opts.DryRun {
		if info, err := PendingTry(opts.StateDir); err != nil || info != nil {
			return Result{Changes: []Change{}}, errors.Join(err, pendingErr(info))
		}
	} else if res, err := settlePendingTry(ctx, d, opts.StateDir, opts.OnChange); err != nil {
		return res, err
	}
	if !opts.DryRun && !opts.Force {
		// A try of this configuration was rolled back unconfirmed: it
		// may cut the host off, so only a confirmed try or the
		// operator's --force applies it.
		if err := checkUnconfirmed(opts.StateDir, cfg); err != nil {
			return Result{Changes: []Change{}}, err
		}
	}
	cs, err := Prepare(ctx, d, cfg)
	if err != nil {
		return Result{Changes: []Change{}}, err
	}
	res, err := execute(ctx, d, cs, opts)
	if err == nil && opts.Force && !opts.DryRun && opts.StateDir != "" {
		err = clearUnconfirmed(opts.StateDir, ConfigDigest(cfg))
	}
	return res, err
}

// Down removes what Up created, gives each uplink back what it had and
// puts back the kernel parameters Up changed. A try that was never
// confirmed (its process died) is rolled back first.
func Down(ctx context.Context, d Deps, opts Options) (Result, error) {
	var rolled []Change
	if opts.StateDir != "" && !opts.DryRun {
		info, err := PendingTry(opts.StateDir)
		if err != nil {
			return Result{Changes: []Change{}}, err
		}
		if info != nil {
			res, err := Rollback(ctx, d, opts.StateDir, opts.OnChange)
			if err != nil {
				return res, err
			}
			rolled = res.Changes
		}
	}
	st, err := observeDown(ctx, d)
	if err != nil {
		return Result{Changes: rolled}, err
	}
	if !opts.Force {
		if err := foreignPorts(st); err != nil {
			return Result{Changes: append([]Change{}, rolled...)}, err
		}
	}
	cs, err := planDown(st)
	if err != nil {
		return Result{Changes: append([]Change{}, rolled...)}, err
	}
	res, err := execute(ctx, d, cs, opts)
	if len(rolled) > 0 {
		res.Changes = append(rolled, res.Changes...)
		res.InSync, res.Applied = false, true
	}
	return res, err
}

// ForeignPortsError is Down refusing to delete a bridge it created that
// still has ports it did not create: deleting the bridge would cut them
// off (a running VM's network, say).
type ForeignPortsError struct {
	Bridge string   `json:"bridge"`
	Ports  []string `json:"ports"`
}

func (e *ForeignPortsError) Error() string {
	return fmt.Sprintf("bridge %s has %s ghostbridge did not create: %s; detach %s first, or use --force to delete the bridge with %s",
		e.Bridge, plural(len(e.Ports), "a port", "ports"), strings.Join(e.Ports, ", "), plural(len(e.Ports), "it", "them"), plural(len(e.Ports), "it", "them"))
}

// foreignPorts finds the first bridge Down would delete that holds ports
// netup did not add.
func foreignPorts(st State) error {
	for _, name := range sortedKeys(st.Bridges) {
		b := st.Bridges[name]
		if b.ExternalIDs[idOwner] != idOwnerValue {
			continue
		}
		var foreign []string
		for _, pn := range sortedKeys(b.Ports) {
			if pn != name && b.Ports[pn].ExternalIDs[idOwner] != idOwnerValue {
				foreign = append(foreign, pn)
			}
		}
		if len(foreign) > 0 {
			return &ForeignPortsError{Bridge: name, Ports: foreign}
		}
	}
	return nil
}

func observeDown(ctx context.Context, d Deps) (State, error) {
	st := State{Links: map[string]netdev.Link{}, Offloads: map[string]map[string]ethtool.State{}, Sysctl: map[string]string{}}
	var err error
	if st.Bridges, st.RootIDs, err = d.OVS.ReadAll(ctx); err != nil {
		return st, fmt.Errorf("read Open vSwitch: %w", err)
	}
	ls, err := d.Links.Links()
	if err != nil {
		return st, err
	}
	for _, l := range ls {
		st.Links[l.Name] = l
	}
	if st.Routes, err = d.Links.Routes(); err != nil {
		return st, err
	}
	for _, b := range st.Bridges {
		up, feats := b.ExternalIDs[idUplink], strings.Split(b.ExternalIDs[idUplinkOffload], ",")
		feats = slices.DeleteFunc(feats, func(s string) bool { return s == "" })
		if _, ok := st.Links[up]; ok && len(feats) > 0 && b.ExternalIDs[idOwner] == idOwnerValue {
			o, err := d.Offloads.Get(up, feats)
			if err != nil {
				return st, fmt.Errorf("uplink %s offloads: %w", up, err)
			}
			st.Offloads[up] = o
		}
	}
	for id := range st.RootIDs {
		if k, ok := strings.CutPrefix(id, idSysctl); ok {
			v, err := d.Sysctl.Get(k)
			if err != nil {
				return st, err
			}
			st.Sysctl[k] = v
		}
	}
	return st, nil
}

func execute(ctx context.Context, d Deps, cs []Change, opts Options) (Result, error) {
	res := Result{InSync: len(cs) == 0, Changes: cs}
	if res.Changes == nil {
		res.Changes = []Change{}
	}
	if opts.DryRun || len(cs) == 0 {
		return res, nil
	}
	before, err := TakeSnapshot(ctx, d, offloadScope(cs))
	if err != nil {
		return res, fmt.Errorf("record the state before changing it: %w", err)
	}
	if err := applyAll(ctx, d, cs, opts.OnChange, before); err != nil {
		return res, err
	}
	res.Applied = true
	return res, nil
}

// offloadScope lists the offloads cs change, per device.
func offloadScope(cs []Change) map[string][]string {
	out := map[string][]string{}
	for _, c := range cs {
		for f := range c.offload {
			if !slices.Contains(out[c.dev], f) {
				out[c.dev] = append(out[c.dev], f)
			}
		}
	}
	return out
}

// applyAll makes the changes in order. When one fails, the host is put
// back to before, the state observed just before the first change.
func applyAll(ctx context.Context, d Deps, cs []Change, onChange func(Change), before Snapshot) error {
	err := apply(ctx, d, cs, onChange, false)
	if err == nil {
		return nil
	}
	// Undo only what this run changed: the host as it is now, against
	// before, within the scope of the plan.
	ctx = context.WithoutCancel(ctx)
	after, rerr := TakeSnapshot(ctx, d, before.offloadFeatures())
	if rerr == nil {
		_, rerr = RestoreChanged(ctx, d, before, after, scopeOf(cs))
	}
	if rerr != nil {
		return errors.Join(err, fmt.Errorf("undo after failure: %w", rerr))
	}
	return fmt.Errorf("%w (every change made was undone)", err)
}

// apply makes the changes in order. OVS changes of one step go in one
// transaction and a device's offloads in one ioctl. It stops at the
// first failure unless keepGoing, which Restore uses to put back as much
// as it can.
func apply(ctx context.Context, d Deps, cs []Change, onChange func(Change), keepGoing bool) error {
	log := d.log()
	var errs []error
	done := func(c Change) {
		log.Info("changed", "bridge", c.Bridge, "change", c.String())
		if onChange != nil {
			onChange(c)
		}
	}
	for i := 0; i < len(cs); {
		c := cs[i]
		j := i + 1
		var err error
		switch {
		case c.ops != nil:
			// One transaction for this step's OVS changes.
			var ops []ovs.Op
			for j = i; j < len(cs) && cs[j].ops != nil && cs[j].step == c.step; j++ {
				ops = append(ops, cs[j].ops...)
			}
			if err = d.OVS.Transact(ctx, ops...); err != nil {
				err = fmt.Errorf("open vswitch: %w", err)
			}
		case c.Kind == KindOffload:
			// One ioctl for all of a device's offloads.
			merged := map[string]bool{}
			for j = i; j < len(cs) && cs[j].Kind == KindOffload && cs[j].dev == c.dev; j++ {
				maps.Copy(merged, cs[j].offload)
			}
			c.offload = merged
			err = applyOne(ctx, d, c)
		case c.Kind == KindFlows:
			// The flow tables of different bridges are independent, and
			// each replace is atomic on its own bridge: install them
			// side by side, each ovs-ofctl mostly waiting on the switch.
			for j < len(cs) && cs[j].Kind == KindFlows {
				j++
			}
			flowErrs := make([]error, j-i)
			var wg sync.WaitGroup
			for k := i; k < j; k++ {
				wg.Go(func() { flowErrs[k-i] = applyOne(ctx, d, cs[k]) })
			}
			wg.Wait()
			err = errors.Join(flowErrs...)
			for k := i; k < j; k++ {
				if flowErrs[k-i] == nil && err != nil {
					done(cs[k]) // the group fails, but this one is in place
				}
			}
		default:
			err = applyOne(ctx, d, c)
		}
		if err != nil {
			if !keepGoing {
				return err
			}
			errs = append(errs, err)
		} else {
			for _, c := range cs[i:j] {
				done(c)
			}
		}
		i = j
	}
	return errors.Join(errs...)
}

func applyOne(ctx context.Context, d Deps, c Change) error {
	switch c.Kind {
	case KindFlows:
		port := 0
		if c.uplink != "" {
			brs, err := d.OVS.Bridges(ctx)
			if err != nil {
				return err
			}
			if port = brs[c.Bridge].Ports[c.uplink].OFPort; port <= 0 {
				return fmt.Errorf("bridge %s: uplink %s has no OpenFlow port", c.Bridge, c.uplink)
			}
		}
		if err := d.OVS.ReplaceFlows(ctx, c.Bridge, c.flows(port)); err != nil {
			return fmt.Errorf("bridge %s flows: %w", c.Bridge, err)
		}
	case KindOffload:
		return d.Offloads.Set(c.dev, c.offload)
	case KindLink:
		if c.To == "down" {
			return d.Links.SetDown(c.dev)
		}
		if err := waitLink(ctx, d, c.dev); err != nil {
			return err
		}
		return d.Links.SetUp(c.dev)
	case KindAddress:
		if c.Action == "add" {
			if err := waitLink(ctx, d, c.dev); err != nil {
				return err
			}
			return d.Links.AddAddr(c.dev, c.addr)
		}
		return d.Links.DelAddr(c.dev, c.addr)
	case KindRoute:
		if c.Action == "remove" {
			return d.Links.DelRoute(c.route)
		}
		return d.Links.ReplaceRoute(c.route)
	case KindSysctl:
		if err := d.OVS.Transact(ctx, c.record...); err != nil {
			return fmt.Errorf("record %s before changing it: %w", c.key, err)
		}
		return d.Sysctl.Set(c.key, c.To)
	default:
		return fmt.Errorf("change %s: no way to apply it", c)
	}
	return nil
}

// waitLink waits for ovs-vswitchd to create a bridge's network device.
func waitLink(ctx context.Context, d Deps, dev string) error {
	const tries = 100
	for i := range tries {
		ls, err := d.Links.Links()
		if err != nil {
			return err
		}
		if slices.ContainsFunc(ls, func(l netdev.Link) bool { return l.Name == dev }) {
			return nil
		}
		if i == tries-1 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("link %s: ovs-vswitchd did not create it", dev)
}
