# The example GhostBridge host: every part of the design declared, with
# ghostbridge's loops run by services.ghostbridge. Build it with
#   nixos-rebuild build --flake .#ghostbridge-host
# and adapt hardware-configuration.nix, the uplink name, the addresses in
# ghostbridge.json and the operator's SSH key for a real machine.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  # ghostbridge's settings live in JSON so the Go tests render and validate
  # exactly what this host gets (no import-from-derivation: a source file).
  ghostbridgeSettings = builtins.fromJSON (builtins.readFile ./ghostbridge.json);

  # websockify's token directory: one file per running guest.
  novncTokens = "/run/novnc/tokens";
  bridges = map (b: b.name) ghostbridgeSettings.net.bridges;
  uplinks = map (b: b.uplink) (builtins.filter (b: b ? uplink) ghostbridgeSettings.net.bridges);

  # libvirt networks that put guests on the OVS bridges ghostbridge creates.
  ovsNetwork =
    bridge:
    pkgs.writeText "libvirt-net-${bridge}.xml" ''
      <network>
        <name>${bridge}</name>
        <forward mode='bridge'/>
        <bridge name='${bridge}'/>
        <virtualport type='openvswitch'/>
      </network>
    '';
in
{
  imports = [ ./hardware-configuration.nix ];

  # Boot: systemd-boot keeps the last 20 generations to roll back to.
  boot.loader.systemd-boot.enable = true;
  boot.loader.systemd-boot.configurationLimit = 20;
  boot.loader.efi.canTouchEfiVariables = true;
  # The AMD IOMMU is on by default (there is no amd_iommu=on); iommu=pt
  # keeps host devices out of translation.
  boot.kernelParams = [
    "intel_iommu=on"
    "iommu=pt"
    "kvm.ignore_msrs=1"
  ];
  # In the initrd, so vfio-pci (given the device IDs, `options vfio-pci
  # ids=...`) claims a passthrough device before its host driver does.
  boot.initrd.kernelModules = [
    "vfio"
    "vfio_iommu_type1"
    "vfio_pci"
  ];
  boot.extraModprobeConfig = ''
    options kvm_intel nested=1
    options kvm_amd nested=1
  '';

  # Network: systemd-networkd, no NetworkManager. The uplink and the OVS
  # bridges belong to ghostbridge-net.service (net up), so networkd leaves
  # them alone instead of fighting over addresses and routes.
  networking.hostName = "ghostbridge";
  networking.useNetworkd = true;
  networking.useDHCP = false;
  networking.networkmanager.enable = false;
  systemd.network.enable = true;
  systemd.network.networks."10-ghostbridge" = {
    matchConfig.Name = lib.concatStringsSep " " (uplinks ++ bridges);
    linkConfig.Unmanaged = true;
  };
  # Every link of this host is Unmanaged, so systemd-networkd-wait-online
  # would wait for nothing until it times out. ghostbridge-net.service is
  # wanted by and ordered before network-online.target instead.
  systemd.network.wait-online.enable = false;
  # net up configures links, addresses and routes, not DNS: name the
  # resolvers here (replace with the provider's own).
  networking.nameservers = [
    "9.9.9.9"
    "149.112.112.112"
    "2620:fe::fe"
  ];

  networking.firewall = {
    enable = true;
    # SSH only. noVNC, Grafana and Prometheus listen on 127.0.0.1: reach
    # them with ssh -L 6080:127.0.0.1:6080 (and 3000, 9090).
    allowedTCPPorts = [ ];
    # Guests on the bridges route asymmetrically through the host.
    checkReversePath = "loose";
  };

  # Open vSwitch (ovsdb.service, ovs-vswitchd.service).
  virtualisation.vswitch.enable = true;
  virtualisation.vswitch.resetOnStart = false;

  # Qdrant, for ghostbridge vector sync (gRPC on 6334).
  services.qdrant = {
    enable = true;
    settings = {
      service = {
        host = "127.0.0.1";
        http_port = 6333;
        grpc_port = ghostbridgeSettings.vector.port;
      };
      telemetry_disabled = true;
    };
  };

  # Virtual machines: libvirt/KVM with networks on the OVS bridges, system
  # containers (LXD's successor Incus), Docker with automatic pruning.
  virtualisation.libvirtd = {
    enable = true;
    qemu = {
      package = pkgs.qemu_kvm;
      runAsRoot = false;
      swtpm.enable = true;
    };
  };
  systemd.services.libvirt-ovs-networks = {
    description = "libvirt networks on the ghostbridge OVS bridges";
    after = [
      "libvirtd.service"
      "ghostbridge-net.service"
    ];
    requires = [ "libvirtd.service" ];
    wantedBy = [ "multi-user.target" ];
    path = [ config.virtualisation.libvirtd.package ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    script = lib.concatMapStringsSep "\n" (b: ''
      virsh net-info ${b} >/dev/null 2>&1 || virsh net-define ${ovsNetwork b}
      virsh net-autostart ${b}
      virsh net-info ${b} | grep -q '^Active:.*yes' || virsh net-start ${b}
    '') bridges;
  };
  # LXD: NixOS removed virtualisation.lxd (nixpkgs#441370, 2025) in favour of
  # Incus, LXD's community fork with the same images and workflow.
  virtualisation.incus.enable = true;
  # Incus on NixOS needs the nftables firewall backend.
  networking.nftables.enable = true;
  virtualisation.docker = {
    enable = true;
    storageDriver = "btrfs";
    autoPrune = {
      enable = true;
      dates = "weekly";
      flags = [ "--all" ];
    };
  };
  # Docker sets the FORWARD policy to DROP once it turns on forwarding,
  # which would drop what the host routes between the OVS bridges (guests
  # on ovsbr1 reaching the uplink on ovsbr0). DOCKER-USER is the chain
  # Docker leaves to the operator and evaluates first; accept
  # bridge-to-bridge traffic there, for IPv4 and (when Docker manages it)
  # IPv6. Re-applied whenever docker.service starts.
  systemd.services.docker-ovs-forward = {
    description = "Let routed traffic between the ghostbridge OVS bridges past Docker's FORWARD policy";
    after = [ "docker.service" ];
    partOf = [ "docker.service" ];
    wantedBy = [ "docker.service" ];
    path = [ pkgs.iptables ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    script = lib.concatStrings (
      lib.concatMap (
        from:
        map (to: ''
          for ipt in iptables ip6tables; do
            "$ipt" -n -L DOCKER-USER >/dev/null 2>&1 || continue
            "$ipt" -C DOCKER-USER -i ${from} -o ${to} -j ACCEPT 2>/dev/null ||
              "$ipt" -I DOCKER-USER -i ${from} -o ${to} -j ACCEPT
          done
        '') (lib.remove from bridges)
      ) bridges
    );
  };

  # noVNC on 6080 in front of the guests' VNC consoles. `vm console` prints
  # vnc.html?autoconnect=1&path=websockify?token=<vm>: websockify serves
  # noVNC's page and finds each guest's display by that token in
  # /run/novnc/tokens, which the libvirt hook below keeps current (a line
  # "<vm>: 127.0.0.1:<port>" per running guest).
  systemd.services.novnc = {
    description = "noVNC web console for libvirt guests";
    after = [
      "network.target"
      "libvirtd.service"
    ];
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      ExecStart = lib.concatStringsSep " " [
        "${pkgs.python3Packages.websockify}/bin/websockify"
        "--web ${pkgs.novnc}/share/webapps/novnc"
        "--token-plugin TokenFile"
        "--token-source ${novncTokens}"
        "127.0.0.1:6080"
      ];
      DynamicUser = true;
      Restart = "on-failure";
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      NoNewPrivileges = true;
      CapabilityBoundingSet = "";
    };
  };
  systemd.tmpfiles.settings.novnc-tokens.${novncTokens}.d = {
    mode = "0755";
    user = "root";
    group = "root";
  };
  # Run by libvirtd as root with the guest's name, the operation and the
  # live domain XML on stdin. "started" is the first point where an
  # autoport display has its port; "release" follows every stop or crash.
  # The hook must not call back into libvirt (virsh): libvirtd waits for it.
  virtualisation.libvirtd.hooks.qemu.novnc-token = pkgs.writeShellScript "novnc-token" ''
    set -eu
    token=${novncTokens}/$1
    case "$2" in
      started)
        port=$(${pkgs.libxml2}/bin/xmllint --xpath 'string(/domain/devices/graphics[@type="vnc"]/@port)' - || true)
        if [ -n "$port" ] && [ "$port" -gt 0 ]; then
          printf '%s: 127.0.0.1:%s\n' "$1" "$port" >"$token.tmp"
          ${pkgs.coreutils}/bin/chmod 0644 "$token.tmp"
          ${pkgs.coreutils}/bin/mv -f "$token.tmp" "$token"
        fi
        ;;
      release)
        ${pkgs.coreutils}/bin/rm -f "$token"
        ;;
    esac
  '';

  # SSH: Ed25519 keys only, no passwords, no root login.
  services.openssh = {
    enable = true;
    openFirewall = true;
    hostKeys = [
      {
        path = "/etc/ssh/ssh_host_ed25519_key";
        type = "ed25519";
      }
    ];
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "no";
      PubkeyAcceptedAlgorithms = "ssh-ed25519,sk-ssh-ed25519@openssh.com";
      HostKeyAlgorithms = "ssh-ed25519";
    };
  };
  users.users.operator = {
    isNormalUser = true;
    extraGroups = [
      "wheel"
      "libvirtd"
      "docker"
      "incus-admin"
    ];
    openssh.authorizedKeys.keys = [
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyGoesHereOperatorKeyGoesHere00 operator@example"
    ];
  };
  # Key-only logins have no password to give sudo.
  security.sudo.wheelNeedsPassword = false;

  # Monitoring: Prometheus with node exporter (BTRFS and systemd collectors),
  # Grafana with Prometheus as its data source. The ghostbridge module adds
  # the scrape jobs for its loops, the textfile directory for diag and the
  # dashboard.
  services.prometheus = {
    enable = true;
    listenAddress = "127.0.0.1";
    port = 9090;
    retentionTime = "30d";
    exporters.node = {
      enable = true;
      listenAddress = "127.0.0.1";
      enabledCollectors = [
        "systemd"
        "btrfs"
      ];
    };
    scrapeConfigs = [
      {
        job_name = "node";
        static_configs = [
          { targets = [ "127.0.0.1:${toString config.services.prometheus.exporters.node.port}" ]; }
        ];
      }
    ];
  };
  services.grafana = {
    enable = true;
    settings = {
      server = {
        http_addr = "127.0.0.1";
        http_port = 3000;
      };
      security.secret_key = "$__file{/var/lib/grafana/secret-key}";
    };
    provision = {
      enable = true;
      datasources.settings.datasources = [
        {
          name = "Prometheus";
          type = "prometheus";
          url = "http://127.0.0.1:${toString config.services.prometheus.port}";
          isDefault = true;
        }
      ];
    };
  };
  # Grafana's secret key is made on the host at first start, never in the store.
  systemd.services.grafana.preStart = lib.mkBefore ''
    if [ ! -s /var/lib/grafana/secret-key ]; then
      (umask 077; head -c 32 /dev/urandom | base64 > /var/lib/grafana/secret-key)
    fi
  '';

  # Orchestration (op-dbus, dbus-mcp, dbus-mcp-web) is the operator's own
  # software: neither nixpkgs nor this flake packages it, so this host
  # declares no units or D-Bus policy for it rather than placeholders that
  # would fail at boot. Add its packages to services.dbus.packages (for
  # their share/dbus-1/system.d policy) and its systemd.services here, then
  # list its bus names in ghostbridge.json's diag.dbus_names and its units
  # in diag.services; until then diag skips services.dbus_names.

  # ghostbridge: every part on, settings from ghostbridge.json.
  services.ghostbridge = {
    enable = true;
    network.enable = true;
    snapshots.enable = true;
    # On by default with snapshots; spelled out because diag's chain.verify
    # depends on it: signed checkpoints keep verification incremental, where
    # a full re-verify of ~350k blocks a day would pass diag.timeout within
    # a week. The key pair is made on first boot in /var/lib/ghostbridge-keys;
    # give checkpoint.key.pub to auditors.
    checkpoints.enable = true;
    vectorSync.enable = true;
    diag.timer.enable = true;
    metrics.enable = true;
    settings = ghostbridgeSettings;
  };

  # Nix: flakes, store optimisation, weekly garbage collection.
  nix.settings = {
    experimental-features = [
      "nix-command"
      "flakes"
    ];
    auto-optimise-store = true;
  };
  nix.gc = {
    automatic = true;
    dates = "weekly";
    options = "--delete-older-than 30d";
  };

  time.timeZone = "UTC";
  system.stateVersion = "25.11";
}
