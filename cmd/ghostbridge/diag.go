package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/diag"
)

// FormatPrometheus is the Prometheus text exposition format; only diag
// offers it.
const FormatPrometheus Format = "prometheus"

// minWatch keeps --watch from turning diag into a busy loop.
const minWatch = 100 * time.Millisecond

type diagOptions struct {
	Only, Skip []string
	Timeout    time.Duration
	Watch      time.Duration
	Textfile   string
}

// diagLong is the long help; its list of checks comes from diag.Catalog,
// one line per group.
func diagLong() string {
	var catalog strings.Builder
	for i, n := range diag.Catalog {
		group, _, _ := strings.Cut(n, ".")
		prev := ""
		if i > 0 {
			prev, _, _ = strings.Cut(diag.Catalog[i-1], ".")
		}
		switch {
		case i == 0:
			catalog.WriteString("  ")
		case group != prev:
			catalog.WriteString("\n  ")
		default:
			catalog.WriteString(" ")
		}
		catalog.WriteString(n)
	}
	return `Run every health check of the host at once and report each one: pass,
warn, fail, unknown or skip, a one-line detail, and for anything not
passing a hint (the command to run or the config key to change). A check
whose subsystem is absent from the configuration is skipped and says why.
diag only reads: it never changes the host, and opens the chain database
read-only (it neither creates nor migrates it).

Checks (select with --only/--skip, by name or by group):
` + catalog.String() + `

Each check has its own timeout (--timeout, default diag.timeout, 2s); a
check that does not answer in time is unknown, never a hang.

--format json prints the report alone on stdout ("schema": 1); with
--watch, one object per line ("type": "report"). --format prometheus prints
the results as gauges (ghostbridge_diag_check_status{check,group,status},
ghostbridge_diag_check_duration_seconds, ghostbridge_diag_status, ...);
--textfile writes that form atomically to a file for node exporter's
textfile collector, whatever --format says.

--watch DUR re-runs the checks every DUR until interrupted (Ctrl-C) and
exits with the code of the last complete run. A check still running from
an earlier run (one that ignores its timeout) is not started again: it is
reported unknown, "still running since T (hung)".

Exit codes follow the Nagios plugin convention:
  0  OK: every check passed or was skipped (at least one passed)
  1  WARNING: at least one check warns, none fails or is unknown
  2  CRITICAL: at least one check fails
  3  UNKNOWN: a check could not tell (timeout, no access), every selected
     check was skipped (nothing was checked), or diag itself could not
     run: unknown check name, bad flag, invalid configuration, or the
     --textfile could not be written (the report printed before it still
     shows the checks' own verdict, CRITICAL included)`
}

func newDiagCmd(a *App) *cobra.Command {
	opts := &diagOptions{}
	cmd := &cobra.Command{
		Use:   "diag",
		Short: "Check that every part of the host is healthy, and say why not",
		Long:  diagLong(),
		Example: `  ghostbridge diag
  ghostbridge diag --only chain,snapshots --skip chain.verify
  ghostbridge diag --format json | jq -r '.checks[] | select(.status != "pass") | "\(.name): \(.hint)"'
  ghostbridge diag --watch 5s
  ghostbridge diag --format prometheus --timeout 5s
  ghostbridge diag --textfile /var/lib/prometheus/node-exporter/ghostbridge.prom >/dev/null`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotNagios: "true", annotFormats: string(FormatPrometheus)},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDiag(cmd, a, opts)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&opts.Only, "only", nil, "run only these checks or groups (`NAME`s, repeatable or comma-separated)")
	f.StringSliceVar(&opts.Skip, "skip", nil, "leave out these checks or groups (`NAME`s, repeatable or comma-separated)")
	f.DurationVar(&opts.Timeout, "timeout", 0, "bound each check to `DUR` (default diag.timeout, 2s)")
	f.DurationVar(&opts.Watch, "watch", 0, "re-run every `DUR` until interrupted")
	f.StringVar(&opts.Textfile, "textfile", "", "also write the Prometheus form atomically to `FILE` (node exporter textfile collector, *.prom)")
	// Complete the name after the last comma, so "chain,sn<TAB>" works.
	complete := func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		done := toComplete[:strings.LastIndexByte(toComplete, ',')+1]
		var out []string
		for _, n := range diag.Names(catalogChecks()) {
			out = append(out, done+n)
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	_ = cmd.RegisterFlagCompletionFunc("only", complete)
	_ = cmd.RegisterFlagCompletionFunc("skip", complete)
	_ = cmd.MarkFlagFilename("textfile", "prom")
	return cmd
}

// catalogChecks stands in for the checks where only their names matter.
func catalogChecks() []diag.Check {
	out := make([]diag.Check, len(diag.Catalog))
	for i, n := range diag.Catalog {
		out[i] = diag.Check{Name: n}
	}
	return out
}

// diagExit carries the verdict's exit code out of RunE; it is not an
// error to print, the report already said it.
type diagExit struct{ code int }

func (e *diagExit) Error() string { return fmt.Sprintf("diag exit status %d", e.code) }

func runDiag(cmd *cobra.Command, a *App, opts *diagOptions) error {
	ctx := cmd.Context()
	cfg := a.conf.Config
	timeout := time.Duration(cfg.Diag.Timeout)
	if cmd.Flags().Changed("timeout") {
		if opts.Timeout <= 0 || opts.Timeout > maxDiagTimeout {
			return usageErrorf(fmt.Errorf("--timeout %s: want a duration greater than 0 and at most %s", opts.Timeout, Duration(maxDiagTimeout)))
		}
		timeout = opts.Timeout
	}
	if cmd.Flags().Changed("watch") && opts.Watch < minWatch {
		return usageErrorf(fmt.Errorf("--watch %s: want a duration of at least %s", opts.Watch, minWatch))
	}
	checks, closeChecks, err := diagChecks(a, cfg, opts.Only, opts.Skip)
	if err != nil {
		return usageErrorf(err)
	}
	defer func() {
		if err := closeChecks(); err != nil {
			a.log.Warn("diag: closing what the checks opened", "err", err)
		}
	}()
	// One Runner for every run of --watch: it remembers a check still
	// running from an earlier run rather than starting another copy.
	runner := diag.NewRunner(diag.Options{Timeout: timeout, Now: a.Now})
	run := func() (diag.Report, error) {
		r := runner.Run(ctx, checks)
		if opts.Textfile != "" {
			if err := diag.WriteTextfile(opts.Textfile, r); err != nil {
				return r, err
			}
		}
		return r, nil
	}
	if opts.Watch == 0 {
		r, err := run()
		if perr := a.printDiag(r, false); perr != nil {
			return errors.Join(perr, err)
		}
		if err != nil {
			return err
		}
		return diagStatus(r)
	}
	return a.watchDiag(ctx, opts.Watch, run)
}

// watchDiag re-runs every interval until ctx ends and returns the status
// of the last complete run: one cut short by the interrupt is dropped.
func (a *App) watchDiag(ctx context.Context, every time.Duration, run func() (diag.Report, error)) error {
	var last *diag.Report
	for {
		start := time.Now()
		r, err := run()
		if ctx.Err() != nil {
			break
		}
		if perr := a.printDiag(r, true); perr != nil {
			return errors.Join(perr, err)
		}
		if err != nil {
			return err
		}
		last = &r
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start.Add(every))):
			continue
		}
		break
	}
	if last == nil {
		return ctx.Err()
	}
	return diagStatus(*last)
}

// diagStatus turns the verdict into the exit status.
func diagStatus(r diag.Report) error {
	if code := r.Status.ExitCode(); code != 0 {
		return &diagExit{code: code}
	}
	return nil
}

// diagLine is one report of a --watch stream in JSON.
type diagLine struct {
	Schema int    `json:"schema"`
	Type   string `json:"type"`
	diag.Report
}

func (a *App) printDiag(r diag.Report, watching bool) error {
	switch a.format {
	case FormatJSON:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		var v any = r
		if watching {
			v = diagLine{Schema: r.Schema, Type: "report", Report: r}
		} else {
			enc.SetIndent("", "  ")
		}
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("encode diag report: %w", err)
		}
		_, err := a.IO.Out.Write(buf.Bytes())
		return err
	case FormatPrometheus:
		var buf bytes.Buffer
		if err := diag.WritePrometheus(&buf, r); err != nil {
			return err
		}
		if watching {
			buf.WriteByte('\n')
		}
		_, err := a.IO.Out.Write(buf.Bytes())
		return err
	}
	var b strings.Builder
	if watching {
		if a.IO.IsStdoutTTY() {
			b.WriteString("\x1b[H\x1b[2J") // redraw in place
		}
		fmt.Fprintf(&b, "ghostbridge diag at %s\n\n", r.Time.Local().Format(time.DateTime))
	}
	writeDiagText(&b, newStyles(a.IO.Renderer()), a.IO.Renderer(), r)
	if watching && !a.IO.IsStdoutTTY() {
		b.WriteByte('\n')
	}
	_, err := io.WriteString(a.IO.Out, b.String())
	return err
}

// writeDiagText renders one row per check (status, name, detail), the
// hint indented under each row that is not passing, and the verdict.
func writeDiagText(b *strings.Builder, st styles, r *lipgloss.Renderer, rep diag.Report) {
	statusStyle := map[diag.Status]lipgloss.Style{
		diag.StatusPass:    st.ok,
		diag.StatusWarn:    r.NewStyle().Foreground(lipgloss.Color("3")).Bold(true),
		diag.StatusFail:    st.bad,
		diag.StatusUnknown: r.NewStyle().Foreground(lipgloss.Color("5")).Bold(true),
		diag.StatusSkip:    st.dim,
	}
	nameW := len("CHECK")
	for _, c := range rep.Checks {
		nameW = max(nameW, len(c.Name))
	}
	const statusW = len("unknown")
	pad := func(s string, w int) string { return s + strings.Repeat(" ", max(w-lipgloss.Width(s), 0)) }
	fmt.Fprintf(b, "%s  %s  %s\n", st.header.Render(pad("STATUS", statusW)), st.header.Render(pad("CHECK", nameW)), st.header.Render("DETAIL"))
	indent := strings.Repeat(" ", statusW+2+nameW+2)
	for _, c := range rep.Checks {
		status := statusStyle[c.Status].Render(pad(string(c.Status), statusW))
		detail := c.Detail
		if c.Status == diag.StatusSkip {
			detail = st.dim.Render(detail)
		}
		line := strings.TrimRight(fmt.Sprintf("%s  %s  %s", status, pad(c.Name, nameW), detail), " ")
		b.WriteString(line + "\n")
		if c.Hint != "" && c.Status != diag.StatusPass && c.Status != diag.StatusSkip {
			fmt.Fprintf(b, "%s%s %s\n", indent, st.dim.Render("hint:"), c.Hint)
		}
	}
	b.WriteByte('\n')
	verdict := rep.Verdict
	if s, ok := statusStyle[rep.Status]; ok && rep.Status != diag.StatusSkip {
		head, rest, _ := strings.Cut(verdict, ":")
		verdict = s.Render(head+":") + rest
	}
	fmt.Fprintf(b, "%s in %s\n", verdict, rep.Wall.Round(time.Millisecond))
}
