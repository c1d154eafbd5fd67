package netup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
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
	return plan(cfg, ts, st), nil
}

// Up converges the host to cfg, changing only what differs.
func Up(ctx context.Context, d Deps, cfg Config, opts Options) (Result, error) {
	cs, err := Prepare(ctx, d, cfg)
	if err != nil {
		return Result{Changes: []Change{}}, err
	}
	return execute(ctx, d, cs, opts)
}

// Down removes what Up created and gives each uplink back what it had.
func Down(ctx context.Context, d Deps, opts Options) (Result, error) {
	st, err := observeDown(ctx, d)
	if err != nil {
		return Result{Changes: []Change{}}, err
	}
	return execute(ctx, d, planDown(st), opts)
}

func observeDown(ctx context.Context, d Deps) (State, error) {
	st := State{Links: map[string]netdev.Link{}, Offloads: map[string]map[string]ethtool.State{}}
	var err error
	if st.Bridges, err = d.OVS.Bridges(ctx); err != nil {
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
	if err := apply(ctx, d, cs, opts.OnChange); err != nil {
		return res, err
	}
	res.Applied = true
	return res, nil
}

// apply makes the changes in order. OVS changes of one step go in one
// transaction. When a step fails, everything done so far is undone in
// reverse order, so the uplink gets its addresses and route back.
func apply(ctx context.Context, d Deps, cs []Change, onChange func(Change)) (err error) {
	log := d.log()
	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		var uerrs []error
		for i := len(undo) - 1; i >= 0; i-- {
			uerrs = append(uerrs, undo[i]())
		}
		if uerr := errors.Join(uerrs...); uerr != nil {
			err = errors.Join(err, fmt.Errorf("undo after failure: %w", uerr))
		} else if len(undo) > 0 {
			err = fmt.Errorf("%w (every change made was undone)", err)
		}
	}()
	done := func(c Change) {
		log.Info("changed", "bridge", c.Bridge, "change", c.String())
		if onChange != nil {
			onChange(c)
		}
	}
	for i := 0; i < len(cs); {
		c := cs[i]
		if c.ops != nil {
			// One transaction for this step's OVS changes.
			j := i
			var ops []ovs.Op
			var created []string
			for ; j < len(cs) && cs[j].ops != nil && cs[j].step == c.step; j++ {
				ops = append(ops, cs[j].ops...)
				if cs[j].created != "" {
					created = append(created, cs[j].created)
				}
			}
			if err := d.OVS.Transact(ctx, ops...); err != nil {
				return fmt.Errorf("open vswitch: %w", err)
			}
			if len(created) > 0 {
				undo = append(undo, func() error {
					var dels []ovs.Op
					for _, b := range created {
						dels = append(dels, ovs.DelBridge(b))
					}
					return d.OVS.Transact(context.WithoutCancel(ctx), dels...)
				})
			}
			for _, c := range cs[i:j] {
				done(c)
			}
			i = j
			continue
		}
		if c.Kind == KindOffload {
			// One ioctl for all of a device's offloads.
			j := i
			merged := map[string]bool{}
			for ; j < len(cs) && cs[j].Kind == KindOffload && cs[j].dev == c.dev; j++ {
				maps.Copy(merged, cs[j].offload)
			}
			c.offload = merged
			if err := applyOne(ctx, d, c, &undo); err != nil {
				return err
			}
			for _, c := range cs[i:j] {
				done(c)
			}
			i = j
			continue
		}
		if err := applyOne(ctx, d, c, &undo); err != nil {
			return err
		}
		done(c)
		i++
	}
	return nil
}

func applyOne(ctx context.Context, d Deps, c Change, undo *[]func() error) error {
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
		return d.OVS.ReplaceFlows(ctx, c.Bridge, c.flows(port))
	case KindOffload:
		if err := d.Offloads.Set(c.dev, c.offload); err != nil {
			return err
		}
		back := map[string]bool{}
		for f, on := range c.offload {
			back[f] = !on
		}
		*undo = append(*undo, func() error { return d.Offloads.Set(c.dev, back) })
	case KindLink:
		if err := waitLink(ctx, d, c.dev); err != nil {
			return err
		}
		return d.Links.SetUp(c.dev)
	case KindAddress:
		if c.Action == "add" {
			if err := waitLink(ctx, d, c.dev); err != nil {
				return err
			}
			if err := d.Links.AddAddr(c.dev, c.addr); err != nil {
				return err
			}
			*undo = append(*undo, func() error { return d.Links.DelAddr(c.dev, c.addr) })
			return nil
		}
		if err := d.Links.DelAddr(c.dev, c.addr); err != nil {
			return err
		}
		*undo = append(*undo, func() error { return d.Links.AddAddr(c.dev, c.addr) })
	case KindRoute:
		if err := d.Links.ReplaceRoute(c.route); err != nil {
			return err
		}
		*undo = append(*undo, func() error {
			if c.prev != nil {
				return d.Links.ReplaceRoute(*c.prev)
			}
			return d.Links.DelRoute(c.route)
		})
	case KindSysctl:
		if err := d.Sysctl.Set(c.key, c.To); err != nil {
			return err
		}
		*undo = append(*undo, func() error { return d.Sysctl.Set(c.key, c.From) })
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
