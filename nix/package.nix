# The ghostbridge package: a static (CGO_ENABLED=0) binary with its man
# pages and shell completions. flake.nix calls it with the source, the
# version and vendorHash (kept in flake.nix, checked by internal/nixcheck).
{
  lib,
  buildGoModule,
  installShellFiles,
  src,
  version,
  commit,
  vendorHash,
}:
buildGoModule {
  pname = "ghostbridge";
  inherit src version vendorHash;

  subPackages = [ "cmd/ghostbridge" ];
  env.CGO_ENABLED = "0";
  ldflags = [
    "-s"
    "-w"
    "-X main.version=${version}"
    "-X main.commit=${commit}"
  ];

  # The tests need root, loop devices, Open vSwitch and libvirtd, none of
  # which the build sandbox has; CI runs them (GHOSTBRIDGE_TEST_STRICT=1 make test).
  doCheck = false;

  nativeBuildInputs = [ installShellFiles ];
  # man/ and completions/ are generated from the command tree and checked
  # in (a test keeps them fresh), so the build needs no run of the binary.
  postInstall = ''
    installManPage man/*.1
    installShellCompletion --cmd ghostbridge \
      --bash completions/ghostbridge.bash \
      --zsh completions/_ghostbridge \
      --fish completions/ghostbridge.fish
  '';

  meta = {
    description = "Operator's toolkit for a GhostBridge host: 1 Hz BTRFS snapshots in a verifiable SHA-256 hash chain";
    mainProgram = "ghostbridge";
    platforms = lib.platforms.linux;
  };
}
