package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

func newVMListCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List guests with state, vCPUs, memory, bridges, MACs and VNC port",
		Long: `List every guest of the libvirt connection, ours and others' (marked
foreign). A guest that cannot be read does not hide the rest: the others
are listed, it is listed with its error ("error" in JSON, "?" in the
columns of the table), and the command exits 1. A guest undefined while
it is being listed is left out.`,
		Example: `  ghostbridge vm list
  ghostbridge vm list --format json | jq '.vms[] | select(.state == "running") | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return a.withVM(ctx, false, func(d vm.Deps) error {
				res, err := vm.List(ctx, d)
				if err != nil && !errors.Is(err, vm.ErrIncomplete) {
					return err
				}
				return errors.Join(a.printVMList(res), err)
			})
		},
	}
}

func (a *App) printVMList(res vm.ListResult) error {
	if a.format == FormatJSON {
		return writeJSON(a.IO.Out, res)
	}
	rows := make([][]string, 0, len(res.VMs))
	for _, v := range res.VMs {
		if v.Error != "" {
			rows = append(rows, []string{v.Name, orDefault(v.State, "?"), "?", "?", "?", "?", "?", "?"})
			continue
		}
		var br, macs []string
		for _, n := range v.NICs {
			br = append(br, n.Bridge+vlanTag(n.VLAN))
			macs = append(macs, n.MAC)
		}
		vnc := "-"
		if v.VNCPort > 0 {
			vnc = strconv.Itoa(v.VNCPort)
		}
		name := v.Name
		if !v.Managed {
			name += " (foreign)"
		}
		auto := "no"
		if v.Autostart {
			auto = "yes"
		}
		rows = append(rows, []string{name, v.State, strconv.Itoa(v.VCPUs), vm.FormatSize(v.Memory), auto, vnc,
			orDefault(strings.Join(br, ","), "-"), orDefault(strings.Join(macs, ","), "-")})
	}
	return renderTable(a.IO.Out, newStyles(a.IO.Renderer()),
		[]string{"NAME", "STATE", "VCPUS", "MEMORY", "AUTOSTART", "VNC", "BRIDGES", "MACS"}, rows)
}

func vlanTag(v int) string {
	if v == 0 {
		return ""
	}
	return ":" + strconv.Itoa(v)
}

func newVMStartCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:     "start NAME",
		Short:   "Start a guest (a running guest is left alone)",
		Example: `  ghostbridge vm start web`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withVM(ctx, false, func(d vm.Deps) error {
				res, err := vm.Start(ctx, d, args[0])
				if err != nil {
					return err
				}
				return a.printState(res)
			})
		},
	}
}

func newVMStopCmd(a *App) *cobra.Command {
	opts := vm.StopOptions{}
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Shut a guest down (ACPI) and wait, or power it off with --force",
		Long: `Send the guest an ACPI shutdown and wait until it is shut off, up to
--timeout. A guest still running then (its OS ignores ACPI or hangs on the
way down) is left running and the command exits 5, so a script can power
off exactly that case with --force. A guest that is paused, crashed or
suspended cannot act on the request: the command exits 1 at once, naming
the state. --force powers the guest off at once, like pulling the plug,
and takes no --timeout. A guest that is already off is left alone; a
transient guest, which libvirt removes once it is off, is reported shut
off and gone.`,
		Example: `  ghostbridge vm stop web
  ghostbridge vm stop web --timeout 5m
  ghostbridge vm stop web --timeout 30s || { [ $? -eq 5 ] && ghostbridge vm stop web --force; }`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Force && cmd.Flags().Changed("timeout") {
				return usageErrorf(errors.New("--timeout with --force: --force powers off at once and does not wait"))
			}
			if err := opts.Validate(); err != nil {
				return usageErrorf(fmt.Errorf("--timeout %s: want a positive duration such as 60s", opts.Timeout))
			}
			ctx := cmd.Context()
			return a.withVM(ctx, false, func(d vm.Deps) error {
				res, err := vm.Stop(ctx, d, args[0], opts)
				if err != nil {
					return err
				}
				return a.printState(res)
			})
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "power off at once instead of an ACPI shutdown")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", vm.DefaultStopTimeout, "how long to wait for the guest to shut off after the ACPI request (not with --force)")
	return cmd
}

func (a *App) printState(res vm.StateResult) error {
	if a.format == FormatJSON {
		return writeJSON(a.IO.Out, res)
	}
	note := ""
	switch {
	case res.Gone:
		note = " (transient: gone)"
	case !res.Changed:
		note = " (unchanged)"
	}
	_, err := fmt.Fprintf(a.IO.Out, "%s %s%s\n", res.Name, res.State, note)
	return err
}

func newVMDeleteCmd(a *App) *cobra.Command {
	var removeStorage bool
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Undefine a stopped guest made by ghostbridge",
		Long: `Undefine a stopped guest that ghostbridge created (its metadata says so);
guests made by other tools are refused. With --remove-storage, also delete
the volumes ghostbridge made for it, and no others.`,
		Example: `  ghostbridge vm stop web --force && ghostbridge vm delete web --remove-storage`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withVM(ctx, false, func(d vm.Deps) error {
				res, err := vm.Delete(ctx, d, args[0], removeStorage)
				if err != nil {
					return err
				}
				if a.format == FormatJSON {
					return writeJSON(a.IO.Out, res)
				}
				var b strings.Builder
				fmt.Fprintf(&b, "%s deleted\n", res.Name)
				for _, v := range res.RemovedVolumes {
					fmt.Fprintf(&b, "  removed volume %s/%s\n", v.Pool, v.Name)
				}
				for _, v := range res.KeptVolumes {
					fmt.Fprintf(&b, "  kept volume    %s/%s\n", v.Pool, v.Name)
				}
				_, err = fmt.Fprint(a.IO.Out, b.String())
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&removeStorage, "remove-storage", false, "also delete the volumes ghostbridge created for the guest")
	return cmd
}

func newVMConsoleCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "console NAME",
		Short: "Show a running guest's VNC display and noVNC URL",
		Example: `  ghostbridge vm console web
  ghostbridge vm console web --format json | jq -r .novnc_url`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withVM(ctx, false, func(d vm.Deps) error {
				res, err := vm.Console(ctx, d, args[0], a.conf.Config.VM.NoVNCURL)
				if err != nil {
					return err
				}
				if a.format == FormatJSON {
					return writeJSON(a.IO.Out, res)
				}
				_, err = fmt.Fprintf(a.IO.Out, "%s\n  vnc    %s:%d (display %s)\n  novnc  %s\n", res.Name, res.Listen, res.Port, res.Display, orNone(res.NoVNC))
				return err
			})
		},
	}
}

func newVMXMLCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:     "xml NAME",
		Short:   "Print a guest's domain XML as libvirt holds it",
		Example: `  ghostbridge vm xml web | grep -A3 '<interface'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withVM(ctx, false, func(d vm.Deps) error {
				x, err := vm.XML(ctx, d, args[0])
				if err != nil {
					return err
				}
				if a.format == FormatJSON {
					return writeJSON(a.IO.Out, struct {
						Name string `json:"name"`
						XML  string `json:"xml"`
					}{args[0], x})
				}
				_, err = fmt.Fprint(a.IO.Out, x)
				return err
			})
		},
	}
}
