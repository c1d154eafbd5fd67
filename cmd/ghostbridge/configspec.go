package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
	"github.com/ghostbridge/ghostbridge/pkg/vector"
)

// Config is the typed, validated configuration of ghostbridge. Its JSON form
// is what `config show --format json` prints.
type Config struct {
	DB     string       `json:"db"`
	Log    LogConfig    `json:"log"`
	Snap   SnapConfig   `json:"snap"`
	Chain  ChainConfig  `json:"chain"`
	Vector VectorConfig `json:"vector"`
	Net    NetConfig    `json:"net"`
	VM     VMConfig     `json:"vm"`
	Diag   DiagConfig   `json:"diag"`
}

// LogConfig is the [log] table.
type LogConfig struct {
	Level  string `json:"level"`
	Format string `json:"format"`
}

// SnapConfig is the [snap] table.
type SnapConfig struct {
	Sources  []string     `json:"sources"`
	Dir      string       `json:"dir"`
	Interval Duration     `json:"interval"`
	Keep     Duration     `json:"keep"`
	Tiers    []TierConfig `json:"tiers"`
	// MetricsListen is where `snap run` serves Prometheus metrics
	// (HOST:PORT); "" means no metrics server.
	MetricsListen string `json:"metrics_listen"`
}

// ChainConfig is the [chain] table: checkpoint signing and verification.
// Keys are always named by file path; key text never appears in the
// configuration, so a config file, `config show` or an error message can
// never leak one.
type ChainConfig struct {
	SigningKey         string   `json:"signing_key"`
	VerifierKey        string   `json:"verifier_key"`
	CheckpointFile     string   `json:"checkpoint_file"`
	Origin             string   `json:"origin"`
	CheckpointEvery    uint64   `json:"checkpoint_every"`
	CheckpointInterval Duration `json:"checkpoint_interval"`
}

// TierConfig keeps one snapshot per Every for snapshots younger than For.
type TierConfig struct {
	Every Duration `json:"every"`
	For   Duration `json:"for"`
}

// Duration is a time.Duration written the way operators type it ("1m", not
// "1m0s").
type Duration time.Duration

// String formats d like time.Duration without trailing zero units.
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalText encodes d as its String form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Config defaults. The snapshot defaults follow the host design: a snapshot
// of the root subvolume every second, kept for one minute.
const (
	defaultDB       = "/var/lib/ghostbridge/chain.db"
	defaultSnapDir  = "/.snapshots/ghostbridge"
	defaultInterval = Duration(time.Second)
	defaultKeep     = Duration(time.Minute)
	// The checkpoint file lives outside the database's directory, so a
	// job that replaces the database (a restore, an attacker) does not
	// replace the evidence with it.
	defaultCheckpointFile = "/var/lib/ghostbridge-checkpoint/checkpoint"
)

// intervalRange is the allowed snap.interval, as pkg/snap (which owns the
// limits) enforces it, written for operators: "10ms..1h".
var intervalRange = Duration(snap.MinInterval).String() + ".." + Duration(snap.MaxInterval).String()

// defaultConfig returns the configuration used for keys no layer sets.
func defaultConfig() Config {
	return Config{
		DB:  defaultDB,
		Log: LogConfig{Level: "info", Format: "text"},
		Snap: SnapConfig{
			Sources:  []string{"root=/"},
			Dir:      defaultSnapDir,
			Interval: defaultInterval,
			Keep:     defaultKeep,
		},
		Chain: ChainConfig{
			CheckpointFile:  defaultCheckpointFile,
			CheckpointEvery: chain.DefaultCheckpointBlocks,
		},
		Vector: defaultVectorConfig(),
		Net:    defaultNetConfig(),
		VM:     defaultVMConfig(),
		Diag:   defaultDiagConfig(),
	}
}

// configKeys lists every key a config file may set, in display order, with
// what it allows.
var configKeys = []struct{ Key, Want string }{
	{"db", "a database file path"},
	{"log.level", "one of debug, info, warn, error"},
	{"log.format", "one of text, json"},
	{"snap.sources", `a list of "PATH" or "NAME=PATH" (NAME of a-z A-Z 0-9 @ . _ -)`},
	{"snap.dir", "an absolute directory path"},
	{"snap.interval", fmt.Sprintf(`a Go duration from %s to %s, e.g. "1s"`, Duration(snap.MinInterval), Duration(snap.MaxInterval))},
	{"snap.keep", `a Go duration greater than 0, e.g. "1m"`},
	{"snap.tiers", `a list of {every = DURATION, for = DURATION} with every > 0 and for > every`},
	{"snap.metrics_listen", metricsListenWant},
	{"chain.signing_key", `a path to a signing-key file (mode 0600; "ghostbridge chain keygen" makes one), or "" for no checkpoints; never the key itself`},
	{"chain.verifier_key", `a path to a verifier (public) key file, or ""; never the key itself`},
	{"chain.checkpoint_file", "an absolute file path outside the database's directory"},
	{"chain.origin", `a checkpoint origin without spaces or "+", or "" for "ghostbridge/<chain id>"`},
	{"chain.checkpoint_every", "a whole number of blocks >= 0 (0: no block trigger)"},
	{"chain.checkpoint_interval", `a Go duration >= 0, e.g. "10m" (0: no time trigger)`},
	{"vector.host", "a Qdrant host name or IP address (no scheme, no port)"},
	{"vector.port", "Qdrant's gRPC port, 1..65535 (default 6334)"},
	{"vector.tls", "true or false"},
	{"vector.tls_ca_file", `an absolute path to a PEM bundle of the CAs Qdrant's certificate must chain to, or "" for the system's roots; only with vector.tls = true`},
	{"vector.api_key_file", `an absolute path to a file holding the Qdrant API key, or "" (then ` + apiKeyEnv + `, if set); never the key itself`},
	{"vector.collection", fmt.Sprintf("a collection name of letters, digits, _ - . (1..%d characters: Qdrant allows %d and vector reindex appends %d)", vector.MaxCollection, vector.MaxQdrantName, vector.ReindexSuffixLen)},
	{"vector.dimension", fmt.Sprintf("a whole number of vector dimensions, %d..65536", vector.MinDim)},
	{"vector.distance", "one of Cosine, Dot, Euclid, Manhattan"},
	{"vector.batch", "points per upsert, 1..10000 (Qdrant suggests 64-256)"},
	{"vector.interval", `a Go duration from 10ms to 1h, e.g. "1s"`},
	{"vector.metrics_listen", metricsListenWant},
	{"net.ovsdb_socket", "an absolute path to the OVSDB unix socket"},
	{"net.datapath_type", "system (kernel datapath) or netdev (userspace)"},
	{"net.offloads", "a list of uplink offloads to switch off: rx, tx, sg, tso, gso, gro, lro, rxvlan, txvlan"},
	{"net.ipv4_forwarding", "true or false (unset: left alone)"},
	{"net.ipv6_forwarding", "true or false (unset: left alone)"},
	{"net.bridges", "a list of bridge tables {name, uplink, addresses, gateway, routes, fail_mode, ports, guard, allow_macs, flows}"},
	{"vm.uri", `a libvirt URI, e.g. "qemu:///system" or "qemu+unix:///system?socket=PATH"`},
	{"vm.pool", "the libvirt storage pool new volumes go in"},
	{"vm.domain_type", "kvm, qemu (TCG, no KVM) or test (libvirt's test driver)"},
	{"vm.novnc_url", `the noVNC page "vm console" prints, an http(s) URL, or ""`},
	{"vm.profiles", `a list of {name, vcpus, memory = "2GiB", disk = "20GiB", nics = ["BRIDGE" or "BRIDGE:VLAN"], uefi}`},
	{"diag.timeout", `a Go duration bounding each diag check, greater than 0 and at most 5m, e.g. "2s"`},
	{"diag.free_min_percent", "a percentage 0..100: storage.free warns below it and fails below half of it (0: never)"},
	{"diag.mounts", `a list of {path = "/work", options = ["nodatacow", "noatime"]}: mount points and the options each must have`},
	{"diag.services", `a list of systemd unit names with their suffix, e.g. "ghostbridge-snap.service", each once`},
	{"diag.dbus_names", `a list of D-Bus well-known names, e.g. "org.example.OpDBus", each once`},
	{"diag.dbus_address", `a D-Bus address such as "unix:path=/run/dbus/system_bus_socket", or "" for the system bus`},
	{"diag.sync_lag_max", "a whole number of blocks >= 0: vector.lag warns when Qdrant is further behind the chain"},
	{"diag.sshd", `the sshd binary run as "sshd -T" (a name on PATH or an absolute path), or "" to skip security.sshd`},
}

func wantFor(key string) string {
	base, _, _ := strings.Cut(key, "[")
	for _, k := range configKeys {
		if k.Key == base {
			return k.Want
		}
	}
	return ""
}

// Problem is one bad configuration value: the key, the value as given, where
// it came from and what is allowed.
type Problem struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Origin string `json:"origin,omitempty"`
	Want   string `json:"want"`
}

// String renders the problem on one line.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(printable(p.Key))
	if p.Value != "" {
		b.WriteString(" = ")
		b.WriteString(p.Value)
	}
	if p.Origin != "" {
		b.WriteString(" (from ")
		b.WriteString(printable(p.Origin))
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(p.Want)
	return b.String()
}

// printable returns s, or s quoted when it holds anything that would break
// a one-line message (a key in a YAML file can hold a newline).
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// ConfigError lists every problem found in a configuration. Its Error is one
// line: the first problem and a count of the rest.
type ConfigError struct {
	Problems []Problem
	// Summary, when set, replaces the first-problem message (the problems
	// were already printed as the command's result).
	Summary string
}

func (e *ConfigError) Error() string {
	if e.Summary != "" {
		return e.Summary
	}
	if len(e.Problems) == 0 {
		return snap.ErrInvalidConfig.Error()
	}
	// The same prefix as pkg/snap's configuration errors, so an operator
	// sees one style whichever layer found the problem.
	msg := snap.ErrInvalidConfig.Error() + ": " + e.Problems[0].String()
	if n := len(e.Problems) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more; run 'ghostbridge config validate')", n)
	}
	return msg
}

// showValue renders a configuration value for an error message: quoted,
// on one line, and short.
func showValue(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = fmt.Sprintf("%q", x)
	case Duration:
		s = fmt.Sprintf("%q", x.String())
	default:
		b, err := json.Marshal(x)
		if err != nil {
			s = fmt.Sprintf("%v", x)
		} else {
			s = string(b)
		}
	}
	if strings.Contains(s, "PRIVATE+KEY") {
		// Whatever shape it came in, a signing key is never echoed.
		return "(key text, not shown)"
	}
	s = strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
	const maxLen = 60
	if utf8.RuneCountInString(s) > maxLen {
		s = string([]rune(s)[:maxLen]) + "..."
	}
	return s
}

// notAPath stands in for the value of a key that names a secret's file
// when the value is no absolute path: it may be the secret itself.
const notAPath = "(not a path, not shown)"

// showSecretPath renders the value of a key that names the file holding a
// secret (vector.api_key_file). An API key has no shape to recognise it
// by, so anything but "" or an absolute path is taken for one pasted in
// place of its path, and not shown.
func showSecretPath(v any) string {
	if s, ok := v.(string); ok && (s == "" || filepath.IsAbs(s)) {
		return showValue(s)
	}
	return notAPath
}

// Validate checks every value of c and returns a *ConfigError listing all
// problems, or nil. It touches nothing outside c.
func (c Config) Validate() error {
	var ps []Problem
	bad := func(key string, v any) {
		ps = append(ps, Problem{Key: key, Value: showValue(v), Want: wantFor(key)})
	}
	if strings.TrimSpace(c.DB) == "" {
		bad("db", c.DB)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", c.Log.Format)
	}
	if len(c.Snap.Sources) == 0 {
		ps = append(ps, Problem{Key: "snap.sources", Value: "[]", Want: "at least one source; " + wantFor("snap.sources")})
	}
	names := map[string]string{}
	for i, spec := range c.Snap.Sources {
		key := fmt.Sprintf("snap.sources[%d]", i)
		name, err := sourceName(spec)
		if err != nil {
			ps = append(ps, Problem{Key: key, Value: showValue(spec), Want: err.Error()})
			continue
		}
		if prev, dup := names[name]; dup {
			ps = append(ps, Problem{Key: key, Value: showValue(spec), Want: fmt.Sprintf("a unique source name (%q is also used by %q)", name, prev)})
		}
		names[name] = spec
	}
	if !filepath.IsAbs(c.Snap.Dir) {
		bad("snap.dir", c.Snap.Dir)
	}
	if d := time.Duration(c.Snap.Interval); d < snap.MinInterval || d > snap.MaxInterval {
		bad("snap.interval", c.Snap.Interval)
	}
	if c.Snap.Keep <= 0 {
		bad("snap.keep", c.Snap.Keep)
	}
	for i, t := range c.Snap.Tiers {
		if t.Every <= 0 {
			ps = append(ps, Problem{Key: fmt.Sprintf("snap.tiers[%d].every", i), Value: showValue(t.Every), Want: "a Go duration greater than 0"})
		}
		if t.For <= t.Every {
			ps = append(ps, Problem{Key: fmt.Sprintf("snap.tiers[%d].for", i), Value: showValue(t.For), Want: fmt.Sprintf("a Go duration greater than every (%s)", t.Every)})
		}
	}
	ps = append(ps, listenProblem("snap.metrics_listen", c.Snap.MetricsListen)...)
	ps = append(ps, c.validateChain()...)
	ps = append(ps, c.validateVector()...)
	ps = append(ps, c.validateNet()...)
	ps = append(ps, c.validateVM()...)
	ps = append(ps, c.validateDiag()...)
	if len(ps) == 0 {
		return nil
	}
	return &ConfigError{Problems: ps}
}
