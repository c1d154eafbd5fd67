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
)

// The checks below hold every field of nix/settings.json to the CLI, not
// only the top-level keys: the fields of lists of tables (net.bridges[],
// their routes[] and ports[], snap.tiers[], vm.profiles[], diag.mounts[])
// and the nullable fields the module drops when they are null, which a
// render of the example host alone never shows the CLI.

// fullSettingsFile sets every option of nix/settings.json, nullable ones
// included, to a valid value other than its default.
const fullSettingsFile = "internal/nixcheck/testdata/full-settings.json"

// specCoverage lists what the full sample fails to exercise: an option it
// leaves out or null, a list it leaves empty, or a value equal to the
// default (the CLI ignoring the key would then go unseen).
func specCoverage(path string, s *nixcheck.Spec, v any) []string {
	var gaps []string
	switch s.Type {
	case "submodule":
		m, ok := v.(map[string]any)
		if !ok {
			return []string{path + ": not a table"}
		}
		for _, name := range sortedKeys(s.Options) {
			key := name
			if path != "" {
				key = path + "." + name
			}
			val, given := m[name]
			if !given || val == nil {
				gaps = append(gaps, key+": missing or null")
				continue
			}
			gaps = append(gaps, specCoverage(key, s.Options[name], val)...)
		}
		return gaps
	case "list":
		l, ok := v.([]any)
		if !ok || len(l) == 0 {
			return []string{path + ": not a non-empty list"}
		}
		if s.Of.Type == "submodule" {
			for _, e := range l {
				gaps = append(gaps, specCoverage(path+"[]", s.Of, e)...)
			}
		}
	}
	if s.HasDefault && s.Default != nil {
		have, _ := json.Marshal(v)
		def, _ := json.Marshal(s.Default)
		if bytes.Equal(have, def) {
			gaps = append(gaps, fmt.Sprintf("%s: %s is the default", path, have))
		}
	}
	return gaps
}

// compareWithCLI walks what the module would write (nix) next to what
// `config show --format json` made of it (cli): every table has the same
// keys on both sides and every value is the same.
func compareWithCLI(path string, nix, cli any) []string {
	switch n := nix.(type) {
	case map[string]any:
		c, ok := cli.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: the CLI shows %v, not a table", path, cli)}
		}
		var diffs []string
		for _, k := range sortedKeys(n) {
			key := strings.TrimPrefix(path+"."+k, ".")
			if _, ok := c[k]; !ok {
				diffs = append(diffs, key+": in nix/settings.json, but the CLI does not read it")
				continue
			}
			diffs = append(diffs, compareWithCLI(key, n[k], c[k])...)
		}
		for _, k := range sortedKeys(c) {
			if _, ok := n[k]; !ok {
				diffs = append(diffs, strings.TrimPrefix(path+"."+k, ".")+": the CLI has it, nix/settings.json does not")
			}
		}
		return diffs
	case []any:
		c, ok := cli.([]any)
		if !ok || len(c) != len(n) {
			return []string{fmt.Sprintf("%s: the CLI shows %v, want %d elements", path, cli, len(n))}
		}
		var diffs []string
		for i := range n {
			diffs = append(diffs, compareWithCLI(fmt.Sprintf("%s[%d]", path, i), n[i], c[i])...)
		}
		return diffs
	}
	a, _ := json.Marshal(nix)
	b, _ := json.Marshal(cli)
	if !bytes.Equal(a, b) {
		return []string{fmt.Sprintf("%s: module writes %s, the CLI reads %s", path, a, b)}
	}
	return nil
}

// readFull reads the full sample.
func readFull(t *testing.T) map[string]any {
	t.Helper()
	settings, err := nixcheck.ReadSettings(filepath.Join(repoRoot, fullSettingsFile))
	if err != nil {
		t.Fatal(err)
	}
	return settings
}

// renderFull renders settings as the module would, after checking they
// exercise every option of spec.
func renderFull(spec *nixcheck.Spec, settings map[string]any) (map[string]any, error) {
	if gaps := specCoverage("", spec, settings); len(gaps) > 0 {
		return nil, fmt.Errorf("%s does not exercise every option of nix/settings.json:\n  %s", fullSettingsFile, strings.Join(gaps, "\n  "))
	}
	rendered, err := nixcheck.Render(spec, settings)
	if err != nil {
		return nil, fmt.Errorf("%s does not type-check against nix/settings.json: %w", fullSettingsFile, err)
	}
	return rendered, nil
}

func writeTOML(t *testing.T, rendered map[string]any) string {
	t.Helper()
	b, err := nixcheck.TOML(rendered)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ghostbridge-config.toml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// settingsFieldDiffs renders settings with spec, has the CLI validate and
// show the result, and returns every way the two disagree.
func settingsFieldDiffs(t *testing.T, spec *nixcheck.Spec, settings map[string]any) []string {
	t.Helper()
	rendered, err := renderFull(spec, settings)
	if err != nil {
		return []string{err.Error()}
	}
	path := writeTOML(t, rendered)
	if r := runCLI(t, nil, "config", "validate", path); r.code != exitOK {
		b, _ := os.ReadFile(path)
		return []string{fmt.Sprintf("config validate: exit %d\n%s%s\nconfig:\n%s", r.code, r.stdout, r.stderr, b)}
	}
	r := runCLI(t, nil, "--config", path, "config", "show", "--format", "json")
	if r.code != exitOK {
		t.Fatalf("config show: exit %d: %s", r.code, r.stderr)
	}
	var shown struct {
		Config map[string]any `json:"config"`
	}
	d := json.NewDecoder(strings.NewReader(r.stdout))
	d.UseNumber()
	if err := d.Decode(&shown); err != nil || shown.Config == nil {
		t.Fatalf("config show: %v\n%s", err, r.stdout)
	}
	return compareWithCLI("", rendered, shown.Config)
}

// TestNixModuleSettingsFields renders a sample that sets every option of
// nix/settings.json, every field of every list of tables and every
// nullable option included, has `config validate` accept it, and checks
// `config show` reads back every value under the same name: a field the
// module declares and the CLI does not read, or reads under another name,
// fails here.
func TestNixModuleSettingsFields(t *testing.T) {
	if diffs := settingsFieldDiffs(t, nixSpec(t), readFull(t)); len(diffs) > 0 {
		t.Fatalf("nix/settings.json and the CLI disagree:\n  %s", strings.Join(diffs, "\n  "))
	}
}

// TestNixModuleSettingsFieldsCatchDrift proves the check above fails on
// the drift it is for: each case changes nix/settings.json (and the
// sample to match) in memory the way a careless edit would.
func TestNixModuleSettingsFieldsCatchDrift(t *testing.T) {
	elem := func(settings map[string]any, path ...string) map[string]any {
		var cur any = settings
		for _, p := range path {
			cur = cur.(map[string]any)[p]
			if l, ok := cur.([]any); ok {
				cur = l[0]
			}
		}
		return cur.(map[string]any)
	}
	nullableStr := &nixcheck.Spec{Type: "str", Nullable: true, HasDefault: true}
	for _, tc := range []struct {
		name, want string
		mutate     func(spec *nixcheck.Spec, settings map[string]any)
	}{
		{"bogus nullable field, no sample", "net.bridges[].zz_bogus: missing or null", func(spec *nixcheck.Spec, _ map[string]any) {
			lookupListPath(spec, "net.bridges").Of.Options["zz_bogus"] = nullableStr
		}},
		{"bogus field of a route", "net.bridges[0].routes[0].metric (from ", func(spec *nixcheck.Spec, settings map[string]any) {
			lookupListPath(spec, "net.bridges[].routes").Of.Options["metric"] = nullableStr
			elem(settings, "net", "bridges", "routes")["metric"] = "100"
		}},
		{"renamed field of a port", "net.bridges[0].ports[0].vlan (from ", func(spec *nixcheck.Spec, settings map[string]any) {
			o := lookupListPath(spec, "net.bridges[].ports").Of.Options
			o["vlan"] = o["tag"]
			delete(o, "tag")
			p := elem(settings, "net", "bridges", "ports")
			p["vlan"] = p["tag"]
			delete(p, "tag")
		}},
		{"renamed field of a profile", "config validate: exit 2", func(spec *nixcheck.Spec, settings map[string]any) {
			o := lookupListPath(spec, "vm.profiles").Of.Options
			o["efi"] = o["uefi"]
			delete(o, "uefi")
			p := elem(settings, "vm", "profiles")
			p["efi"] = p["uefi"]
			delete(p, "uefi")
		}},
		{"field dropped from the spec", "vm.profiles[0].disk: the CLI has it, nix/settings.json does not", func(spec *nixcheck.Spec, settings map[string]any) {
			delete(lookupListPath(spec, "vm.profiles").Of.Options, "disk")
			delete(elem(settings, "vm", "profiles"), "disk")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, settings := nixSpec(t), readFull(t)
			tc.mutate(spec, settings)
			diffs := strings.Join(settingsFieldDiffs(t, spec, settings), "\n")
			if !strings.Contains(diffs, tc.want) {
				t.Fatalf("want a difference %q, got:\n%s", tc.want, diffs)
			}
			t.Log(diffs)
		})
	}
}

// listsOfTables returns the dotted paths of every list of tables in spec
// (net.bridges, net.bridges[].routes, ...).
func listsOfTables(path string, s *nixcheck.Spec) []string {
	var out []string
	for _, name := range sortedKeys(s.Options) {
		o := s.Options[name]
		key := strings.TrimPrefix(path+"."+name, ".")
		switch {
		case o.Type == "list" && o.Of.Type == "submodule":
			out = append(out, key)
			out = append(out, listsOfTables(key+"[]", o.Of)...)
		case o.Type == "submodule":
			out = append(out, listsOfTables(key, o)...)
		}
	}
	return out
}

// firstElement returns the first element of the list of tables at a path
// from listsOfTables, within rendered settings, and the CLI's key for it.
func firstElement(rendered map[string]any, path string) (map[string]any, string) {
	var cur any = rendered
	var key []string
	for _, part := range strings.Split(path, ".") {
		name, inList := strings.CutSuffix(part, "[]")
		cur = cur.(map[string]any)[name]
		if inList {
			cur = cur.([]any)[0]
			key = append(key, name+"[0]")
		} else {
			key = append(key, name)
		}
	}
	l := cur.([]any)
	return l[0].(map[string]any), strings.Join(key, ".") + "[0]"
}

// cliIgnoresUnknownFields lists the lists of tables whose unknown fields
// the CLI's config decoding does not report (it reads the fields it knows
// and drops the rest); TestNixModuleSettingsFields covers their fields.
// An entry the CLI starts to report fails the test, so it is removed then.
var cliIgnoresUnknownFields = []string{}

var allowsList = regexp.MustCompile(`allows ([a-z_]+(?:, [a-z_]+)*)`)

// TestNixModuleListFieldsAllowed puts an unknown field into the first
// element of each list of tables and compares the fields the CLI's error
// says the table allows with the ones nix/settings.json declares.
func TestNixModuleListFieldsAllowed(t *testing.T) {
	spec := nixSpec(t)
	paths := listsOfTables("", spec)
	if len(paths) < 6 {
		t.Fatalf("found %d lists of tables (%v), want at least 6", len(paths), paths)
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			rendered, err := renderFull(spec, readFull(t))
			if err != nil {
				t.Fatal(err)
			}
			elem, key := firstElement(rendered, path)
			elem["zz_unknown"] = "x"
			r := runCLI(t, nil, "config", "validate", writeTOML(t, rendered))
			// config validate lists the problems on stdout.
			out := r.stdout + r.stderr
			ignored := slices.Contains(cliIgnoresUnknownFields, path)
			if ignored {
				if r.code == exitOK {
					return
				}
				t.Fatalf("the CLI now reports unknown fields of %s (exit %d: %s); remove it from cliIgnoresUnknownFields", path, r.code, out)
			}
			if r.code != exitUsage || !strings.Contains(out, key+".zz_unknown") {
				t.Fatalf("config validate with %s.zz_unknown: exit %d, output:\n%s", key, r.code, out)
			}
			m := allowsList.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("the CLI's error names no allowed fields:\n%s", out)
			}
			cli := strings.Split(m[1], ", ")
			sort.Strings(cli)
			var nix []string
			s := nixcheck.Lookup(spec, strings.ReplaceAll(path, "[]", ""))
			if s == nil {
				s = lookupListPath(spec, path)
			}
			for name := range s.Of.Options {
				nix = append(nix, name)
			}
			sort.Strings(nix)
			if !slices.Equal(cli, nix) {
				t.Fatalf("%s: the CLI allows %v, nix/settings.json declares %v", path, cli, nix)
			}
		})
	}
}

// lookupListPath finds the spec of a list of tables by its listsOfTables
// path, stepping into list elements at each "[]".
func lookupListPath(root *nixcheck.Spec, path string) *nixcheck.Spec {
	s := root
	for _, part := range strings.Split(path, ".") {
		name, inList := strings.CutSuffix(part, "[]")
		s = s.Options[name]
		if s == nil {
			return nil
		}
		if inList {
			s = s.Of
		}
	}
	return s
}
