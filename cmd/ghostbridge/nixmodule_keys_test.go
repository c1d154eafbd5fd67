package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/nixcheck"
	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// The module makes the checkpoint key pair on the host (ghostbridge-keygen
// service) and points settings.chain at it. These tests hold its paths to
// what `chain keygen` writes and to the rule that keeps the key out of the
// database's directory.

var (
	keyDirLine      = regexp.MustCompile(`(?m)^  checkpointKeyDir = "([^"/]+)";$`)
	keyLine         = regexp.MustCompile(`(?m)^  checkpointKey = "/var/lib/\$\{checkpointKeyDir\}/([^"/]+)";$`)
	verifierLine    = regexp.MustCompile(`(?m)^  checkpointVerifier = "\$\{checkpointKey\}\.pub";$`)
	keygenStateDirs = regexp.MustCompile(`(?m)^ +StateDirectory = checkpointKeyDir;$`)
)

func moduleSource(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "nix/module.nix"))
	if err != nil {
		t.Fatal(err)
	}
	return string(src)
}

// moduleCheckpointKey returns the signing-key file module.nix has
// ghostbridge-keygen.service create (and passes to commands.nix).
func moduleCheckpointKey(t *testing.T) string {
	t.Helper()
	src := moduleSource(t)
	dir := keyDirLine.FindAllStringSubmatch(src, -1)
	file := keyLine.FindAllStringSubmatch(src, -1)
	if len(dir) != 1 || len(file) != 1 {
		t.Fatalf("module.nix: want one line `  checkpointKeyDir = \"NAME\";` (found %d) and one `  checkpointKey = \"/var/lib/${checkpointKeyDir}/FILE\";` (found %d)", len(dir), len(file))
	}
	return "/var/lib/" + dir[0][1] + "/" + file[0][1]
}

// TestNixModuleCheckpointKeys checks where the module keeps the key pair:
// in a StateDirectory of the keygen unit (so it exists at runtime, outside
// the Nix store), not in the database's directory, and the verifier where
// keygen writes it (FILE.pub).
func TestNixModuleCheckpointKeys(t *testing.T) {
	src := moduleSource(t)
	key := moduleCheckpointKey(t)
	if !verifierLine.MatchString(src) {
		t.Errorf("module.nix: checkpointVerifier is not \"${checkpointKey}.pub\", where chain keygen writes the verifier key")
	}
	if !keygenStateDirs.MatchString(src) {
		t.Errorf("module.nix: no unit has StateDirectory = checkpointKeyDir, so nothing creates %s under ProtectSystem=strict", filepath.Dir(key))
	}
	settings, err := nixcheck.ReadSettings(filepath.Join(repoRoot, "nix/examples/ghostbridge-host/ghostbridge.json"))
	if err != nil {
		t.Fatal(err)
	}
	dbs := []string{nixcheck.Lookup(nixSpec(t), "db").Default.(string)}
	if db, ok := settings["db"].(string); ok {
		dbs = append(dbs, db)
	}
	for _, db := range dbs {
		if insideDir(key, filepath.Dir(db)) || insideDir(filepath.Dir(db), filepath.Dir(key)) {
			t.Errorf("checkpoint key %s shares a directory with the database %s", key, db)
		}
	}
	cp := nixcheck.Lookup(nixSpec(t), "chain.checkpoint_file").Default.(string)
	if filepath.Dir(cp) == filepath.Dir(key) {
		t.Errorf("checkpoint key %s is in the checkpoint file's directory, which the snapshot loop may write", key)
	}
	var found bool
	for name, argv := range moduleCommands(t, "/nix/store/x-ghostbridge-config.toml") {
		if strings.HasPrefix(name, "checkpointKeygen#") {
			found = true
			if want := []string{"chain", "keygen", "--out", key}; !slices.Equal(argv, want) {
				t.Errorf("%s: ghostbridge %s, want ghostbridge %s", name, strings.Join(argv, " "), strings.Join(want, " "))
			}
		}
	}
	if !found {
		t.Error("nix/commands.nix has no checkpointKeygen command line")
	}
}

// TestNixModuleKeygenRuns runs the module's keygen command line for real,
// with the key moved into a temporary directory, and loads what it wrote
// the way snap run (signing key) and chain verify (verifier key) do.
func TestNixModuleKeygenRuns(t *testing.T) {
	key := filepath.Join(t.TempDir(), filepath.Base(moduleCheckpointKey(t)))
	cmds := moduleCommandsWithKey(t, "/nix/store/x-ghostbridge-config.toml", key)
	argv, ok := cmds["checkpointKeygen#0"]
	if !ok {
		t.Fatal("nix/commands.nix has no checkpointKeygen command line")
	}
	r := runCLI(t, nil, argv...)
	if r.code != exitOK {
		t.Fatalf("ghostbridge %s: exit %d: %s", strings.Join(argv, " "), r.code, r.stderr)
	}
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("signing key %s has mode %v, want 0600", key, fi.Mode().Perm())
	}
	if _, err := chain.LoadSigner(key); err != nil {
		t.Errorf("settings.chain.signing_key = %s: %v", key, err)
	}
	if _, err := chain.LoadVerifier(key + ".pub"); err != nil {
		t.Errorf("settings.chain.verifier_key = %s.pub: %v", key, err)
	}
	// The unit's condition skips a second run; the command itself must
	// never replace a key it would orphan every checkpoint of.
	if r := runCLI(t, nil, argv...); r.code == exitOK {
		t.Errorf("a second ghostbridge %s succeeded; it must refuse to overwrite the key", strings.Join(argv, " "))
	}
}
