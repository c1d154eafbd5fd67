package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigPrecedence: flag > GHOSTBRIDGE_* environment > file > default.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	yaml := "db: /from/file.db\nsnap:\n  interval: 3s\n  keep: 2m\n  dir: /from/file\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := cliEnv{
		"GHOSTBRIDGE_CONFIG":        file,
		"GHOSTBRIDGE_SNAP_INTERVAL": "4s",
		"GHOSTBRIDGE_DB":            "/from/env.db",
		"GHOSTBRIDGE_SNAP_SOURCES":  "a=/a, b=/b",
		"GHOSTBRIDGE_SNAP_TIERS":    "1m:1h,1h:24h",
	}
	r := runCLI(t, env, "--db", "/from/flag.db", "config", "show", "--format", "json")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		`"db": "/from/flag.db"`, `"db": "--db"`, // flag beats env and file
		`"interval": "4s"`, `"snap.interval": "GHOSTBRIDGE_SNAP_INTERVAL"`, // env beats file
		`"keep": "2m"`, `"dir": "/from/file"`, // file beats default
		`"level": "info"`, `"log.level": "default"`,
		`"a=/a"`, `"b=/b"`, `"every": "1h"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config show lacks %s:\n%s", want, r.stdout)
		}
	}
}

// TestDefaultConfigFile: a missing default file is fine; an existing one
// is read; the first of the list wins.
func TestDefaultConfigFile(t *testing.T) {
	dir := t.TempDir()
	ios, _, out, errOut := TestIO()
	app := NewApp(ios, func(string) string { return "" })
	app.DefaultConfigFiles = []string{filepath.Join(dir, "config.toml"), filepath.Join(dir, "config.yaml")}
	if code := app.Run(t.Context(), []string{"config", "show"}); code != exitOK || !strings.Contains(out.String(), "# config file: none") {
		t.Fatalf("no default file: exit %d, %s%s", code, out, errOut)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("snap:\n  keep: 5m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ios, _, out, errOut = TestIO()
	app.IO = ios
	if code := app.Run(t.Context(), []string{"config", "show"}); code != exitOK || !strings.Contains(out.String(), `keep = "5m"`) {
		t.Fatalf("default yaml: exit %d, %s%s", code, out, errOut)
	}
}

// TestVersionIgnoresBrokenConfig: commands that need no config still work
// when the config is broken.
func TestVersionIgnoresBrokenConfig(t *testing.T) {
	bad := filepath.Join(repoRoot, "testdata", "config", "bad", "many.toml")
	if r := runCLI(t, nil, "--config", bad, "version"); r.code != exitOK {
		t.Errorf("version with a broken config: exit %d, %s", r.code, r.stderr)
	}
}

func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second: "1s", time.Minute: "1m", time.Hour: "1h", 90 * time.Minute: "1h30m",
		24 * time.Hour: "24h", 1500 * time.Millisecond: "1.5s", 10 * time.Millisecond: "10ms", 0: "0s",
		time.Hour + time.Second: "1h0m1s",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(Duration(d).String()); err != nil || back != d {
			t.Errorf("Duration(%v) does not round-trip: %v %v", d, back, err)
		}
	}
}

// FuzzConfigLoad: arbitrary file contents either load or fail with an
// error; they never panic, and every error is one line.
func FuzzConfigLoad(f *testing.F) {
	for _, seed := range []string{
		"db = \"/x.db\"\n[snap]\ninterval = \"1s\"\n",
		"[snap]\ntiers = [{ every = \"1m\", for = \"1h\" }]\n",
		"snap:\n  sources: [\"/\", 1, {a: b}]\n",
		"snap: 5\nlog: [1]\n",
		"[[snap.tiers]]\nevery = 1\n",
		"{\"snap\": {\"tiers\": \"1m:1h\"}}",
		"db = 1979-05-27T07:32:00Z\n",
		"\x00\xff",
	} {
		f.Add("toml", []byte(seed))
		f.Add("yaml", []byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, ext string, data []byte) {
		switch ext {
		case "toml", "yaml", "json":
		default:
			ext = "toml"
		}
		path := filepath.Join(dir, "fuzz."+ext)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ios, _, _, _ := TestIO()
		a := NewApp(ios, func(string) string { return "" })
		root := newRootCmd(a) // gives a its viper, as a run does
		lc, err := a.loadConfig(root, configSource{Path: path, Explicit: true}, true)
		if err != nil {
			var ce *ConfigError
			var fe *configFileError
			if !errors.As(err, &ce) && !errors.As(err, &fe) {
				t.Errorf("error of type %T: %v", err, err)
			}
			if exitCode(t.Context(), err) != exitUsage {
				t.Errorf("error %v maps to exit %d, want %d", err, exitCode(t.Context(), err), exitUsage)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("multi-line error: %q", err)
			}
			if ce != nil {
				for _, p := range ce.Problems {
					if strings.ContainsAny(p.String(), "\n\r") {
						t.Errorf("multi-line problem: %q", p.String())
					}
				}
			}
			return
		}
		if err := lc.Config.Validate(); err != nil {
			t.Errorf("loaded a config that does not validate: %v", err)
		}
	})
}

// TestNetBridgeNestedUnknownKeys: a misspelt key inside a route or a port
// is refused with the keys the table allows, as for a bridge, and a
// well-formed entry beside it still decodes.
func TestNetBridgeNestedUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bridge map[string]any
		want   []Problem
		routes int
		ports  int
	}{
		{"route", map[string]any{"name": "br0", "routes": []any{map[string]any{"to": "10.1.0.0/16", "vai": "10.0.0.1"}}},
			[]Problem{{Key: "net.bridges[0].routes[0].vai", Want: "unknown key; a route allows to, via"}}, 1, 0},
		{"port", map[string]any{"name": "br0", "ports": []any{map[string]any{"name": "vlan10", "tga": int64(10)}}},
			[]Problem{{Key: "net.bridges[0].ports[0].tga", Want: "unknown key; a port allows name, tag"}}, 0, 1},
		{"via not a string", map[string]any{"name": "br0", "routes": []any{map[string]any{"to": "10.1.0.0/16", "via": int64(1)}}},
			[]Problem{{Key: "net.bridges[0].routes[0]", Value: showValue(map[string]any{"to": "10.1.0.0/16", "via": int64(1)}), Want: "a table {to = CIDR, via = ADDRESS}"}}, 0, 0},
		{"well-formed", map[string]any{"name": "br0", "routes": []any{map[string]any{"to": "10.1.0.0/16", "via": "10.0.0.1"}}, "ports": []any{map[string]any{"name": "vlan10", "tag": int64(10)}}},
			nil, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, ps := decodeNetBridge("net.bridges[0]", tc.bridge)
			if len(ps) != len(tc.want) {
				t.Fatalf("problems %+v, want %+v", ps, tc.want)
			}
			for i := range ps {
				if ps[i] != tc.want[i] {
					t.Errorf("problem %+v, want %+v", ps[i], tc.want[i])
				}
			}
			if len(b.Routes) != tc.routes || len(b.Ports) != tc.ports {
				t.Errorf("decoded %d routes and %d ports, want %d and %d", len(b.Routes), len(b.Ports), tc.routes, tc.ports)
			}
		})
	}
}
