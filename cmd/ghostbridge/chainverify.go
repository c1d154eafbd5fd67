package main

import (
	"context"
	"errors"
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
	Full     bool
}

func newChainVerifyCmd(a *App) *cobra.Command {
	opts := &chainVerifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the chain's blocks, Merkle tree and signed checkpoint",
		Long: `Check the chain: every block's hash and link, that heights have no gap,
that times never go backwards and every kind is known, and that the Merkle
tree holds exactly the hashes of the blocks.

Incremental (the default when chain.verifier_key is set and
chain.checkpoint_file exists): check the checkpoint's signature and origin,
that the stored tree has its root and extends it, and re-hash only the
blocks after it; the cost does not grow with the chain. --full re-derives
every block and the whole tree (and still checks the checkpoint when one is
configured); --from and --to choose a range and need --full when a
checkpoint is configured. Without a checkpoint, verification is full and
a warning says it is not anchored to a signed checkpoint: whoever can
write the database could have rewritten it consistently.

Exits 0 when sound and 3 at the first fault, naming its height and the
reason: hash_mismatch, reordered, broken_link, missing_height,
time_backwards, unknown_kind, bad_record, tree_mismatch, truncated,
rolled_back, checkpoint_mismatch, checkpoint_bad_signature,
checkpoint_unknown_key, checkpoint_wrong_origin or checkpoint_malformed.
On a terminal, a progress bar with rate and ETA is drawn on stderr.`,
		Example: `  ghostbridge chain verify
  ghostbridge chain verify --full
  ghostbridge chain verify --full --from 1000 --to 2000
  ghostbridge chain verify --format json || echo "chain is broken"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runChainVerify(cmd.Context(), a, opts)
		},
	}
	cmd.Flags().Uint64Var(&opts.From, "from", 0, "first height to check (full verification only)")
	cmd.Flags().Uint64Var(&opts.To, "to", 0, "last height to check (default the head; full verification only)")
	cmd.Flags().BoolVar(&opts.Full, "full", false, "re-derive every block and the whole tree instead of starting from the checkpoint")
	return cmd
}

func runChainVerify(ctx context.Context, a *App, opts *chainVerifyOptions) error {
	if opts.To != 0 && opts.From > opts.To {
		return usageErrorf(fmt.Errorf("--from %d is after --to %d", opts.From, opts.To))
	}
	trust, why, err := a.loadTrust()
	if err != nil {
		return err
	}
	incremental := trust != nil && !opts.Full
	if incremental && (opts.From != 0 || opts.To != 0) {
		return usageErrorf(errors.New("--from/--to select a range, which only full verification checks; " +
			"with a checkpoint configured, verification is incremental (from the checkpoint to the head): add --full or drop --from/--to"))
	}
	return a.withChain(ctx, func(st *chain.Store) error {
		if trust == nil {
			msg := "verification is not anchored to a signed checkpoint: " + why
			if _, err := st.LatestCheckpoint(ctx); err == nil && a.conf.Config.Chain.VerifierKey != "" {
				msg += ", but the database holds signed checkpoints: was the file removed?"
			}
			a.log.Warn(msg)
		}
		vo := chain.VerifyOptions{From: opts.From, To: opts.To, Trust: trust, Incremental: incremental}
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
		if res.Mode == "" {
			res.Mode = chain.ModeFull
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
	mode := res.Mode
	if res.Checkpoint == nil {
		mode += ", not anchored to a signed checkpoint"
	} else if res.Mode == chain.ModeIncremental {
		mode += fmt.Sprintf(", from the checkpoint of %d %s", res.Checkpoint.Size, plural(res.Checkpoint.Size, "block", "blocks"))
	}
	if res.OK {
		fmt.Fprintf(&b, "%s %d %s verified, heights %d..%d (%s)\n", st.ok.Render("OK:"), res.Checked, plural(res.Checked, "block", "blocks"), res.From, res.To, mode)
		fmt.Fprintf(&b, "head hash %s\n", res.HeadHash)
	} else if f := res.Failure; f != nil {
		writeFailure(&b, st, f)
		if !f.Reason.Heightless() && f.Height > res.From && res.Checked > 0 {
			fmt.Fprintf(&b, "heights %d..%d are sound (%d %s)\n", res.From, f.Height-1, res.Checked, plural(res.Checked, "block", "blocks"))
		}
		fmt.Fprintf(&b, "mode: %s\n", mode)
	}
	if c := res.Checkpoint; c != nil {
		fmt.Fprintf(&b, "checkpoint %s, %d %s, root %s, key %s+%s\n", c.Origin, c.Size, plural(c.Size, "block", "blocks"), c.Root, c.KeyName, c.KeyID)
	}
	if t := res.Tree; t != nil {
		fmt.Fprintf(&b, "tree %d %s, root %s\n", t.Size, plural(t.Size, "block", "blocks"), t.Root)
	}
	_, err := io.WriteString(a.IO.Out, b.String())
	return err
}
