# Hardware of the example GhostBridge host: one NVMe disk with an EFI
# partition (label EFI) and one BTRFS filesystem (label nixos) holding the
# subvolumes below. Replace with nixos-generate-config's output for a real
# machine, keeping the fileSystems part.
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}:
let
  subvolumes = {
    "/" = "@";
    "/home" = "@home";
    "/overlay" = "@overlay";
    "/blockchain/timing" = "@blockchain-timing";
    "/blockchain/vectors" = "@blockchain-vectors";
    "/work" = "@work";
  };
  # BTRFS takes compress, ssd, nodatacow and the other filesystem options
  # from the first subvolume mounted ("/", in the initrd) and applies them
  # to the whole filesystem (btrfs(5), "MOUNT OPTIONS"); every later mount
  # shows the same. So every subvolume is mounted with the same filesystem
  # options, and only the per-mount ones (noatime) could differ. What one
  # subvolume needs beyond them is set on its root directory below.
  # diag.mounts in ghostbridge.json checks exactly what this can hold.
  filesystemOptions = [
    "compress=zstd:3"
    "ssd"
  ];
  btrfsMount = _path: subvol: {
    device = "/dev/disk/by-label/nixos";
    fsType = "btrfs";
    options = [
      "subvol=${subvol}"
      "noatime"
    ]
    ++ filesystemOptions;
  };
in
{
  imports = [ (modulesPath + "/installer/scan/not-detected.nix") ];

  boot.initrd.availableKernelModules = [
    "nvme"
    "xhci_pci"
    "ahci"
    "usbhid"
    "sd_mod"
  ];
  boot.initrd.supportedFilesystems = [ "btrfs" ];
  boot.kernelModules = [ "kvm-intel" ];
  boot.extraModulePackages = [ ];

  fileSystems = lib.mapAttrs btrfsMount subvolumes // {
    "/boot" = {
      device = "/dev/disk/by-label/EFI";
      fsType = "vfat";
      options = [
        "fmask=0077"
        "dmask=0077"
      ];
    };
  };

  # @work is nodatacow through the NOCOW attribute on its root, which files
  # created afterwards inherit (files already there keep copy-on-write).
  systemd.tmpfiles.rules = [ "h /work - - - - +C" ];
  # @blockchain-timing compresses with zstd whatever the filesystem's
  # first mount says, through the compression property on its root, which
  # new files inherit. The property sets the algorithm only: the level is
  # the filesystem's (zstd:3 above); BTRFS has no per-subvolume level.
  systemd.services.ghostbridge-btrfs-properties = {
    description = "BTRFS compression property of /blockchain/timing";
    wantedBy = [ "multi-user.target" ];
    unitConfig.RequiresMountsFor = [ "/blockchain/timing" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${pkgs.btrfs-progs}/bin/btrfs property set /blockchain/timing compression zstd";
    };
  };

  swapDevices = [ ];

  nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
  hardware.cpu.intel.updateMicrocode = lib.mkDefault config.hardware.enableRedistributableFirmware;
}
