// Package netup converges a host's Open vSwitch networking to a declared
// state without stranding a remote machine: it observes the current state,
// plans the difference as a list of typed changes, and applies only those,
// in an order that never leaves the host without a route to its gateway,
// undoing what it did when a step fails.
//
// Everything netup creates is marked as its own (external_ids:ghostbridge
// on OVS records) together with what it took from the uplink, so Down
// removes exactly that and gives the uplink its addresses, routes and
// offloads back, and the host the forwarding settings Up changed.
//
// Before changing anything, Up records everything it could change
// (Snapshot) and, when a step fails, Restore puts the host back to it.
// Try does the same on purpose: it keeps the snapshot in a state file
// (0600, on persistent storage) while it waits for Confirm, and restores
// it on timeout, on interruption, or later through Rollback when its
// process died. Like "commit confirmed", a try is never kept without a
// confirmation: once its deadline has passed or the host has rebooted it
// has expired, Confirm refuses it and Up rolls it back instead of
// converging. Watchdog rolls back at the deadline for a try process that
// died, and kills one that is stopped or stuck past it.
//
// netup never prints, reads flags, environment or configuration files, or
// exits the process; it reaches the network only through the interfaces
// in Deps, writes files only in the try state directory it is given, and
// besides reads only the boot ID and the try process's /proc entry, the
// one process it may signal.
package netup
