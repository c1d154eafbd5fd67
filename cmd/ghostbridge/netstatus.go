package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

func newNetStatusCmd(a *App, opts *netOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show bridges, ports, addresses, offloads, flows and forwarding",
		Long: `Show each configured bridge as it is on the host: whether ghostbridge
manages it, its ports, link state and addresses, routes, the uplink's
offloads per feature, flows installed against flows expected, IP forwarding,
how many changes "net up" would make, and a "net try" not yet confirmed.`,
		Example: `  ghostbridge net status
  ghostbridge net status --format json | jq '.bridges[] | {name, flows_in_sync}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return a.withNet(ctx, func(d netup.Deps, cfg netup.Config) error {
				st, err := netup.GetStatus(ctx, d, cfg)
				if err != nil {
					return err
				}
				if st.PendingTry, err = netup.PendingTry(opts.StateDir); err != nil {
					return err
				}
				if a.format == FormatJSON {
					return writeJSON(a.IO.Out, st)
				}
				return writeNetStatus(a.IO.Out, st)
			})
		},
	}
}

func writeNetStatus(w io.Writer, st netup.Status) error {
	var b strings.Builder
	for _, br := range st.Bridges {
		if !br.Exists {
			fmt.Fprintf(&b, "%s  missing\n", br.Name)
			continue
		}
		owner := "not managed by ghostbridge"
		if br.Managed {
			owner = "managed"
		}
		fmt.Fprintf(&b, "%s  %s, fail_mode %s", br.Name, owner, orNone(br.FailMode))
		if br.Uplink != "" {
			fmt.Fprintf(&b, ", uplink %s", br.Uplink)
		}
		b.WriteByte('\n')
		if l := br.Link; l != nil {
			state := "down"
			if l.Up {
				state = "up"
			}
			addrs := make([]string, len(l.Addrs))
			for i, p := range l.Addrs {
				addrs[i] = p.String()
			}
			fmt.Fprintf(&b, "  link      %s %s %s\n", state, l.MAC, strings.Join(addrs, " "))
		}
		var ports []string
		for _, p := range br.Ports {
			if p.Name == br.Name {
				continue
			}
			s := p.Name + " (" + orDefault(p.Type, "system")
			if p.Tag != 0 {
				s += fmt.Sprintf(", tag %d", p.Tag)
			}
			ports = append(ports, s+")")
		}
		fmt.Fprintf(&b, "  ports     %s\n", orNone(strings.Join(ports, ", ")))
		for _, r := range br.Routes {
			fmt.Fprintf(&b, "  route     %s\n", r)
		}
		if len(br.Offloads) > 0 {
			var fs []string
			for _, f := range slices.Sorted(maps.Keys(br.Offloads)) {
				s := br.Offloads[f]
				v := "off"
				if s.On {
					v = "on"
				}
				if s.Fixed {
					v += " [fixed]"
				}
				fs = append(fs, f+" "+v)
			}
			fmt.Fprintf(&b, "  offloads  %s\n", strings.Join(fs, ", "))
		}
		sync := "in sync"
		if !br.FlowsInSync {
			sync = "DIFFERENT from expected"
		}
		fmt.Fprintf(&b, "  flows     %d installed, %d expected, %s\n", len(br.FlowsInstalled), len(br.FlowsExpected), sync)
	}
	for _, k := range slices.Sorted(maps.Keys(st.Forwarding)) {
		fmt.Fprintf(&b, "%s = %s\n", k, st.Forwarding[k])
	}
	if p := st.PendingTry; p != nil {
		switch {
		case p.Overdue:
			fmt.Fprintf(&b, "try       pid %d PAST its deadline %s and not rolled back (stopped or stuck?): its watchdog or 'ghostbridge net try --rollback' kills it and restores the previous state\n",
				p.PID, p.Deadline.UTC().Format(time.RFC3339))
		case p.Waiting:
			fmt.Fprintf(&b, "try       pid %d waiting for 'ghostbridge net confirm' until %s\n", p.PID, p.Deadline.UTC().Format(time.RFC3339))
		case p.Expired:
			fmt.Fprintf(&b, "try       EXPIRED unconfirmed (started %s; %s), process %d gone: %s\n",
				p.Started.UTC().Format(time.RFC3339), p.Why(), p.PID, netup.RestoreHint)
		default:
			fmt.Fprintf(&b, "try       UNCONFIRMED since %s, process %d gone: 'ghostbridge net confirm' keeps it, 'ghostbridge net try --rollback' restores the previous state\n",
				p.Started.UTC().Format(time.RFC3339), p.PID)
		}
	}
	if st.InSync {
		b.WriteString("in sync\n")
	} else {
		fmt.Fprintf(&b, "%d %s pending (ghostbridge net plan)\n", len(st.Pending), plural(len(st.Pending), "change", "changes"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orNone(s string) string { return orDefault(s, "none") }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
