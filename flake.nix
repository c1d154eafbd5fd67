{
  description = "ghostbridge: the GhostBridge host toolkit, its NixOS module and an example host";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      version = "0.0.0-unstable-${builtins.substring 0 8 (self.lastModifiedDate or "19700101")}";
      commit = self.shortRev or self.dirtyShortRev or "dirty";

      # `go mod vendor` output hash; after a go.mod change run
      # testdata/nix/vendor-hash.sh --write (internal/nixcheck checks it).
      vendorHash = "sha256-JvsLjgi4OcFIZvs+FevFDMc/aLJnhCqtOTkcVcCS+/c=";

      # go.mod asks for Go 1.26. Once the default Go is new enough, use it:
      # nixpkgs turns removed versioned attributes into throws, which
      # `or` does not catch.
      goIsNew = pkgs: lib.versionAtLeast pkgs.go.version "1.26";
      buildGoModuleFor = pkgs: if goIsNew pkgs then pkgs.buildGoModule else pkgs.buildGo126Module;
      goFor = pkgs: if goIsNew pkgs then pkgs.go else pkgs.go_1_26;

      ghostbridgeFor =
        pkgs:
        pkgs.callPackage ./nix/package.nix {
          buildGoModule = buildGoModuleFor pkgs;
          src = lib.cleanSource ./.;
          inherit version commit vendorHash;
        };

      exampleHost = lib.nixosSystem {
        modules = [
          self.nixosModules.default
          ./nix/examples/ghostbridge-host/configuration.nix
        ];
      };
    in
    {
      packages = forAllSystems (pkgs: rec {
        ghostbridge = ghostbridgeFor pkgs;
        default = ghostbridge;
      });

      overlays.default = final: _prev: { ghostbridge = ghostbridgeFor final; };

      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.ghostbridge.package =
            lib.mkDefault
              self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };

      # `nixos-rebuild build --flake .#ghostbridge-host` builds the example.
      nixosConfigurations.ghostbridge-host = exampleHost;

      checks = forAllSystems (
        pkgs:
        {
          package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        }
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          # The example host evaluates (module options, types, assertions)
          # and its rendered config passes the CLI's own validation.
          example-host-eval = pkgs.runCommand "ghostbridge-example-host-eval" { } ''
            echo ${builtins.unsafeDiscardStringContext exampleHost.config.system.build.toplevel.drvPath} > $out
          '';
          example-config-validate =
            pkgs.runCommand "ghostbridge-example-config-validate"
              { nativeBuildInputs = [ self.packages.x86_64-linux.default ]; }
              ''
                ghostbridge config validate ${exampleHost.config.services.ghostbridge.configFile} | tee $out
              '';
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (goFor pkgs)
            pkgs.gopls
            pkgs.gotools
            pkgs.sqlite
            pkgs.btrfs-progs
            pkgs.openvswitch
            pkgs.nix
          ];
        };
      });
    };
}
