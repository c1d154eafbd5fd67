package nixcheck

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/diag"
)

var update = flag.Bool("update", false, "rewrite the options table in README.md")

// nixFiles lists every .nix file of the repository.
func nixFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".nix") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// flake.nix, the module, commands.nix, package.nix and the example host.
	if len(files) < 6 {
		t.Fatalf("found %d .nix files under %s, want at least 6: %v", len(files), root, files)
	}
	return files
}

// TestNixFilesParse runs the real parser on every .nix file: the check CI
// can make without nixpkgs.
func TestNixFilesParse(t *testing.T) {
	root := Root(t)
	for _, f := range nixFiles(t, root) {
		rel, _ := filepath.Rel(root, f)
		t.Run(rel, func(t *testing.T) {
			if _, err := Instantiate(t, "--parse", f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNixFilesParseRejectsBrokenFile shows the parse check can fail.
func TestNixFilesParseRejectsBrokenFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "broken.nix")
	if err := os.WriteFile(f, []byte("{ a = 1; b = ; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Instantiate(t, "--parse", f); err == nil {
		t.Fatal("nix-instantiate --parse accepted a syntax error")
	}
}

// pathChars may follow the first "/" of a path literal; "/" itself last.
const pathChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-/"

// pathLiterals returns the path literals of parsed Nix (nix-instantiate
// --parse prints them as absolute paths, outside any string; interpolation
// is printed as concatenation and comments are gone, so skipping quoted
// strings is enough).
func pathLiterals(parsed []byte) []string {
	var out []string
	s := string(parsed)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case c == '/' && (i == 0 || strings.ContainsRune(" ([{=;:", rune(s[i-1]))) &&
			i+1 < len(s) && strings.ContainsRune(pathChars[:len(pathChars)-1], rune(s[i+1])):
			// "/" then a path character: a path, not the // operator.
			j := i
			for j < len(s) && strings.ContainsRune(pathChars, rune(s[j])) {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

// TestNixPathLiteralsExist checks every path literal in the .nix files
// (./settings.json, ../dashboards/ghostbridge.json, ...) names a file in
// the repository: parsing does not look, and a flake fails on a missing
// one only when it is evaluated.
func TestNixPathLiteralsExist(t *testing.T) {
	root := Root(t)
	seen := 0
	for _, f := range nixFiles(t, root) {
		out, err := Instantiate(t, "--parse", f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		for _, p := range pathLiterals(out) {
			if !strings.HasPrefix(p, root+"/") && p != root {
				t.Errorf("%s: path %s is outside the repository", rel, p)
				continue
			}
			seen++
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: path literal %s does not exist", rel, strings.TrimPrefix(p, root+"/"))
			}
		}
	}
	if seen == 0 {
		t.Fatal("found no path literals; the module reads ./settings.json, so the scan is broken")
	}
}

func TestPathLiterals(t *testing.T) {
	got := pathLiterals([]byte(`(x: { a = /r/nix/settings.json; b = "/not/a/path \" /x"; c = [ /r/dash.json ]; d = (/r/a + "/b"); e = (x // y); })`))
	want := []string{"/r/nix/settings.json", "/r/dash.json", "/r/a"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("pathLiterals = %q, want %q", got, want)
	}
}

// TestFlakeVendorHash recomputes buildGoModule's vendorHash with
// testdata/nix/vendor-hash.sh and fails when flake.nix's is stale.
func TestFlakeVendorHash(t *testing.T) {
	RequireNix(t, "nix-hash")
	root := Root(t)
	flake, err := os.ReadFile(filepath.Join(root, "flake.nix"))
	if err != nil {
		t.Fatal(err)
	}
	have, err := FlakeVendorHash(flake)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(root, "testdata/nix/vendor-hash.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testdata/nix/vendor-hash.sh: %v\n%s", err, stderr.String())
	}
	want := strings.TrimSpace(string(out))
	if !strings.HasPrefix(want, "sha256-") || len(want) != len("sha256-")+44 {
		t.Fatalf("vendor-hash.sh printed %q, want an SRI sha256 hash", want)
	}
	if have != want {
		t.Fatalf("flake.nix vendorHash is %s but go.mod/go.sum need %s; run: bash testdata/nix/vendor-hash.sh --write", have, want)
	}
}

func TestFlakeVendorHashLine(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"  vendorHash = \"sha256-abc=\";\n", "sha256-abc=", true},
		{"x\n      vendorHash = \"\";\n", "", true},
		{"# vendorHash = \"sha256-a\";\n", "", false},
		{"vendorHash = \"a\";\nvendorHash = \"b\";\n", "", false},
	} {
		got, err := FlakeVendorHash([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("FlakeVendorHash(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func loadSpec(t *testing.T) *Spec {
	t.Helper()
	root, err := LoadSpec(filepath.Join(Root(t), "nix/settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestSpecDefaultsHaveTheirTypes renders empty settings: every default
// must pass its own option's type, as NixOS would require.
func TestSpecDefaultsHaveTheirTypes(t *testing.T) {
	r, err := Render(loadSpec(t), map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TOML(r); err != nil {
		t.Fatal(err)
	}
}

func TestRender(t *testing.T) {
	spec := loadSpec(t)
	for _, tc := range []struct {
		name, in, err string
	}{
		{"unknown table", `{"nope": {}}`, "settings.nope: the option does not exist"},
		{"unknown key", `{"snap": {"intervall": "1s"}}`, "settings.snap.intervall: the option does not exist"},
		{"bad duration", `{"snap": {"interval": "1 second"}}`, "settings.snap.interval: 1 second is not a string matching"},
		{"bad enum", `{"log": {"level": "loud"}}`, "settings.log.level: loud is not one of"},
		{"int range", `{"vector": {"port": 70000}}`, "settings.vector.port: 70000 is not within"},
		{"int not float", `{"vector": {"batch": 1.5}}`, "settings.vector.batch: 1.5 is not an integer"},
		{"null not nullable", `{"db": null}`, "settings.db: null, but the option is not nullable"},
		{"required field", `{"net": {"bridges": [{"uplink": "eth0"}]}}`, "settings.net.bridges[0].name: no value and no default"},
		{"bad pattern", `{"snap": {"sources": ["relative"]}}`, `settings.snap.sources[0]: relative is not a string matching`},
		{"wrong shape", `{"snap": {"sources": "root=/"}}`, "settings.snap.sources: root=/ is not a list"},
		{"ok", `{"net": {"ipv4_forwarding": null, "bridges": [{"name": "br0"}]}, "diag": {"free_min_percent": 2.5}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in map[string]any
			if err := unmarshal([]byte(tc.in), &in); err != nil {
				t.Fatal(err)
			}
			r, err := Render(spec, in)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				net := r["net"].(map[string]any)
				if _, ok := net["ipv4_forwarding"]; ok {
					t.Error("null net.ipv4_forwarding was not dropped")
				}
				br := net["bridges"].([]any)[0].(map[string]any)
				if br["fail_mode"] != "secure" || br["uplink"] != nil {
					t.Errorf("bridge defaults not applied or nulls kept: %v", br)
				}
				if f := r["diag"].(map[string]any)["free_min_percent"]; f != 2.5 {
					t.Errorf("free_min_percent = %v (%T), want 2.5", f, f)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Render error = %v, want %q", err, tc.err)
			}
		})
	}
}

func readModule(t *testing.T) []ModuleOption {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(Root(t), "nix/module.nix"))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := ModuleOptions(src)
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

// TestModuleOptions checks the per-part switches the issue asks for are
// declared, and that the declaration convention is enforced.
func TestModuleOptions(t *testing.T) {
	names := map[string]bool{}
	for _, o := range readModule(t) {
		names[o.Name] = true
		if o.Description == "" || o.Default == "" {
			t.Errorf("%s: default %q, description %q; want both", o.Name, o.Default, o.Description)
		}
	}
	for _, want := range []string{"enable", "package", "settings", "network.enable", "snapshots.enable",
		"vectorSync.enable", "diag.timer.enable", "metrics.enable"} {
		if !names[OptionPrefix+want] {
			t.Errorf("module.nix declares no %s%s", OptionPrefix, want)
		}
	}
	bad := []byte("{\n  options.x = {\n    a = mkOption {\n      description = \"d\";\n    };\n    b.c = lib.types.str // { x = mkOption { }; };\n  };\n}\n")
	if _, err := ModuleOptions(bad); err == nil || !strings.Contains(err.Error(), "outside the convention") {
		t.Fatalf("ModuleOptions accepted an option declared out of convention: %v", err)
	}
}

// TestREADMEOptionsTable keeps the README's options reference equal to
// what module.nix and nix/settings.json declare; -update rewrites it.
func TestREADMEOptionsTable(t *testing.T) {
	table := Table(readModule(t), loadSpec(t))
	path := filepath.Join(Root(t), "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ReplaceTable(readme, table)
	if err != nil {
		t.Fatalf("%v; paste the NixOS section (with the markers) into README.md, then run go test ./internal/nixcheck -run TestREADMEOptionsTable -update", err)
	}
	if bytes.Equal(readme, want) {
		return
	}
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("README.md's NixOS options table is stale; run go test ./internal/nixcheck -run TestREADMEOptionsTable -update")
}

// TestKeysAreDotted guards Keys against walking into list elements.
func TestKeysAreDotted(t *testing.T) {
	keys := Keys(loadSpec(t))
	b, _ := json.Marshal(keys)
	for _, want := range []string{"db", "snap.interval", "net.bridges", "diag.mounts"} {
		if !strings.Contains(string(b), `"`+want+`"`) {
			t.Errorf("Keys lacks %s: %s", want, b)
		}
	}
	for _, k := range keys {
		if strings.Contains(k, "bridges.") || strings.Contains(k, "[") {
			t.Errorf("Keys walked into a list: %s", k)
		}
	}
}

// patternSample is one string an option's pattern is matched against.
type patternSample struct {
	P string `json:"p"`
	V string `json:"v"`
}

// probes are matched against every pattern besides the real values, so
// the two regex engines are compared where they could disagree.
var probes = []string{"", " ", "a b", "a\tb", "/", "/a/b", "/a/", "a=/b", "a=b=/c", "0", "1.5s", "2h45m", "1µs", "-1s",
	"x:1", ":9731", "127.0.0.1:9731", "[::1]:9", `a\b`, "ovsbr0:10", "http://h/x", "qemu:///system", "x.service", "a,b"}

// collectPatterns pairs every pattern in spec with the rendered values it
// governs and with the probes.
func collectPatterns(s *Spec, v any, out *[]patternSample) {
	switch s.Type {
	case "str", "duration":
		p := s.Pattern
		if s.Type == "duration" {
			p = DurationPattern
		}
		if p == "" {
			return
		}
		if str, ok := v.(string); ok {
			*out = append(*out, patternSample{p, str})
		}
		for _, probe := range probes {
			*out = append(*out, patternSample{p, probe})
		}
	case "list":
		l, _ := v.([]any)
		if len(l) == 0 {
			// An empty list still gets its element pattern probed.
			collectPatterns(s.Of, nil, out)
		}
		for _, e := range l {
			collectPatterns(s.Of, e, out)
		}
	case "submodule":
		m, _ := v.(map[string]any)
		for name, o := range s.Options {
			collectPatterns(o, m[name], out)
		}
	}
}

// TestPatternsAgreeWithNix runs every pattern of nix/settings.json through
// Nix's own regex engine (builtins.match, POSIX extended, as
// types.strMatching uses it) and through Go's, on the example host's
// values and on probes: a pattern Nix cannot compile, or one the engines
// read differently, fails here instead of in a host's evaluation.
func TestPatternsAgreeWithNix(t *testing.T) {
	spec := loadSpec(t)
	settings, err := ReadSettings(filepath.Join(Root(t), "nix/examples/ghostbridge-host/ghostbridge.json"))
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := Render(spec, settings)
	if err != nil {
		t.Fatal(err)
	}
	var samples []patternSample
	collectPatterns(spec, rendered, &samples)
	if len(samples) < 100 {
		t.Fatalf("only %d pattern samples; the walk is broken", len(samples))
	}
	b, err := json.Marshal(samples)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "samples.json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := Instantiate(t, "--eval", "--strict", "--json", "--argstr", "file", file, "-E",
		`{ file }: map (x: builtins.match x.p x.v != null) (builtins.fromJSON (builtins.readFile file))`)
	if err != nil {
		t.Fatal(err)
	}
	var nix []bool
	if err := json.Unmarshal(out, &nix); err != nil || len(nix) != len(samples) {
		t.Fatalf("nix gave %d results for %d samples (%v): %s", len(nix), len(samples), err, out)
	}
	for i, s := range samples {
		goMatch := regexp.MustCompile(`^(?:` + s.P + `)$`).MatchString(s.V)
		if goMatch != nix[i] {
			t.Errorf("pattern %q on %q: Nix says %v, Go says %v", s.P, s.V, nix[i], goMatch)
		}
	}
}

// diagChecksFile is the list module.nix types diag.skip with.
const diagChecksFile = "nix/diag-checks.json"

// TestDiagChecksJSON keeps nix/diag-checks.json equal to what `diag
// --skip` accepts: every name of diag.Catalog and every group, sorted;
// -update rewrites it.
func TestDiagChecksJSON(t *testing.T) {
	checks := make([]diag.Check, len(diag.Catalog))
	for i, n := range diag.Catalog {
		checks[i] = diag.Check{Name: n}
	}
	want, err := json.MarshalIndent(diag.Names(checks), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	path := filepath.Join(Root(t), diagChecksFile)
	have, err := os.ReadFile(path)
	if err != nil && !*update {
		t.Fatal(err)
	}
	if bytes.Equal(have, want) {
		return
	}
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s differs from diag.Catalog and its groups; run go test ./internal/nixcheck -run TestDiagChecksJSON -update\nhave: %s\nwant: %s", diagChecksFile, have, want)
}

// TestGoDurationNix compares nix/go-duration.nix, which module.nix derives
// the diag unit's TimeoutStartSec from, with time.ParseDuration.
func TestGoDurationNix(t *testing.T) {
	file := filepath.Join(Root(t), "nix/go-duration.nix")
	cases := []string{"0", "2s", "500ms", "1m30s", "1.5h", "1.h", "01s", "3µs", "7us", "250ns", "1h2m3.25s", "5m", "0.001s", "2m0.5s"}
	list := make([]string, len(cases))
	for i, c := range cases {
		list[i] = strconv.Quote(c)
	}
	out, err := Instantiate(t, "--eval", "--strict", "--json", "--expr",
		fmt.Sprintf("map (import %s) [ %s ]", file, strings.Join(list, " ")))
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(cases) {
		t.Fatalf("go-duration.nix: %v: %s", err, out)
	}
	for i, c := range cases {
		d, err := time.ParseDuration(c)
		if err != nil {
			t.Fatal(err)
		}
		if want := d.Seconds(); math.Abs(got[i]-want) > 1e-9*math.Max(1, want) {
			t.Errorf("go-duration.nix %q = %v, time.ParseDuration says %v", c, got[i], want)
		}
	}
	for _, bad := range []string{"", "5", "5x", "s", "-1s"} {
		if _, err := Instantiate(t, "--eval", "--strict", "--expr", fmt.Sprintf("import %s %s", file, strconv.Quote(bad))); err == nil {
			t.Errorf("go-duration.nix accepted %q", bad)
		}
	}
}
