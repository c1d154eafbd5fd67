// Package nixcheck lets Go tests check the Nix side of ghostbridge (flake.nix
// and nix/) on machines without nixpkgs: it reads nix/settings.json, the
// description of every config key the NixOS module's settings option is
// built from, renders settings into the config file the module would write,
// and runs the real nix-instantiate where the machine has it.
//
// It is for tests only: production code must not import it. It never
// evaluates NixOS itself (there is no nixpkgs here); what it renders follows
// the module's rules, which module.nix states next to the code.
package nixcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

// Root returns the module root (the directory holding go.mod), searched
// upwards from the working directory of the test.
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Spec describes one setting, or a table of them, as nix/settings.json
// does. module.nix maps each Type to a NixOS option type.
type Spec struct {
	// Type is str, duration, bool, int, number, enum, list or submodule.
	// Tables of the config file are submodules with an empty default.
	Type        string
	Pattern     string
	Values      []string
	Min, Max    *float64
	Nullable    bool
	HasDefault  bool
	Default     any
	Description string
	Of          *Spec
	Options     map[string]*Spec
}

// DurationPattern is module.nix's durationRegex: what Go's
// time.ParseDuration accepts, without signs.
const DurationPattern = `0|([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+`

// LoadSpec reads nix/settings.json into the spec of the whole settings
// option (a submodule whose options are the config file's top-level keys
// and tables).
func LoadSpec(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	root, err := parseTable("", raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	root.HasDefault = false
	return root, nil
}

func unmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// parseTable reads a table: every entry with a string "type" is a leaf,
// anything else a nested table.
func parseTable(path string, raw map[string]json.RawMessage) (*Spec, error) {
	t := &Spec{Type: "submodule", Options: map[string]*Spec{}, HasDefault: true, Default: map[string]any{}}
	if path != "" {
		t.Description = fmt.Sprintf("The [%s] table of the config file.", path)
	}
	for name, msg := range raw {
		key := join(path, name)
		var probe map[string]json.RawMessage
		if err := unmarshal(msg, &probe); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		var typ string
		if json.Unmarshal(probe["type"], &typ) == nil && typ != "" {
			s, err := parseLeaf(key, msg)
			if err != nil {
				return nil, err
			}
			t.Options[name] = s
			continue
		}
		sub, err := parseTable(key, probe)
		if err != nil {
			return nil, err
		}
		t.Options[name] = sub
	}
	return t, nil
}

type rawSpec struct {
	Type        string                     `json:"type"`
	Pattern     string                     `json:"pattern"`
	Values      []string                   `json:"values"`
	Min         *float64                   `json:"min"`
	Max         *float64                   `json:"max"`
	Nullable    bool                       `json:"nullable"`
	Default     json.RawMessage            `json:"default"`
	Description string                     `json:"description"`
	Of          json.RawMessage            `json:"of"`
	Options     map[string]json.RawMessage `json:"options"`
}

func parseLeaf(key string, msg json.RawMessage) (*Spec, error) {
	var r rawSpec
	d := json.NewDecoder(bytes.NewReader(msg))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	s := &Spec{Type: r.Type, Pattern: r.Pattern, Values: r.Values, Min: r.Min, Max: r.Max,
		Nullable: r.Nullable, Description: r.Description}
	if r.Default != nil {
		s.HasDefault = true
		if err := unmarshal(r.Default, &s.Default); err != nil {
			return nil, fmt.Errorf("%s.default: %w", key, err)
		}
	}
	switch r.Type {
	case "str", "duration", "bool", "number", "int":
		if r.Type == "number" && (r.Min == nil || r.Max == nil) {
			return nil, fmt.Errorf("%s: a number needs min and max (types.numbers.between)", key)
		}
		if r.Type == "int" && (r.Min == nil || (r.Max == nil && *r.Min != 0 && *r.Min != 1)) {
			return nil, fmt.Errorf("%s: an int needs min, and max unless min is 0 or 1", key)
		}
	case "enum":
		if len(r.Values) == 0 {
			return nil, fmt.Errorf("%s: an enum needs values", key)
		}
	case "list":
		if r.Of == nil {
			return nil, fmt.Errorf("%s: a list needs of", key)
		}
		of, err := parseLeaf(key+"[]", r.Of)
		if err != nil {
			return nil, err
		}
		s.Of = of
	case "submodule":
		s.Options = map[string]*Spec{}
		for name, m := range r.Options {
			o, err := parseLeaf(key+"."+name, m)
			if err != nil {
				return nil, err
			}
			s.Options[name] = o
		}
	default:
		return nil, fmt.Errorf("%s: unknown type %q", key, r.Type)
	}
	return s, nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// Keys lists the dotted config keys the spec declares ("db",
// "snap.interval", ...), sorted. Lists of submodules are one key.
func Keys(root *Spec) []string {
	var out []string
	var walk func(path string, s *Spec)
	walk = func(path string, s *Spec) {
		for name, o := range s.Options {
			key := join(path, name)
			if o.Type == "submodule" && o.HasDefault && isTable(o) {
				walk(key, o)
				continue
			}
			out = append(out, key)
		}
	}
	walk("", root)
	sort.Strings(out)
	return out
}

// isTable reports whether s is a config-file table (built by parseTable),
// as opposed to a submodule inside a list.
func isTable(s *Spec) bool {
	m, ok := s.Default.(map[string]any)
	return ok && len(m) == 0 && s.Type == "submodule"
}

// Lookup returns the spec of a dotted key, or nil.
func Lookup(root *Spec, key string) *Spec {
	s := root
	for _, part := range strings.Split(key, ".") {
		if s == nil || s.Options == nil {
			return nil
		}
		s = s.Options[part]
	}
	return s
}

// Render applies the module's rules to settings as an operator writes them
// (decoded JSON, numbers as json.Number): every option not given takes its
// default, every value must have its option's type (as the NixOS type
// system would insist), an option without default must be given, and null
// values are dropped, as module.nix's dropNulls does before
// pkgs.formats.toml sees them.
func Render(root *Spec, settings map[string]any) (map[string]any, error) {
	v, err := apply("settings", root, settings, true)
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

func apply(key string, s *Spec, v any, given bool) (any, error) {
	if !given {
		if !s.HasDefault {
			return nil, fmt.Errorf("%s: no value and no default (the option is required)", key)
		}
		v = s.Default
	}
	if v == nil {
		if s.Nullable {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: null, but the option is not nullable", key)
	}
	bad := func(want string) error {
		return fmt.Errorf("%s: %v is not %s", key, v, want)
	}
	switch s.Type {
	case "str", "duration":
		str, ok := v.(string)
		if !ok {
			return nil, bad("a string")
		}
		pattern := s.Pattern
		if s.Type == "duration" {
			pattern = DurationPattern
		}
		if pattern != "" && !regexp.MustCompile(`^(?:`+pattern+`)$`).MatchString(str) {
			return nil, bad(fmt.Sprintf("a string matching %q", pattern))
		}
		return str, nil
	case "bool":
		if _, ok := v.(bool); !ok {
			return nil, bad("a bool")
		}
		return v, nil
	case "int", "number":
		n, ok := v.(json.Number)
		if !ok {
			return nil, bad("a number")
		}
		f, err := n.Float64()
		if err != nil {
			return nil, bad("a number")
		}
		if s.Min != nil && f < *s.Min || s.Max != nil && f > *s.Max {
			return nil, bad(fmt.Sprintf("within [%v, %v]", deref(s.Min), deref(s.Max)))
		}
		if i, err := n.Int64(); err == nil {
			return i, nil
		}
		if s.Type == "int" || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, bad("an integer")
		}
		return f, nil
	case "enum":
		str, ok := v.(string)
		if !ok || !slices.Contains(s.Values, str) {
			return nil, bad("one of " + strings.Join(s.Values, ", "))
		}
		return str, nil
	case "list":
		l, ok := v.([]any)
		if !ok {
			return nil, bad("a list")
		}
		out := make([]any, 0, len(l))
		for i, e := range l {
			r, err := apply(fmt.Sprintf("%s[%d]", key, i), s.Of, e, true)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	case "submodule":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, bad("an attribute set")
		}
		for k := range m {
			if _, ok := s.Options[k]; !ok {
				return nil, fmt.Errorf("%s.%s: the option does not exist", key, k)
			}
		}
		out := map[string]any{}
		for name, o := range s.Options {
			val, given := m[name]
			r, err := apply(key+"."+name, o, val, given)
			if err != nil {
				return nil, err
			}
			if r != nil {
				out[name] = r
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: unknown type %q", key, s.Type)
}

func deref(f *float64) any {
	if f == nil {
		return "∞"
	}
	return *f
}

// ReadSettings reads settings as the example host's configuration.nix does
// (builtins.fromJSON of a file), keeping numbers as json.Number.
func ReadSettings(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// TOML encodes rendered settings as a TOML document, as pkgs.formats.toml
// does with the module's value.
func TOML(rendered map[string]any) ([]byte, error) {
	return toml.Marshal(rendered)
}

// RequireNix returns the path of the named Nix tool (nix-instantiate,
// nix-hash), skipping the test, or failing it under
// GHOSTBRIDGE_TEST_STRICT=1, when it is not installed.
func RequireNix(tb testing.TB, tool string) string {
	tb.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		testenv.Skip(tb, tool+" not found (Debian: apt-get install nix-bin)")
	}
	return p
}

// Instantiate runs nix-instantiate with args and returns its stdout. Nix's
// warnings on stderr (no nixbld group on a Debian install) are shown only
// when it fails.
func Instantiate(tb testing.TB, args ...string) ([]byte, error) {
	tb.Helper()
	bin := RequireNix(tb, "nix-instantiate")
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("nix-instantiate %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// ErrNoValue is returned by FlakeVendorHash when flake.nix has no
// vendorHash line.
var ErrNoValue = errors.New("no value")

// FlakeVendorHash returns the value of flake.nix's `vendorHash = "...";`
// line, the one testdata/nix/vendor-hash.sh --write rewrites.
func FlakeVendorHash(flake []byte) (string, error) {
	m := regexp.MustCompile(`(?m)^ *vendorHash = "([^"]*)";`).FindAllSubmatch(flake, -1)
	switch len(m) {
	case 0:
		return "", fmt.Errorf("flake.nix vendorHash: %w", ErrNoValue)
	case 1:
		return string(m[0][1]), nil
	}
	return "", fmt.Errorf("flake.nix: %d vendorHash lines, want one", len(m))
}
