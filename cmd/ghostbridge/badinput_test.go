package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// badConfigs is the expectation table for testdata/config/bad: the text the
// one-line error must contain (at least the bad key).
var badConfigs = map[string]string{
	"config.ini":                      `unknown extension ".ini"`,
	"dir-relative.toml":               `snap.dir = "snapshots"`,
	"duplicate-source.toml":           `snap.sources[1] = "/data/a"`,
	"interval-negative.toml":          `snap.interval = "-1s"`,
	"interval-too-long.toml":          `snap.interval = "2h"`,
	"interval-zero.toml":              `snap.interval = "0s"`,
	"keep-zero.toml":                  `snap.keep = "0s"`,
	"log-level.toml":                  `log.level = "loud"`,
	"many.toml":                       `dbpath`,
	"no-sources.toml":                 `snap.sources = []`,
	"not-a-table.toml":                `snap (from`,
	"ports-unknown-key.toml":          `net.bridges[0].ports[0].tga`,
	"routes-unknown-key.toml":         `net.bridges[0].routes[0].vai`,
	"syntax.toml":                     `toml:`,
	"tiers-for-before-every.toml":     `snap.tiers[0].for = "1m"`,
	"tiers-unknown-key.toml":          `snap.tiers[0].each`,
	"unknown-key.toml":                `snap.intervall`,
	"unknown-key.yaml":                `snap.keeep`,
	"unknown-top-key.toml":            `dbfile`,
	"vector-ca-without-tls.toml":      `vector.tls_ca_file = "/etc/ssl/qdrant-ca.pem"`,
	"vector-collection-too-long.toml": `Qdrant allows 255 and vector reindex appends 32`,
	"wrong-type-sources.toml":         `snap.sources[0] = 1`,
	"wrong-type.json":                 `snap.interval = true`,
	"wrong-type.toml":                 `snap.interval = 1`,
}

// checkOneLineUsageError asserts exit 2, one "Error: " line on stderr that
// contains want, nothing on stdout, and nothing created under dir.
func checkOneLineUsageError(t *testing.T, r result, want, dir string) {
	t.Helper()
	if r.code != exitUsage {
		t.Errorf("exit %d, want %d", r.code, exitUsage)
	}
	if r.stdout != "" {
		t.Errorf("stdout not empty: %q", r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "Error: ") || !strings.HasSuffix(r.stderr, "\n") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr is not one Error: line: %q", r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q does not contain %q", r.stderr, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("created %s", filepath.Join(dir, e.Name()))
	}
}

func TestBadConfigFiles(t *testing.T) {
	dir := filepath.Join(repoRoot, "testdata", "config", "bad")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		seen[name] = true
		want, ok := badConfigs[name]
		if !ok {
			t.Errorf("testdata/config/bad/%s has no expectation in badConfigs", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			work := t.TempDir()
			db := filepath.Join(work, "chain.db")
			// A reader command: should a bad file ever pass, it still
			// cannot snapshot anything. Config errors stop every command
			// in the same place, before it runs.
			args := []string{"--config", filepath.Join(dir, name), "--db", db, "chain", "verify"}
			checkOneLineUsageError(t, runCLI(t, nil, args...), want, work)

			// config validate names the same key (and exits 2).
			r := runCLI(t, nil, "config", "validate", filepath.Join(dir, name))
			if r.code != exitUsage || !strings.Contains(r.stdout+r.stderr, want) {
				t.Errorf("config validate: exit %d, output %q, want 2 and %q", r.code, r.stdout+r.stderr, want)
			}
		})
	}
	for name := range badConfigs {
		if !seen[name] {
			t.Errorf("badConfigs names %s, which is not in testdata/config/bad", name)
		}
	}
}

func TestBadFlagsAndEnvironment(t *testing.T) {
	cases := []struct {
		name string
		env  cliEnv
		args []string // after the common --db and --dir flags; {{work}} is replaced
		want string
	}{
		{"interval zero", nil, []string{"--interval", "0s"}, `snap.interval = "0s" (from --interval)`},
		{"interval negative", nil, []string{"--interval", "-1s"}, `snap.interval = "-1s" (from --interval)`},
		{"interval not a duration", nil, []string{"--interval", "fast"}, `invalid argument "fast" for "--interval"`},
		{"keep zero", nil, []string{"--keep", "0s"}, `snap.keep = "0s" (from --keep)`},
		{"empty source", nil, []string{"--source", ""}, `snap.sources[0] = "" (from --source): want "PATH" or "NAME=PATH"`},
		{"source name with =", nil, []string{"--source", "a=b=/x"}, `snap.sources[0] = "a=b=/x" (from --source): name "a=b" contains "="`},
		{"source name not allowed", nil, []string{"--source", "my data=/x"}, `snap.sources[0] = "my data=/x" (from --source): want "PATH" or "NAME=PATH"`},
		{"format", nil, []string{"--format", "yaml"}, `--format "yaml": want text or json`},
		{"log level", nil, []string{"--log-level", "loud"}, `log.level = "loud" (from --log-level)`},
		{"log format", nil, []string{"--log-format", "xml"}, `log.format = "xml" (from --log-format)`},
		{"unknown flag", nil, []string{"--bogus"}, `unknown flag: --bogus`},
		{"missing explicit config", nil, []string{"--config", "{{work}}/missing.toml"}, `missing.toml: no such file or directory`},
		{"missing config from env", cliEnv{"GHOSTBRIDGE_CONFIG": "{{work}}/missing.yaml"}, nil, `missing.yaml: no such file or directory`},
		{"env interval", cliEnv{"GHOSTBRIDGE_SNAP_INTERVAL": "0s"}, nil, `snap.interval = "0s" (from GHOSTBRIDGE_SNAP_INTERVAL)`},
		{"env log level", cliEnv{"GHOSTBRIDGE_LOG_LEVEL": "trace"}, nil, `log.level = "trace" (from GHOSTBRIDGE_LOG_LEVEL)`},
		{"env tiers", cliEnv{"GHOSTBRIDGE_SNAP_TIERS": "1m"}, nil, `snap.tiers[0] = "1m"`},
		{"db directory missing", nil, []string{"--db", "{{work}}/nodir/chain.db"}, `/nodir: no such file or directory`},
		{"db directory is a file", nil, []string{"--db", "{{work}}/file/chain.db"}, `/file: not a directory`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			work := t.TempDir()
			fill := func(s string) string { return strings.ReplaceAll(s, "{{work}}", work) }
			if strings.Contains(c.name, "is a file") {
				if err := os.WriteFile(filepath.Join(work, "file"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// The source is a plain directory: should a case ever pass
			// validation it still cannot snapshot anything.
			env := cliEnv{"GHOSTBRIDGE_SNAP_SOURCES": work}
			for k, v := range c.env {
				env[k] = fill(v)
			}
			args := []string{"--db", filepath.Join(work, "chain.db"), "snap", "run", "--once", "--dir", filepath.Join(work, "snaps")}
			for _, a := range c.args {
				args = append(args, fill(a))
			}
			r := runCLI(t, env, args...)
			if strings.Contains(c.name, "is a file") {
				// The file is the fixture; nothing else may appear.
				if err := os.Remove(filepath.Join(work, "file")); err != nil {
					t.Fatal(err)
				}
			}
			checkOneLineUsageError(t, r, c.want, work)
		})
	}
}
