# Every ghostbridge command line the NixOS module runs, as argument lists
# without the program. module.nix turns each into an ExecStart through one
# helper (`exec`), and cmd/ghostbridge/nixmodule_test.go evaluates this file
# with nix-instantiate and runs every list through the CLI's own flag
# parsing and config validation, so a renamed subcommand or flag fails the
# Go tests instead of a host at boot.
#
# Builtins only (no nixpkgs), so it evaluates on any machine with Nix.
{
  # The rendered config file (a store path).
  configFile,
  # File node exporter's textfile collector reads diag's results from.
  textfile,
  # Directory holding the state of an unconfirmed `net try` (the CLI's
  # --state-dir default; the network unit makes it its StateDirectory).
  netStateDir,
  # Signing-key file of the checkpoint key pair the module creates; keygen
  # writes the verifier key next to it as FILE.pub.
  checkpointKey,
  # diag checks (names or groups) to leave out on this host.
  diagSkip ? [ ],
}:
let
  config = [ "--config" configFile ];
in
{
  # ghostbridge-net.service: converge OVS bridges, addresses, routes, offloads, flows.
  network = [ "net" "up" "--state-dir" netStateDir ] ++ config;
  # ghostbridge-snap.service: the 1 Hz snapshot loop.
  snapshots = [ "snap" "run" ] ++ config;
  # ghostbridge-keygen.service: the checkpoint key pair, created once. No
  # --config: keygen reads none, and the host name is the key's name.
  checkpointKeygen = [ "chain" "keygen" "--out" checkpointKey ];
  # ghostbridge-vector.service: chain events into Qdrant.
  vectorSync = [ "vector" "sync" ] ++ config;
  # ghostbridge-diag.service (started by its timer): check results for node exporter.
  diag =
    [ "diag" "--format" "prometheus" "--textfile" textfile ]
    ++ (if diagSkip == [ ] then [ ] else [ "--skip" (builtins.concatStringsSep "," diagSkip) ])
    ++ config;
}
