# NixOS module for ghostbridge: the package on PATH, the config file in
# /etc/ghostbridge/config.toml, and one systemd unit per part of the host
# (network, snapshots, vector sync, diag timer) plus the Prometheus scrape
# jobs and the Grafana dashboard.
#
# Conventions the Go tests rely on (see cmd/ghostbridge/nixmodule_test.go and
# internal/nixcheck):
# - every ghostbridge command line comes from ./commands.nix and reaches a
#   unit only through `exec` below; "bin/ghostbridge" appears once in this file;
# - the settings options are built from ./settings.json, which the Go tests
#   read too, so the option tree, the CLI's config keys and the README table
#   cannot drift apart;
# - every other option is declared on its own line, four spaces in, as
#   `NAME = mkOption {` or `NAME = mkEnableOption`.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib)
    mkEnableOption
    mkOption
    mkIf
    mkMerge
    mkDefault
    types
    literalExpression
    literalMD
    optional
    optionals
    ;

  cfg = config.services.ghostbridge;
  settingsFormat = pkgs.formats.toml { };

  # settings.json describes every config key: its type, the CLI's default and
  # a description. A leaf has "type"; anything else is a table.
  spec = builtins.fromJSON (builtins.readFile ./settings.json);
  isLeaf = s: s ? type && builtins.isString s.type;

  durationRegex = "0|([0-9]+(\\.[0-9]*)?(ns|us|µs|ms|s|m|h))+";

  # A systemd time span ("30s", "1min 30s", "2h"), as WatchdogSec= and
  # OnUnitActiveSec= take it.
  systemdSpan = types.strMatching "([0-9]+(\\.[0-9]+)?[ ]*(usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d|weeks|week|w)?[ ]*)+";

  # Every diag check name and group (nix/diag-checks.json, kept equal to
  # pkg/diag's Catalog by internal/nixcheck), so a typo in diag.skip fails
  # evaluation instead of every timer run.
  diagChecks = builtins.fromJSON (builtins.readFile ./diag-checks.json);

  # The state of an unconfirmed `net try`: the CLI's --state-dir default,
  # passed explicitly so the boot-time `net up` rolls back exactly what an
  # operator's `net try` recorded. Under /var/lib: OVS keeps a try's
  # bridges across a reboot, so the record must survive one too.
  netStateDir = "/var/lib/ghostbridge/net";

  # The checkpoint key pair ghostbridge-keygen.service creates: its own
  # StateDirectory, not the database's directory (a unit that may rewrite
  # the database must not also hold the key that vouches for it) and not
  # the checkpoint file's (the snapshot loop writes there; it only reads
  # the key). `chain keygen --out FILE` writes the verifier key to FILE.pub.
  checkpointKeyDir = "ghostbridge-keys";
  checkpointKey = "/var/lib/${checkpointKeyDir}/checkpoint.key";
  checkpointVerifier = "${checkpointKey}.pub";

  # Where systemd puts the Qdrant API key credential of a unit.
  apiKeyCredential = unit: "/run/credentials/${unit}/qdrant-api-key";

  # tmpfiles.d and ReadWritePaths= split on whitespace and expand
  # specifiers: escape the path so a directory with a space stays one.
  tmpfilesPath = p: builtins.replaceStrings [ "%" ] [ "%%" ] (lib.escapeC [ " " "\t" "\n" "\\" "\"" "'" ] p);
  rwPath = p: "\"" + builtins.replaceStrings [ "%" ] [ "%%" ] p + "\"";

  settingType =
    s:
    let
      base =
        if s.type == "str" then
          (if s ? pattern then types.strMatching s.pattern else types.str)
        else if s.type == "duration" then
          types.strMatching durationRegex
        else if s.type == "bool" then
          types.bool
        else if s.type == "int" then
          (
            if s ? max then
              types.ints.between s.min s.max
            else if s.min == 0 then
              types.ints.unsigned
            else
              types.ints.positive
          )
        else if s.type == "number" then
          types.numbers.between s.min s.max
        else if s.type == "enum" then
          types.enum s.values
        else if s.type == "list" then
          types.listOf (settingType s.of)
        else if s.type == "submodule" then
          types.submodule { options = builtins.mapAttrs (_: settingOption) s.options; }
        else
          throw "nix/settings.json: unknown type ${s.type}";
    in
    if s.nullable or false then types.nullOr base else base;

  settingOption =
    s:
    lib.mkOption (
      {
        type = settingType s;
        description = s.description or "";
      }
      // lib.optionalAttrs (s ? default) { inherit (s) default; }
    );

  settingsOptions = builtins.mapAttrs (
    name: s:
    if isLeaf s then
      settingOption s
    else
      lib.mkOption {
        type = types.submodule { options = builtins.mapAttrs (_: settingOption) s; };
        default = { };
        description = "The [${name}] table of the config file.";
      }
  ) spec;

  # TOML has no null: a null setting means "leave it to the CLI".
  dropNulls =
    v:
    if builtins.isAttrs v then
      builtins.mapAttrs (_: dropNulls) (lib.filterAttrs (_: x: x != null) v)
    else if builtins.isList v then
      map dropNulls v
    else
      v;

  configFile = settingsFormat.generate "ghostbridge-config.toml" (dropNulls cfg.settings);

  textfile = "${cfg.diag.textfileDir}/ghostbridge.prom";

  commands = import ./commands.nix {
    configFile = "${configFile}";
    inherit textfile netStateDir checkpointKey;
    diagSkip = cfg.diag.skip;
  };

  # The one place a ghostbridge command line becomes an ExecStart.
  exec = name: utils.escapeSystemdExecArgs ([ "${cfg.package}/bin/ghostbridge" ] ++ commands.${name});

  # Restart policy of the long-running loops: never give up (no start
  # limit), back off up to 30s, and stop on exit 2 (a usage or config
  # error, which a restart cannot fix).
  loopRestart = {
    Restart = "always";
    RestartSteps = 5;
    RestartMaxDelaySec = "30s";
    RestartPreventExitStatus = 2;
  };

  s = cfg.settings;

  # The module creates the key pair only for the file it chose; an operator
  # who names another signing key brings the pair.
  keygenEnabled = cfg.checkpoints.enable && s.chain.signing_key == checkpointKey;

  # Units that never sign do not see the signing key (diag still reads the
  # verifier key next to it).
  hideSigningKey = optional (s.chain.signing_key != "") (rwPath "-${s.chain.signing_key}");

  # A diag run ends about one diag.timeout after it starts: its checks run
  # concurrently and each is abandoned (reported unknown) at the timeout.
  # Twice that plus 30s covers start-up and writing the textfile on a busy
  # host; a run still going then is hung, and while it runs the timer
  # cannot fire again.
  diagTimeoutStart = "${toString (builtins.ceil (2 * import ./go-duration.nix s.diag.timeout) + 30)}s";

  # Sandboxing every unit gets; each unit then opens what its command needs.
  hardening = {
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    NoNewPrivileges = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    RestrictNamespaces = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    SystemCallArchitectures = "native";
    # BTRFS, netlink and ethtool work is ioctl and socket calls, all in
    # @system-service; what CAP_SYS_ADMIN guards is checked by the kernel,
    # not by the filter.
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
    UMask = "0077";
  };

  unitsEnabled =
    optional cfg.network.enable "ghostbridge-net.service"
    ++ optional cfg.snapshots.enable "ghostbridge-snap.service"
    ++ optional cfg.vectorSync.enable "ghostbridge-vector.service";

  scrapeJob = job: addr: {
    job_name = job;
    static_configs = [ { targets = [ addr ]; } ];
  };
in
{
  options.services.ghostbridge = {
    enable = mkEnableOption "ghostbridge: the package, its config file and the units switched on below";

    package = mkOption {
      type = types.package;
      default = pkgs.ghostbridge;
      defaultText = literalMD "`pkgs.ghostbridge`; the flake's `nixosModules.default` sets the flake's package";
      description = "The ghostbridge package.";
    };

    settings = mkOption {
      type = types.submodule { options = settingsOptions; };
      default = { };
      description = ''
        The config file, rendered to TOML and installed as
        /etc/ghostbridge/config.toml; the units read it from the store, so a
        change restarts them. Every key of the CLI is typed here; null values
        are left out, so the CLI's behaviour for an unset key applies.
      '';
    };

    configFile = mkOption {
      type = types.path;
      readOnly = true;
      default = configFile;
      defaultText = literalMD "the rendered `settings`";
      description = "The rendered config file (read-only).";
    };

    network.enable = mkEnableOption "ghostbridge-net.service, a oneshot `ghostbridge net up` after Open vSwitch and before systemd-networkd";

    snapshots.enable = mkEnableOption "ghostbridge-snap.service, the `ghostbridge snap run` loop";

    snapshots.watchdogSec = mkOption {
      type = systemdSpan;
      default = "30s";
      description = "WatchdogSec of ghostbridge-snap.service: systemd restarts the loop when no healthy tick arrives for this long.";
    };

    checkpoints.enable = mkOption {
      type = types.bool;
      default = cfg.snapshots.enable;
      defaultText = literalExpression "config.services.ghostbridge.snapshots.enable";
      description = "Signed checkpoints out of the box: ghostbridge-keygen.service runs `ghostbridge chain keygen` once, before ghostbridge-snap.service, creating the Ed25519 key pair /var/lib/ghostbridge-keys/checkpoint.key (secret, 0600) and checkpoint.key.pub (give it to auditors), and settings.chain.signing_key and verifier_key default to them, so the loop signs checkpoints and `chain verify` (and diag's chain.verify) checks only the blocks after the newest one. The keys never enter the Nix store. Naming another settings.chain.signing_key turns the key creation off.";
    };

    vectorSync.enable = mkEnableOption "ghostbridge-vector.service, the `ghostbridge vector sync` loop";

    vectorSync.qdrantUnit = mkOption {
      type = types.nullOr types.str;
      default = "qdrant.service";
      description = "The unit ghostbridge-vector.service wants and starts after, or null when Qdrant runs elsewhere.";
    };

    vectorSync.apiKeyFile = mkOption {
      type = types.nullOr (types.strMatching "/.*[^/]");
      default = null;
      example = "/run/secrets/qdrant-api-key";
      description = "File holding the Qdrant API key, readable by root only. systemd hands it to ghostbridge-vector.service (and the diag timer) as a credential, and settings.vector.api_key_file points there, so the sandboxed units never need to read another user's file.";
    };

    vectorSync.watchdogSec = mkOption {
      type = systemdSpan;
      default = "30s";
      description = "WatchdogSec of ghostbridge-vector.service.";
    };

    diag.timer.enable = mkEnableOption "ghostbridge-diag.timer, running `ghostbridge diag --format prometheus --textfile` for node exporter's textfile collector";

    diag.interval = mkOption {
      type = systemdSpan;
      default = "1min";
      description = "How often the diag timer runs (OnUnitActiveSec).";
    };

    diag.textfileDir = mkOption {
      type = types.str;
      default = "/var/lib/prometheus-node-exporter-text";
      description = "Directory node exporter's textfile collector reads; diag writes ghostbridge.prom there. The module points node exporter at it.";
    };

    diag.skip = mkOption {
      type = types.listOf (types.enum diagChecks);
      default = [ ];
      example = [ "vm" "security.sshd" ];
      description = "Checks or groups the timer leaves out (`diag --skip`): names from `ghostbridge diag --help` (nix/diag-checks.json), so a typo fails evaluation.";
    };

    metrics.enable = mkEnableOption "the loops' metrics listeners (snap.metrics_listen, vector.metrics_listen on localhost), Prometheus scrape jobs for them and the Grafana dashboard";

    metrics.dashboard = mkOption {
      type = types.path;
      default = ../dashboards/ghostbridge.json;
      defaultText = literalExpression "../dashboards/ghostbridge.json";
      description = "Grafana dashboard provisioned when metrics.enable is on.";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      environment.systemPackages = [ cfg.package ];
      environment.etc."ghostbridge/config.toml".source = configFile;
      services.ghostbridge.settings.diag.services = mkDefault unitsEnabled;
    }

    (mkIf cfg.network.enable {
      assertions = [
        {
          assertion = config.virtualisation.vswitch.enable;
          message = "services.ghostbridge.network.enable needs virtualisation.vswitch.enable (Open vSwitch).";
        }
      ];
      systemd.services.ghostbridge-net = {
        description = "ghostbridge: converge Open vSwitch bridges, addresses, routes, offloads and flows";
        # Bridges must exist before networkd configures links, and the
        # guard flows must be in before traffic flows.
        after = [
          "ovsdb.service"
          "ovs-vswitchd.service"
        ];
        requires = [
          "ovsdb.service"
          "ovs-vswitchd.service"
        ];
        before = [
          "systemd-networkd.service"
          "network.target"
          "network-online.target"
        ];
        # network-online.target waits for it, whatever else waits online.
        wantedBy = [
          "multi-user.target"
          "network-online.target"
        ];
        path = [ config.virtualisation.vswitch.package ];
        serviceConfig = hardening // {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = exec "network";
          # Links, addresses, routes and ethtool offloads; no raw sockets.
          CapabilityBoundingSet = [ "CAP_NET_ADMIN" ];
          # net.ipv4.ip_forward and friends are written through /proc/sys.
          ProtectKernelTunables = false;
          PrivateDevices = true;
          RestrictAddressFamilies = [
            "AF_UNIX"
            "AF_NETLINK"
            "AF_INET"
            "AF_INET6"
          ];
          # The state of an unconfirmed `net try` (netStateDir), which net
          # up rolls back at boot; ProtectSystem=strict leaves only
          # StateDirectory writable under /var/lib.
          StateDirectory = [
            "ghostbridge"
            "ghostbridge/net"
          ];
          StateDirectoryMode = "0700";
          ReadWritePaths = [ "-/run/openvswitch" ];
        };
      };
    })

    (mkIf cfg.snapshots.enable {
      systemd.tmpfiles.rules = [ "d ${tmpfilesPath s.snap.dir} 0700 root root -" ];
      systemd.services.ghostbridge-snap = {
        description = "ghostbridge: BTRFS snapshot loop recorded in the hash chain";
        after = [ "local-fs.target" ];
        wantedBy = [ "multi-user.target" ];
        startLimitIntervalSec = 0;
        serviceConfig = hardening // loopRestart // {
          Type = "notify";
          NotifyAccess = "main";
          ExecStart = exec "snapshots";
          WatchdogSec = cfg.snapshots.watchdogSec;
          RestartSec = "1s";
          StateDirectory = [
            "ghostbridge"
            "ghostbridge-checkpoint"
          ];
          StateDirectoryMode = "0700";
          # Root without CAP_DAC_OVERRIDE is held to mode bits like anyone:
          # CAP_DAC_READ_SEARCH opens a source (and its snapshots) that
          # another user owns with mode 0700; CAP_FOWNER passes BTRFS's
          # ownership check for snapshotting it, and grants no reading.
          # Snapshot deletion and the subvolume search need CAP_SYS_ADMIN.
          CapabilityBoundingSet = [
            "CAP_SYS_ADMIN"
            "CAP_FOWNER"
            "CAP_DAC_READ_SEARCH"
          ];
          # A source under /home is opened read-only; snapshots are written
          # only into snap.dir.
          ProtectHome = "read-only";
          ProtectKernelTunables = true;
          PrivateDevices = true;
          PrivateNetwork = s.snap.metrics_listen == "";
          RestrictAddressFamilies = [
            "AF_UNIX"
            "AF_INET"
            "AF_INET6"
          ];
          # snap.dir comes from tmpfiles above; the database and checkpoint
          # directories are StateDirectory unless settings move them. The
          # signing key is only read: ProtectSystem=strict leaves it so.
          ReadWritePaths = [
            (rwPath s.snap.dir)
            (rwPath "-${dirOf s.db}")
            (rwPath "-${dirOf s.chain.checkpoint_file}")
          ];
        };
      };
    })

    (mkIf cfg.checkpoints.enable {
      services.ghostbridge.settings.chain.signing_key = mkDefault checkpointKey;
      # Only with the module's signing key: a verifier for a pair this
      # module never made would fail every `chain verify`.
      services.ghostbridge.settings.chain.verifier_key = mkIf (s.chain.signing_key == checkpointKey) (mkDefault checkpointVerifier);
    })

    (mkIf keygenEnabled {
      systemd.services.ghostbridge-keygen = {
        description = "ghostbridge: create the checkpoint signing key pair once";
        # snap run refuses to start (exit 2) with chain.signing_key naming
        # a missing file; diag reads the verifier key.
        before = [
          "ghostbridge-snap.service"
          "ghostbridge-diag.service"
        ];
        wantedBy = [ "multi-user.target" ] ++ optional cfg.snapshots.enable "ghostbridge-snap.service";
        # Once: with both files present there is nothing to do. With one
        # of them missing keygen refuses to overwrite the other and the
        # unit fails, naming it: half a pair needs an operator.
        unitConfig.ConditionPathExists = [
          "|!${checkpointKey}"
          "|!${checkpointVerifier}"
        ];
        serviceConfig = hardening // {
          Type = "oneshot";
          ExecStart = exec "checkpointKeygen";
          # Written here, at runtime, never in the Nix store.
          StateDirectory = checkpointKeyDir;
          StateDirectoryMode = "0700";
          CapabilityBoundingSet = "";
          ProtectKernelTunables = true;
          PrivateDevices = true;
          PrivateNetwork = true;
          RestrictAddressFamilies = "none";
        };
      };
    })

    (mkIf (cfg.vectorSync.apiKeyFile != null) {
      assertions = [
        {
          assertion = cfg.vectorSync.enable;
          message = "services.ghostbridge.vectorSync.apiKeyFile is a credential of ghostbridge-vector.service; it needs vectorSync.enable.";
        }
      ];
      # The unit's credential, not the operator's file: the sandboxed,
      # capability-less unit could not read a file another user owns.
      services.ghostbridge.settings.vector.api_key_file = apiKeyCredential "ghostbridge-vector.service";
    })

    (mkIf cfg.vectorSync.enable {
      systemd.services.ghostbridge-vector = {
        description = "ghostbridge: chain events into Qdrant";
        after = [
          "network.target"
          "ghostbridge-snap.service"
        ] ++ optional (cfg.vectorSync.qdrantUnit != null) cfg.vectorSync.qdrantUnit;
        wants = optional (cfg.vectorSync.qdrantUnit != null) cfg.vectorSync.qdrantUnit;
        wantedBy = [ "multi-user.target" ];
        startLimitIntervalSec = 0;
        serviceConfig = hardening // loopRestart // {
          Type = "notify";
          NotifyAccess = "main";
          ExecStart = exec "vectorSync";
          WatchdogSec = cfg.vectorSync.watchdogSec;
          RestartSec = "2s";
          LoadCredential = optional (cfg.vectorSync.apiKeyFile != null) "qdrant-api-key:${cfg.vectorSync.apiKeyFile}";
          StateDirectory = "ghostbridge";
          StateDirectoryMode = "0700";
          # Root without capabilities: it owns the chain database, nothing more.
          CapabilityBoundingSet = "";
          ProtectKernelTunables = true;
          PrivateDevices = true;
          RestrictAddressFamilies = [
            "AF_UNIX"
            "AF_INET"
            "AF_INET6"
          ];
          # The sync cursor and the lock live next to the chain database.
          ReadWritePaths = [ (rwPath "-${dirOf s.db}") ];
          InaccessiblePaths = hideSigningKey;
        };
      };
    })

    (mkIf cfg.diag.timer.enable {
      systemd.tmpfiles.rules = [ "d ${tmpfilesPath cfg.diag.textfileDir} 0755 root root -" ];
      services.prometheus.exporters.node.enabledCollectors = [ "textfile" ];
      services.prometheus.exporters.node.extraFlags = [ "--collector.textfile.directory=${cfg.diag.textfileDir}" ];
      systemd.services.ghostbridge-diag = {
        description = "ghostbridge: host checks for node exporter's textfile collector";
        after = [ "network-online.target" ] ++ unitsEnabled;
        wants = [ "network-online.target" ];
        path = [
          config.virtualisation.vswitch.package
        ] ++ optionals config.services.openssh.enable [ config.services.openssh.package ];
        serviceConfig = hardening // {
          Type = "oneshot";
          ExecStart = exec "diag";
          # A oneshot has no start timeout by default, and a hung run would
          # stop the timer for good (see diagTimeoutStart).
          TimeoutStartSec = diagTimeoutStart;
          # The results go to the textfile; the same text on stdout would
          # only fill the journal every interval.
          StandardOutput = "null";
          # 1 (warn) and 2 (fail) are results, published in the textfile;
          # 3 (unknown, or bad usage) fails the unit so it shows up too.
          SuccessExitStatus = [
            1
            2
          ];
          # The BTRFS subvolume search behind snapshots.count and
          # snapshots.orphans needs CAP_SYS_ADMIN (reading the device error
          # counters does not); CAP_DAC_READ_SEARCH lets them, and
          # storage.*, open sources and snapshots another user owns with
          # mode 0700, which root without CAP_DAC_OVERRIDE may not.
          CapabilityBoundingSet = [
            "CAP_SYS_ADMIN"
            "CAP_DAC_READ_SEARCH"
          ];
          # vector.reachable reads the API key from the diag unit's own
          # copy of the credential; the environment beats the config file.
          LoadCredential = optional (cfg.vectorSync.apiKeyFile != null) "qdrant-api-key:${cfg.vectorSync.apiKeyFile}";
          Environment = optional (cfg.vectorSync.apiKeyFile != null) "GHOSTBRIDGE_VECTOR_API_KEY_FILE=${apiKeyCredential "ghostbridge-diag.service"}";
          # Its children (sshd -T, ovs-vsctl) are not ours to restrict further.
          SystemCallFilter = [ "@system-service" ];
          # storage.free and storage.mounts look at every mount, /home too.
          ProtectHome = "read-only";
          ProtectKernelTunables = true;
          PrivateDevices = true;
          RestrictAddressFamilies = [
            "AF_UNIX"
            "AF_NETLINK"
            "AF_INET"
            "AF_INET6"
          ];
          # Only the textfile is written. The chain database stays readable
          # (ProtectSystem=strict) and is opened read-only, which works on a
          # live WAL database while its -shm file exists; a -wal left without
          # its -shm (the loop stopped uncleanly and not restarted) cannot be
          # read without writing, and chain.verify then reports unknown.
          ReadWritePaths = [ (rwPath cfg.diag.textfileDir) ];
          InaccessiblePaths = hideSigningKey;
        };
      };
      systemd.timers.ghostbridge-diag = {
        description = "ghostbridge: run diag periodically";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnBootSec = "1min";
          OnUnitActiveSec = cfg.diag.interval;
          AccuracySec = "5s";
        };
      };
    })

    (mkIf cfg.metrics.enable {
      services.ghostbridge.settings.snap.metrics_listen = mkDefault "127.0.0.1:9731";
      services.ghostbridge.settings.vector.metrics_listen = mkDefault "127.0.0.1:9732";
      services.prometheus.scrapeConfigs =
        optional (cfg.snapshots.enable && s.snap.metrics_listen != "") (scrapeJob "ghostbridge-snap" s.snap.metrics_listen)
        ++ optional (cfg.vectorSync.enable && s.vector.metrics_listen != "") (scrapeJob "ghostbridge-vector" s.vector.metrics_listen);
      services.grafana.provision = {
        enable = true;
        dashboards.settings.providers = [
          {
            name = "ghostbridge";
            folder = "ghostbridge";
            options.path = pkgs.linkFarm "ghostbridge-dashboards" [
              {
                name = "ghostbridge.json";
                path = cfg.metrics.dashboard;
              }
            ];
          }
        ];
      };
    })
  ]);
}
