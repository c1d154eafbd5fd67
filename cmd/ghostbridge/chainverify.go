package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

type chainVerifyOptions struct {
	From, To uint64
}

func newChainVerifyCmd(a *App) *cobra.Command {
	opts := &chainVerifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute every block's hash and check every link",
		Long: `Recompute the SHA-256 hash of every block in the range and check that each
links to the one before, that heights have no gap, that times never go
backwards and that every kind is known.

Exits 0 when the range is sound and 3 at the first bad block, naming its
height and the reason: hash_mismatch, broken_link, missing_height,
time_backwards, unknown_kind or bad_record. On a terminal, a progress bar
with rate and ETA is drawn on stderr.`,
		Example: `  ghostbridge chain verify
  ghostbridge chain verify --from 1000 --to 2000
  ghostbridge chain verify --format json || echo "chain is broken"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runChainVerify(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().Uint64Var(&opts.From, "from", 0, "first height to check")
	cmd.Flags().Uint64Var(&opts.To, "to", 0, "last height to check (default the head)")
	return cmd
}

func runChainVerify(ctx context.Context, a *App, opts *chainVerifyOptions) error {
	if opts.To != 0 && opts.From > opts.To {
		return usageErrorf(fmt.Errorf("--from %d is after --to %d", opts.From, opts.To))
	}
	return a.withChain(ctx, func(st *chain.Store) error {
		vo := chain.VerifyOptions{From: opts.From, To: opts.To}
		var bar *progressbar.ProgressBar
		if a.IO.IsStderrTTY() {
			bar = newProgressBar(a.IO.ErrOut, "verifying")
			vo.Progress = func(done, total uint64) {
				bar.ChangeMax64(int64(total))
				_ = bar.Set64(int64(done))
			}
		}
		res, err := st.Verify(ctx, vo)
		if bar != nil {
			_ = bar.Finish()
		}
		if err != nil && res.Failure == nil {
			return err // no verdict: the range or the database is the problem
		}
		if perr := a.printVerify(res); perr != nil {
			return perr
		}
		return err
	})
}

// newProgressBar draws on w (stderr) with a count, a rate and an ETA, and
// clears itself when done so the result stays the last thing on screen.
func newProgressBar(w io.Writer, desc string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("blocks"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionFullWidth(),
	)
}

func (a *App) printVerify(res chain.VerifyResult) error {
	if a.format == FormatJSON {
		return writeJSON(a.IO.Out, res)
	}
	st := newStyles(a.IO.Renderer())
	var b strings.Builder
	if res.OK {
		fmt.Fprintf(&b, "%s %d %s verified, heights %d..%d\n", st.ok.Render("OK:"), res.Checked, plural(int(min(res.Checked, 2)), "block", "blocks"), res.From, res.To)
		fmt.Fprintf(&b, "head hash %s\n", res.HeadHash)
	} else if f := res.Failure; f != nil {
		fmt.Fprintf(&b, "%s height %d: %s\n", st.bad.Render("MISMATCH:"), f.Height, f.Reason)
		if f.Detail != "" {
			fmt.Fprintf(&b, "detail: %s\n", f.Detail)
		}
		if f.Height > res.From {
			fmt.Fprintf(&b, "heights %d..%d are sound (%d %s)\n", res.From, f.Height-1, res.Checked, plural(int(min(res.Checked, 2)), "block", "blocks"))
		}
	}
	_, err := io.WriteString(a.IO.Out, b.String())
	return err
}
