package main

import (
	"context"
	"errors"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
	"github.com/ghostbridge/ghostbridge/pkg/vector"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

// Exit codes are part of the command-line contract: systemd units and
// runbooks branch on them. exitCodesHelp documents the same table.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitCheckFailed = 3
	exitPending     = 4
	// exitStopTimeout: "vm stop" asked the guest to shut down and it was
	// still running when --timeout passed. Its own code, so a runbook
	// can force exactly that case and no other failure.
	exitStopTimeout = 5
	exitInterrupted = 130
	// exitNagiosUnknown is UNKNOWN for commands that exit as Nagios
	// plugins do (annotNagios): diag could not tell.
	exitNagiosUnknown = 3
)

// annotNagios marks a command whose exit codes follow the Nagios plugin
// convention (0 ok, 1 warning, 2 critical, 3 unknown) instead of the table
// below: any error of its own, usage included, is 3.
const annotNagios = "ghostbridge/nagios-exit"

const exitCodesHelp = `Exit codes:
  0    success
  1    runtime failure (I/O, database or filesystem error, another
       "snap run" already holds the database lock; "net try" rolled
       back because "net confirm" did not come in time or it was
       interrupted; "net up"/"net try" refused while a "net try" is
       unconfirmed; "net up" refused a configuration whose try was
       rolled back unconfirmed (use "net try" or "net up --force");
       "net confirm" with no try pending; "net down" refused because a
       bridge still has ports ghostbridge did not create; a block
       Qdrant rejects for good ("vector sync" without --skip-poison);
       a wrong Qdrant API key; "vm stop" of a guest that is paused,
       crashed or suspended, which cannot act on a shutdown; "vm list"
       that could not read every guest: it lists the others, and the
       guests it could not read with their error)
  2    usage or configuration error (unknown flag or command, bad argument
       such as a height not in the chain, invalid config key or value,
       missing config file named by --config, database missing, not a
       chain, not writable for "snap run" or "snap prune", or in an
       unusable directory, source that is not a subvolume, snapshot
       directory on another filesystem or bound to another chain, key
       file missing, not a key or readable by others, key file that
       "chain keygen" would overwrite, "chain prove" before any
       checkpoint was signed, chain.checkpoint_file inside the
       database's directory, an API key file or CA bundle that is
       unreadable, empty or not a regular file, a Qdrant collection
       whose vector size or distance differs from the config, an
       invalid [net], [vector] or [vm] value, a [net] desired state
       naming a missing NIC,
       overlapping addresses, uplink addresses the bridge does not
       declare or a flow Open vSwitch rejects, a vm spec refused (size
       such as "lots", vCPUs 0, malformed PCI address, unknown bridge,
       name in use, PCI device missing or IOMMU off, more than the host
       has), a vm that does not exist or that ghostbridge did not
       create)
  3    a check failed (chain verify found a mismatch; a checkpoint or
       proof bundle did not verify; "chain checkpoint" found the
       checkpoint file not extended by the chain — "snap run" logs that
       and keeps snapshotting)
  4    changes pending: "net plan" found the host differs from the
       configuration ("net up" would change something)
  5    timed out: "vm stop" asked the guest to shut down and it was
       still running when --timeout passed; it is left running (power
       it off with "vm stop --force")
  130  interrupted by SIGINT or SIGTERM before the command finished
       ("snap run" and "chain log --follow" stop cleanly and exit 0;
       "net try" rolls back and exits 1)

"diag" exits as a Nagios plugin does instead:
  0    OK: every check passed or was skipped, and at least one passed
  1    WARNING: a check warns, none fails or is unknown
  2    CRITICAL: a check fails
  3    UNKNOWN: a check could not tell (timeout, no access, still
       running from an earlier "--watch" run), every selected check was
       skipped, or diag could not run (unknown check name, bad flag or
       configuration, or the "--textfile" could not be written: the
       report printed before it keeps the checks' own verdict, CRITICAL
       included) ("diag --watch" exits with the code of its last
       complete run)`

// usageError marks a command-line mistake: an unknown flag or command, a
// wrong argument, an invalid flag value.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(err error) error {
	if err == nil {
		return nil
	}
	var u *usageError
	if errors.As(err, &u) {
		return err
	}
	return &usageError{err: err}
}

// checkFailed and usage list the library errors that map to exit codes
// other than 1.
var (
	checkFailed = []error{chain.ErrMismatch}
	usage       = []error{
		chain.ErrNoDatabase, // --db names no database: a configuration mistake
		chain.ErrNotChain,
		chain.ErrOutOfRange, // --from/--to or HEIGHT outside the chain
		chain.ErrNotFound,
		snap.ErrInvalidConfig, // a source that is not a subvolume, a directory on another filesystem
		// Key files are configuration: the operator fixes the file
		// (chmod 600, another path), not the program.
		chain.ErrKeyPermissions,
		chain.ErrKeyExists,
		chain.ErrBadKey,
		chain.ErrNoCheckpoint, // chain prove before "chain checkpoint" ran
		// [vector] values pkg/vector refuses, and a collection whose size
		// or distance differ from the configuration.
		vector.ErrInvalidConfig,
		vector.ErrCollectionMismatch,
		// A [net] configuration the host refuses: an uplink that does
		// not exist, a flow ovs-ofctl rejects.
		netup.ErrInvalidConfig,
		// A vm spec or host pre-flight refused (bad size, PCI address,
		// unknown bridge, name in use), or a vm that does not exist.
		vm.ErrInvalidConfig,
		vm.ErrNotFound,
	}
)

// exitCode maps the error a command returned to the process exit code. ctx is
// the signal context: a cancellation counts as an interruption only when the
// signal actually fired.
func exitCode(ctx context.Context, err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return exitInterrupted
	}
	for _, s := range checkFailed {
		if errors.Is(err, s) {
			return exitCheckFailed
		}
	}
	if errors.Is(err, errPending) {
		return exitPending
	}
	if errors.Is(err, vm.ErrStopTimeout) {
		return exitStopTimeout
	}
	var (
		u  *usageError
		ce *ConfigError
		fe *configFileError
	)
	if errors.As(err, &u) || errors.As(err, &ce) || errors.As(err, &fe) {
		return exitUsage
	}
	for _, s := range usage {
		if errors.Is(err, s) {
			return exitUsage
		}
	}
	return exitFailure
}
