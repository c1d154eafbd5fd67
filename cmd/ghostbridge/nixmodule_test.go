package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/nixcheck"
	"github.com/ghostbridge/ghostbridge/pkg/diag"
)

// The NixOS module (nix/module.nix) runs ghostbridge from systemd units and
// writes its config file from typed settings (nix/settings.json). These
// tests hold the module to the CLI it runs: the config keys and defaults
// match, the example host's settings render into a config file `config
// validate` accepts, and every command line the module can produce parses
// with the real command tree and passes config validation.

func nixSpec(t *testing.T) *nixcheck.Spec {
	t.Helper()
	spec, err := nixcheck.LoadSpec(filepath.Join(repoRoot, "nix/settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// TestNixModuleSettingsKeys checks nix/settings.json declares exactly the
// CLI's config keys: a key the module has and the CLI lacks would be
// refused at boot, and a key the CLI has and the module lacks could not be
// set on NixOS.
func TestNixModuleSettingsKeys(t *testing.T) {
	nixKeys := nixcheck.Keys(nixSpec(t))
	var cliKeys []string
	for _, k := range configKeys {
		cliKeys = append(cliKeys, k.Key)
	}
	sort.Strings(cliKeys)
	for _, k := range nixKeys {
		if !slices.Contains(cliKeys, k) {
			t.Errorf("nix/settings.json declares %s, which is not a ghostbridge config key", k)
		}
	}
	for _, k := range cliKeys {
		if !slices.Contains(nixKeys, k) {
			t.Errorf("config key %s is missing from nix/settings.json (the NixOS module cannot set it)", k)
		}
	}
}

// TestNixModuleSettingsDefaults checks every default in nix/settings.json
// is the CLI's default, so the options reference tells the truth and a
// host that sets nothing runs as the CLI would.
func TestNixModuleSettingsDefaults(t *testing.T) {
	spec := nixSpec(t)
	// The effective defaults, as the CLI reports them with no config file.
	r := runCLI(t, nil, "config", "show", "--format", "json")
	if r.code != exitOK {
		t.Fatalf("config show: exit %d: %s", r.code, r.stderr)
	}
	var shown struct {
		Config map[string]any `json:"config"`
	}
	d := json.NewDecoder(strings.NewReader(r.stdout))
	d.UseNumber()
	if err := d.Decode(&shown); err != nil {
		t.Fatal(err)
	}
	cli := shown.Config
	for _, key := range nixcheck.Keys(spec) {
		s := nixcheck.Lookup(spec, key)
		var cliVal any = cli
		for _, part := range strings.Split(key, ".") {
			m, _ := cliVal.(map[string]any)
			cliVal = m[part]
		}
		if !s.HasDefault {
			t.Errorf("%s: nix/settings.json gives no default", key)
			continue
		}
		want, _ := json.Marshal(cliVal)
		got, _ := json.Marshal(s.Default)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: nix/settings.json default %s, CLI default %s", key, got, want)
		}
	}
}

// renderExample writes the example host's settings as the module would
// (its own defaults for the checkpoint keys and the CLI's for the rest,
// nulls dropped, TOML) and returns the file.
func renderExample(t *testing.T) string {
	t.Helper()
	settings, err := nixcheck.ReadSettings(filepath.Join(repoRoot, "nix/examples/ghostbridge-host/ghostbridge.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The example leaves checkpoints.enable at its default (on with
	// snapshots), so the module points the chain at the key pair it makes.
	chainTable, _ := settings["chain"].(map[string]any)
	if chainTable == nil {
		chainTable = map[string]any{}
		settings["chain"] = chainTable
	}
	if _, ok := chainTable["signing_key"]; !ok {
		key := moduleCheckpointKey(t)
		chainTable["signing_key"] = key
		if _, ok := chainTable["verifier_key"]; !ok {
			chainTable["verifier_key"] = key + ".pub"
		}
	}
	rendered, err := nixcheck.Render(nixSpec(t), settings)
	if err != nil {
		t.Fatalf("example settings do not type-check against nix/settings.json: %v", err)
	}
	b, err := nixcheck.TOML(rendered)
	if err != nil {
		t.Fatal(err)
	}
	// The module's file is a store path ending in -ghostbridge-config.toml.
	path := filepath.Join(t.TempDir(), "ghostbridge-config.toml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestNixModuleExampleConfigValidates renders the example host's settings
// and runs `ghostbridge config validate` on the result.
func TestNixModuleExampleConfigValidates(t *testing.T) {
	path := renderExample(t)
	r := runCLI(t, nil, "config", "validate", path)
	if r.code != exitOK {
		b, _ := os.ReadFile(path)
		t.Fatalf("config validate on the example host's config: exit %d\nstdout:\n%s\nstderr:\n%s\nconfig:\n%s", r.code, r.stdout, r.stderr, b)
	}
}

// moduleCommands evaluates nix/commands.nix with the real nix-instantiate:
// the argument lists module.nix turns into ExecStart lines. Two
// evaluations cover every branch (diagSkip empty and not).
func moduleCommands(t *testing.T, configFile string) map[string][]string {
	t.Helper()
	return moduleCommandsWithKey(t, configFile, moduleCheckpointKey(t))
}

// moduleCommandsWithKey is moduleCommands with the checkpoint signing key
// at key instead of where module.nix puts it.
func moduleCommandsWithKey(t *testing.T, configFile, key string) map[string][]string {
	t.Helper()
	textfile := filepath.Join(t.TempDir(), "ghostbridge.prom")
	all := map[string][]string{}
	for i, skip := range []string{`[ ]`, `[ "vm" "security.sshd" ]`} {
		out, err := nixcheck.Instantiate(t, "--eval", "--strict", "--json",
			filepath.Join(repoRoot, "nix/commands.nix"),
			"--argstr", "configFile", configFile,
			"--argstr", "textfile", textfile,
			"--argstr", "netStateDir", moduleNetStateDir(t),
			"--argstr", "checkpointKey", key,
			"--arg", "diagSkip", skip)
		if err != nil {
			t.Fatal(err)
		}
		var cmds map[string][]string
		if err := json.Unmarshal(out, &cmds); err != nil {
			t.Fatalf("commands.nix: %v\n%s", err, out)
		}
		for name, argv := range cmds {
			all[fmt.Sprintf("%s#%d", name, i)] = argv
		}
	}
	return all
}

var (
	execUse       = regexp.MustCompile(`\bexec "([A-Za-z]+)"`)
	execHelper    = regexp.MustCompile(`^  exec = name: utils\.escapeSystemdExecArgs \(\[ "\$\{cfg\.package\}/bin/ghostbridge" \] \+\+ commands\.\$\{name\}\);$`)
	systemPackage = regexp.MustCompile(`^ +environment\.systemPackages = \[ cfg\.package \];$`)
)

// TestNixModuleRunsOnlyCommandsNix checks module.nix has no ghostbridge
// command line of its own: the package is used only by the exec helper
// (and put on PATH), and exec is called only with names commands.nix
// defines, each of them used.
func TestNixModuleRunsOnlyCommandsNix(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "nix/module.nix"))
	if err != nil {
		t.Fatal(err)
	}
	code := 0
	for i, line := range strings.Split(string(src), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		code += strings.Count(line, "bin/ghostbridge")
		if strings.Contains(line, "cfg.package") && !execHelper.MatchString(line) && !systemPackage.MatchString(line) {
			t.Errorf("module.nix:%d uses cfg.package outside the exec helper: %s", i+1, strings.TrimSpace(line))
		}
	}
	if code != 1 {
		t.Errorf("module.nix names bin/ghostbridge %d times outside comments, want once (in exec)", code)
	}
	used := map[string]bool{}
	for _, m := range execUse.FindAllStringSubmatch(string(src), -1) {
		used[m[1]] = true
	}
	cmds := moduleCommands(t, "/nix/store/x-ghostbridge-config.toml")
	defined := map[string]bool{}
	for k := range cmds {
		defined[strings.Split(k, "#")[0]] = true
	}
	for name := range used {
		if !defined[name] {
			t.Errorf("module.nix runs exec %q, which nix/commands.nix does not define", name)
		}
	}
	for name := range defined {
		if !used[name] {
			t.Errorf("nix/commands.nix defines %q, which module.nix never runs", name)
		}
	}
	if len(used) < 4 {
		t.Errorf("module.nix runs %d commands through exec, want at least 4 (net, snap, vector, diag)", len(used))
	}
}

// checkCommandLine does for argv what running it would do up to the
// command's RunE, without running it: resolve the subcommand in the real
// command tree, parse its flags, validate arguments and flag rules, and
// run the pre-run hook, which loads and validates the configuration the
// flags name. The command itself is never executed.
func checkCommandLine(argv []string) error {
	ios, _, _, _ := TestIO()
	app := NewApp(ios, func(string) string { return "" })
	app.DefaultConfigFiles = nil
	root := newRootCmd(app)
	cmd, rest, err := root.Find(argv)
	if err != nil {
		return fmt.Errorf("find: %w", err)
	}
	var words []string
	for _, a := range argv {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	want := strings.Join(append([]string{"ghostbridge"}, words...), " ")
	if cmd.CommandPath() != want {
		return fmt.Errorf("%q resolves to %q, not %q", strings.Join(argv, " "), cmd.CommandPath(), want)
	}
	if cmd.HasSubCommands() || !cmd.Runnable() {
		return fmt.Errorf("%q is not a command that does anything", cmd.CommandPath())
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	args := cmd.Flags().Args()
	if err := cmd.ValidateArgs(args); err != nil {
		return fmt.Errorf("arguments: %w", err)
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return err
	}
	if err := cmd.ValidateFlagGroups(); err != nil {
		return err
	}
	// cobra runs the nearest persistent pre-run hook, then the command's own.
	for c := cmd; c != nil; c = c.Parent() {
		if c.PersistentPreRunE != nil {
			if err := c.PersistentPreRunE(cmd, args); err != nil {
				return fmt.Errorf("pre-run: %w", err)
			}
			break
		}
	}
	if cmd.PreRunE != nil {
		if err := cmd.PreRunE(cmd, args); err != nil {
			return fmt.Errorf("pre-run: %w", err)
		}
	}
	return nil
}

var netStateDirLine = regexp.MustCompile(`(?m)^  netStateDir = "([^"]*)";$`)

// moduleNetStateDir returns the net try state directory module.nix passes
// to commands.nix (and makes the network unit's StateDirectory).
func moduleNetStateDir(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "nix/module.nix"))
	if err != nil {
		t.Fatal(err)
	}
	m := netStateDirLine.FindAllSubmatch(src, -1)
	if len(m) != 1 {
		t.Fatalf("module.nix has %d lines `  netStateDir = \"...\";`, want one", len(m))
	}
	return string(m[0][1])
}

// TestNixModuleNetStateDir checks the boot-time `net up` looks for an
// unconfirmed try where an operator's `net try` (run with the default
// --state-dir) records it, and that the network unit may write there:
// under ProtectSystem=strict only its StateDirectory is writable.
func TestNixModuleNetStateDir(t *testing.T) {
	dir := moduleNetStateDir(t)
	// The default as the command tree has it, the way an operator's
	// `ghostbridge net try` would resolve it.
	ios, _, _, _ := TestIO()
	try, _, err := newRootCmd(NewApp(ios, func(string) string { return "" })).Find([]string{"net", "try"})
	if err != nil {
		t.Fatal(err)
	}
	f := try.Flag("state-dir")
	if f == nil {
		t.Fatal("ghostbridge net try has no --state-dir flag")
	}
	if dir != f.DefValue {
		t.Errorf("module.nix netStateDir = %q, but net try records in %q by default", dir, f.DefValue)
	}
	rel, ok := strings.CutPrefix(dir, "/var/lib/")
	if !ok {
		t.Fatalf("netStateDir %q is not under /var/lib, so no StateDirectory can make it writable", dir)
	}
	src, err := os.ReadFile(filepath.Join(repoRoot, "nix/module.nix"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(src)
	start := strings.Index(unit, "systemd.services.ghostbridge-net = {")
	end := strings.Index(unit, "(mkIf cfg.snapshots.enable {")
	if start < 0 || end < start {
		t.Fatal("module.nix: ghostbridge-net unit not found before the snapshots part")
	}
	if !strings.Contains(unit[start:end], `"`+rel+`"`) || !strings.Contains(unit[start:end], "StateDirectory = [") {
		t.Errorf("ghostbridge-net.service has no StateDirectory %q, so net up cannot roll back a try under ProtectSystem=strict", rel)
	}
	for name, argv := range moduleCommands(t, "/nix/store/x-ghostbridge-config.toml") {
		if !strings.HasPrefix(name, "network#") {
			continue
		}
		if i := slices.Index(argv, "--state-dir"); i < 0 || i+1 >= len(argv) || argv[i+1] != dir {
			t.Errorf("%s: ghostbridge %s does not pass --state-dir %s", name, strings.Join(argv, " "), dir)
		}
	}
}

// TestNixModuleCommandLines runs every command line the module can produce
// through checkCommandLine with the example host's rendered config, and
// diag's --skip list through diag.Select as `diag` itself does.
func TestNixModuleCommandLines(t *testing.T) {
	cfg := renderExample(t)
	cmds := moduleCommands(t, cfg)
	for _, name := range sortedKeys(cmds) {
		t.Run(name, func(t *testing.T) {
			argv := cmds[name]
			if err := checkCommandLine(argv); err != nil {
				t.Fatalf("ghostbridge %s: %v", strings.Join(argv, " "), err)
			}
			if i := slices.Index(argv, "--skip"); i >= 0 {
				skip := strings.Split(argv[i+1], ",")
				kept, err := diag.Select(catalogChecks(), nil, skip)
				if err != nil {
					t.Fatalf("diag --skip %s: %v", argv[i+1], err)
				}
				if len(kept) >= len(diag.Catalog) {
					t.Fatalf("diag --skip %s left every check in", argv[i+1])
				}
			}
		})
	}
}

// TestNixDiagSkipChoices runs every name nix/diag-checks.json offers
// diag.skip (the enum module.nix types it with) through diag.Select.
func TestNixDiagSkipChoices(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "nix/diag-checks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil || len(names) < len(diag.Catalog) {
		t.Fatalf("nix/diag-checks.json: %v, %d names for %d checks", err, len(names), len(diag.Catalog))
	}
	for _, n := range names {
		if _, err := diag.Select(catalogChecks(), nil, []string{n}); err != nil {
			t.Errorf("diag.skip offers %q: %v", n, err)
		}
	}
}

// TestNixModuleCommandLinesCatchRenames proves the check above can fail:
// each module command line with one subcommand word or one flag name
// changed, or with a config file the CLI refuses, must be rejected.
func TestNixModuleCommandLinesCatchRenames(t *testing.T) {
	cfg := renderExample(t)
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("[snap]\nintervall = \"1s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmds := moduleCommands(t, cfg)
	for _, name := range sortedKeys(cmds) {
		argv := cmds[name]
		if err := checkCommandLine(argv); err != nil {
			t.Fatalf("%s: the unchanged line fails already, so no mutation can prove anything: %v", name, err)
		}
		for i, a := range argv {
			var mutated string
			switch {
			case strings.HasPrefix(a, "--"):
				mutated = a + "x" // a renamed flag
			case i == 0 || !strings.HasPrefix(argv[i-1], "-"):
				mutated = a + "x" // a renamed subcommand
			case argv[i-1] == "--config":
				mutated = bad // a config the CLI refuses
			default:
				continue // a flag's value: its meaning is the command's business
			}
			m := slices.Clone(argv)
			m[i] = mutated
			err := checkCommandLine(m)
			if err == nil {
				t.Errorf("%s: ghostbridge %s was accepted", name, strings.Join(m, " "))
				continue
			}
			t.Logf("%s: %s -> %s: %v", name, a, mutated, err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
