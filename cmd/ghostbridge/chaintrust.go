package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/sys/regfile"
	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
)

// KeygenResult is the JSON contract of `chain keygen`. It carries the
// verifier (public) key and where both keys went; the signing key itself is
// never printed.
type KeygenResult struct {
	Name            string `json:"name"`
	VerifierKey     string `json:"verifier_key"`
	SigningKeyFile  string `json:"signing_key_file"`
	VerifierKeyFile string `json:"verifier_key_file"`
}

type chainKeygenOptions struct {
	Out, Name string
}

func newChainKeygenCmd(a *App) *cobra.Command {
	opts := &chainKeygenOptions{}
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create an Ed25519 key pair for signing checkpoints",
		Long: `Create an Ed25519 key pair for signing checkpoints, in the text form of
golang.org/x/mod/sumdb/note.

The signing key goes to FILE (mode 0600) and the verifier (public) key to
FILE.pub; neither file is ever overwritten. The verifier key is printed:
give it (or FILE.pub) to auditors, and point chain.verifier_key at
FILE.pub and chain.signing_key at FILE. The signing key is never printed.

The key's name (default: the host name) appears in every checkpoint it
signs; it may not hold spaces or "+".`,
		Example: `  ghostbridge chain keygen --out /etc/ghostbridge/checkpoint.key
  ghostbridge chain keygen --out ./audit.key --name backup-host --format json`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotSkipConfig: "true"},
		RunE: func(_ *cobra.Command, _ []string) error {
			return runChainKeygen(a, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Out, "out", "", "signing-key `FILE` to create (the verifier key goes to FILE.pub)")
	cmd.Flags().StringVar(&opts.Name, "name", "", "key `NAME` shown in checkpoints (default the host name)")
	_ = cmd.MarkFlagRequired("out")
	_ = cmd.MarkFlagFilename("out")
	return cmd
}

func runChainKeygen(a *App, opts *chainKeygenOptions) error {
	name := opts.Name
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return usageErrorf(fmt.Errorf("host name: %w; give --name", err))
		}
		name = h
	}
	pub := opts.Out + ".pub"
	// Check both paths before writing either, so a refusal leaves nothing.
	for _, p := range []string{opts.Out, pub} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("key file %s: %w: refusing to overwrite it", p, chain.ErrKeyExists)
		}
	}
	signer, verifier, err := chain.GenerateKey(name)
	if err != nil {
		return usageErrorf(fmt.Errorf("--name: %w", err))
	}
	if err := chain.WriteKeyFile(opts.Out, signer); err != nil {
		return err
	}
	if err := chain.WriteKeyFile(pub, verifier); err != nil {
		// Half a key pair is worse than none: the operator reruns keygen.
		return errors.Join(err, os.Remove(opts.Out))
	}
	res := KeygenResult{Name: name, VerifierKey: verifier, SigningKeyFile: opts.Out, VerifierKeyFile: pub}
	if a.format == FormatJSON {
		return writeJSON(a.IO.Out, res)
	}
	_, err = fmt.Fprintf(a.IO.Out, "verifier key       %s\nsigning key file   %s  (secret; mode 0600)\nverifier key file  %s\n",
		res.VerifierKey, res.SigningKeyFile, res.VerifierKeyFile)
	return err
}

// CheckpointResult is the JSON contract of `chain checkpoint`: the signed
// checkpoint and the file it was written to.
type CheckpointResult struct {
	chain.Checkpoint
	File string `json:"file"`
}

func newChainCheckpointCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign the current tree head with the configured key",
		Long: `Sign the Merkle tree head of the chain (origin, size, root hash) with the
key in chain.signing_key, store the checkpoint in the database and write it
to chain.checkpoint_file, where "chain verify" starts from.

Before replacing the checkpoint file, the chain must extend the checkpoint
already in it; if it does not (the database was rolled back or rewritten)
nothing is signed, the file is left as evidence, and the exit status is 3.`,
		Example: `  ghostbridge chain checkpoint
  GHOSTBRIDGE_CHAIN_SIGNING_KEY=/etc/ghostbridge/checkpoint.key ghostbridge chain checkpoint --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runChainCheckpoint(cmd.Context(), a)
		},
	}
}

func runChainCheckpoint(ctx context.Context, a *App) error {
	signer, err := a.loadSigner()
	if err != nil {
		return err
	}
	if err := a.checkDB(dbWrite); err != nil {
		return err
	}
	cc := a.conf.Config.Chain
	return a.withChain(ctx, func(st *chain.Store) error {
		c, err := st.SignCheckpoint(ctx, chain.SignOptions{Signer: signer, Origin: cc.Origin, File: cc.CheckpointFile, Now: a.Now})
		if err != nil {
			return err
		}
		res := CheckpointResult{Checkpoint: c, File: cc.CheckpointFile}
		if a.format == FormatJSON {
			return writeJSON(a.IO.Out, res)
		}
		sty := newStyles(a.IO.Renderer())
		_, err = fmt.Fprintf(a.IO.Out, "%s checkpoint signed for %d %s\norigin  %s\nsize    %d\nroot    %s\nkey     %s+%s\nfile    %s\n",
			sty.ok.Render("OK:"), c.Size, plural(c.Size, "block", "blocks"), c.Origin, c.Size, c.Root, c.KeyName, c.KeyID, res.File)
		return err
	})
}

// loadSigner reads the key chain.signing_key names. A missing setting or
// file is a configuration error; LoadSigner's errors (permissions, not a
// key) name the file and never its contents.
func (a *App) loadSigner() (note.Signer, error) {
	path := a.conf.Config.Chain.SigningKey
	if path == "" {
		return nil, &ConfigError{Problems: []Problem{{Key: "chain.signing_key", Value: `""`,
			Want: "a signing-key file to sign checkpoints with (create one with 'ghostbridge chain keygen --out FILE')"}}}
	}
	s, err := chain.LoadSigner(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &ConfigError{Problems: []Problem{{Key: "chain.signing_key", Value: showValue(path),
			Origin: originOf(a.conf.Origins, "chain.signing_key"), Want: "an existing signing-key file: no such file"}}}
	}
	return s, err
}

// loadTrust reads the verifier key and the checkpoint file. With either
// missing it returns nil and why verification cannot be anchored.
func (a *App) loadTrust() (*chain.Trust, string, error) {
	cc := a.conf.Config.Chain
	if cc.VerifierKey == "" {
		return nil, "chain.verifier_key is not set", nil
	}
	v, err := chain.LoadVerifier(cc.VerifierKey)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", &ConfigError{Problems: []Problem{{Key: "chain.verifier_key", Value: showValue(cc.VerifierKey),
			Origin: originOf(a.conf.Origins, "chain.verifier_key"), Want: "an existing verifier-key file: no such file"}}}
	}
	if err != nil {
		return nil, "", fmt.Errorf("chain.verifier_key: %w", err)
	}
	data, err := regfile.Read(cc.CheckpointFile, 0)
	var nr *regfile.NotRegularError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Sprintf("checkpoint file %s does not exist", cc.CheckpointFile), nil
	case errors.As(err, &nr):
		return nil, "", &ConfigError{Problems: []Problem{{Key: "chain.checkpoint_file", Value: showValue(cc.CheckpointFile),
			Origin: originOf(a.conf.Origins, "chain.checkpoint_file"), Want: "a file holding the signed checkpoint: " + nr.Error()}}}
	case err != nil:
		return nil, "", fmt.Errorf("chain.checkpoint_file: %w", err)
	}
	return &chain.Trust{Checkpoint: data, Verifier: v, Origin: cc.Origin}, "", nil
}

// writeFailure renders a failed check's first lines.
func writeFailure(b *strings.Builder, st styles, f *chain.Failure) {
	if f.Reason.Heightless() {
		fmt.Fprintf(b, "%s %s\n", st.bad.Render("MISMATCH:"), f.Reason)
	} else {
		fmt.Fprintf(b, "%s height %d: %s\n", st.bad.Render("MISMATCH:"), f.Height, f.Reason)
	}
	if f.Detail != "" {
		fmt.Fprintf(b, "detail: %s\n", f.Detail)
	}
}

// writeFileMode writes data to a new or truncated file at path with mode.
func writeFileMode(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return errors.Join(err, f.Close())
	}
	if _, err := f.Write(data); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}
