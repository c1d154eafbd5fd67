// Command ghostbridge is the operator's command-line tool for a GhostBridge
// host: BTRFS snapshots every second, recorded in a verifiable SHA-256 hash
// chain in SQLite.
//
// This package is the command layer only: cobra wiring, configuration
// (one viper instance), streams, rendering and exit codes. It decides
// nothing; the logic lives in pkg/ and must not be duplicated here.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// By default Go dies of SIGPIPE when a write to stdout finds the
	// reader gone. Catching it turns that into an EPIPE write error, so
	// "snap run | consumer" finishes its tick and exits when the consumer
	// dies instead of being killed mid-tick.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	startTryWatchdog = spawnTryWatchdog
	code := run(ctx, os.Args[1:], SystemIO(os.Getenv), os.Getenv)
	stop()
	os.Exit(code)
}

// run executes one command line in-process and returns the exit code; tests
// call it with buffer-backed streams and a fake environment.
func run(ctx context.Context, args []string, ios *IOStreams, env func(string) string) int {
	return NewApp(ios, env).Run(ctx, args)
}
