package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
	"github.com/ghostbridge/ghostbridge/pkg/sys/sysctl"
)

// errPending marks the error `net plan` returns when the host differs
// from the configuration: exit code 4, after the plan was printed.
var errPending = errors.New("changes pending")

type pendingError struct{ n int }

func (e pendingError) Error() string {
	return fmt.Sprintf("%d %s pending (run 'ghostbridge net up' to apply)", e.n, plural(e.n, "change", "changes"))
}

func (e pendingError) Is(target error) bool { return target == errPending }

const netLong = `Converge the host's Open vSwitch networking to the [net] table of the
configuration: bridges, their uplink NIC, addresses and routes, internal
ports and VLAN tags, uplink offloads, IP forwarding and the OpenFlow guard
that keeps foreign MACs and internal broadcasts off the provider's wire.

"net plan" shows what "net up" would change; "net up" changes only that, in
an order that never leaves the host without its routes, and puts the host
back as it was when a step fails; "net try" applies like "net up" and rolls
back unless "net confirm" arrives in time; "net down" removes what "net up"
created and gives the uplink its addresses, routes and offloads and the
host its forwarding settings back. Everything ghostbridge creates in OVS
carries external_ids:ghostbridge=managed.

OVS is reached through ovs-vsctl and ovs-ofctl at net.ovsdb_socket
(GHOSTBRIDGE_NET_OVSDB_SOCKET); links, addresses and routes through
netlink; offloads through ethtool ioctls; forwarding through /proc/sys.`

// defaultNetStateDir holds the state of `net try` on persistent storage:
// OVS keeps a try's bridges across a reboot, so its record of the
// previous state must survive too, for the boot-time `net up` to roll
// the unconfirmed try back.
const defaultNetStateDir = "/var/lib/ghostbridge/net"

// netOptions are the flags every net command shares.
type netOptions struct {
	StateDir string
}

func newNetCmd(a *App) *cobra.Command {
	opts := &netOptions{}
	cmd := newGroupCmd("net", "Converge the host's Open vSwitch networking", netLong)
	cmd.PersistentFlags().StringVar(&opts.StateDir, "state-dir", defaultNetStateDir, "directory for the state of an unconfirmed net try")
	cmd.AddCommand(newNetPlanCmd(a, opts), newNetUpCmd(a, opts), newNetTryCmd(a, opts), newNetConfirmCmd(a, opts),
		newNetDownCmd(a, opts), newNetStatusCmd(a, opts))
	return cmd
}

// warnPendingTry tells the operator on stderr about a try that is not
// confirmed yet.
func (a *App) warnPendingTry(opts *netOptions) {
	info, err := netup.PendingTry(opts.StateDir)
	if err != nil {
		a.log.Warn("read net try state", "err", err)
		return
	}
	if info != nil {
		fmt.Fprintf(a.IO.ErrOut, "Warning: %v\n", &netup.PendingTryError{TryInfo: *info})
	}
}

func newNetPlanCmd(a *App, opts *netOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "plan",
		Short: "Show what net up would change, changing nothing",
		Long: `Show what "net up" would change, one change per line ("+" add, "-" remove,
"~" change), or as JSON. Exit status is 0 when the host is in sync and 4
when changes are pending.`,
		Example: `  ghostbridge net plan
  ghostbridge net plan --format json | jq '.changes[].kind'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a.warnPendingTry(opts)
			res, err := runNet(cmd.Context(), a, func(ctx context.Context, d netup.Deps, cfg netup.Config) (netup.Result, error) {
				for _, w := range cfg.Warnings() {
					fmt.Fprintf(a.IO.ErrOut, "Warning: %s\n", w)
				}
				return netup.Up(ctx, d, cfg, netup.Options{DryRun: true})
			})
			if err != nil {
				return err
			}
			if err := a.printNetResult(res, "pending"); err != nil {
				return err
			}
			if !res.InSync {
				return pendingError{len(res.Changes)}
			}
			return nil
		},
	}
}

func newNetUpCmd(a *App, opts *netOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Converge the host to the configured network",
		Long: `Converge the host to the [net] configuration, changing only what differs:
a second run changes nothing. The uplink's addresses and every route through
it move to its bridge only after the bridge carries the addresses, and if a
step fails the host is put back exactly as it was before. It refuses to run
while a "net try" is unconfirmed. A try that expired unconfirmed (its
deadline passed, or the host rebooted, with its process gone) is rolled
back instead, and net up stops there with exit status 1. After a reboot
that rollback restores everything ghostbridge owns to the state recorded
before the try (bridges, their ports, uplinks, addresses, routes, flows,
offloads and forwarding), not only what the try changed, since the boot
reset the rest.

A configuration whose try was rolled back unconfirmed (timed out,
interrupted, expired or rolled back by hand) is not applied again unasked:
net up refuses it, with exit status 1, until a "net try" of it is confirmed
or --force applies it anyway.`,
		Example: `  ghostbridge net up
  ghostbridge --config /etc/ghostbridge/config.toml net up --format json
  ghostbridge net up --force   # apply a configuration whose try was never confirmed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runNet(cmd.Context(), a, func(ctx context.Context, d netup.Deps, cfg netup.Config) (netup.Result, error) {
				return netup.Up(ctx, d, cfg, netup.Options{StateDir: opts.StateDir, Force: force})
			})
			var expired *netup.ExpiredTryError
			if errors.As(err, &expired) {
				return errors.Join(a.printNetResult(res, "restored"), err)
			}
			if err != nil {
				return err
			}
			return a.printNetResult(res, "applied")
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "apply the configuration even when a net try of it was rolled back unconfirmed")
	return cmd
}

func newNetDownCmd(a *App, opts *netOptions) *cobra.Command {
	var dryRun, force bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove what net up created and restore the uplink",
		Long: `Delete the bridges "net up" created (external_ids:ghostbridge=managed) and
the ports it added to other bridges, after giving each uplink back the
addresses, routes and offloads it had before, and put back the forwarding
settings "net up" changed. A "net try" whose process died unconfirmed is
rolled back first. Nothing else is touched.

A bridge that still has ports ghostbridge did not create (a VM's vnet0) is
not deleted: the command fails naming them, unless --force. It works from
the OVS records and the try state alone, so a broken [net] configuration
does not block it; the OVSDB socket is GHOSTBRIDGE_NET_OVSDB_SOCKET, else
net.ovsdb_socket if the configuration file still yields it, else the default.`,
		Example: `  ghostbridge net down --dry-run
  ghostbridge net down`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotSkipConfig: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res netup.Result
			err := a.withNetDeps(cmd, func(d netup.Deps) (err error) {
				res, err = netup.Down(cmd.Context(), d, netup.Options{DryRun: dryRun, Force: force, StateDir: opts.StateDir})
				return err
			})
			if err != nil {
				return err
			}
			verb := "applied"
			if dryRun {
				verb = "pending"
			}
			return a.printNetResult(res, verb)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be removed without changing anything")
	cmd.Flags().BoolVar(&force, "force", false, "delete a bridge even when it has ports ghostbridge did not create")
	return cmd
}

// runNet opens the system adapters and runs fn with the validated [net]
// configuration.
func runNet(ctx context.Context, a *App, fn func(context.Context, netup.Deps, netup.Config) (netup.Result, error)) (netup.Result, error) {
	var res netup.Result
	err := a.withNet(ctx, func(d netup.Deps, cfg netup.Config) error {
		var err error
		res, err = fn(ctx, d, cfg)
		return err
	})
	return res, err
}

func (a *App) withNet(ctx context.Context, fn func(netup.Deps, netup.Config) error) (err error) {
	n := a.conf.Config.Net
	cfg, ps := netupConfig(n)
	if len(ps) > 0 {
		return &ConfigError{Problems: ps}
	}
	return a.openNet(ctx, n.OVSDBSocket, func(d netup.Deps) error { return fn(d, cfg) })
}

// withNetDeps opens the system adapters without needing a valid
// configuration: "net down" and a rollback work from the OVS records and
// the try state, and a broken config file must not block them.
func (a *App) withNetDeps(cmd *cobra.Command, fn func(netup.Deps) error) error {
	return a.openNet(cmd.Context(), a.netSocket(cmd), fn)
}

// netSocket is the OVSDB socket from the environment, else from the
// configuration as far as it can be read, else the default.
func (a *App) netSocket(cmd *cobra.Command) string {
	if p := a.Env(envForKey("net.ovsdb_socket")); p != "" {
		return p
	}
	if src, err := a.configFile(cmd); err == nil {
		lc, err := a.loadConfig(cmd, src, true)
		if err != nil {
			a.log.Warn("configuration unusable; net down and rollback go on without it", "err", err)
		}
		if p := lc.Config.Net.OVSDBSocket; filepath.IsAbs(p) {
			return p
		}
	}
	return ovs.DefaultDB
}

func (a *App) openNet(ctx context.Context, socket string, fn func(netup.Deps) error) (err error) {
	o := ovs.New(socket)
	if err := o.Ping(ctx); err != nil {
		return fmt.Errorf("open vswitch at %s: %w", socket, err)
	}
	nl, err := netdev.Open()
	if err != nil {
		return err
	}
	defer nl.Close()
	eth, err := ethtool.Open()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, eth.Close()) }()
	return fn(netup.Deps{OVS: o, Links: nl, Offloads: eth, Sysctl: sysctl.Proc{}, Logger: a.log})
}

func (a *App) printNetResult(res netup.Result, verb string) error {
	if a.format == FormatJSON {
		return writeJSON(a.IO.Out, res)
	}
	var b strings.Builder
	st := newStyles(a.IO.Renderer())
	if res.InSync {
		fmt.Fprintf(&b, "%s nothing to change\n", st.ok.Render("in sync:"))
	} else {
		for _, c := range res.Changes {
			b.WriteString(c.String())
			b.WriteByte('\n')
			for _, d := range c.Detail {
				fmt.Fprintf(&b, "    %s\n", d)
			}
		}
		fmt.Fprintf(&b, "%d %s %s\n", len(res.Changes), plural(len(res.Changes), "change", "changes"), verb)
	}
	_, err := io.WriteString(a.IO.Out, b.String())
	return err
}

// loadCommandConfig loads and validates the configuration the way preRun
// does for a command without annotSkipConfig: for "net try", which skips
// it so that its --rollback works with a broken configuration.
func (a *App) loadCommandConfig(cmd *cobra.Command) error {
	src, err := a.configFile(cmd)
	if err != nil {
		return err
	}
	lc, err := a.loadConfig(cmd, src, true)
	if err != nil {
		return err
	}
	a.conf = lc
	a.log = newLogger(a.IO.ErrOut, lc.Config.Log.Level, lc.Config.Log.Format, a.Env("JOURNAL_STREAM") != "")
	a.log.Debug("configuration loaded", "file", lc.File)
	return nil
}
