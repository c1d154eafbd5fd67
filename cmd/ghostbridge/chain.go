package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

func newChainCmd(a *App) *cobra.Command {
	cmd := newGroupCmd("chain", "Inspect, verify and prove the snapshot hash chain", `Inspect and verify the hash chain in the database named by --db.

Each block records one event (a snapshot created, deleted, adopted after a
crash or found vanished, ticks missed) and links to the previous block by
its SHA-256 hash, so any change to a stored block breaks the chain where
"chain verify" can see it.

An RFC 6962 Merkle tree over the blocks is kept beside them. "chain
checkpoint" (and "snap run", with chain.signing_key set) signs its head
with an Ed25519 key and writes the checkpoint to a file outside the
database's directory, so a database rewritten or replaced by an older copy
is detected; "chain prove" and "chain verify-proof" give an auditor an
offline proof that a block is in a signed tree.`)
	cmd.AddCommand(newChainHeadCmd(a), newChainShowCmd(a), newChainLogCmd(a), newChainVerifyCmd(a),
		newChainKeygenCmd(a), newChainCheckpointCmd(a), newChainProveCmd(a), newChainVerifyProofCmd(a), newChainExportCmd(a))
	return cmd
}

// dbAccess is what a command will do with the database.
type dbAccess int

const (
	dbRead   dbAccess = iota // readers: the database must exist
	dbWrite                  // writers of an existing database (snap prune)
	dbCreate                 // writers that create it when missing (snap run)
)

// openChain opens the configured database. create is for writers (snap
// run); readers fail when it does not exist. The path is checked first
// so a bad --db is a one-line configuration error that creates nothing.
func (a *App) openChain(ctx context.Context, create bool) (*chain.Store, error) {
	access := dbRead
	if create {
		access = dbCreate
	}
	if err := a.checkDB(access); err != nil {
		return nil, err
	}
	st, err := chain.Open(ctx, a.conf.Config.DB, chain.Options{Create: create, Logger: a.log})
	if errors.Is(err, chain.ErrNoDatabase) {
		return nil, fmt.Errorf("%w (start 'ghostbridge snap run' to create it, or choose another with --db)", err)
	}
	return st, err
}

// checkDB reports a database path whose directory is missing, not a
// directory or (for writers) not writable, and a database file a writer
// cannot open for writing, as a configuration error. Writers call it
// before touching the filesystem: SQLite opens an unwritable file
// read-only without complaint, and the first append would fail only after
// a snapshot was taken.
func (a *App) checkDB(access dbAccess) error {
	path := a.conf.Config.DB
	if err := checkDBPath(path, access); err != nil {
		return &ConfigError{Problems: []Problem{{
			Key: "db", Value: showValue(path), Origin: originOf(a.conf.Origins, "db"),
			Want: err.Error(),
		}}}
	}
	return nil
}

func checkDBPath(path string, access dbAccess) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("want a file in an existing directory: %s: %w", dir, pathErrno(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("want a file in an existing directory: %s: not a directory", dir)
	}
	if access == dbRead {
		return nil
	}
	// SQLite writes its WAL, shared-memory and lock files next to the
	// database, so a writer needs the directory even when the file exists.
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("want a file in a writable directory: %s: %w", dir, err)
	}
	// Opening for writing is the only reliable probe: access(2) ignores
	// the immutable attribute and, as root, permission bits. This runs
	// before the process opens the database itself: closing any descriptor
	// of a file drops the process's POSIX locks on it, SQLite's included.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // snap run creates it; other writers report it missing
	case err != nil:
		return fmt.Errorf("not writable: %w", pathErrno(err))
	}
	return f.Close()
}

// pathErrno drops the operation and path from an *os.PathError: the
// message names the path already.
func pathErrno(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// withChain runs fn with the database open and closes it after, keeping a
// close error.
func (a *App) withChain(ctx context.Context, fn func(*chain.Store) error) (err error) {
	st, err := a.openChain(ctx, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	return fn(st)
}

func newChainHeadCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "head",
		Short: "Print the newest block",
		Example: `  ghostbridge chain head
  ghostbridge --db /var/lib/ghostbridge/chain.db chain head --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withChain(cmd.Context(), func(st *chain.Store) error {
				b, err := st.Head(cmd.Context())
				if err != nil {
					return err
				}
				return a.printBlock(b)
			})
		},
	}
}

func newChainShowCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "show HEIGHT",
		Short: "Print one block by height",
		Example: `  ghostbridge chain show 0
  ghostbridge chain show 1042 --format json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return usageErrorf(fmt.Errorf("HEIGHT %q: want a block height, a whole number >= 0", args[0]))
			}
			return a.withChain(cmd.Context(), func(st *chain.Store) error {
				b, err := st.Get(cmd.Context(), h)
				if errors.Is(err, chain.ErrNotFound) {
					return notInChain(cmd.Context(), st, h, err)
				}
				if err != nil {
					return err
				}
				return a.printBlock(b)
			})
		},
	}
}

// heightError is a height the chain does not hold, with the range it
// does, so the operator's next try can be right.
type heightError struct {
	height, head uint64
	err          error // wraps chain.ErrNotFound
}

func (e *heightError) Error() string {
	return fmt.Sprintf("height %d not in the chain (0..%d)", e.height, e.head)
}

func (e *heightError) Unwrap() error { return e.err }

// notInChain turns Get's not-found error into one naming the valid range.
func notInChain(ctx context.Context, st *chain.Store, h uint64, err error) error {
	head, herr := st.Head(ctx)
	if herr != nil {
		return errors.Join(err, herr)
	}
	return &heightError{height: h, head: head.Height, err: err}
}

// printBlock renders one block: JSON as stored, text as labelled lines.
func (a *App) printBlock(b chain.Block) error {
	if a.format == FormatJSON {
		return writeJSON(a.IO.Out, b)
	}
	st := newStyles(a.IO.Renderer())
	var sb strings.Builder
	row := func(label, value string) {
		fmt.Fprintf(&sb, "%s %s\n", st.header.Render(fmt.Sprintf("%-8s", label)), value)
	}
	row("height", strconv.FormatUint(b.Height, 10))
	row("time", formatTime(b.Time)+"  ("+formatAge(a.Now().Sub(b.Time))+" ago)")
	row("kind", st.kind.Render(string(b.Kind)))
	row("summary", blockSummary(b))
	row("payload", string(b.Payload))
	row("prev", b.Prev.String())
	row("hash", b.Hash.String())
	_, err := io.WriteString(a.IO.Out, sb.String())
	return err
}

// timeLayout is how text output shows times: UTC, fixed width, sortable.
const timeLayout = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// formatAge rounds an age for people: 1.2s, 42s, 3m5s, 2h4m, 3d4h.
func formatAge(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + formatAge(-d)
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	default:
		days := d / (24 * time.Hour)
		return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
	}
}

// blockSummary is the one-line gist of a block's payload for text output.
func blockSummary(b chain.Block) string {
	switch b.Kind {
	case chain.KindGenesis:
		var p chain.GenesisPayload
		if json.Unmarshal(b.Payload, &p) == nil {
			return fmt.Sprintf("%s v%d, chain id %s", p.Format, p.Version, p.ChainID)
		}
	case chain.KindTicksMissed:
		var p chain.TicksMissedPayload
		if json.Unmarshal(b.Payload, &p) == nil {
			return fmt.Sprintf("%d %s missed, %s to %s", p.Count, plural(p.Count, "tick", "ticks"), formatTime(p.From), formatTime(p.To))
		}
	default:
		if p, err := b.Snapshot(); err == nil {
			s := p.Source + " " + p.Snapshot
			if p.Reason != "" {
				s += " (" + p.Reason + ")"
			}
			return s
		}
	}
	return string(b.Payload)
}
