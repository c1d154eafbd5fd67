package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

type netTryOptions struct {
	*netOptions
	Timeout    time.Duration
	Rollback   bool
	RollbackAt string
}

// startTryWatchdog starts the detached process that rolls a try back
// when the try process dies before its deadline. main sets it; when nil
// (commands run in-process by tests) a try relies on its own process.
var startTryWatchdog func(netup.TryInfo) error

// spawnTryWatchdog runs this executable again, with the same arguments
// plus --rollback-at, in a session of its own with its standard streams
// on /dev/null: a closed SSH session or a killed try leaves it running.
func spawnTryWatchdog(info netup.TryInfo) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("net try watchdog: %w", err)
	}
	argv := append(slices.Clone(os.Args[1:]), "--rollback-at", info.Deadline.Format(time.RFC3339Nano))
	cmd := exec.Command(exe, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("net try watchdog %s %v: %w", exe, argv, err)
	}
	return cmd.Process.Release()
}

func newNetTryCmd(a *App, shared *netOptions) *cobra.Command {
	opts := &netTryOptions{netOptions: shared}
	cmd := &cobra.Command{
		Use:   "try",
		Short: "Apply the configured network and roll back unless confirmed",
		Long: `Apply the [net] configuration like "net up", then wait in the foreground
for "ghostbridge net confirm" (from another shell). Without it within
--timeout, or on SIGINT/SIGTERM, the host is put back exactly as it was:
OVS bridges, ports and records, flow tables, addresses, routes, offloads and
forwarding. Exit status is 0 when confirmed (or nothing needed changing) and
1 after a rollback, with "rolled back" in the error.

A rollback undoes only what the try changed: ports, addresses, routes and
settings that others changed while it waited (a VM's tap port, an address
on an unrelated interface) stay.

The try ignores SIGHUP, so a dropped SSH session does not end it: it keeps
waiting, and "net confirm" from a new session still works. Before changing
anything it also starts a detached watchdog process (the same command with
--rollback-at) that rolls back at the deadline if the try process has died
(kill -9, crash) by then, and kills a try process that is stopped (SIGSTOP)
past the deadline, or stuck for 30s past it, and rolls back.

The previous state is kept in --state-dir (try.json, mode 0600; on disk, by
default /var/lib/ghostbridge/net) while the try waits. If the try process
dies before its deadline, "net up" and "net try" refuse to run and "net
status" and "net plan" say so until "net confirm" keeps the new state or
"net try --rollback" (or "net down") restores the old one. Like "commit
confirmed", a try is never kept without a confirmation: once its deadline
has passed, or the host rebooted, it has expired, "net confirm" refuses it,
and the next "net up" (the boot-time unit), "net try", "net down" or "net
try --rollback" restores the previous state; "net up" and "net try" then
stop with exit status 1 instead of applying the configuration again. After
a reboot the rollback restores everything ghostbridge owns to the recorded
previous state, not only what the try changed. A configuration rolled back
unconfirmed, however, is refused by later "net up" runs until a "net try"
of it is confirmed (or "net up --force").

With --format json the command prints one object per line: {"type":"waiting"}
with the changes once they are applied, and {"type":"result"} at the end.`,
		Example: `  ghostbridge net try --timeout 120s
  ghostbridge net confirm
  ghostbridge net try --rollback`,
		Args: cobra.NoArgs,
		// A rollback must work with a broken configuration: the try
		// itself loads it below.
		Annotations: map[string]string{annotSkipConfig: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.RollbackAt != "" {
				return runNetWatchdog(cmd, a, opts)
			}
			if opts.Rollback {
				return runNetRollback(cmd, a, opts)
			}
			if opts.Timeout <= 0 {
				return usageErrorf(fmt.Errorf("--timeout %s: want a positive duration such as 120s", opts.Timeout))
			}
			if err := a.loadCommandConfig(cmd); err != nil {
				return err
			}
			return runNetTry(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 120*time.Second, "how long to wait for net confirm before rolling back")
	cmd.Flags().BoolVar(&opts.Rollback, "rollback", false, "restore the state recorded by a try whose process died unconfirmed or is stuck past its deadline")
	cmd.Flags().StringVar(&opts.RollbackAt, "rollback-at", "", "run as the watchdog of the try whose deadline is this RFC 3339 time")
	_ = cmd.Flags().MarkHidden("rollback-at")
	return cmd
}

func runNetTry(ctx context.Context, a *App, opts *netTryOptions) error {
	// The operator's SSH session may drop while the try waits: keep
	// waiting, so a reconnected session can still confirm, and roll
	// back at the deadline otherwise.
	signal.Ignore(syscall.SIGHUP)
	return a.withNet(ctx, func(d netup.Deps, cfg netup.Config) error {
		var werr error
		res, err := netup.Try(ctx, d, cfg, netup.TryOptions{
			StateDir: opts.StateDir, Timeout: opts.Timeout, OnRecorded: startTryWatchdog,
			OnWaiting: func(r netup.Result, info netup.TryInfo) {
				werr = a.printTryWaiting(r, info, opts.Timeout)
			},
		})
		if res.Applied || res.InSync || res.RolledBack {
			werr = errors.Join(werr, a.printTryResult(res))
		}
		return errors.Join(err, werr)
	})
}

// tryWaiting is the first JSON line of `net try`.
type tryWaiting struct {
	netup.Result
	Try netup.TryInfo `json:"try"`
}

func (a *App) printTryWaiting(res netup.Result, info netup.TryInfo, timeout time.Duration) error {
	if a.format == FormatJSON {
		return writeJSONLine(a.IO.Out, "waiting", tryWaiting{Result: res, Try: info})
	}
	if err := a.printNetResult(res, "applied"); err != nil {
		return err
	}
	_, err := fmt.Fprintf(a.IO.ErrOut, "Waiting %s for 'ghostbridge net confirm' (until %s); without it the previous state comes back.\n",
		timeout, info.Deadline.Local().Format(time.TimeOnly))
	return err
}

func (a *App) printTryResult(res netup.TryResult) error {
	if a.format == FormatJSON {
		return writeJSONLine(a.IO.Out, "result", res)
	}
	var b strings.Builder
	st := newStyles(a.IO.Renderer())
	switch {
	case res.InSync:
		fmt.Fprintf(&b, "%s nothing to change, nothing to confirm\n", st.ok.Render("in sync:"))
	case res.Confirmed:
		fmt.Fprintf(&b, "%s keeping %d %s\n", st.ok.Render("confirmed:"), len(res.Changes), plural(len(res.Changes), "change", "changes"))
	case res.RolledBack:
		for _, c := range res.Restored {
			b.WriteString(c.String())
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s (%s): %d %s restored\n", st.bad.Render("rolled back"), res.Reason, len(res.Restored), plural(len(res.Restored), "change", "changes"))
	}
	_, err := io.WriteString(a.IO.Out, b.String())
	return err
}

// runNetWatchdog is the detached process spawnTryWatchdog starts.
func runNetWatchdog(cmd *cobra.Command, a *App, opts *netTryOptions) error {
	deadline, err := time.Parse(time.RFC3339Nano, opts.RollbackAt)
	if err != nil {
		return usageErrorf(fmt.Errorf("--rollback-at %q: want an RFC 3339 time", opts.RollbackAt))
	}
	signal.Ignore(syscall.SIGHUP)
	return a.withNetDeps(cmd, func(d netup.Deps) error {
		_, err := netup.Watchdog(cmd.Context(), d, opts.StateDir, deadline, nil)
		return err
	})
}

func runNetRollback(cmd *cobra.Command, a *App, opts *netTryOptions) error {
	var res netup.Result
	err := a.withNetDeps(cmd, func(d netup.Deps) (err error) {
		res, err = netup.Rollback(cmd.Context(), d, opts.StateDir, nil)
		return err
	})
	if err != nil {
		return err
	}
	return a.printNetResult(res, "restored")
}

func newNetConfirmCmd(a *App, opts *netOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "confirm",
		Short: "Keep the network state a running net try applied",
		Long: `Tell the "net try" waiting in --state-dir to keep the new state. When the try
process died before its deadline, keep its new state and drop the record
of the old one. Exit status is 1 when no try is pending, it is already
rolling back, or it expired (its deadline passed or the host rebooted):
an expired try is only ever rolled back.`,
		Example: `  ghostbridge net confirm
  ghostbridge net confirm --state-dir /var/lib/ghostbridge/net --format json`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotSkipConfig: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := netup.Confirm(cmd.Context(), opts.StateDir)
			if err != nil {
				return err
			}
			if a.format == FormatJSON {
				return writeJSON(a.IO.Out, res)
			}
			st := newStyles(a.IO.Renderer())
			msg := fmt.Sprintf("%s the try (pid %d) keeps the new state\n", st.ok.Render("confirmed:"), res.PID)
			if res.Orphaned {
				msg = fmt.Sprintf("%s the try of pid %d had died unconfirmed; its new state is kept\n", st.ok.Render("confirmed:"), res.PID)
			}
			_, err = io.WriteString(a.IO.Out, msg)
			return err
		},
	}
}
