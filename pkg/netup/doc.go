// Package netup converges a host's Open vSwitch networking to a declared
// state without stranding a remote machine: it observes the current state,
// plans the difference as a list of typed changes, and applies only those,
// in an order that never leaves the host without a route to its gateway,
// undoing what it did when a step fails.
//
// Everything netup creates is marked as its own (external_ids:ghostbridge
// on OVS records) together with what it took from the uplink, so Down
// removes exactly that and gives the uplink its addresses, routes and
// offloads back. netup never prints, reads flags, environment or
// configuration files, or exits the process; it reaches the system only
// through the interfaces in Deps.
package netup
