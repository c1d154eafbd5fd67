package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func newConfigCmd(a *App) *cobra.Command {
	cmd := newGroupCmd("config", "Show or check the configuration", `Show the effective configuration or check a config file.

Keys (TOML shown; YAML and JSON use the same names):

  db = "/var/lib/ghostbridge/chain.db"  # chain database (--db, GHOSTBRIDGE_DB)
  [log]
  level = "info"      # debug|info|warn|error (--log-level)
  format = "text"     # text|json (--log-format)
  [snap]
  sources = ["root=/"]  # PATH or NAME=PATH, one per subvolume (--source)
  dir = "/.snapshots/ghostbridge"  # snapshot directory, same filesystem (--dir)
  interval = "1s"     # Go duration, `+intervalRange+` (--interval)
  keep = "1m"         # keep every snapshot younger than this, > 0 (--keep)
  tiers = [{ every = "1m", for = "1h" }]  # also keep one per EVERY for FOR
  [chain]
  signing_key = ""    # signing-key FILE (0600) for checkpoints; "" signs none
  verifier_key = ""   # verifier (public) key FILE for "chain verify"
  checkpoint_file = "`+defaultCheckpointFile+`"
                      # latest signed checkpoint; outside the database's directory
  origin = ""         # checkpoint origin; "" is "ghostbridge/<chain id>"
  checkpoint_every = 60        # "snap run" signs every N blocks; 0: never by count
  checkpoint_interval = "0s"   # also after this long if blocks were added; 0: never
  [vector]
  host = "localhost"  # Qdrant host for "vector" commands (gRPC)
  port = 6334         # Qdrant gRPC port
  tls = false
  tls_ca_file = ""    # PEM bundle of a private CA (tls only); "" = system roots
  api_key_file = ""   # FILE holding the Qdrant API key; else `+apiKeyEnv+`
  collection = "ghostbridge-events"
  dimension = 64      # vector size; an existing collection must match
  distance = "Cosine" # Cosine|Dot|Euclid|Manhattan; must match too
  batch = 100         # points per upsert
  interval = "1s"     # "vector sync" polls the chain this often
  [net]
  ovsdb_socket = "/run/openvswitch/db.sock"  # ovsdb-server's socket
  datapath_type = "system"   # system|netdev (userspace)
  offloads = ["tso", "gso", "gro", "lro", "rx", "tx", "rxvlan", "txvlan"]
                      # switched off on every uplink
  ipv4_forwarding = true     # unset: left alone (also ipv6_forwarding)
  [[net.bridges]]
  name = "ovsbr0"     # at most 15 characters
  uplink = "eth0"     # the NIC by name or MAC; omit for an internal bridge
  addresses = ["203.0.113.10/32"]
  gateway = "172.31.1.1"     # outside every address: reached on-link
  routes = [{ to = "198.51.100.0/24", via = "203.0.113.1" }]
  fail_mode = "secure"       # secure|standalone
  ports = [{ name = "int0", tag = 10 }]  # internal ports, VLAN tag optional
  guard = true        # default with an uplink: only the host's MAC leaves
  allow_macs = []     # further source MACs the guard lets out
  flows = []          # extra OpenFlow rules, ovs-ofctl syntax
  [diag]
  timeout = "2s"      # bound on each "diag" check
  free_min_percent = 10      # storage.free warns below, fails below half
  mounts = [{ path = "/work", options = ["nodatacow", "noatime"] }]
  services = ["ghostbridge-snap.service"]  # units that must be active
  dbus_names = []     # D-Bus names that must have an owner
  dbus_address = ""   # "" is the system bus
  sync_lag_max = 60   # vector.lag warns beyond this many blocks
  sshd = "sshd"       # run as "sshd -T" for security.sshd; "" skips it

Keys are always files named by path: the key text itself is refused in
the configuration, the environment and flags, and never printed.

In the environment, lists are comma-separated (GHOSTBRIDGE_SNAP_SOURCES=
"root=/,home=/home") and tiers are EVERY:FOR pairs (GHOSTBRIDGE_SNAP_TIERS=
"1m:1h,1h:24h"); chain keys are GHOSTBRIDGE_CHAIN_SIGNING_KEY and so on.`)
	cmd.AddCommand(newConfigShowCmd(a), newConfigValidateCmd(a))
	return cmd
}

func newConfigShowCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration and where each value came from",
		Example: `  ghostbridge config show
  ghostbridge --config /etc/ghostbridge/config.toml config show --format json
  GHOSTBRIDGE_SNAP_INTERVAL=2s ghostbridge config show`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if a.format == FormatJSON {
				return writeJSON(a.IO.Out, a.conf)
			}
			return writeConfigTOML(a.IO.Out, a.conf)
		},
	}
}

// writeConfigTOML prints the configuration as a TOML file an operator could
// save, with the origin of each value as a comment.
func writeConfigTOML(w io.Writer, lc loadedConfig) error {
	c := lc.Config
	var b strings.Builder
	file := lc.File
	if file == "" {
		file = "none"
	}
	fmt.Fprintf(&b, "# config file: %s\n", file)
	line := func(key, name, value string) {
		fmt.Fprintf(&b, "%s = %s  # %s\n", name, value, lc.Origins[key])
	}
	line("db", "db", tomlString(c.DB))
	b.WriteString("\n[log]\n")
	line("log.level", "level", tomlString(c.Log.Level))
	line("log.format", "format", tomlString(c.Log.Format))
	b.WriteString("\n[snap]\n")
	srcs := make([]string, len(c.Snap.Sources))
	for i, s := range c.Snap.Sources {
		srcs[i] = tomlString(s)
	}
	line("snap.sources", "sources", "["+strings.Join(srcs, ", ")+"]")
	line("snap.dir", "dir", tomlString(c.Snap.Dir))
	line("snap.interval", "interval", tomlString(c.Snap.Interval.String()))
	line("snap.keep", "keep", tomlString(c.Snap.Keep.String()))
	tiers := make([]string, len(c.Snap.Tiers))
	for i, t := range c.Snap.Tiers {
		tiers[i] = fmt.Sprintf("{ every = %s, for = %s }", tomlString(t.Every.String()), tomlString(t.For.String()))
	}
	line("snap.tiers", "tiers", "["+strings.Join(tiers, ", ")+"]")
	line("snap.metrics_listen", "metrics_listen", tomlString(c.Snap.MetricsListen))
	b.WriteString("\n[chain]\n")
	line("chain.signing_key", "signing_key", tomlString(c.Chain.SigningKey))
	line("chain.verifier_key", "verifier_key", tomlString(c.Chain.VerifierKey))
	line("chain.checkpoint_file", "checkpoint_file", tomlString(c.Chain.CheckpointFile))
	line("chain.origin", "origin", tomlString(c.Chain.Origin))
	line("chain.checkpoint_every", "checkpoint_every", strconv.FormatUint(c.Chain.CheckpointEvery, 10))
	line("chain.checkpoint_interval", "checkpoint_interval", tomlString(c.Chain.CheckpointInterval.String()))
	b.WriteString("\n[vector]\n")
	line("vector.host", "host", tomlString(c.Vector.Host))
	line("vector.port", "port", strconv.Itoa(c.Vector.Port))
	line("vector.tls", "tls", strconv.FormatBool(c.Vector.TLS))
	line("vector.tls_ca_file", "tls_ca_file", tomlString(c.Vector.TLSCAFile))
	line("vector.api_key_file", "api_key_file", tomlString(c.Vector.APIKeyFile))
	line("vector.collection", "collection", tomlString(c.Vector.Collection))
	line("vector.dimension", "dimension", strconv.Itoa(c.Vector.Dimension))
	line("vector.distance", "distance", tomlString(c.Vector.Distance))
	line("vector.batch", "batch", strconv.Itoa(c.Vector.Batch))
	line("vector.interval", "interval", tomlString(c.Vector.Interval.String()))
	line("vector.metrics_listen", "metrics_listen", tomlString(c.Vector.MetricsListen))
	b.WriteString("\n[net]\n")
	netTOML(line, c.Net)
	b.WriteString("\n[vm]\n")
	vmTOML(line, c.VM)
	b.WriteString("\n[diag]\n")
	diagTOML(line, c.Diag)
	_, err := io.WriteString(w, b.String())
	return err
}

// tomlString quotes s as a TOML basic string (Go's escapes for printable
// text are a subset of TOML's).
func tomlString(s string) string { return strconv.Quote(s) }

// ConfigValidateResult is the result of `config validate`.
type ConfigValidateResult struct {
	File     string    `json:"file"`
	OK       bool      `json:"ok"`
	Problems []Problem `json:"problems"`
}

func newConfigValidateCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a config file and name every bad key",
		Long: `Check a config file and name every bad key, its value and what is allowed.

With FILE, only that file (over the defaults) is checked. Without it, the
effective configuration is checked: the file --config or the default
location names, GHOSTBRIDGE_* environment variables and flags. Exit status
is 0 when the configuration is valid and 2 when it is not.`,
		Example: `  ghostbridge config validate /etc/ghostbridge/config.toml
  ghostbridge config validate ./new-config.yaml --format json
  ghostbridge config validate`,
		Args:              cobra.MaximumNArgs(1),
		Annotations:       map[string]string{annotSkipConfig: "true"},
		ValidArgsFunction: cobra.FixedCompletions([]string{"toml", "yaml", "yml", "json"}, cobra.ShellCompDirectiveFilterFileExt),
		RunE: func(cmd *cobra.Command, args []string) error {
			src := configSource{}
			layered := len(args) == 0
			if layered {
				var err error
				if src, err = a.configFile(cmd); err != nil {
					return err
				}
			} else {
				src = configSource{Path: args[0], Explicit: true}
			}
			_, err := a.loadConfig(cmd, src, layered)
			var ce *ConfigError
			if err != nil && !errors.As(err, &ce) {
				return err
			}
			res := ConfigValidateResult{File: src.Path, OK: ce == nil, Problems: []Problem{}}
			if ce != nil {
				res.Problems = ce.Problems
			}
			if err := a.printValidate(res); err != nil {
				return err
			}
			if ce != nil {
				name := src.Path
				if name == "" {
					name = "configuration"
				}
				return &ConfigError{Problems: ce.Problems, Summary: fmt.Sprintf("%s: %d invalid %s", name, len(ce.Problems), plural(len(ce.Problems), "key", "keys"))}
			}
			return nil
		},
	}
}

func (a *App) printValidate(res ConfigValidateResult) error {
	if a.format == FormatJSON {
		return writeJSON(a.IO.Out, res)
	}
	st := newStyles(a.IO.Renderer())
	name := res.File
	if name == "" {
		name = "defaults, environment and flags (no config file)"
	}
	if res.OK {
		_, err := fmt.Fprintf(a.IO.Out, "%s %s\n", st.ok.Render("OK:"), name)
		return err
	}
	var b strings.Builder
	for _, p := range res.Problems {
		fmt.Fprintf(&b, "%s %s\n", st.bad.Render("invalid:"), p.String())
	}
	_, err := io.WriteString(a.IO.Out, b.String())
	return err
}

// plural picks one for n == 1, else many. It takes any integer type, so
// counts (uint64 heights and sizes included) need no conversion.
func plural[N ~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64](n N, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
