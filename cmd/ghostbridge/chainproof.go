package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// ProveResult is the JSON contract of `chain prove`: the bundle's text
// (the exact bytes an auditor verifies) and, with --out, where it went.
type ProveResult struct {
	Height uint64 `json:"height"`
	Bundle string `json:"bundle"`
	File   string `json:"file,omitempty"`
}

func newChainProveCmd(a *App) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "prove HEIGHT",
		Short: "Write an offline proof that a block is in a signed checkpoint",
		Long: `Write a proof bundle for the block at HEIGHT: the block's record, its
RFC 6962 inclusion proof and the newest signed checkpoint that covers it
(format ghostbridge.proof.v1). "chain verify-proof" checks it on any
machine, without the database.

The bundle goes to stdout, or to FILE (mode 0644) with --out. With
--format json it is wrapped: {"schema":1,"height":H,"bundle":"..."}.
Exits 2 when no checkpoint covers HEIGHT yet ("chain checkpoint" signs
one) and 3 when the block is not the one the checkpoint signed.`,
		Example: `  ghostbridge chain prove 1042 > block-1042.proof
  ghostbridge chain prove 1042 --out /srv/audit/block-1042.proof`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return usageErrorf(fmt.Errorf("HEIGHT %q: want a block height, a whole number >= 0", args[0]))
			}
			return runChainProve(cmd.Context(), a, h, out)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the bundle to `FILE` instead of stdout")
	_ = cmd.MarkFlagFilename("out")
	return cmd
}

func runChainProve(ctx context.Context, a *App, height uint64, out string) error {
	return a.withChain(ctx, func(st *chain.Store) error {
		b, err := st.Prove(ctx, height)
		if err != nil {
			return err
		}
		data := b.Bytes()
		if out != "" {
			if err := writeFileMode(out, data, 0o644); err != nil {
				return fmt.Errorf("proof file: %w", err)
			}
		}
		switch {
		case a.format == FormatJSON:
			return writeJSON(a.IO.Out, ProveResult{Height: height, Bundle: string(data), File: out})
		case out != "":
			_, err = fmt.Fprintf(a.IO.Out, "proof of block %d written to %s\n", height, out)
		default:
			_, err = a.IO.Out.Write(data)
		}
		return err
	})
}

type chainVerifyProofOptions struct {
	Key, Origin string
}

func newChainVerifyProofCmd(a *App) *cobra.Command {
	opts := &chainVerifyProofOptions{}
	cmd := &cobra.Command{
		Use:   "verify-proof FILE",
		Short: "Check a proof bundle offline with a verifier key",
		Long: `Check a proof bundle written by "chain prove", without any database: the
checkpoint must be signed by the verifier key in --key (and name --origin,
when given), and the inclusion proof must lead from the block's record to
the checkpoint's root hash. FILE "-" reads stdin.

Exits 0 and prints the block's height, kind and hash and the tree's size
when the bundle verifies, and 3 with the reason (bad_bundle, bad_proof,
checkpoint_bad_signature, checkpoint_unknown_key, checkpoint_wrong_origin,
checkpoint_malformed) when it does not. Needs no configuration.`,
		Example: `  ghostbridge chain verify-proof block-1042.proof --key host.pub
  ghostbridge chain verify-proof block-1042.proof --key host.pub --origin ghostbridge/3b0aba77-9e77-4571-b6ab-5cb611a54ce6 --format json`,
		Args:        cobra.ExactArgs(1),
		Annotations: map[string]string{annotSkipConfig: "true"},
		RunE: func(_ *cobra.Command, args []string) error {
			return runChainVerifyProof(a, args[0], opts)
		},
	}
	cmd.Flags().StringVar(&opts.Key, "key", "", "verifier (public) key `FILE`")
	cmd.Flags().StringVar(&opts.Origin, "origin", "", "expected checkpoint `ORIGIN` (default: accept any)")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagFilename("key", "pub")
	return cmd
}

func runChainVerifyProof(a *App, file string, opts *chainVerifyProofOptions) error {
	var (
		data []byte
		err  error
	)
	if file == "-" {
		data, err = io.ReadAll(a.IO.In)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return usageErrorf(fmt.Errorf("proof bundle: %w", err))
		}
		return fmt.Errorf("proof bundle: %w", err)
	}
	v, err := chain.LoadVerifier(opts.Key)
	if errors.Is(err, fs.ErrNotExist) {
		return usageErrorf(fmt.Errorf("--key: %w", err))
	}
	if err != nil {
		return err
	}
	res, verr := chain.VerifyBundle(data, v, opts.Origin)
	if verr != nil && res.Failure == nil {
		return verr
	}
	if err := a.printProof(res); err != nil {
		return err
	}
	return verr
}

func (a *App) printProof(res chain.ProofResult) error {
	if a.format == FormatJSON {
		return writeJSON(a.IO.Out, res)
	}
	st := newStyles(a.IO.Renderer())
	var b strings.Builder
	if f := res.Failure; f != nil {
		writeFailure(&b, st, f)
	} else if res.Block != nil && res.Checkpoint != nil {
		c := res.Checkpoint
		fmt.Fprintf(&b, "%s block %d is in the tree of %d %s signed by %s+%s\n", st.ok.Render("OK:"), res.Block.Height, c.Size, plural(c.Size, "block", "blocks"), c.KeyName, c.KeyID)
		fmt.Fprintf(&b, "height  %d\nkind    %s\nhash    %s\ntree    %d %s, root %s\norigin  %s\n",
			res.Block.Height, res.Block.Kind, res.Block.Hash, c.Size, plural(c.Size, "block", "blocks"), c.Root, c.Origin)
	}
	_, err := io.WriteString(a.IO.Out, b.String())
	return err
}

func newChainExportCmd(a *App) *cobra.Command {
	var from, to uint64
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write blocks as JSON lines for external archiving",
		Long: `Write the blocks from --from to --to (default: the whole chain) to stdout
as JSON lines: one block per line, in ascending height, with the fields of
"chain show --format json" except "schema" (height, time, kind, payload
byte for byte as stored, prev, hash), enough to recompute every hash
elsewhere.

JSON lines are the only output: --format is ignored.`,
		Example: `  ghostbridge chain export > chain.jsonl
  ghostbridge chain export --from 1000 --to 2000 | gzip > blocks-1000-2000.jsonl.gz`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to != 0 && from > to {
				return usageErrorf(fmt.Errorf("--from %d is after --to %d", from, to))
			}
			ctx := cmd.Context()
			return a.withChain(ctx, func(st *chain.Store) error {
				n, err := st.Export(ctx, from, to, a.IO.Out)
				a.log.Debug("blocks exported", "count", n)
				return err
			})
		},
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "first height to export")
	cmd.Flags().Uint64Var(&to, "to", 0, "last height to export (default the head)")
	return cmd
}
